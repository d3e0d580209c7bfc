//! `launcher run --repeat` and `launcher compare` on real runs, one short comparison:
//! groups of two runs of `configs/delay-200ms.toml` and of the same plan without its
//! delay, interleaved, on this machine's Docker Engine. The groups' comparison page and
//! Markdown name every run; one run a side (its peers the samples), the delayed run's p50
//! is significantly worse and a `--fail-on 'p50>+50%'` gate exits 1. (Two runs a side
//! are too few for a t interval to call even a 200x change: its 95% quantile at one
//! degree of freedom is 12.7; compare.rs's unit tests cover groups.) What the statistics say of groups of one plan (no
//! significant difference beyond the runs' own spread) is analysis/src/compare.rs's unit
//! tests', on simulated runs: real runs of one plan on a shared 2-CPU machine differ by
//! its drift (docs/operations.md). Needs the Docker Engine; never skips.
// suite: docker ~95s

use cmesh_testkit::{images_built, launcher, read_json, text, workspace_root};
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
fn a_delayed_group_is_significantly_worse() {
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let delayed = scratch.path().join("delay.toml");
    let clean = scratch.path().join("clean.toml");
    let source = workspace_root().join("configs/delay-200ms.toml");
    plan(&source, &delayed, false);
    plan(&source, &clean, true);
    let tag = std::process::id() % 100_000;
    let (a, d) = (format!("t{tag}-a"), format!("t{tag}-d"));
    // Groups by `run --repeat`, interleaved so that the machine's drift falls on both
    // alike: `--repeat i` on a group of i - 1 runs goes on with the i-th; the two swap
    // places each round.
    for i in 1..=2 {
        let order = if i % 2 == 1 {
            [(&a, &clean), (&d, &delayed)]
        } else {
            [(&d, &delayed), (&a, &clean)]
        };
        for (group, plan) in order {
            let out = launcher(
                &runs,
                &[
                    "run",
                    "--config",
                    plan.to_str().unwrap(),
                    "--repeat",
                    &i.to_string(),
                    "--group",
                    group,
                    "--json",
                ],
            );
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{group} run {i}: {stderr}");
            let g: Value = serde_json::from_slice(&out.stdout).expect("the group on stdout");
            let listed = g["runs"].as_array().unwrap();
            assert_eq!(listed.len(), i, "{g}");
            assert_eq!(listed[i - 1]["run_id"], format!("{group}-{i}"));
        }
    }
    // Each run of a group ran with its own seed, as its manifest says.
    let g = read_json(&runs.join(format!("{a}.group.json")));
    let seeds: Vec<u64> = (0..2)
        .map(|i| g["runs"][i]["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [seeds[0], seeds[0] + 1], "{g}");
    let manifest = read_json(&runs.join(format!("{a}-2/manifest.json")));
    assert_eq!(manifest["spec"]["seed"].as_u64(), Some(seeds[1]));
    let (a, d) = (vec![a], vec![d]);

    let page = scratch.path().join("compare.html");
    let (code, c, stderr) = compare(&runs, &a, &d, &["--html", page.to_str().unwrap()]);
    assert_eq!(code, Some(0), "no gate, no failure: {stderr}");
    let html = std::fs::read_to_string(&page).expect("the comparison page");
    for needle in [
        "data-plot=\"latency-cdf\"".to_string(),
        "data-plot=\"p50-over-time\"".to_string(),
        format!("baseline {}-2", a[0]),
        format!("candidate {}-1", d[0]),
    ] {
        assert!(html.contains(&needle), "{needle} in the page");
    }
    assert_eq!(c["comparison"]["basis"], "runs");
    assert_ne!(verdict(&c, "p50"), "better", "{c}");
    // One run a side: the peers are the samples.
    let (a1, d1) = (vec![format!("{}-1", a[0])], vec![format!("{}-1", d[0])]);
    let (code, c, stderr) = compare(&runs, &a1, &d1, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(c["comparison"]["basis"], "peers");
    assert_eq!(verdict(&c, "p50"), "worse", "{c}");
    let (code, c, stderr) = compare(&runs, &a1, &d1, &["--fail-on", "p50>+50%"]);
    assert_eq!(code, Some(1), "{c}");
    assert!(stderr.contains("gate failed: p50>+50%"), "{stderr}");
    assert_eq!(c["failed_gates"].as_array().map(Vec::len), Some(1));

    // The Markdown names every side's runs.
    let out = launcher(
        &runs,
        &[
            "compare",
            "--baseline",
            &a.join(","),
            "--candidate",
            &d.join(","),
        ],
    );
    let md = text(&out.stdout);
    assert!(
        md.contains(&format!("{}-1", a[0]))
            && md.contains(&format!("{}-2", d[0]))
            && md.contains("| p50 "),
        "{md}"
    );
}
