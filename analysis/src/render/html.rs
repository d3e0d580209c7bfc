//! `analysis/report.html`: one self-contained page per run, for people. Inline CSS and
//! SVG (drawn with plotters), a few lines of inline script to sort the peer table, and
//! no reference to anything outside the file, so it opens from a laptop with the
//! network off or from a CI artifact.
//!
//! Top to bottom: the run's result and the measurement-quality verdict with its
//! reasons and advice; the key figures; the plots; the faults; the peers, sortable.
//!
//! Every plot is a `<figure class="plot" data-plot="NAME">` holding one `<svg>`, so a
//! reader (or a test) finds it by name. On every plot over time, each fault window of
//! the plan and of `launcher chaos` is shaded in [`FAULT_FILL`] and labelled with its
//! id and action, and kills and restarts are marked by a vertical line in
//! [`MARK_COLOR`]. Plots without data (resync on a run without heals, the host-pair
//! heatmap on one host) are left out, never drawn empty.

use super::{RenderError, Renderer};
use crate::impairment::FaultRow;
use crate::quality::Verdict;
use crate::{Analysis, Summary};
use cmesh_common::histogram::LatencyHistogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;

/// The shade of a fault window.
pub const FAULT_FILL: RGBColor = RGBColor(0xF4, 0xA2, 0x61);
/// The line marking a kill or restart.
pub const MARK_COLOR: RGBColor = RGBColor(0xC0, 0x39, 0x2B);
/// Above this many peers, coverage is a histogram over readers, not a matrix.
pub const MATRIX_MAX_PEERS: usize = 64;
/// A CDF is drawn through at most this many points.
const CDF_POINTS: usize = 400;

pub(crate) const WIDTH: u32 = 860;
pub(crate) const HEIGHT: u32 = 320;
pub(crate) const BLUE: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
pub(crate) const ORANGE: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
const GREEN: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const PALETTE: [RGBColor; 8] = [
    BLUE,
    ORANGE,
    GREEN,
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0xE3, 0x77, 0xC2),
    RGBColor(0x7F, 0x7F, 0x7F),
];

/// The HTML report.
pub struct Html;

impl Renderer for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        Ok(page(a)?.into_bytes())
    }
}

/// The names of the plots [`page`] draws for `a`, in order.
pub fn plots(a: &Analysis) -> Vec<&'static str> {
    let s = &a.summary;
    let mut out = vec!["latency-cdf"];
    if !a.detail.latency_by_host_pair.is_empty() {
        out.push("latency-cdf-by-host-pair");
        out.push("host-pair-heatmap");
    }
    if !s.impairment.windows.is_empty() {
        out.extend(["latency-over-time", "records-per-second", "link-throughput"]);
    }
    if a.detail.resync_ms.iter().any(Option::is_some) {
        out.push("resync");
    }
    out.push("coverage");
    out
}

fn page(a: &Analysis) -> Result<String, RenderError> {
    let s = &a.summary;
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>cmesh run {id}</title><style>{CSS}</style></head><body>\n\
         <h1>Run {id} <span class=\"result {cls}\">{result}</span></h1>\n",
        id = esc(&s.run_id),
        cls = if s.ok { "ok" } else { "failed" },
        result = if s.ok { "ok" } else { "FAILED" },
    );
    verdict(&mut h, s);
    figures(&mut h, s);
    for name in plots(a) {
        let (title, svg) = plot(name, a)?;
        let _ = writeln!(
            h,
            "<figure class=\"plot\" id=\"plot-{name}\" data-plot=\"{name}\">{svg}<figcaption>{}</figcaption></figure>",
            esc(&title)
        );
    }
    faults(&mut h, s);
    peers(&mut h, s);
    let _ = write!(h, "<script>{SORT_JS}</script>\n</body></html>\n");
    Ok(h)
}

