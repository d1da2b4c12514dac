//! Runs a host the way Docker's and containerd's default seccomp profiles do: with the three
//! io_uring system calls answered `EPERM`. Installed in the spawned host's `pre_exec` with
//! `prctl` (no service, no privileges: `PR_SET_NO_NEW_PRIVS` first).
//!
//! `SHARDHOST_TEST_BLOCK_IO_URING=1` in the test run's environment (CI's epoll leg) blocks
//! io_uring for every host the tests spawn; a test's own env entry of that name does it for
//! its host alone.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The variable that asks for io_uring to be blocked.
pub const BLOCK_IO_URING_ENV: &str = "SHARDHOST_TEST_BLOCK_IO_URING";
/// A test's own env entry of this name (KiB) starts its host with that `RLIMIT_MEMLOCK`.
pub const MEMLOCK_KIB_ENV: &str = "SHARDHOST_TEST_MEMLOCK_KIB";

/// x86_64 system call numbers (the same on every x86_64 kernel).
const SYS_IO_URING_SETUP: u32 = 425;
const SYS_IO_URING_ENTER: u32 = 426;
const SYS_IO_URING_REGISTER: u32 = 427;
/// `AUDIT_ARCH_X86_64`: the filter only judges x86_64 system calls.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
/// Classic BPF opcodes.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

/// Whether io_uring is to be blocked: a test's own entry in `envs` decides (`0` keeps it
/// allowed even in the blocked CI leg), else the test run's environment.
pub fn wanted(envs: &[(String, String)]) -> bool {
    let on = |v: &str| !v.is_empty() && v != "0";
    match envs.iter().find(|(k, _)| k == BLOCK_IO_URING_ENV) {
        Some((_, v)) => on(v),
        None => std::env::var(BLOCK_IO_URING_ENV).is_ok_and(|v| on(&v)),
    }
}

/// The `RLIMIT_MEMLOCK` (KiB) a test's env entry asks its host to start with, if any.
pub fn memlock_kib(envs: &[(String, String)]) -> Option<u64> {
    envs.iter()
        .find(|(k, _)| k == MEMLOCK_KIB_ENV)
        .and_then(|(_, v)| v.parse().ok())
}

/// Make `command`'s process start with a locked-memory limit of `kib` KiB (soft and hard), as
/// a container started with `--ulimit memlock=…` does.
pub fn limit_memlock(command: &mut Command, kib: u64) {
    let limit = libc::rlimit {
        rlim_cur: kib << 10,
        rlim_max: kib << 10,
    };
    // SAFETY: runs in the child between fork and exec and only calls setrlimit
    // (async-signal-safe) with a value moved into the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Make `command`'s process start with io_uring blocked.
pub fn block_io_uring(command: &mut Command) {
    let errno = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let program = [
        op(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        op(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        op(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        op(BPF_JEQ_K, 3, 0, SYS_IO_URING_SETUP),
        op(BPF_JEQ_K, 2, 0, SYS_IO_URING_ENTER),
        op(BPF_JEQ_K, 1, 0, SYS_IO_URING_REGISTER),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        op(BPF_RET_K, 0, 0, errno),
    ];
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe; `program` is moved into the closure and outlives both calls.
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
