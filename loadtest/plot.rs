//! `plot`: the latency percentile spectrum of a results directory's runs, as SVG — one chart
//! per pacing (closed 1, closed 64, open R/s), one line per scenario (raw floor, echo, actor to
//! actor…), each line the exact merge of that scenario's rounds (their HDR histograms added
//! bucket by bucket, not their percentiles averaged).
//!
//! The x axis is HDR's percentile spectrum: position log10(1 / (1 − p)), so 90 %, 99 %, 99.9 %
//! … are evenly spaced and the tail gets the room it deserves; the y axis is latency in µs on
//! a log scale (the floor's 100 µs and a host's 10 ms tail fit one chart). Pure: reports' JSON
//! in, SVG text out; the caller reads and writes the files.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::stats::{new_histogram, LATENCY_US_MAX};
use crate::summary::{group_key, pacing_order, GroupKey};

/// Points per halving of the distance to 100 % (HDR's `ticks per half distance`).
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// The deepest percentile drawn: 99.9999 % (x = 6), whatever the run's size.
const X_DECADES_MAX: f64 = 6.0;
/// The shallowest right edge: 99.9 % (x = 3), so short runs still show a tail axis.
const X_DECADES_MIN: f64 = 3.0;
/// Chart size and margins, SVG user units (px).
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
/// Line colours, in scenario order (the raw floor first, in grey).
const FLOOR_COLOUR: &str = "#777777";
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// One line of a chart: a scenario's merged latency spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Runs merged into it.
    pub runs: usize,
    /// Ok replies in it.
    pub count: u64,
    /// `(percentile 0–100, latency µs)`, percentiles rising.
    pub points: Vec<(f64, u64)>,
}

/// One chart: a pacing and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub pacing: String,
    pub series: Vec<Series>,
}

impl Chart {
    /// A file name for this chart: `latency-closed-64.svg`, `latency-open-5000.svg`.
    pub fn file_name(&self) -> String {
        let slug: String = self
            .pacing
            .trim_end_matches("/s")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("latency-{slug}.svg")
    }
}

/// The histogram a report carries (`latency_histogram_us`), added into `into`. `false` when the
/// report has none (an older report, or no ok reply).
pub fn add_report_histogram(report: &Value, into: &mut Histogram<u64>) -> bool {
    let Some(buckets) = report["latency_histogram_us"].as_array() else {
        return false;
    };
    let mut added = false;
    for bucket in buckets {
        if let (Some(value), Some(count)) = (bucket[0].as_u64(), bucket[1].as_u64()) {
            into.saturating_record_n(value.clamp(1, LATENCY_US_MAX), count);
            added |= count > 0;
        }
    }
    added
}

/// The percentile spectrum of `histogram`: `(percentile, value)` points, percentiles rising,
/// ending at the maximum (drawn at the deepest percentile the count supports).
pub fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, u64)> = histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| (100.0 * step.quantile_iterated_to(), step.value_iterated_to()))
        .filter(|(p, _)| *p < 100.0)
        .collect();
    // The last point is the maximum, at 1 − 1/count (one sample beyond which nothing lies).
    let deepest = 100.0 * (1.0 - 1.0 / histogram.len() as f64);
    let deepest = deepest.max(points.last().map_or(0.0, |p| p.0));
    points.push((deepest, histogram.max()));
    points
}