pub(crate) const CSS: &str =
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:900px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\
.result{font-size:.7em;padding:.15em .5em;border-radius:.3em;vertical-align:middle;color:#fff}\
.ok{background:#2ca02c}.failed{background:#c0392b}\
.verdict{padding:.6em 1em;border-radius:.4em;margin:1em 0}\
.verdict.clean{background:#e8f5e9}.verdict.degraded{background:#fff4e0}\
.verdict.saturated{background:#fdecea}.verdict.unknown{background:#eee}\
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}\
td,th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left}\
th{background:#f4f4f4}table.sortable th{cursor:pointer}\
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
figure.plot{margin:1.2em 0}figure.plot svg{max-width:100%;height:auto}\
figcaption{font-size:.85em;color:#555}";

/// Sorts a `table.sortable` by the clicked column: numerically by `data-v` where the
/// cells have it, else by text; a second click reverses.
const SORT_JS: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){\
th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0],\
d=th.dataset.dir==='asc'?-1:1;th.dataset.dir=d===1?'asc':'desc';\
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){\
var a=x.cells[i],c=y.cells[i],p=a.dataset.v,q=c.dataset.v;\
if(p!==undefined&&q!==undefined){return d*(parseFloat(p)-parseFloat(q));}\
return d*a.textContent.localeCompare(c.textContent);});\
rows.forEach(function(r){b.appendChild(r);});});});";

fn verdict(h: &mut String, s: &Summary) {
    let q = &s.measurement_quality;
    let what = match q.verdict {
        Verdict::Clean => "The hosts kept up: the latency below measures the system under test.",
        Verdict::Degraded => {
            "The hosts were under pressure: the latency below includes some of their own queueing."
        }
        Verdict::Saturated => {
            "The hosts could not keep up: the latency below measures them more than the network. Do not compare it with other runs."
        }
        Verdict::Unknown => "Nothing says whether the hosts kept up.",
    };
    let _ = write!(
        h,
        "<div class=\"verdict {v}\" id=\"verdict\"><strong>Measurement quality: {v}.</strong> {what}",
        v = q.verdict.as_str()
    );
    if !q.reasons.is_empty() || !q.advice.is_empty() {
        h.push_str("<ul>");
        for r in &q.reasons {
            let _ = write!(h, "<li>{}</li>", esc(r));
        }
        for a in &q.advice {
            let _ = write!(h, "<li>To do: {}</li>", esc(a));
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>\n");
    if !s.peers_not_caught_up.is_empty() {
        let _ = writeln!(
            h,
            "<p><strong>Not synced:</strong> {} of {} reporting peers did not hold every record when the settle timeout passed; coverage {:.4}.</p>",
            s.peers_not_caught_up.len(),
            s.peers_reported,
            s.coverage
        );
    }
}

fn figures(h: &mut String, s: &Summary) {
    let l = &s.message_latency;
    let mut rows = vec![
        (
            "peers",
            format!(
                "{} expected, {} reported, {} failed, {} lost, {} unreachable, {} invalid, {} killed on purpose",
                s.peers_expected,
                s.peers_reported,
                s.peers_failed.len(),
                s.peers_lost.len(),
                s.peers_unreachable.len(),
                s.peers_invalid.len(),
                s.peers_killed.len()
            ),
        ),
        (
            "coverage",
            format!(
                "{:.4} ({} of {} origin→reader pairs)",
                s.coverage, s.pairs_delivered, s.pairs_expected
            ),
        ),
        (
            "latency",
            format!(
                "p50 {} · p90 {} · p99 {} · max {} ({} samples{})",
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.max_us),
                l.count,
                if s.clock_corrected {
                    ", corrected for clock offsets"
                } else {
                    ""
                }
            ),
        ),
        (
            "records",
            format!(
                "{} produced, {} received, {} duplicates, {} missed",
                s.totals.records_produced,
                s.totals.records_received,
                s.totals.records_duplicate,
                s.totals.records_missed
            ),
        ),
        (
            "bytes",
            format!(
                "{} sent, {} received",
                s.totals.bytes_sent, s.totals.bytes_received
            ),
        ),
    ];
    if let Some(r) = &s.impairment.resync {
        rows.push((
            "resync",
            format!(
                "p50 {} ms, max {} ms over {} heals ({} unfinished)",
                r.p50_ms, r.max_ms, r.heals, r.unfinished
            ),
        ));
    }
    if let Some(av) = &s.impairment.availability {
        rows.push((
            "availability",
            format!(
                "{:.4} ({} of {} probes within {} ms)",
                av.ratio, av.ok, av.probes, av.deadline_ms
            ),
        ));
    }
    h.push_str("<table id=\"figures\"><tbody>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</tbody></table>\n");
}

fn faults(h: &mut String, s: &Summary) {
    if s.impairment.faults.is_empty() {
        return;
    }
    h.push_str("<h2>Faults</h2><table id=\"faults\"><thead><tr><th>id</th><th>action</th><th>peers</th><th>applied (s)</th><th>lifted (s)</th><th>paths</th><th>errors</th></tr></thead><tbody>");
    let secs =
        |t: Option<i64>| t.map_or_else(|| "–".to_owned(), |t| format!("{:.1}", t as f64 / 1000.0));
    for f in &s.impairment.faults {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&f.id),
            esc(&f.action),
            f.peers,
            secs(f.applied_at_ms),
            secs(f.lifted_at_ms),
            esc(&f.paths.join(", ")),
            f.errors
        );
    }
    h.push_str("</tbody></table>\n");
}

