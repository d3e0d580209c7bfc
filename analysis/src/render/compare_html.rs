//! The HTML page of `launcher compare --html FILE`: the comparison's table, then every
//! run's latency CDF overlaid (baseline runs in blue, candidate runs in orange), then
//! every run's p50 over time overlaid. Self-contained like report.html: inline CSS and
//! SVG, nothing fetched.

use super::html::{cdf, num, text, BLUE, CSS, HEIGHT, ORANGE, WIDTH};
use super::{escape as esc, RenderError};
use crate::compare::{Comparison, Verdict};
use crate::Analysis;
use plotters::prelude::*;
use std::fmt::Write as _;

/// The runs of one side, by name.
pub type Side<'a> = &'a [(String, Analysis)];

/// The lines of both sides: (label, colour, points).
type Lines = Vec<(String, RGBColor, Vec<(f64, f64)>)>;

fn lines(baseline: Side, candidate: Side, of: impl Fn(&Analysis) -> Vec<(f64, f64)>) -> Lines {
    let side = |runs: Side, color: RGBColor, tag: &str| -> Lines {
        runs.iter()
            .map(|(name, a)| (format!("{tag} {name}"), color, of(a)))
            .collect()
    };
    let mut out = side(baseline, BLUE, "baseline");
    out.extend(side(candidate, ORANGE, "candidate"));
    out
}

fn chart(
    name: &'static str,
    lines: &Lines,
    x_desc: &str,
    y_desc: &str,
    x_log: bool,
    y_log: bool,
) -> Result<String, RenderError> {
    let mut svg = String::new();
    {
        let fail = |why: String| RenderError::Plot { plot: name, why };
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(text(e)))?;
        let pts = || lines.iter().flat_map(|l| l.2.iter().copied());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0f64, f64::INFINITY, 0f64);
        for (x, y) in pts() {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.001, 1.0, 0.001, 1.0);
        }
        let x0 = if x_log {
            x0.max(1e-3) * 0.9
        } else {
            x0.min(0.0)
        };
        let y0 = if y_log { y0.max(1e-3) * 0.8 } else { 0.0 };
        let (x1, y1) = (
            x1.max(x0 * 1.01 + 1e-3) * 1.05,
            y1.max(y0 * 1.01 + 1e-3) * 1.1,
        );
        let mut b = ChartBuilder::on(&root);
        b.margin(12).x_label_area_size(40).y_label_area_size(60);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut c = $chart;
                c.configure_mesh()
                    .x_label_formatter(&num)
                    .y_label_formatter(&num)
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .draw()
                    .map_err(|e| fail(text(e)))?;
                for (label, color, points) in lines {
                    let color = *color;
                    c.draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| fail(text(e)))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
                }
                c.configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| fail(text(e)))?;
            }};
        }
        match (x_log, y_log) {
            (true, false) => draw!(b
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| fail(text(e)))?),
            (false, true) => draw!(b
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| fail(text(e)))?),
            _ => draw!(b
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| fail(text(e)))?),
        }
        root.present().map_err(|e| fail(text(e)))?;
    }
    Ok(svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1))
}

/// The page.
pub fn page(c: &Comparison, baseline: Side, candidate: Side) -> Result<String, RenderError> {
    let mut h = String::with_capacity(128 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cmesh compare</title><style>{CSS}</style></head><body>\n<h1>Compare</h1>\n<p>Baseline: {}<br>Candidate: {}</p>\n",
        esc(&c.baseline.join(", ")),
        esc(&c.candidate.join(", "))
    );
    h.push_str("<table id=\"comparison\"><thead><tr><th>metric</th><th>baseline</th><th>candidate</th><th>change</th><th>95% interval</th><th>verdict</th></tr></thead><tbody>");
    let pct = |f: f64| format!("{:+.1}%", f * 100.0);
    for r in &c.rows {
        let v = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |x| num(&x));
        let _ = write!(
            h,
            "<tr class=\"{cls}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            r.metric.name(),
            v(r.baseline),
            v(r.candidate),
            r.change.map_or_else(|| "–".to_owned(), pct),
            r.ci.map_or_else(|| "–".to_owned(), |(lo, hi)| format!("{} to {}", pct(lo), pct(hi))),
            r.verdict.as_str(),
            cls = match r.verdict {
                Verdict::Worse => "failed",
                Verdict::Better => "ok",
                _ => "",
            }
        );
    }
    h.push_str("</tbody></table>\n");
    let cdfs = lines(baseline, candidate, |a| cdf(&a.detail.latency));
    let over_time = lines(baseline, candidate, |a| {
        let s = &a.summary;
        let w = s.impairment.window_ms.max(1) as f64 / 1000.0;
        s.impairment
            .windows
            .iter()
            .filter(|x| x.count > 0)
            .map(|x| {
                (
                    x.start_ms as f64 / 1000.0 + w / 2.0,
                    x.p50_us.max(1) as f64 / 1000.0,
                )
            })
            .collect()
    });
    for (name, svg, caption) in [
        (
            "latency-cdf",
            chart(
                "latency-cdf",
                &cdfs,
                "latency (ms, log scale)",
                "fraction of records",
                true,
                false,
            )?,
            "Latency CDF of every run: baseline in blue, candidate in orange.",
        ),
        (
            "p50-over-time",
            chart(
                "p50-over-time",
                &over_time,
                "time since the common start (s)",
                "p50 (ms, log scale)",
                false,
                true,
            )?,
            "p50 latency per window of every run: baseline in blue, candidate in orange.",
        ),
    ] {
        let _ = writeln!(
            h,
            "<figure class=\"plot\" data-plot=\"{name}\">{svg}<figcaption>{caption}</figcaption></figure>"
        );
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;
    use crate::summary::{merge, Interventions};
    use cmesh_common::histogram::LatencyHistogram;
    use cmesh_common::report::{LatencyReport, PeerReport};
    use std::collections::BTreeMap;

    fn run(name: &str, base_us: u64) -> (String, Analysis) {
        let peers = vec!["a".to_string()];
        let mut r = PeerReport::new("a", "mesh", 0);
        let mut h = LatencyHistogram::new();
        for k in 0..50 {
            h.record(base_us + k * 10);
        }
        r.message_latency = LatencyReport {
            summary: h.summary(),
            negative_samples: 0,
            histogram: h.encode(),
            negative_histogram: None,
        };
        let reports = BTreeMap::from([("a".to_string(), r)]);
        let (summary, detail) = merge(
            name,
            &peers,
            &reports,
            &BTreeMap::new(),
            None,
            &Interventions::default(),
        );
        (name.to_owned(), Analysis { summary, detail })
    }

    #[test]
    fn the_page_overlays_every_run_of_both_sides() {
        let base = vec![run("b1", 400), run("b2", 420)];
        let cand = vec![run("c1", 200_000), run("c2", 201_000)];
        let named = |v: &[(String, Analysis)]| -> Vec<(String, crate::Summary)> {
            v.iter()
                .map(|(n, a)| (n.clone(), a.summary.clone()))
                .collect()
        };
        let c = compare(&named(&base), &named(&cand), 0.05);
        let html = page(&c, &base, &cand).unwrap();
        for needle in [
            "data-plot=\"latency-cdf\"",
            "data-plot=\"p50-over-time\"",
            "baseline b2",
            "candidate c1",
            "<td>p50</td>",
        ] {
            assert!(html.contains(needle), "{needle}");
        }
        assert!(html.contains("stroke=\"#1F77B4\"") && html.contains("stroke=\"#FF7F0E\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