/// Group `reports` (`(file name, JSON)`) into charts: per pacing, per scenario, rounds merged.
/// Reports without a histogram or that are not run reports are left out.
pub fn charts(reports: &[(String, Value)]) -> Vec<Chart> {
    let mut groups: BTreeMap<GroupKey, (usize, Histogram<u64>)> = BTreeMap::new();
    for (name, report) in reports {
        let Some(key) = group_key(name, report) else {
            continue;
        };
        let entry = match groups.entry(key) {
            Entry::Occupied(group) => group.into_mut(),
            Entry::Vacant(slot) => match new_histogram() {
                Ok(empty) => slot.insert((0, empty)),
                Err(_) => continue,
            },
        };
        if add_report_histogram(report, &mut entry.1) {
            entry.0 += 1;
        }
    }
    let mut by_pacing: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for (key, (runs, histogram)) in groups {
        if runs == 0 {
            continue;
        }
        by_pacing.entry(key.pacing).or_default().push(Series {
            name: key.scenario,
            runs,
            count: histogram.len(),
            points: spectrum(&histogram),
        });
    }
    let mut charts: Vec<Chart> = by_pacing
        .into_iter()
        .map(|(pacing, mut series)| {
            series.sort_by_key(|s| (s.name != "raw", s.name.clone()));
            Chart { pacing, series }
        })
        .collect();
    charts.sort_by_key(|c| pacing_order(&c.pacing));
    charts
}

/// Horizontal position of percentile `p` in decades of 1 / (1 − p).
pub fn decades(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-X_DECADES_MAX));
    -rest.log10()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn latency_label(us: f64) -> String {
    match us {
        v if v >= 1e6 => format!("{} s", v / 1e6),
        v if v >= 1e3 => format!("{} ms", v / 1e3),
        v => format!("{v} µs"),
    }
}

fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0 %".to_string(),
        1 => "90 %".to_string(),
        2 => "99 %".to_string(),
        d => format!("99.{} %", "9".repeat(d as usize - 2)),
    }
}