fn peers(h: &mut String, s: &Summary) {
    h.push_str("<h2>Peers</h2><p>Click a column to sort.</p><table id=\"peers\" class=\"sortable\"><thead><tr>");
    for c in crate::summary::PEER_COLUMNS {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for p in &s.per_peer {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            esc(&p.peer),
            esc(&p.outcome)
        );
        for v in [
            p.records_produced,
            p.records_received,
            p.distinct_origins as u64,
        ] {
            let _ = write!(h, "<td class=\"n\" data-v=\"{v}\">{v}</td>");
        }
        for us in [p.p50_us, p.p99_us, p.max_us] {
            let _ = write!(h, "<td class=\"n\" data-v=\"{us}\">{}</td>", ms(us));
        }
        for v in [p.bytes_sent, p.bytes_received] {
            let _ = write!(h, "<td class=\"n\" data-v=\"{v}\">{v}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>\n");
}

use super::escape as esc;

fn ms(us: u64) -> String {
    crate::table::ms(us)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws one plot; returns its caption and its SVG.
fn plot(name: &'static str, a: &Analysis) -> Result<(String, String), RenderError> {
    let mut svg = String::new();
    let caption = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| RenderError::Plot {
            plot: name,
            why: e.to_string(),
        };
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let caption = match name {
            "latency-cdf" => latency_cdf(&root, &[("all records", &a.detail.latency)]),
            "latency-cdf-by-host-pair" => {
                let named: Vec<(String, &LatencyHistogram)> = a
                    .detail
                    .latency_by_host_pair
                    .iter()
                    .map(|((o, r), h)| (format!("{o} → {r}"), h))
                    .collect();
                let refs: Vec<(&str, &LatencyHistogram)> =
                    named.iter().map(|(n, h)| (n.as_str(), *h)).collect();
                latency_cdf(&root, &refs)
            }
            "host-pair-heatmap" => heatmap(&root, a),
            "latency-over-time" => latency_over_time(&root, &a.summary),
            "records-per-second" => records_per_second(&root, &a.summary),
            "link-throughput" => link_throughput(&root, &a.summary),
            "resync" => resync(&root, a),
            "coverage" => coverage(&root, a),
            other => Err(format!("no plot is called {other}")),
        }
        .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
        caption
    };
    // Inline SVG in HTML needs no namespace: the page names nothing outside itself.
    Ok((
        caption,
        svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1),
    ))
}

/// An axis label: no more digits than it needs (`1000`, `2.5`, `0.125`).
pub(crate) fn num(v: &f64) -> String {
    let text = match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A plotters error as the text the plot's [`RenderError`] carries.
pub(crate) fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The CDF of a histogram: (latency ms, fraction at or below), at most
/// [`CDF_POINTS`] points.
pub fn cdf(h: &LatencyHistogram) -> Vec<(f64, f64)> {
    let total = h.count();
    if total == 0 {
        return Vec::new();
    }
    let recorded = h.recorded();
    let step = recorded.len().div_ceil(CDF_POINTS).max(1);
    let mut seen = 0u64;
    let mut out = Vec::with_capacity(recorded.len() / step + 2);
    for (i, (v, n)) in recorded.iter().enumerate() {
        seen += n;
        if i % step == 0 || i + 1 == recorded.len() {
            out.push(((*v).max(1) as f64 / 1000.0, seen as f64 / total as f64));
        }
    }
    out
}

fn latency_cdf(root: &Area, series: &[(&str, &LatencyHistogram)]) -> Result<String, String> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series.iter().map(|(n, h)| (*n, cdf(h))).collect();
    let lo = curves
        .iter()
        .flat_map(|(_, c)| c.first())
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min);
    let hi = curves
        .iter()
        .flat_map(|(_, c)| c.last())
        .map(|p| p.0)
        .fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo * 0.9, hi * 1.1)
    } else {
        (0.001, 1.0)
    };
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_label_formatter(&num)
        .y_label_formatter(&num)
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of records")
        .draw()
        .map_err(text)?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(text)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(text)?;
    Ok(if series.len() == 1 {
        "Latency CDF: every record received, merged over the peers (exact, from their HDR histograms)."
            .to_owned()
    } else {
        "Latency CDF per (origin host → reader host) pair, corrected for the hosts' clock offsets."
            .to_owned()
    })
}

