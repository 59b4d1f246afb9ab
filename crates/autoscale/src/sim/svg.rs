//! A hand-written SVG chart of waiting tasks and workers over time, one line per policy.

use std::fmt::Write;

use crate::sim::{Sample, SimReport};

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;
/// Most points drawn per line; longer timelines keep the largest value of each stretch.
const MAX_POINTS: usize = 1200;
/// What a panel plots of each sample.
type Metric = fn(&Sample) -> f64;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The chart for `runs`, titled `title`.
pub fn chart(title: &str, runs: &[SimReport]) -> String {
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let end = runs
        .iter()
        .flat_map(|r| r.timeline.last())
        .map(|s| s.seconds)
        .fold(1.0_f64, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let panels: [(&str, Metric); 2] = [
        ("waiting tasks", |s| s.waiting as f64),
        ("workers", |s| f64::from(s.workers)),
    ];
    for (i, (label, value)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let max = runs
            .iter()
            .flat_map(|r| r.timeline.iter().map(value))
            .fold(1.0_f64, f64::max);
        axes(&mut out, label, top, end, nice(max));
        for (k, run) in runs.iter().enumerate() {
            let points = downsample(&run.timeline, value);
            let mut path = String::new();
            for (t, v) in points {
                let x = LEFT + t / end * (WIDTH - LEFT - RIGHT);
                let y = top + PANEL - v / nice(max) * PANEL;
                let _ = write!(path, "{x:.1},{y:.1} ");
            }
            // Later lines are dashed so that a line hidden under another still shows.
            let dash = if k == 0 {
                ""
            } else {
                r#" stroke-dasharray="7 4""#
            };
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
                COLOURS[k % COLOURS.len()],
                path.trim_end()
            );
        }
    }
    let legend_y = height - 18.0;
    for (k, run) in runs.iter().enumerate() {
        let x = LEFT + k as f64 * 180.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{c}" stroke-width="3"/><text x="{tx}" y="{ty}">{name}</text>"#,
            y = legend_y - 4.0,
            x2 = x + 24.0,
            c = COLOURS[k % COLOURS.len()],
            tx = x + 30.0,
            ty = legend_y,
            name = escape(run.policy)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A round number at or above `max` for the top of an axis.
fn nice(max: f64) -> f64 {
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn axes(out: &mut String, label: &str, top: f64, end: f64, max: f64) {
    let bottom = top + PANEL;
    let right = WIDTH - RIGHT;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{w}" height="{PANEL}" fill="none" stroke="#999"/>"##,
        w = right - LEFT
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{y}" font-weight="bold">{label}</text>"#,
        y = top - 6.0
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = bottom - PANEL * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/><text x="{x}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            x = LEFT - 6.0,
            ty = y + 4.0,
            v = compact(v)
        );
    }
    let (unit, scale) = if end >= 7200.0 {
        ("h", 3600.0)
    } else if end >= 300.0 {
        ("min", 60.0)
    } else {
        ("s", 1.0)
    };
    for i in 0..=6 {
        let t = end * f64::from(i) / 6.0;
        let x = LEFT + (right - LEFT) * f64::from(i) / 6.0;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle">{} {unit}</text>"#,
            compact(t / scale),
            y = bottom + 16.0
        );
    }
}

fn compact(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// At most [`MAX_POINTS`] points, keeping the largest value of each stretch so peaks show.
fn downsample(timeline: &[Sample], value: &dyn Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let stride = timeline.len().div_ceil(MAX_POINTS).max(1);
    timeline
        .chunks(stride)
        .map(|chunk| {
            let peak = chunk.iter().map(value).fold(0.0_f64, f64::max);
            (chunk[0].seconds, peak)
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
