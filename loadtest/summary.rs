//! `summarize`: the suite's one table. Reads the JSON reports of a results directory (several
//! rounds of each scenario, run in alternation), groups them by scenario and pacing, and
//! prints medians — throughput, p50, p99, host CPU per invocation — with each actor figure
//! as a ratio of the `raw` floor measured at the same pacing in the same run.
//!
//! Pure: takes the reports' text, returns the table. Medians, because this machine is noisy
//! (one outlier round moves a mean, not a median).

use std::collections::BTreeMap;

use serde_json::Value;

/// One report's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub ok_per_sec: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub host_cpu_us_per_invocation: Option<f64>,
    /// Requests that did not end ok (error replies, timeouts, no responders, failures…).
    pub not_ok: u64,
}

/// Reports of one scenario at one pacing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// `closed 1`, `closed 64`, `open 5000/s`.
    pub pacing: String,
    /// `raw`, or the scenario name given to the report (`echo`…).
    pub scenario: String,
}

/// The scenario and pacing a report was run with, and its figures; `None` if it is not a run
/// report.
pub fn read_report(name: &str, text: &str) -> Option<(GroupKey, Figures)> {
    let json: Value = serde_json::from_str(text).ok()?;
    let key = group_key(name, &json)?;
    let counts = &json["counts"];
    let sent = counts["sent"].as_u64().unwrap_or(0);
    let ok = counts["ok"].as_u64().unwrap_or(0);
    let figures = Figures {
        ok_per_sec: json["throughput"]["ok_per_sec"].as_f64()?,
        p50_us: json["latency_us"]["p50"].as_f64(),
        p99_us: json["latency_us"]["p99"].as_f64(),
        host_cpu_us_per_invocation: json["host_cpu"]["cpu_us_per_invocation"].as_f64(),
        not_ok: sent.saturating_sub(ok),
    };
    Some((key, figures))
}

/// The scenario and pacing of report `name` (a file name); `None` if it is not a run report.
pub fn group_key(name: &str, json: &Value) -> Option<GroupKey> {
    let config = json.get("config")?;
    let pacing = match config["pacing"]["mode"].as_str()? {
        "closed" => format!("closed {}", config["pacing"]["in_flight_count"].as_u64()?),
        "open" => format!("open {}/s", config["pacing"]["rate_per_sec"].as_f64()?),
        _ => return None,
    };
    // Reports are named `{scenario}-…json`; the raw floor says so in its config.
    let scenario = match config["scenario"].as_str() {
        Some("raw") => "raw".to_string(),
        _ => name.split(['-', '.']).next().unwrap_or(name).to_string(),
    };
    Some(GroupKey { pacing, scenario })
}

/// Median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Medians of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: GroupKey,
    pub rounds: usize,
    pub ok_per_sec: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub host_cpu_us_per_invocation: Option<f64>,
    pub not_ok: u64,
}

pub fn rows(reports: &[(GroupKey, Figures)]) -> Vec<Row> {
    let mut groups: BTreeMap<GroupKey, Vec<&Figures>> = BTreeMap::new();
    for (key, figures) in reports {
        groups.entry(key.clone()).or_default().push(figures);
    }
    groups
        .into_iter()
        .map(|(key, all)| {
            let pick =
                |f: fn(&Figures) -> Option<f64>| median(&mut all.iter().filter_map(|x| f(x)).collect::<Vec<_>>());
            Row {
                rounds: all.len(),
                ok_per_sec: pick(|x| Some(x.ok_per_sec)).unwrap_or(0.0),
                p50_us: pick(|x| x.p50_us),
                p99_us: pick(|x| x.p99_us),
                host_cpu_us_per_invocation: pick(|x| x.host_cpu_us_per_invocation),
                not_ok: all.iter().map(|x| x.not_ok).sum(),
                key,
            }
        })
        .collect()
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

/// The markdown table: per pacing the raw floor first, then each scenario with its share of
/// the floor's throughput and its p50 over the floor's.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| pacing | scenario | rounds | ok/s (median) | % of raw ok/s | p50 µs | p50 − raw p50 µs | p99 µs | host CPU µs/inv | not ok |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut ordered: Vec<&Row> = rows.iter().collect();
    ordered.sort_by_key(|row| {
        (
            pacing_order(&row.key.pacing),
            row.key.scenario != "raw",
            row.key.scenario.clone(),
        )
    });
    for row in ordered {
        let floor = rows
            .iter()
            .find(|r| r.key.pacing == row.key.pacing && r.key.scenario == "raw");
        let (share, over) = match floor {
            Some(floor) if row.key.scenario != "raw" => (
                (floor.ok_per_sec > 0.0).then(|| 100.0 * row.ok_per_sec / floor.ok_per_sec),
                row.p50_us.zip(floor.p50_us).map(|(a, b)| a - b),
            ),
            _ => (None, None),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            row.key.pacing,
            row.key.scenario,
            row.rounds,
            row.ok_per_sec,
            cell(share, 1),
            cell(row.p50_us, 0),
            cell(over, 0),
            cell(row.p99_us, 0),
            cell(row.host_cpu_us_per_invocation, 1),
            row.not_ok
        ));
    }
    out
}

