//! Link shaping from the plan's fault timeline, on this machine's kernel and Docker Engine.
//!
//! On a kernel with netem, delay and loss go through netem; on one without (this
//! project's machines: shared/ENVIRONMENT.md), delay goes through the userspace path
//! (NFQUEUE) and loss through iptables' statistic match. These tests check the path the
//! kernel offers, found independently (`kernel_offers_netem`).
//! They need the Docker Engine and fail without one; they never skip.
// suite: alone ~100s

use cmesh_testkit::{
    assert_bad_input, expected_shaping_path, images_built, read_json, run_plan_json, unpack,
    workspace_root,
};
use serde_json::Value;
use std::path::Path;

/// Runs `plan` (a configs/ file, or a path) with `launcher run --json`; returns the
/// summary and the first peer's report.
fn run_plan(tag: &str, plan: &Path) -> (Value, Value) {
    let (summary, report, _) = run_plan_in(tag, plan);
    (summary, report)
}

/// [`run_plan`], also returning the run's directory (removed when it is dropped).
fn run_plan_in(tag: &str, plan: &Path) -> (Value, Value, RunKept) {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = format!("t{}-{tag}", std::process::id() % 100_000);
    let (summary, _) = run_plan_json(runs.path(), plan, &id);
    assert_eq!(summary["coverage"], 1.0, "{tag}");
    // The first peer's report, from its extracted archive.
    let dir = runs.path().join(&id).join("extract/local");
    let peer = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-peer-"))
        .unwrap();
    let unpacked = unpack(&peer.join("report.tar.gz"));
    let dir = runs.path().join(&id);
    (
        summary,
        read_json(&unpacked.path().join("report/report.json")),
        RunKept { _runs: runs, dir },
    )
}

/// A run's directory, kept as long as this is.
struct RunKept {
    _runs: tempfile::TempDir,
    dir: std::path::PathBuf,
}

/// The same plan without its `[[fault]]` tables.
fn without_faults(plan: &Path, into: &Path) {
    let text = std::fs::read_to_string(plan).unwrap();
    let clean = text.split("[[fault]]").next().unwrap();
    std::fs::write(into, clean).unwrap();
}

fn p50_us(summary: &Value) -> u64 {
    summary["message_latency"]["p50_us"].as_u64().unwrap()
}

#[test]
fn a_200ms_delay_shows_in_the_merged_latency_and_a_clean_run_does_not() {
    let plan = workspace_root().join("configs/delay-200ms.toml");
    let (summary, report) = run_plan("delay", &plan);
    assert!(
        p50_us(&summary) >= 200_000,
        "p50 {} µs with a 200 ms delay",
        p50_us(&summary)
    );
    let fault = &report["faults"][0];
    assert_eq!(fault["action"], "delay", "{report}");
    assert_eq!(
        fault["path"],
        expected_shaping_path("nfqueue"),
        "the path this kernel offers: {report}"
    );
    assert!(fault["applied_at_unix_ms"].is_u64() && fault["lifted_at_unix_ms"].is_u64());

    let scratch = tempfile::tempdir().unwrap();
    let clean = scratch.path().join("clean.toml");
    without_faults(&plan, &clean);
    let (summary, report) = run_plan("nodelay", &clean);
    assert!(
        p50_us(&summary) < 50_000,
        "p50 {} µs without the delay",
        p50_us(&summary)
    );
    assert!(report.get("faults").is_none(), "{report}");
}

