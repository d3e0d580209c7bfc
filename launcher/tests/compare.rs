//! `launcher compare` on real runs: two groups of three runs of `configs/delay-200ms.toml`
//! and of the same plan without its delay, on this machine's Docker Engine. The delayed
//! group's p50 is significantly worse and a `--fail-on 'p50>+50%'` gate exits 1; two
//! groups of the clean plan show no significant difference in p50 or coverage, and the
//! same gate exits 0. Needs the Docker Engine; never skips.

use cmesh_testkit::{images_built, launcher, run_plan_json, text, workspace_root};
use serde_json::Value;
use std::path::Path;

/// `plan` with a shorter run (8 s: enough records for a p50), and without its faults
/// when `clean`.
fn plan(from: &Path, into: &Path, clean: bool) {
    let text = std::fs::read_to_string(from).unwrap();
    let text = if clean {
        text.split("[[fault]]").next().unwrap().to_owned()
    } else {
        text
    };
    std::fs::write(
        into,
        text.replace("duration = \"15s\"", "duration = \"8s\""),
    )
    .unwrap();
}

fn compare(
    runs: &Path,
    base: &[String],
    cand: &[String],
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let (b, c) = (base.join(","), cand.join(","));
    let mut args = vec!["compare", "--baseline", &b, "--candidate", &c, "--json"];
    args.extend_from_slice(extra);
    let out = launcher(runs, &args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json, text(&out.stderr))
}

fn verdict<'a>(c: &'a Value, metric: &str) -> &'a Value {
    let rows = c["comparison"]["rows"].as_array().expect("rows");
    &rows
        .iter()
        .find(|r| r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric}: {c}"))["verdict"]
}

#[test]
fn a_delayed_group_is_significantly_worse_and_the_same_plan_is_not() {
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let delayed = scratch.path().join("delay.toml");
    let clean = scratch.path().join("clean.toml");
    let source = workspace_root().join("configs/delay-200ms.toml");
    plan(&source, &delayed, false);
    plan(&source, &clean, true);
    let tag = std::process::id() % 100_000;
    let (mut a, mut b, mut d) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that the machine's drift falls on every group alike.
    for i in 1..=3 {
        for (group, plan, ids) in [
            ("a", &clean, &mut a),
            ("d", &delayed, &mut d),
            ("b", &clean, &mut b),
        ] {
            let id = format!("t{tag}-cmp-{group}{i}");
            let (summary, _) = run_plan_json(&runs, plan, &id);
            assert_eq!(summary["ok"], true, "{id}");
            ids.push(id);
        }
    }

    let (code, c, stderr) = compare(&runs, &a, &d, &[]);
    assert_eq!(code, Some(0), "no gate, no failure: {stderr}");
    assert_eq!(c["comparison"]["basis"], "runs");
    assert_eq!(verdict(&c, "p50"), "worse", "{c}");
    let (code, c, stderr) = compare(&runs, &a, &d, &["--fail-on", "p50>+50%"]);
    assert_eq!(code, Some(1), "{c}");
    assert!(stderr.contains("gate failed: p50>+50%"), "{stderr}");
    assert_eq!(c["failed_gates"].as_array().map(Vec::len), Some(1));

    let (code, c, stderr) = compare(&runs, &a, &b, &["--fail-on", "p50>+50%"]);
    assert_eq!(code, Some(0), "the same plan trips no gate: {c}\n{stderr}");
    for metric in ["p50", "coverage"] {
        assert_eq!(
            verdict(&c, metric),
            "no_significant_difference",
            "{metric}: {c}"
        );
    }
    // The Markdown names every side's runs.
    let out = launcher(
        &runs,
        &[
            "compare",
            "--baseline",
            &a.join(","),
            "--candidate",
            &b.join(","),
        ],
    );
    let md = text(&out.stdout);
    assert!(
        md.contains(&a[0]) && md.contains(&b[2]) && md.contains("| p50 "),
        "{md}"
    );
}