/// The span of the time plots, s after the common start: the windows, and every fault.
fn time_span(s: &Summary) -> (f64, f64) {
    let w = s.impairment.window_ms.max(1) as f64 / 1000.0;
    let mut end = s
        .impairment
        .windows
        .iter()
        .map(|x| x.start_ms as f64 / 1000.0 + w)
        .fold(w, f64::max);
    for f in &s.impairment.faults {
        for t in [f.applied_at_ms, f.lifted_at_ms].into_iter().flatten() {
            end = end.max(t as f64 / 1000.0);
        }
    }
    (0.0, end)
}

/// What a fault looks like on a plot over time.
enum FaultMark {
    /// Shaded from `from` to `to`, s.
    Window { from: f64, to: f64 },
    /// A vertical line at `at`, s (kills and restarts).
    Line { at: f64 },
}

fn fault_mark(f: &FaultRow, end: f64) -> Option<FaultMark> {
    let at = f.applied_at_ms? as f64 / 1000.0;
    if matches!(f.action.as_str(), "kill" | "restart") {
        return Some(FaultMark::Line { at });
    }
    let to = f.lifted_at_ms.map_or(end, |t| t as f64 / 1000.0);
    Some(FaultMark::Window {
        from: at.max(0.0),
        to: to.max(at),
    })
}

