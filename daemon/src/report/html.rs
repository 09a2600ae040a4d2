//! The report as one self-contained HTML page (optimization-report.html): inline CSS and SVG,
//! no script, no font, no request at view time; readable light or dark, and in print.
//! Rendered with minijinja from `report.html.j2` over the typed report plus the chart
//! geometry computed here, so the template only lays out.
//!
//! Every number the page shows for the verdict, prims, bytes and phase seconds is the JSON's
//! own value (the browser test reads them back): counts with thousands separators, seconds
//! as stored.

use minijinja::{context, Environment};
use serde::Serialize;

use super::OptimizationReport;
use crate::decisions::compare::{fmt_num, BAND_PCT};

const TEMPLATE: &str = include_str!("report.html.j2");

/// One band of the score scale (the contract's score labels).
#[derive(Serialize)]
struct Band {
    label: &'static str,
    from: f64,
    to: f64,
}

const BANDS: [Band; 6] = [
    Band { label: "regressed", from: 0.0, to: 2.5 },
    Band { label: "mixed", from: 2.5, to: 4.5 },
    Band { label: "neutral", from: 4.5, to: 5.5 },
    Band { label: "moderate", from: 5.5, to: 7.5 },
    Band { label: "strong", from: 7.5, to: 9.0 },
    Band { label: "excellent", from: 9.0, to: 10.0 },
];

/// A timing: its paired ratio (after/before) and interval on a shared axis, in percent of
/// the chart's width.
#[derive(Serialize)]
struct Timing {
    name: String,
    before: String,
    after: String,
    change: String,
    verdict: String,
    ratio: String,
    interval: String,
    rounds: usize,
    conclusive: bool,
    x: f64,
    x_low: f64,
    x_high: f64,
}

/// A count or size: before and after as bars scaled to the larger.
#[derive(Serialize)]
struct Count {
    name: String,
    unit: String,
    before: String,
    after: String,
    before_w: f64,
    after_w: f64,
    change: String,
    verdict: String,
    notes: String,
}

#[derive(Serialize)]
struct Phase {
    label: String,
    status: String,
    seconds: String,
    x: f64,
    w: f64,
    note: String,
}

/// The ratio axis: wide enough for every interval and the no-change band.
fn ratio_axis(report: &OptimizationReport) -> (f64, f64) {
    let intervals = &report.structural_summary.x_usdtune.intervals;
    let low = intervals.iter().map(|i| i.low).fold(1.0 - 2.0 * BAND_PCT / 100.0, f64::min);
    let high = intervals.iter().map(|i| i.high).fold(1.0 + 2.0 * BAND_PCT / 100.0, f64::max);
    ((low * 20.0).floor() / 20.0, (high * 20.0).ceil() / 20.0)
}

fn pct(x: f64, (low, high): (f64, f64)) -> f64 {
    ((x - low) / (high - low) * 1000.0).round() / 10.0
}

/// The page, or the template engine's error (a template bug: the run fails rather than
/// write a page that misses part of the report).
pub fn html(report: &OptimizationReport) -> Result<String, minijinja::Error> {
    let x = &report.structural_summary.x_usdtune;
    let axis = ratio_axis(report);
    let timings: Vec<Timing> = x
        .intervals
        .iter()
        .filter_map(|i| {
            let m = report.metrics.iter().find(|m| m.name == i.name)?;
            Some(Timing {
                name: i.name.clone(),
                before: fmt_num(m.before),
                after: fmt_num(m.after),
                change: format!("{:+.1}%", m.change_pct),
                verdict: m.verdict.as_str().into(),
                ratio: format!("{:.3}", i.ratio),
                interval: format!("{:.3}–{:.3}", i.low, i.high),
                rounds: i.rounds,
                conclusive: i.conclusive,
                x: pct(i.ratio, axis),
                x_low: pct(i.low, axis),
                x_high: pct(i.high, axis),
            })
        })
        .collect();
    let counts: Vec<Count> = report
        .metrics
        .iter()
        .filter(|m| !x.intervals.iter().any(|i| i.name == m.name))
        .map(|m| {
            let top = m.before.max(m.after).max(f64::MIN_POSITIVE);
            Count {
                name: m.name.clone(),
                unit: m.unit.clone(),
                before: fmt_num(m.before),
                after: fmt_num(m.after),
                before_w: (m.before / top * 1000.0).round() / 10.0,
                after_w: (m.after / top * 1000.0).round() / 10.0,
                change: format!("{:+.1}%", m.change_pct),
                verdict: m.verdict.as_str().into(),
                notes: m.notes.clone().unwrap_or_default(),
            }
        })
        .collect();
    let total: f64 = x.phases.iter().map(|p| p.seconds).sum::<f64>().max(f64::MIN_POSITIVE);
    let mut start = 0.0;
    let phases: Vec<Phase> = x
        .phases
        .iter()
        .map(|p| {
            let phase = Phase {
                label: p.label.clone(),
                status: p.status.clone(),
                seconds: serde_json::json!(p.seconds).to_string(),
                x: (start / total * 1000.0).round() / 10.0,
                w: (p.seconds / total * 1000.0).round() / 10.0,
                note: p.note.clone(),
            };
            start += p.seconds;
            phase
        })
        .collect();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    env.get_template("report.html").and_then(|t| {
        t.render(context! {
            r => report,
            x => x,
            score => serde_json::json!(report.optimization_score).to_string(),
            score_x => report.optimization_score * 10.0,
            bands => BANDS,
            band_pct => BAND_PCT,
            axis_low => format!("{:.2}", axis.0),
            axis_high => format!("{:.2}", axis.1),
            band_x => pct(1.0 - BAND_PCT / 100.0, axis),
            band_w => pct(1.0 + BAND_PCT / 100.0, axis) - pct(1.0 - BAND_PCT / 100.0, axis),
            one_x => pct(1.0, axis),
            timings => timings,
            counts => counts,
            phases => phases,
            total_seconds => format!("{total:.1}"),
            footprint => x.footprint.as_ref().map(|f| context! {
                raw => fmt_num(f.raw_input_bytes as f64),
                baseline => fmt_num(f.repack_normalized_baseline_bytes as f64),
                optimized => fmt_num(f.optimized_bytes as f64),
                repack => format!("{:+.1}%", f.repack_delta_pct),
                structural => format!("{:+.1}%", f.structural_delta_pct),
                raw_delta => format!("{:+.1}%", f.raw_delta_pct),
                claimed => report.footprint.is_some(),
            }),
            ops_per_target => report.operations.len(),
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_template_parses() {
        let mut env = minijinja::Environment::new();
        env.add_template("report.html", super::TEMPLATE).unwrap();
    }

    #[test]
    fn the_axis_holds_every_interval_and_the_band() {
        let axis = (0.45, 1.1);
        assert_eq!(super::pct(0.45, axis), 0.0);
        assert_eq!(super::pct(1.1, axis), 100.0);
        assert!(super::pct(1.0, axis) > super::pct(0.95, axis));
    }
}
