//! CPU time of a process from `/proc/PID/stat` (utime + stime, all threads, as the kernel sums
//! them for the process), converted from clock ticks to µs. Used for the host (`--host-pid`)
//! and for the load generator itself (`/proc/self/stat`), sampled at the start and end of the
//! measured window.
//!
//! Resolution is one clock tick (10 ms at the usual 100 Hz), so a window should be seconds
//! long for a per-invocation figure to mean anything; the report gives the raw µs too.

use crate::error::LoadtestError;

/// Fields after `(comm)`, counted from 0 for `state` (field 3 in proc(5)): `utime` is field 14
/// and `stime` field 15.
const UTIME_INDEX_AFTER_COMM: usize = 14 - 3;
const STIME_INDEX_AFTER_COMM: usize = 15 - 3;
/// The kernel's USER_HZ on every Linux architecture we run on; used only if sysconf fails.
const CLOCK_TICKS_PER_SEC_FALLBACK: u64 = 100;
const MICROS_PER_SEC: u64 = 1_000_000;

/// CPU time of one process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub user_ticks: u64,
    pub system_ticks: u64,
}

impl CpuTicks {
    pub fn total_ticks(&self) -> u64 {
        self.user_ticks.saturating_add(self.system_ticks)
    }
}

/// Parse the text of `/proc/PID/stat`. `comm` is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted after the *last* `)`.
pub fn parse_stat(text: &str) -> Result<CpuTicks, String> {
    let close = text.rfind(')').ok_or("no ')' after the command name")?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |index: usize, name: &str| -> Result<u64, String> {
        fields
            .get(index)
            .ok_or_else(|| format!("only {} fields after the command name, no {name}", fields.len()))?
            .parse::<u64>()
            .map_err(|e| format!("{name}: {e}"))
    };
    Ok(CpuTicks {
        user_ticks: field(UTIME_INDEX_AFTER_COMM, "utime")?,
        system_ticks: field(STIME_INDEX_AFTER_COMM, "stime")?,
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(CLOCK_TICKS_PER_SEC_FALLBACK)
}

pub fn ticks_to_us(ticks: u64, ticks_per_sec: u64) -> u64 {
    let per_sec = u128::from(ticks_per_sec.max(1));
    u64::try_from(u128::from(ticks) * u128::from(MICROS_PER_SEC) / per_sec).unwrap_or(u64::MAX)
}

/// Which process to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The load generator.
    Own,
    Pid(u32),
}

impl Process {
    fn stat_path(self) -> String {
        match self {
            Process::Own => "/proc/self/stat".to_string(),
            Process::Pid(pid) => format!("/proc/{pid}/stat"),
        }
    }
}

/// Total CPU time of `process` so far, in µs.
pub fn cpu_us(process: Process) -> Result<u64, LoadtestError> {
    let path = process.stat_path();
    let text = std::fs::read_to_string(&path).map_err(|e| LoadtestError::ProcStat {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let ticks = parse_stat(&text).map_err(|reason| LoadtestError::ProcStat { path, reason })?;
    Ok(ticks_to_us(ticks.total_ticks(), clock_ticks_per_sec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line (from a shardhost process), with the fields after stime shortened.
    const STAT: &str = "4242 (shardhost) S 1 4242 4242 0 -1 4194560 2301 0 0 0 1234 567 0 0 20 0 7 0 \
                        8840 1184706560 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0";

    #[test]
    fn reads_utime_and_stime() {
        let ticks = parse_stat(STAT).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                user_ticks: 1234,
                system_ticks: 567
            }
        );
        assert_eq!(ticks.total_ticks(), 1801);
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        let tricky = STAT.replace("(shardhost)", "(a) b (c))");
        assert_eq!(parse_stat(&tricky).unwrap().user_ticks, 1234);
        let spaces = STAT.replace("(shardhost)", "(control plane)");
        assert_eq!(parse_stat(&spaces).unwrap().system_ticks, 567);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 shardhost S 1").is_err());
        assert!(parse_stat("12 (x) S 1 2 3").unwrap_err().contains("utime"));
        let bad = STAT.replace(" 1234 ", " 12x4 ");
        assert!(parse_stat(&bad).unwrap_err().starts_with("utime"));
    }

    #[test]
    fn ticks_convert_to_microseconds() {
        assert_eq!(ticks_to_us(1, 100), 10_000);
        assert_eq!(ticks_to_us(250, 100), 2_500_000);
        assert_eq!(ticks_to_us(3, 1000), 3_000);
        assert_eq!(ticks_to_us(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_us(5, 0), 5_000_000, "a zero tick rate is treated as 1");
    }

    #[test]
    fn own_process_has_a_readable_cpu_time() {
        // Burn a little CPU so the reading can move, then check it is sane and monotonic.
        let before = cpu_us(Process::Own).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let after = cpu_us(Process::Own).unwrap();
        assert!(after >= before);
        assert!(clock_ticks_per_sec() >= 1);
        assert!(cpu_us(Process::Pid(u32::MAX)).is_err());
    }
}