/// A line on a plot: its legend, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A plot over the run's time with every fault shaded or marked, and `series` drawn on
/// it; `y_log` for a log scale.
fn time_chart(
    root: &Area,
    s: &Summary,
    y_desc: &str,
    series: &[Series],
    y_log: bool,
) -> Result<(), String> {
    let (x0, x1) = time_span(s);
    let ys = series.iter().flat_map(|(_, _, p)| p.iter().map(|q| q.1));
    let y_hi = ys.clone().fold(0.0, f64::max).max(1e-3) * 1.15;
    let y_lo = ys.filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
    let y_lo = if y_lo.is_finite() { y_lo * 0.8 } else { 1e-3 };
    let faults: Vec<(&FaultRow, FaultMark)> = s
        .impairment
        .faults
        .iter()
        .filter_map(|f| fault_mark(f, x1).map(|m| (f, m)))
        .collect();
    let label_style = ("sans-serif", 12).into_font().color(&BLACK);
    macro_rules! draw {
        ($chart:expr, $top:expr, $bottom:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_label_formatter(&num)
                .y_label_formatter(&num)
                .x_desc("time since the common start (s)")
                .y_desc(y_desc)
                .draw()
                .map_err(text)?;
            for (f, m) in &faults {
                let label = format!("{} {}", f.id, f.action);
                match *m {
                    FaultMark::Window { from, to } => {
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(from, $bottom), (to, $top)],
                                FAULT_FILL.mix(0.35).filled(),
                            )))
                            .map_err(text)?;
                        chart
                            .draw_series(std::iter::once(Text::new(
                                label,
                                (from, $top),
                                label_style.clone(),
                            )))
                            .map_err(text)?;
                    }
                    FaultMark::Line { at } => {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(at, $bottom), (at, $top)],
                                MARK_COLOR.stroke_width(2),
                            )))
                            .map_err(text)?;
                        chart
                            .draw_series(std::iter::once(Text::new(
                                label,
                                (at, $top),
                                label_style.clone().color(&MARK_COLOR),
                            )))
                            .map_err(text)?;
                    }
                }
            }
            for (name, color, points) in series {
                let color = *color;
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(text)?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(text)?;
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(root);
        b.margin(12).x_label_area_size(40).y_label_area_size(60);
        b
    };
    if y_log {
        let chart = builder()
            .build_cartesian_2d(x0..x1, (y_lo..y_hi).log_scale())
            .map_err(text)?;
        draw!(chart, y_hi, y_lo);
    } else {
        let chart = builder()
            .build_cartesian_2d(x0..x1, 0f64..y_hi)
            .map_err(text)?;
        draw!(chart, y_hi, 0.0);
    }
    Ok(())
}

fn window_s(s: &Summary) -> f64 {
    s.impairment.window_ms.max(1) as f64 / 1000.0
}

fn latency_over_time(root: &Area, s: &Summary) -> Result<String, String> {
    let w = window_s(s);
    let at = |x: &crate::impairment::WindowRow| x.start_ms as f64 / 1000.0 + w / 2.0;
    let pick = |f: fn(&crate::impairment::WindowRow) -> u64| -> Vec<(f64, f64)> {
        s.impairment
            .windows
            .iter()
            .filter(|x| x.count > 0)
            .map(|x| (at(x), f(x).max(1) as f64 / 1000.0))
            .collect()
    };
    time_chart(
        root,
        s,
        "latency (ms, log scale)",
        &[
            ("p50", BLUE, pick(|x| x.p50_us)),
            ("p99", ORANGE, pick(|x| x.p99_us)),
            ("max", PALETTE[3], pick(|x| x.max_us)),
        ],
        true,
    )?;
    Ok(format!(
        "Latency over time, by the window ({w} s) a record was written in; shaded: fault windows; red lines: kills and restarts."
    ))
}

fn records_per_second(root: &Area, s: &Summary) -> Result<String, String> {
    let w = window_s(s);
    let points = s
        .impairment
        .windows
        .iter()
        .map(|x| (x.start_ms as f64 / 1000.0 + w / 2.0, x.received as f64 / w))
        .collect();
    time_chart(root, s, "records/s", &[("delivered", GREEN, points)], false)?;
    Ok("Records delivered per second over all peers (first copies, by arrival).".to_owned())
}

fn link_throughput(root: &Area, s: &Summary) -> Result<String, String> {
    let w = window_s(s);
    let kib = |b: u64| b as f64 / 1024.0 / w;
    let at = |x: &crate::impairment::WindowRow| x.start_ms as f64 / 1000.0 + w / 2.0;
    let sent = s
        .impairment
        .windows
        .iter()
        .map(|x| (at(x), kib(x.tx_bytes)))
        .collect();
    let received = s
        .impairment
        .windows
        .iter()
        .map(|x| (at(x), kib(x.rx_bytes)))
        .collect();
    time_chart(
        root,
        s,
        "KiB/s",
        &[("sent", BLUE, sent), ("received", ORANGE, received)],
        false,
    )?;
    Ok("Link throughput: bytes all peers' interfaces sent and received per second.".to_owned())
}