/// The chart as a standalone SVG document; `title` heads it.
pub fn render_svg(title: &str, chart: &Chart) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let all = || chart.series.iter().flat_map(|s| s.points.iter());
    let x_max = all()
        .map(|(p, _)| decades(*p))
        .fold(X_DECADES_MIN, f64::max)
        .min(X_DECADES_MAX)
        .ceil();
    let y_lo = all().map(|(_, v)| *v.max(&1) as f64).fold(f64::INFINITY, f64::min);
    let y_hi = all().map(|(_, v)| *v.max(&1) as f64).fold(1.0, f64::max);
    let (y_lo, y_hi) = if y_lo.is_finite() {
        (
            y_lo.log10().floor(),
            y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0),
        )
    } else {
        (0.0, 1.0)
    };
    let x_of = |p: f64| LEFT + plot_w * decades(p).min(x_max) / x_max;
    let y_of = |v: u64| TOP + plot_h * (1.0 - ((v.max(1) as f64).log10() - y_lo) / (y_hi - y_lo));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Grid and axis labels: one vertical line per percentile decade, one horizontal per
    // latency decade.
    for decade in 0..=(x_max as u32) {
        let x = LEFT + plot_w * f64::from(decade) / x_max;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            percentile_label(decade)
        );
    }
    for decade in (y_lo as i32)..=(y_hi as i32) {
        let value = 10f64.powi(decade);
        let y = y_of(value as u64);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            latency_label(value)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#444444"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (HDR spectrum)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">latency of ok replies</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    let mut palette = COLOURS.iter().cycle();
    for (i, series) in chart.series.iter().enumerate() {
        let colour = if series.name == "raw" {
            FLOOR_COLOUR
        } else {
            palette.next().copied().unwrap_or(FLOOR_COLOUR)
        };
        let points: Vec<String> = series
            .points
            .iter()
            .map(|(p, v)| format!("{:.1},{:.1}", x_of(*p), y_of(*v)))
            .collect();
        let dash = if series.name == "raw" {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(&series.name)
        );
        let y = TOP + 14.0 + 34.0 * i as f64;
        let x = LEFT + plot_w + 12.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" font-size="10" fill="#555555">{} run{}, {} ok</text>"##,
            y - 4.0,
            x + 22.0,
            y - 4.0,
            x + 28.0,
            y,
            escape(&series.name),
            x + 28.0,
            y + 13.0,
            series.runs,
            if series.runs == 1 { "" } else { "s" },
            series.count
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scenario: &str, in_flight: u64, buckets: &[[u64; 2]]) -> Value {
        serde_json::json!({
            "config": { "scenario": scenario, "pacing": { "mode": "closed", "in_flight_count": in_flight } },
            "latency_histogram_us": buckets,
        })
    }

    #[test]
    fn rounds_merge_bucket_by_bucket_into_one_histogram() {
        let mut merged = new_histogram().unwrap();
        assert!(add_report_histogram(
            &report("actor", 64, &[[100, 3], [1_000, 1]]),
            &mut merged
        ));
        assert!(add_report_histogram(
            &report("actor", 64, &[[100, 1], [20_000, 1]]),
            &mut merged
        ));
        assert_eq!(merged.len(), 6);
        assert_eq!(merged.count_at(100), 4);
        assert_eq!(merged.max(), merged.highest_equivalent(20_000));
        // The merge's median is the median of all six samples, not a mean of the rounds'.
        assert_eq!(merged.value_at_quantile(0.5), 100);
        // A report from before histograms were written adds nothing and says so.
        assert!(!add_report_histogram(&serde_json::json!({}), &mut merged));
        assert_eq!(merged.len(), 6);
    }

    #[test]
    fn the_spectrum_rises_and_ends_at_the_maximum() {
        let mut h = new_histogram().unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let points = spectrum(&h);
        assert!(points.len() > 20, "{}", points.len());
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(points.last().unwrap().1, h.max());
        let p50 = points.iter().find(|(p, _)| *p >= 50.0).unwrap();
        assert!((4_900..=5_100).contains(&p50.1), "{p50:?}");
        assert!(spectrum(&new_histogram().unwrap()).is_empty());
    }

    #[test]
    fn percentile_decades_space_the_tail_evenly() {
        assert_eq!(decades(0.0), 0.0);
        assert!((decades(90.0) - 1.0).abs() < 1e-9);
        assert!((decades(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(decades(100.0), X_DECADES_MAX);
        let labels: Vec<String> = (0..=4).map(percentile_label).collect();
        assert_eq!(labels, ["0 %", "90 %", "99 %", "99.9 %", "99.99 %"]);
    }

    #[test]
    fn charts_are_per_pacing_with_the_floor_first_and_the_rounds_merged() {
        let reports = vec![
            ("echo-inflight64-r1.json".to_string(), report("actor", 64, &[[900, 10]])),
            (
                "echo-inflight64-r2.json".to_string(),
                report("actor", 64, &[[1_100, 10]]),
            ),
            ("raw-inflight64-r1.json".to_string(), report("raw", 64, &[[400, 20]])),
            ("echo-inflight1-r1.json".to_string(), report("actor", 1, &[[200, 5]])),
            ("summary.json".to_string(), serde_json::json!({ "not": "a run" })),
        ];
        let charts = charts(&reports);
        let pacings: Vec<&str> = charts.iter().map(|c| c.pacing.as_str()).collect();
        assert_eq!(pacings, ["closed 1", "closed 64"]);
        let names: Vec<&str> = charts[1].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["raw", "echo"]);
        assert_eq!((charts[1].series[1].runs, charts[1].series[1].count), (2, 20));
        assert_eq!(charts[1].file_name(), "latency-closed-64.svg");
    }

    #[test]
    fn the_svg_draws_one_labelled_line_per_scenario_inside_its_frame() {
        let reports = vec![
            (
                "raw-inflight64-r1.json".to_string(),
                report("raw", 64, &[[400, 20], [2_000, 1]]),
            ),
            (
                "echo<x>-inflight64-r1.json".to_string(),
                report("actor", 64, &[[900, 10], [50_000, 1]]),
            ),
        ];
        let chart = &charts(&reports)[0];
        let svg = render_svg("echo & floor, closed 64", chart);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(
            svg.contains("echo &amp; floor") && svg.contains("echo&lt;x&gt;"),
            "{svg}"
        );
        assert!(
            svg.contains("99.9 %") && svg.contains("10 ms") && svg.contains("100 µs"),
            "{svg}"
        );
        // Every drawn point lies inside the plot area.
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            for point in points.split(' ') {
                let (x, y) = point.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=WIDTH - RIGHT).contains(&x), "{point}");
                assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "{point}");
            }
        }
    }
}