#[test]
fn ten_percent_loss_raises_latency_against_a_clean_run() {
    let plan = workspace_root().join("configs/loss-10pct.toml");
    let (lossy, report) = run_plan("loss", &plan);
    assert_eq!(
        report["faults"][0]["path"],
        expected_shaping_path("iptables"),
        "{report}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let clean = scratch.path().join("clean.toml");
    without_faults(&plan, &clean);
    let (clean, _) = run_plan("noloss", &clean);
    let mean = |s: &Value| s["message_latency"]["mean_us"].as_f64().unwrap();
    let p99 = |s: &Value| s["message_latency"]["p99_us"].as_u64().unwrap();
    assert!(
        mean(&lossy) > 2.0 * mean(&clean) && p99(&lossy) > p99(&clean),
        "loss: mean {} µs, p99 {} µs; clean: mean {} µs, p99 {} µs",
        mean(&lossy),
        p99(&lossy),
        mean(&clean),
        p99(&clean)
    );
}

#[test]
fn a_partition_heals_with_a_resync_latency_and_shows_as_a_gap_over_time() {
    let plan = workspace_root().join("configs/partition.toml");
    let (summary, report, run) = run_plan_in("partition", &plan);
    // run_plan asserted coverage 1.0: everything crossed once the halves were joined.
    let fault = &summary["faults"][0];
    assert_eq!(fault["id"], "plan#1", "{summary}");
    assert_eq!(fault["action"], "partition");
    assert_eq!(
        fault["peers"], 10,
        "every peer of both halves cut itself off"
    );
    assert_eq!(fault["paths"][0], "iptables");
    assert_eq!(fault["errors"], 0);
    let resync = &summary["resync"];
    assert_eq!(resync["peers"], 10, "every peer reports a resync: {resync}");
    assert_eq!(resync["heals"], 10);
    assert_eq!(resync["unfinished"], 0);
    let r = &report["resync"][0];
    assert_eq!(r["cause"], "partition");
    assert!(
        r["latency_ms"].is_u64() && r["records"].as_u64() > Some(0),
        "{r}"
    );

    // The gap: records written during the cut (8 s to 18 s) wait for the heal; before
    // and well after it they arrive in milliseconds.
    let windows = summary["time_series"].as_array().expect("time series");
    let at = |s: u64| {
        windows
            .iter()
            .find(|w| w["start_ms"] == s * 1000)
            .unwrap_or_else(|| panic!("no window at {s} s"))
    };
    let max_ms = |s: u64| at(s)["max_us"].as_u64().unwrap() / 1000;
    for s in [2, 5, 22, 26] {
        assert!(max_ms(s) < 1_000, "window {s} s: max {} ms", max_ms(s));
    }
    for s in [9, 12, 15] {
        assert!(max_ms(s) >= 1_000, "window {s} s: max {} ms", max_ms(s));
    }
    // Fewer records arrive while cut off than before it.
    let received = |s: u64| at(s)["received"].as_u64().unwrap();
    assert!(
        received(12) < received(4),
        "{} vs {}",
        received(12),
        received(4)
    );
    assert!(
        at(4)["tx_bytes"].as_u64() > Some(0),
        "interface bytes per window"
    );
    assert!(summary["availability"]["probes"].as_u64() > Some(0));
    report_html_in_a_browser(&run.dir.join("analysis/report.html"));
}

/// What the probe reads off the laid-out report: each plot's size on the page and its
/// drawn elements, the fault shading on the latency plot and its labels, and whether a
/// click on the peer table's p99 header sorts it.
const PROBE: &str = r#"(function(){
var out={plots:{},shaded:[],labels:[],sorted:null};
document.querySelectorAll('figure.plot').forEach(function(f){
  var s=f.querySelector('svg'),r=s?s.getBoundingClientRect():{width:0,height:0};
  out.plots[f.dataset.plot]={width:r.width,height:r.height,
    marks:s?s.querySelectorAll('path,polyline,rect,circle,line').length:0};});
var lot=document.querySelector('figure[data-plot="latency-over-time"] svg');
if(lot){
  lot.querySelectorAll('rect').forEach(function(r){
    if((r.getAttribute('fill')||'').toUpperCase()==='#F4A261'){
      var b=r.getBoundingClientRect();out.shaded.push([b.width,b.height]);}});
  lot.querySelectorAll('text').forEach(function(t){
    var x=t.textContent.trim();if(x.indexOf('plan#')===0)out.labels.push(x);});}
var th=document.querySelectorAll('#peers th')[6];
if(th){th.click();
  var v=Array.prototype.map.call(document.querySelectorAll('#peers tbody tr'),
    function(r){return parseFloat(r.cells[6].dataset.v);});
  out.sorted=v.every(function(x,i){return i===0||v[i-1]<=x;});}
document.body.dataset.probe=JSON.stringify(out);})();"#;

/// The report of a partition run, opened in headless chromium: no console messages,
/// every plot laid out and drawn, the partition shaded and labelled on the latency plot;
/// nothing in it points outside the file. The screenshot stays in the target directory.
fn report_html_in_a_browser(report: &Path) {
    let html = std::fs::read_to_string(report).expect("launcher run writes report.html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "report.html refers to the network"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-partition");
    let opened = cmesh_testkit::browser::open(report, &out, PROBE).unwrap();
    assert!(opened.console.is_empty(), "console: {:#?}", opened.console);
    assert!(
        std::fs::metadata(&opened.screenshot).unwrap().len() > 10_000,
        "{}",
        opened.screenshot.display()
    );
    let p = &opened.probe;
    for name in [
        "latency-cdf",
        "latency-over-time",
        "records-per-second",
        "link-throughput",
        "resync",
        "coverage",
    ] {
        let plot = &p["plots"][name];
        assert!(
            plot["width"].as_f64() > Some(100.0)
                && plot["height"].as_f64() > Some(50.0)
                && plot["marks"].as_u64() > Some(10),
            "plot {name}: {plot}"
        );
    }
    let shaded = p["shaded"].as_array().unwrap();
    assert!(
        shaded
            .iter()
            .any(|wh| wh[0].as_f64() > Some(20.0) && wh[1].as_f64() > Some(20.0)),
        "the partition is shaded: {p}"
    );
    assert_eq!(p["labels"], serde_json::json!(["plan#1 partition"]), "{p}");
    assert_eq!(p["sorted"], true, "{p}");
}

#[test]
fn bad_fault_timelines_are_refused_before_anything_starts() {
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = |name: &str, fault: &str| {
        let path = scratch.path().join(name);
        std::fs::write(
            &path,
            format!("peers = 4\n\n[[fault]]\nat = \"5s\"\n{fault}"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let no_ms = plan("no-ms.toml", "action = \"delay\"\n");
    let kill_to = plan("kill-to.toml", "action = \"kill\"\nto = \"2\"\n");
    let fast = plan("fast.toml", "action = \"mobility\"\nevery = \"100ms\"\n");
    let runs = runs.to_str().unwrap();
    assert_bad_input(
        "launcher",
        &[
            (
                vec!["--runs-dir", runs, "spawn", "--config", &no_ms],
                "[[fault]] #1 `ms`: `delay` needs ms = N",
            ),
            (
                vec!["--runs-dir", runs, "spawn", "--config", &kill_to],
                "`to` applies to link shaping, not `kill`",
            ),
            (
                vec!["--runs-dir", runs, "spawn", "--config", &fast],
                "more often than once a second",
            ),
        ],
        runs,
    );
}