/// Bars: `(label, count)` in order, on a plain chart.
fn bars(root: &Area, x_desc: &str, bins: &[(String, u64)], color: RGBColor) -> Result<(), String> {
    let n = bins.len().max(1);
    let top = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(text)?;
    let labels: Vec<String> = bins.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(12))
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            labels.get(i).cloned().unwrap_or_default()
        })
        .y_label_formatter(&num)
        .x_desc(x_desc)
        .y_desc("count")
        .draw()
        .map_err(text)?;
    chart
        .draw_series(bins.iter().enumerate().map(|(i, (_, c))| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *c as f64)],
                color.filled(),
            )
        }))
        .map_err(text)?;
    Ok(())
}

fn resync(root: &Area, a: &Analysis) -> Result<String, String> {
    let done: Vec<u64> = a.detail.resync_ms.iter().flatten().copied().collect();
    let never = a.detail.resync_ms.len() - done.len();
    let lo = done.iter().copied().min().unwrap_or(0);
    let hi = done.iter().copied().max().unwrap_or(0);
    let bins = 12u64;
    let width = (hi - lo + 1).div_ceil(bins).max(1);
    let mut counts = vec![0u64; bins as usize];
    for v in &done {
        counts[(((v - lo) / width) as usize).min(bins as usize - 1)] += 1;
    }
    let labelled: Vec<(String, u64)> = counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("{}", lo + i as u64 * width), c))
        .collect();
    bars(root, "resync latency (ms, bin start)", &labelled, BLUE)?;
    Ok(format!(
        "Resync latency after each heal: from the heal until every record written before it had arrived ({} heals; {} never caught up).",
        a.detail.resync_ms.len(),
        never
    ))
}

fn coverage(root: &Area, a: &Analysis) -> Result<String, String> {
    let n = a.detail.peers.len();
    if n <= MATRIX_MAX_PEERS {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n.max(1) as f64, 0f64..n.max(1) as f64)
            .map_err(text)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("origin (peer index)")
            .y_desc("reader (peer index)")
            .draw()
            .map_err(text)?;
        let mut cells = Vec::with_capacity(n * n);
        for reader in 0..n {
            let heard = a.detail.heard.get(&reader);
            for origin in 0..n {
                let color = if origin == reader {
                    RGBColor(0xDD, 0xDD, 0xDD)
                } else if heard.is_some_and(|h| h.contains(&origin)) {
                    GREEN
                } else {
                    PALETTE[3]
                };
                let (x, y) = (origin as f64, reader as f64);
                cells.push(Rectangle::new(
                    [(x + 0.05, y + 0.05), (x + 0.95, y + 0.95)],
                    color.filled(),
                ));
            }
        }
        chart.draw_series(cells).map_err(text)?;
        Ok("Coverage by origin × reader: green, the reader received records of that origin; red, none; grey, itself.".to_owned())
    } else {
        // Per reader: the fraction of other peers it heard from, in tenths.
        let mut counts = [0u64; 11];
        for reader in 0..n {
            let heard = a.detail.heard.get(&reader).map_or(0, |h| h.len());
            let f = heard as f64 / (n - 1) as f64;
            counts[(f * 10.0).floor().min(10.0) as usize] += 1;
        }
        let labelled: Vec<(String, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{:.1}", i as f64 / 10.0), *c))
            .collect();
        bars(root, "fraction of origins heard", &labelled, GREEN)?;
        Ok(format!(
            "Coverage per reader: how many of the {n} peers heard from each fraction of the others (a matrix above {MATRIX_MAX_PEERS} peers would be unreadable)."
        ))
    }
}