/// Closed loop by concurrency, then open loop by rate.
pub fn pacing_order(pacing: &str) -> (u8, u64) {
    let number = |s: &str| {
        s.trim_end_matches("/s")
            .parse::<f64>()
            .map(|v| v as u64)
            .unwrap_or(u64::MAX)
    };
    match pacing.split_once(' ') {
        Some(("closed", n)) => (0, number(n)),
        Some(("open", n)) => (1, number(n)),
        _ => (2, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scenario: &str, in_flight: u64, ok_per_sec: f64, p50: f64, cpu: Option<f64>) -> String {
        serde_json::json!({
            "config": { "scenario": scenario, "pacing": { "mode": "closed", "in_flight_count": in_flight } },
            "counts": { "sent": 100, "ok": 100 },
            "throughput": { "ok_per_sec": ok_per_sec },
            "latency_us": { "p50": p50, "p99": p50 * 3.0 },
            "host_cpu": { "cpu_us_per_invocation": cpu },
        })
        .to_string()
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn rounds_group_by_scenario_and_pacing_and_take_medians_against_the_floor() {
        let mut reports = Vec::new();
        for (round, (raw, echo)) in [(100_000.0, 40_000.0), (90_000.0, 50_000.0), (110_000.0, 30_000.0)]
            .into_iter()
            .enumerate()
        {
            let raw_text = report("raw", 64, raw, 500.0, None);
            let echo_text = report("actor", 64, echo, 1_500.0, Some(30.0 + round as f64));
            reports.push(read_report(&format!("raw-inflight64-r{round}.json"), &raw_text).unwrap());
            reports.push(read_report(&format!("echo-inflight64-r{round}.json"), &echo_text).unwrap());
        }
        let rows = rows(&reports);
        assert_eq!(rows.len(), 2);
        let echo = rows.iter().find(|r| r.key.scenario == "echo").unwrap();
        assert_eq!(
            (echo.rounds, echo.ok_per_sec, echo.host_cpu_us_per_invocation),
            (3, 40_000.0, Some(31.0))
        );
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("| closed 64 | raw | 3 | 100000 |"), "{text}");
        // 40k of the floor's 100k; p50 1500 against 500.
        assert!(
            lines[3].starts_with("| closed 64 | echo | 3 | 40000 | 40.0 | 1500 | 1000 | 4500 | 31.0 | 0 |"),
            "{text}"
        );
    }

    #[test]
    fn what_is_not_a_run_report_is_skipped() {
        assert!(read_report("x.json", "{}").is_none());
        assert!(read_report("x.json", "not json").is_none());
    }

    #[test]
    fn closed_loop_rows_come_before_open_loop_ones_in_numeric_order() {
        assert!(pacing_order("closed 1") < pacing_order("closed 64"));
        assert!(pacing_order("closed 64") < pacing_order("open 5000/s"));
        assert!(pacing_order("open 5000/s") < pacing_order("open 20000/s"));
    }
}