fn heatmap(root: &Area, a: &Analysis) -> Result<String, String> {
    let pairs = &a.detail.latency_by_host_pair;
    let mut hosts: Vec<&str> = pairs
        .keys()
        .flat_map(|(o, r)| [o.as_str(), r.as_str()])
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let n = hosts.len().max(1);
    let p50 = |h: &LatencyHistogram| h.summary().p50_us;
    let hi = pairs.values().map(p50).max().unwrap_or(1).max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..n as f64)
        .map_err(text)?;
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let label = |x: &f64| names.get(x.floor() as usize).cloned().unwrap_or_default();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .x_desc("reader host")
        .y_desc("origin host")
        .draw()
        .map_err(text)?;
    let index = |h: &str| hosts.iter().position(|x| *x == h).unwrap_or(0) as f64;
    for ((o, r), h) in pairs {
        let (x, y) = (index(r), index(o));
        let v = p50(h) as f64;
        let t = (v / hi).clamp(0.0, 1.0);
        let color = RGBColor(
            (0xF7 as f64 + (0x08 as f64 - 0xF7 as f64) * t) as u8,
            (0xFB as f64 + (0x30 as f64 - 0xFB as f64) * t) as u8,
            (0xFF as f64 + (0x6B as f64 - 0xFF as f64) * t) as u8,
        );
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                color.filled(),
            )))
            .map_err(text)?;
        let ink = if t > 0.5 { WHITE } else { BLACK };
        chart
            .draw_series(std::iter::once(Text::new(
                ms(v as u64),
                (x + 0.3, y + 0.55),
                ("sans-serif", 13).into_font().color(&ink),
            )))
            .map_err(text)?;
    }
    Ok("p50 latency by host pair (origin host row, reader host column), corrected for clock offsets.".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impairment::{Impairment, WindowRow};
    use crate::summary::Detail;
    use std::collections::{BTreeMap, BTreeSet};

    fn analysis(peers: usize) -> Analysis {
        let mut latency = LatencyHistogram::new();
        for v in [300, 400, 500, 900, 20_000] {
            latency.record(v);
        }
        let names: Vec<String> = (0..peers).map(|i| format!("p-{i}")).collect();
        let heard: BTreeMap<usize, BTreeSet<usize>> = (0..peers)
            .map(|r| (r, (0..peers).filter(|o| *o != r && *o != 1).collect()))
            .collect();
        let windows = (0..30)
            .map(|i| WindowRow {
                start_ms: i * 1000,
                count: 10,
                p50_us: if (8..18).contains(&i) { 4_000_000 } else { 400 },
                p99_us: 900,
                max_us: 1_200,
                received: 20,
                rx_bytes: 4096,
                tx_bytes: 4096,
                ..WindowRow::default()
            })
            .collect();
        let summary: Summary = serde_json::from_value(serde_json::json!({
            "schema": "cmesh.run-summary", "schema_version": 1, "run_id": "r<1>",
            "ok": true, "peers_expected": peers, "peers_reported": peers,
            "peers_failed": [], "coverage": 0.9, "pairs_delivered": 9, "pairs_expected": 10,
            "message_latency": latency.summary(), "totals": {
                "records_produced": 1, "records_received": 1, "records_duplicate": 0,
                "records_missed": 0, "bytes_sent": 1, "bytes_received": 1,
                "delta_sync_bytes": 0, "full_resend_bytes": 0 },
            "per_peer": [{"peer": "p-<0>", "outcome": "ok", "records_produced": 1,
                "records_received": 2, "distinct_origins": 1, "p50_us": 400, "p99_us": 900,
                "max_us": 900, "bytes_sent": 10, "bytes_received": 20}]
        }))
        .unwrap();
        let mut summary = summary;
        summary.impairment = Impairment {
            start_unix_ms: Some(0),
            window_ms: 1000,
            faults: vec![
                FaultRow {
                    id: "plan#1".into(),
                    action: "partition".into(),
                    peers: 10,
                    applied_at_ms: Some(8_000),
                    lifted_at_ms: Some(18_000),
                    paths: vec!["iptables".into()],
                    errors: 0,
                },
                FaultRow {
                    id: "chaos#1".into(),
                    action: "kill".into(),
                    peers: 1,
                    applied_at_ms: Some(20_000),
                    lifted_at_ms: None,
                    paths: vec!["docker".into()],
                    errors: 0,
                },
            ],
            windows,
            ..Impairment::default()
        };
        Analysis {
            summary,
            detail: Detail {
                latency,
                peers: names,
                heard,
                resync_ms: vec![Some(120), Some(300), None],
                ..Detail::default()
            },
        }
    }

    fn figure<'a>(html: &'a str, name: &str) -> &'a str {
        let at = html
            .find(&format!("data-plot=\"{name}\""))
            .unwrap_or_else(|| panic!("no plot {name}"));
        let end = html[at..].find("</figure>").unwrap() + at;
        &html[at..end]
    }

    #[test]
    fn the_page_holds_every_plot_the_faults_and_escaped_text() {
        let a = analysis(10);
        let html = String::from_utf8(Html.render(&a).unwrap()).unwrap();
        for name in plots(&a) {
            let f = figure(&html, name);
            assert!(f.contains("<svg") && f.contains("</svg>"), "{name}");
        }
        assert_eq!(
            plots(&a),
            [
                "latency-cdf",
                "latency-over-time",
                "records-per-second",
                "link-throughput",
                "resync",
                "coverage"
            ]
        );
        // The partition is shaded and labelled; the kill is a line.
        let over_time = figure(&html, "latency-over-time");
        assert!(over_time.contains("fill=\"#F4A261\""), "{over_time}");
        assert!(over_time.contains("plan#1 partition"));
        assert!(over_time.contains("stroke=\"#C0392B\"") && over_time.contains("chaos#1 kill"));
        // Names come escaped, and nothing points outside the file.
        assert!(html.contains("Run r&lt;1&gt;") && html.contains("p-&lt;0&gt;"));
        assert!(!html.contains("<1>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("id=\"verdict\""));
    }

    #[test]
    fn a_multi_host_run_gets_its_host_pair_plots() {
        let mut a = analysis(10);
        for (o, r, v) in [
            ("x", "x", 300),
            ("x", "y", 900),
            ("y", "x", 950),
            ("y", "y", 310),
        ] {
            let mut h = LatencyHistogram::new();
            h.record(v);
            h.record(v + 50);
            a.detail
                .latency_by_host_pair
                .insert((o.to_string(), r.to_string()), h);
        }
        let names = plots(&a);
        assert!(
            names.contains(&"latency-cdf-by-host-pair") && names.contains(&"host-pair-heatmap")
        );
        let html = String::from_utf8(Html.render(&a).unwrap()).unwrap();
        let cdf = figure(&html, "latency-cdf-by-host-pair");
        assert!(
            cdf.contains("x → y") && cdf.contains("y → x"),
            "one curve per pair"
        );
        let heat = figure(&html, "host-pair-heatmap");
        // Four cells, each labelled with its p50.
        assert!(
            heat.contains("0.90 ms") && heat.contains("0.30 ms"),
            "{heat}"
        );
    }

    #[test]
    fn coverage_is_a_matrix_for_small_runs_and_a_histogram_for_large_ones() {
        let small = String::from_utf8(Html.render(&analysis(10)).unwrap()).unwrap();
        let cov = figure(&small, "coverage");
        // 10 × 10 cells: 10 grey (itself), 9 red (nobody heard peer 1), 81 green.
        assert_eq!(cov.matches("fill=\"#DDDDDD\"").count(), 10, "{cov}");
        assert_eq!(cov.matches("fill=\"#D62728\"").count(), 9);
        assert!(cov.contains("origin × reader"));
        let large = String::from_utf8(Html.render(&analysis(100)).unwrap()).unwrap();
        let cov = figure(&large, "coverage");
        assert!(cov.contains("Coverage per reader"), "{cov}");
        assert!(cov.matches("<rect").count() < 100, "bars, not a matrix");
    }

    #[test]
    fn the_cdf_ends_at_one_and_is_thinned() {
        let mut h = LatencyHistogram::new();
        for v in 1..20_000u64 {
            h.record(v * 7);
        }
        let c = cdf(&h);
        assert!(c.len() <= CDF_POINTS + 1, "{}", c.len());
        assert_eq!(c.last().unwrap().1, 1.0);
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(cdf(&LatencyHistogram::new()).is_empty());
    }

    #[test]
    fn axis_labels_carry_only_the_digits_they_need() {
        let labels: Vec<String> = [1000.0, 2.5, 1.0, 0.125, 0.1, 0.0]
            .iter()
            .map(num)
            .collect();
        assert_eq!(labels, ["1000", "2.5", "1", "0.125", "0.1", "0"]);
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
