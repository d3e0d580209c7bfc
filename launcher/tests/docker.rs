//! The launcher against the real Docker Engine of this machine.
//!
//! These tests need a reachable engine and fail (they never skip) without one: CI must
//! prove the Docker path, not step around it. Each test uses its own runs directory and
//! run id, and removes its containers when it ends, passing or not.
// suite: docker ~210s

use cmesh_testkit::{
    binary, images_built, kernel_offers_ipsec, launcher, read_json, text, wait_until, RunCleanup,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn run_id(name: &str) -> String {
    format!("t{}-{name}", std::process::id() % 100_000)
}

/// How many objects `docker OBJECT ls -q` lists with the run's label (`ps -a` for
/// containers).
fn count_of_run(id: &str, list: &[&str]) -> usize {
    let out = Command::new("docker")
        .args(list)
        .args(["-q", "--filter", &format!("label=io.cmesh.run={id}")])
        .output()
        .expect("docker CLI");
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Containers (any state) and networks Docker has for a run.
fn docker_objects(id: &str) -> (usize, usize) {
    (
        count_of_run(id, &["ps", "-a"]),
        count_of_run(id, &["network", "ls"]),
    )
}

#[test]
fn run_10_peers_end_to_end() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("e2e");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let out = launcher(
        runs.path(),
        &[
            "run",
            "--peers",
            "10",
            "--duration",
            "15s",
            "--json",
            "--run-id",
            &id,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "launcher run failed:\n{stderr}");
    let summary: Value =
        serde_json::from_slice(&out.stdout).expect("--json prints summary.json on stdout");
    assert_eq!(summary["run_id"], id.as_str());
    assert_eq!(summary["peers_expected"], 10);
    assert_eq!(summary["peers_reported"], 10);
    assert_eq!(summary["coverage"], 1.0);
    let l = &summary["message_latency"];
    assert!(l["count"].as_u64().unwrap() > 0);
    let (p50, p99, max) = (
        l["p50_us"].as_u64().unwrap(),
        l["p99_us"].as_u64().unwrap(),
        l["max_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max);
    let dir = runs.path().join(&id);
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["peers"].as_array().unwrap().len(), 10);
    assert!(manifest["network"]["subnet"]
        .as_str()
        .unwrap()
        .ends_with("/24"));
    assert_eq!(read_json(&dir.join("analysis/summary.json")), summary);
    let index = read_json(&dir.join("extract/extract.json"));
    assert_eq!(
        index["containers"].as_array().unwrap().len(),
        11,
        "10 peers and the coordinator"
    );
    assert!(index["containers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["report"] == "complete"));
    assert_eq!(
        docker_objects(&id),
        (0, 0),
        "run removes its containers and network after extracting"
    );
}

#[test]
fn a_peer_killed_mid_run_is_extracted_with_its_logs_and_its_last_checkpoint() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("kill");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let out = launcher(
        runs.path(),
        &[
            "spawn",
            "--peers",
            "4",
            "--duration",
            "20s",
            "--graph",
            "complete",
            "--peer-cpus",
            "0.5",
            "--run-id",
            &id,
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "spawn failed:\n{}",
        text(&out.stderr)
    );
    // --peer-cpus is each peer's CPU quota; the coordinator has none.
    let quota = |name: &str| {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.HostConfig.NanoCpus}}", name])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_owned()
    };
    assert_eq!(quota(&format!("{id}-peer-0001")), "500000000");
    assert_eq!(quota(&format!("{id}-coordinator")), "0");
    let spawned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spawned["run_id"], id.as_str());
    assert_eq!(spawned["peers"], 4);
    assert_eq!(spawned["placement"]["local"], 4);
    // Mid-run: every peer is writing, as the coordinator sees it.
    wait_until(
        "all 4 peers running",
        Duration::from_secs(120),
        Duration::from_millis(300),
        || {
            let s = launcher(runs.path(), &["status", "--json", "--run", &id]);
            let v: Value = serde_json::from_slice(&s.stdout).ok()?;
            (v["coordinator"]["counts"]["running"] == 4).then_some(())
        },
    )
    .unwrap();
    let victim = format!("{id}-peer-0002");
    // It checkpoints every 5 s while it writes: wait for the first one.
    let checkpoint = format!("/reports/{victim}/checkpoint.json");
    wait_until(
        "the victim's first checkpoint",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            Command::new("docker")
                .args(["exec", &victim, "test", "-s", &checkpoint])
                .status()
                .ok()?
                .success()
                .then_some(())
        },
    )
    .unwrap();
    let kill = Command::new("docker")
        .args(["kill", &victim])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(kill.success());

    let waited = launcher(runs.path(), &["wait", "--run", &id, "--json"]);
    let stderr = text(&waited.stderr);
    assert_eq!(
        waited.status.code(),
        Some(1),
        "a killed peer fails the run:\n{stderr}"
    );
    assert!(
        stderr.contains(&victim) && stderr.contains("killed"),
        "{stderr}"
    );
    let ended: Value = serde_json::from_slice(&waited.stdout).unwrap();
    let peers = ended["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 4);
    let victim_ended = peers.iter().find(|p| p["name"] == victim.as_str()).unwrap();
    assert_eq!(victim_ended["exit_code"], 137, "{victim_ended}");
    assert_eq!(
        peers.iter().filter(|p| p["exit_code"] == 0).count(),
        3,
        "{ended}"
    );

    let extracted = launcher(runs.path(), &["extract", "--run", &id, "--json"]);
    let stderr = text(&extracted.stderr);
    assert_eq!(
        extracted.status.code(),
        Some(0),
        "extract collects what exists:\n{stderr}"
    );
    assert!(stderr.contains("5 of 5 containers extracted"), "{stderr}");
    let printed: Value = serde_json::from_slice(&extracted.stdout).unwrap();
    assert_eq!(printed["containers"].as_array().unwrap().len(), 5);
    assert!(
        stderr.contains(&format!("{victim}: report Checkpoint")),
        "the missing report is named:\n{stderr}"
    );
    let index = read_json(&runs.path().join(&id).join("extract/extract.json"));
    let entry = index["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == victim.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        entry["report"], "checkpoint",
        "checkpoint.json was written, report.json never was"
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("killed (exit 137)"),
        "{entry}"
    );
    assert_eq!(entry["exit_code"], 137);
    let dir = runs.path().join(&id).join("extract/local").join(&victim);
    let inspect = read_json(&dir.join("inspect.json"));
    assert_eq!(inspect["state"]["exit_code"], 137);
    assert!(inspect["state"]["finished_at"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    assert!(std::fs::metadata(dir.join("logs.txt.gz")).unwrap().len() > 0);

    let analyzed = launcher(
        runs.path(),
        &["analyze", runs.path().join(&id).to_str().unwrap(), "--json"],
    );
    assert_eq!(
        analyzed.status.code(),
        Some(1),
        "a failed peer fails the analysis"
    );
    let summary: Value = serde_json::from_slice(&analyzed.stdout).unwrap();
    // The victim's measurements up to its checkpoint count; it is listed as lost.
    assert_eq!(summary["peers_reported"], 4, "{summary}");
    let lost = summary["peers_lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{summary}");
    assert_eq!(lost[0]["peer"], victim.as_str());
    assert!(lost[0]["checkpoint_unix_ms"].as_u64().unwrap() > 0);
    let row = summary["per_peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == victim.as_str())
        .unwrap();
    assert_eq!(row["outcome"], "lost", "{row}");
    assert!(row["records_produced"].as_u64().unwrap() > 0, "{row}");

    // Logs: one container plain, all of them prefixed with their names.
    let one = launcher(runs.path(), &["logs", "--run", &id, "coordinator"]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let one = text(&one.stdout);
    assert!(
        one.contains("coordinator listening") && !one.contains(" | "),
        "{one}"
    );
    let all = launcher(runs.path(), &["logs", "--run", &id]);
    let all = text(&all.stdout);
    assert!(all.contains(&format!("{id}-coordinator | ")), "{all}");
    let unknown = launcher(runs.path(), &["logs", "--run", &id, "peer-9999"]);
    assert_eq!(unknown.status.code(), Some(2));
    // A glob picks peers; --since leaves out what came before.
    let two = launcher(runs.path(), &["logs", "--run", &id, "peer-000[1-2]"]);
    assert_eq!(two.status.code(), Some(0), "{}", text(&two.stderr));
    let two = text(&two.stdout);
    assert!(
        two.contains(&format!("{id}-peer-0001 | ")) && two.contains(&format!("{id}-peer-0002 | ")),
        "{two}"
    );
    assert!(
        !two.contains(&format!("{id}-peer-0003 | ")) && !two.contains("coordinator | "),
        "{two}"
    );
    let an_hour = launcher(runs.path(), &["logs", "--run", &id, "--since", "1h"]);
    assert_eq!(text(&an_hour.stdout), all);
    let later = launcher(
        runs.path(),
        &["logs", "--run", &id, "--since", "2037-01-01T00:00:00Z"],
    );
    assert_eq!(later.status.code(), Some(0), "{}", text(&later.stderr));
    assert_eq!(text(&later.stdout), "");
    let bad = launcher(runs.path(), &["logs", "--run", &id, "--since", "soonish"]);
    assert_eq!(bad.status.code(), Some(2));

    let down = launcher(runs.path(), &["down", "--run", &id, "--force", "--json"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down.stderr));
    let removed: Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(removed["containers"], 5);
    assert_eq!(removed["network"], format!("cmesh-{id}").as_str());
    assert_eq!(docker_objects(&id), (0, 0));

    // ls lists the run from its files, analysed and failed.
    let listed = launcher(runs.path(), &["ls", "--json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id.as_str())
        .unwrap();
    assert_eq!(row["stage"], "analyzed", "{row}");
    assert_eq!(row["ok"], false, "{row}");
    assert_eq!(row["peers"], 4, "{row}");
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_interrupted_extract_completes_with_verified_checksums() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("resume");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let out = launcher(
        runs.path(),
        &["spawn", "--peers", "8", "--duration", "3s", "--run-id", &id],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "spawn failed:\n{}",
        text(&out.stderr)
    );
    let out = launcher(runs.path(), &["wait", "--run", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let extract_dir = runs.path().join(&id).join("extract");
    let metas = |dir: &Path| -> Vec<PathBuf> {
        walk(dir)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "meta.json"))
            .collect()
    };
    // Kill extract once it has finished some containers but not all 9.
    let mut interrupted = false;
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&extract_dir);
        let mut child = Command::new(binary("launcher"))
            .arg("--runs-dir")
            .arg(runs.path())
            .args(["extract", "--concurrency", "1", "--run", &id])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let some = wait_until(
            "a first container extracted",
            Duration::from_secs(60),
            Duration::from_millis(2),
            || {
                (!metas(&extract_dir).is_empty() || child.try_wait().ok().flatten().is_some())
                    .then_some(())
            },
        );
        let _ = child.kill();
        let _ = child.wait();
        if some.is_ok()
            && !extract_dir.join("extract.json").exists()
            && metas(&extract_dir).len() < 9
        {
            interrupted = true;
            break;
        }
    }
    assert!(
        interrupted,
        "could not interrupt extract part way in 5 tries"
    );
    let done_before = metas(&extract_dir);
    // Damage one finished container's file: the re-run must notice and fetch it again.
    let damaged = done_before[0].parent().unwrap().join("logs.txt.gz");
    std::fs::write(&damaged, b"not what was extracted").unwrap();

    let again = launcher(runs.path(), &["extract", "--run", &id]);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} already extracted and verified",
            done_before.len() - 1
        )),
        "the intact containers are verified, not fetched again:\n{stderr}"
    );
    let index = read_json(&extract_dir.join("extract.json"));
    let containers = index["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 9);
    for c in containers {
        let dir = extract_dir.join("local").join(c["name"].as_str().unwrap());
        for (file, f) in c["files"].as_object().unwrap() {
            assert_eq!(
                sha256_file(&dir.join(file)),
                f["sha256"].as_str().unwrap(),
                "{}/{file}",
                c["name"]
            );
        }
        assert_eq!(c["report"], "complete");
    }
    let leftovers: Vec<_> = walk(&extract_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Another container on the host's reports volume (what every peer has) rewrites peer
/// 2's report and plants a coordinator report of its own: `analyze` takes the
/// coordinator's real report (from its own volume), finds peer 2's report altered against
/// the digest peer 2 posted, and leaves it out as invalid.
#[test]
fn a_report_altered_by_another_container_is_detected() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("tamper");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let out = launcher(
        runs.path(),
        &["spawn", "--peers", "4", "--duration", "3s", "--run-id", &id],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = launcher(runs.path(), &["wait", "--run", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let manifest = read_json(&runs.path().join(&id).join("manifest.json"));
    let image = manifest["images"]["peer"]["tag"].as_str().unwrap();
    let victim = format!("{id}-peer-0002");
    let script = format!(
        "sed -i 's/\"records_received\": [0-9]*/\"records_received\": 999999/' \
         /reports/{victim}/report.json && grep -q 999999 /reports/{victim}/report.json && \
         mkdir -p /reports/{id}-coordinator && echo '{{\"forged\": true}}' \
         > /reports/{id}-coordinator/coordinator.json"
    );
    let tamper = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "sh", "-v"])
        .arg(format!("cmesh-{id}-reports:/reports"))
        .args([image, "-c", &script])
        .output()
        .unwrap();
    assert!(tamper.status.success(), "{}", text(&tamper.stderr));

    let out = launcher(runs.path(), &["extract", "--run", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run_dir = runs.path().join(&id);
    let out = launcher(runs.path(), &["analyze", run_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an altered report fails the analysis"
    );
    let summary = read_json(&run_dir.join("analysis/summary.json"));
    let invalid = summary["peers_invalid"].as_array().expect("peers_invalid");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["peer"], victim.as_str());
    let reason = invalid[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("altered after the peer wrote it"),
        "{reason}"
    );
    assert_eq!(summary["peers_reported"], 3, "{summary}");
}

/// `spawn --encrypt-overlay`: where the kernel has IPsec, the run's overlay is made
/// encrypted and the run goes through; where it has not, spawn refuses (exit 2) naming
/// the host, and creates nothing. `hosts check` says which, as the kernel does.
#[test]
fn an_encrypted_overlay_is_made_where_the_kernel_can_and_refused_where_it_cannot() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("ipsec");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let can = kernel_offers_ipsec();
    let out = launcher(runs.path(), &["hosts", "check", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("hosts check --json");
    assert_eq!(rows[0]["ipsec"], if can { "yes" } else { "no" }, "{rows}");
    let out = launcher(
        runs.path(),
        &[
            "spawn",
            "--peers",
            "2",
            "--duration",
            "2s",
            "--encrypt-overlay",
            "--run-id",
            &id,
        ],
    );
    let stderr = text(&out.stderr);
    if can {
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let options = Command::new("docker")
            .args(["network", "inspect", &format!("cmesh-{id}"), "--format"])
            .arg("{{json .Options}}")
            .output()
            .unwrap();
        assert!(
            text(&options.stdout).contains("encrypted"),
            "{}",
            text(&options.stdout)
        );
        let manifest = read_json(&runs.path().join(&id).join("manifest.json"));
        assert_eq!(manifest["network"]["encrypted"], true);
        let out = launcher(runs.path(), &["wait", "--run", &id]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    } else {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--encrypt-overlay needs IPsec") && stderr.contains("`local`"),
            "{stderr}"
        );
        assert_eq!(docker_objects(&id), (0, 0), "nothing created");
        assert!(!runs.path().join(&id).exists(), "no run directory");
    }
}

#[test]
fn bad_input_exits_2_before_anything_is_created() {
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let id = run_id("bad");
    let hosts = scratch.path().join("hosts.toml");
    std::fs::write(&hosts, "[[host]]\nname = \"local\"\ncapacity = \"lots\"\n").unwrap();
    let unreachable = scratch.path().join("unreachable.toml");
    std::fs::write(
        &unreachable,
        "[[host]]\nname = \"lab1\"\ndocker_socket = \"/tmp/cmesh-no-such.sock\"\n",
    )
    .unwrap();
    let (h, u) = (hosts.to_str().unwrap(), unreachable.to_str().unwrap());
    let file = |name: &str, body: &str| {
        let p = scratch.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let unknown = file("unknown.toml", "[[host]]\nname = \"a\"\nengine = \"x\"\n");
    let twice = file(
        "twice.toml",
        "[[host]]\nname = \"a\"\n\n[[host]]\nname = \"a\"\nssh = \"root@10.0.0.9\"\nrole = \"worker\"\n",
    );
    let no_manager = file(
        "no-manager.toml",
        "[[host]]\nname = \"a\"\nrole = \"worker\"\n",
    );
    let two_managers = file(
        "two.toml",
        "[[host]]\nname = \"a\"\n\n[[host]]\nname = \"b\"\nssh = \"root@10.0.0.9\"\n",
    );
    // Room for 60,000 peers by capacity, but no machine has the memory (10 MiB each) and
    // no stock kernel the neighbour table (gc_thresh3) or threads for them.
    let big = file("big.toml", "[[host]]\nname = \"local\"\ncapacity = 60000\n");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["spawn", "--hosts", h, "--peers", "2"],
            format!("{h}:3:12: key `capacity`"),
        ),
        (
            vec!["spawn", "--hosts", &unknown, "--peers", "2"],
            format!("{unknown}:3:1: key `engine`: unknown field `engine`"),
        ),
        (
            vec!["spawn", "--hosts", &twice, "--peers", "2"],
            format!("{twice}:5: host #2 `name`: `a` is named twice"),
        ),
        (
            vec!["run", "--hosts", &no_manager, "--peers", "2"],
            format!("{no_manager}: exactly one host must have role = \"manager\" (found 0)"),
        ),
        (
            vec!["spawn", "--hosts", &two_managers, "--peers", "2"],
            "(found 2: a, b)".into(),
        ),
        (
            vec!["run", "--peers", "0"],
            "--peers must be at least 1".into(),
        ),
        (
            vec!["spawn", "--peers", "70000"],
            "more than an overlay /16".into(),
        ),
        (
            vec!["spawn", "--peers", "300", "--subnet", "10.99.0.0/24"],
            "subnet 10.99.0.0/24 has 253 usable addresses".into(),
        ),
        (
            vec!["spawn", "--peers", "2", "--graph", "star"],
            "invalid value 'star' for '--graph <GRAPH>'".into(),
        ),
        (
            vec!["spawn", "--peers", "2", "--peer-cpus", "0"],
            "0 CPUs: give 0.01 to 1024".into(),
        ),
        (
            vec!["spawn", "--hosts", &big, "--peers", "60000"],
            "the run does not fit its hosts; nothing was created:\n  host `local` (60000 peers): "
                .into(),
        ),
    ];
    for (mut args, expected) in cases {
        args.extend(["--run-id", &id]);
        let out = launcher(&runs, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{stderr}");
        assert!(
            stderr.contains(&expected),
            "{args:?}: expected `{expected}` in:\n{stderr}"
        );
        assert!(
            !runs.exists(),
            "{args:?}: bad input must not create {}",
            runs.display()
        );
        assert_eq!(
            docker_objects(&id),
            (0, 0),
            "{args:?}: bad input must not create containers or networks"
        );
    }
    // A host that cannot be reached is a failure (exit 1), not bad input, and nothing
    // is created either.
    let out = launcher(
        &runs,
        &["spawn", "--hosts", u, "--peers", "2", "--run-id", &id],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Docker Engine of host `lab1` at /tmp/cmesh-no-such.sock"),
        "{stderr}"
    );
    assert!(
        !runs.exists(),
        "a lost host must not create {}",
        runs.display()
    );
    assert_eq!(docker_objects(&id), (0, 0));
    // Unknown run ids: with no runs at all, and with another run present.
    let out = launcher(&runs, &["status", "--run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown run `nope`"),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir_all(runs.join("other")).unwrap();
    std::fs::write(runs.join("other/manifest.json"), "{}").unwrap();
    let out = launcher(&runs, &["extract", "--run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown run `nope`") && stderr.contains("other"),
        "{stderr}"
    );
}

#[test]
fn spawn_again_creates_only_what_is_missing() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("respawn");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let args = ["spawn", "--peers", "3", "--duration", "5m", "--run-id", &id];
    let first = launcher(runs.path(), &args);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let manifest = read_json(&runs.path().join(&id).join("manifest.json"));
    let removed = format!("{id}-peer-0002");
    let rm = Command::new("docker")
        .args(["rm", "-f", &removed])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(rm.success());
    assert_eq!(docker_objects(&id).0, 3);

    // Different flags do not change an existing run: its manifest wins.
    let again = launcher(
        runs.path(),
        &["spawn", "--peers", "5", "--duration", "5m", "--run-id", &id],
    );
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("creating only what is missing")
            && stderr.contains("2 peers already exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spawn: 1/1 done"),
        "only the missing peer is started:\n{stderr}"
    );
    assert_eq!(
        docker_objects(&id),
        (4, 1),
        "coordinator and 3 peers, one network"
    );
    let after = read_json(&runs.path().join(&id).join("manifest.json"));
    assert_eq!(after, manifest, "the manifest is unchanged by a re-run");
}

/// Volumes Docker has for a run.
fn docker_volumes(id: &str) -> usize {
    count_of_run(id, &["volume", "ls"])
}

/// Starts the launcher with `args`, waits until `ready` holds, sends SIGINT, and returns
/// its exit code and stderr.
fn interrupt(runs: &Path, args: &[&str], ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let mut child = Command::new(binary("launcher"))
        .arg("--runs-dir")
        .arg(runs)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the command part-way",
        Duration::from_secs(180),
        Duration::from_millis(10),
        || ready().then_some(()),
    )
    .unwrap();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = cmesh_testkit::wait_child(&mut child, Duration::from_secs(60)).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn interrupted_spawn_and_extract_finish_when_run_again_and_down_leaves_nothing() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("sigint");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let spawn = [
        "spawn",
        "--peers",
        "30",
        "--duration",
        "10s",
        "--run-id",
        &id,
        "--concurrency",
        "2",
    ];
    // SIGINT once a few peers exist: spawn stops where it was and says how to finish.
    let (code, stderr) = interrupt(runs.path(), &spawn, || docker_objects(&id).0 >= 6);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("spawn interrupted (SIGINT)"), "{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");
    let part = docker_objects(&id).0;
    assert!(
        part < 31,
        "interrupted part-way, yet {part} containers exist"
    );
    let again = launcher(runs.path(), &spawn);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(docker_objects(&id).0, 31, "the re-run completed the run");
    let waited = launcher(runs.path(), &["wait", "--run", &id]);
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));

    // SIGINT once extract has read its first container: it stops, and a re-run completes.
    let extract_dir = runs.path().join(&id).join("extract");
    let first = || {
        walk(&extract_dir)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == "inspect.json"))
    };
    let (code, stderr) = interrupt(
        runs.path(),
        &["extract", "--run", &id, "--concurrency", "1"],
        first,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("extract interrupted (SIGINT)"), "{stderr}");
    let x = launcher(runs.path(), &["extract", "--run", &id, "--json"]);
    assert_eq!(x.status.code(), Some(0), "{}", text(&x.stderr));
    let index: Value = serde_json::from_slice(&x.stdout).unwrap();
    assert_eq!(index["containers"].as_array().unwrap().len(), 31);
    assert!(index["errors"].as_object().unwrap().is_empty(), "{index}");

    // down leaves nothing of the run: containers (scratch ones too), network, volumes.
    let down = launcher(runs.path(), &["down", "--run", &id]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down.stderr));
    assert_eq!(docker_objects(&id), (0, 0));
    assert_eq!(docker_volumes(&id), 0);
}

/// Runs `launcher ARGS` and samples its peak resident memory (VmHWM) until it exits:
/// the output and the peak, in bytes.
fn launcher_with_peak_rss(runs: &Path, args: &[&str]) -> (std::process::Output, u64) {
    let child = Command::new(binary("launcher"))
        .arg("--runs-dir")
        .arg(runs)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        // The file goes away when the process is reaped; VmHWM only grows until then.
        while let Ok(text) = std::fs::read_to_string(&status) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            match hwm {
                Some(kib) => peak = peak.max(kib * 1024),
                None => break, // a zombie: done
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    (out, sampler.join().unwrap())
}

#[test]
fn a_2_gib_file_in_a_report_directory_is_cut_and_extract_memory_stays_bounded() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("big");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let spawned = launcher(
        runs.path(),
        &["spawn", "--peers", "3", "--duration", "8s", "--run-id", &id],
    );
    assert_eq!(spawned.status.code(), Some(0), "{}", text(&spawned.stderr));
    // One peer writes a 2 GiB file into its own report directory while it runs (sparse,
    // so the disk is spared; the engine's archive still carries all 2 GiB).
    let victim = format!("{id}-peer-0002");
    let big = format!("/reports/{victim}/big.bin");
    wait_until(
        "the victim's 2 GiB file",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            Command::new("docker")
                .args(["exec", &victim, "truncate", "-s", "2G", &big])
                .status()
                .ok()?
                .success()
                .then_some(())
        },
    )
    .unwrap();
    let waited = launcher(runs.path(), &["wait", "--run", &id]);
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));

    let (out, peak) = launcher_with_peak_rss(runs.path(), &["extract", "--run", &id, "--json"]);
    let stderr = text(&out.stderr);
    eprintln!(
        "extract of a run with a 2 GiB report file: peak RSS {:.1} MiB",
        peak as f64 / (1u64 << 20) as f64
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        peak > 0 && peak < 100 << 20,
        "extract peaked at {peak} bytes"
    );
    let index: Value = serde_json::from_slice(&out.stdout).unwrap();
    let containers = index["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 4, "3 peers and the coordinator");
    for c in containers {
        assert_eq!(c["report"], "complete", "{c}");
        if c["name"] == victim.as_str() {
            let why = c["truncated"].as_str().unwrap_or_default();
            assert!(
                why.contains("report/big.bin is 2147483648 bytes; kept the first 67108864"),
                "{c}"
            );
        } else {
            assert!(c.get("truncated").is_none(), "{c}");
        }
    }
    assert!(
        stderr.contains(&victim) && stderr.contains("big.bin"),
        "{stderr}"
    );
    // Higher caps get more: the truncated container is fetched again, the others not.
    let again = launcher(
        runs.path(),
        &["extract", "--run", &id, "--json", "--max-file-mib", "100"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let index: Value = serde_json::from_slice(&again.stdout).unwrap();
    let entry = index["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == victim.as_str())
        .unwrap();
    let why = entry["truncated"].as_str().unwrap_or_default();
    assert!(why.contains("kept the first 104857600"), "{entry}");
    assert!(
        text(&again.stderr).contains("1 fetched, 3 already extracted"),
        "{}",
        text(&again.stderr)
    );
    // What was kept is on disk, and the rest of the run analyses as usual.
    let dir = runs.path().join(&id).join("extract/local").join(&victim);
    assert!(std::fs::metadata(dir.join("report.tar.gz")).unwrap().len() < 100 << 20);
    let analyzed = launcher(
        runs.path(),
        &["analyze", runs.path().join(&id).to_str().unwrap(), "--json"],
    );
    assert_eq!(
        analyzed.status.code(),
        Some(0),
        "{}",
        text(&analyzed.stderr)
    );
    let summary: Value = serde_json::from_slice(&analyzed.stdout).unwrap();
    assert_eq!(summary["peers_reported"], 3);
    assert_eq!(summary["ok"], true);
}

/// The containerd shims whose command line names one of `ids` (`-id ID`), from /proc.
fn shims_of(ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.first().is_some_and(|a| a.contains("containerd-shim")) {
            continue;
        }
        if let Some(id) = args
            .windows(2)
            .find(|w| w[0] == "-id")
            .map(|w| w[1].clone())
            .filter(|id| ids.contains(id))
        {
            found.push(id);
        }
    }
    found
}

/// The containerd tasks of `ids` that still have a bundle in containerd's state (the
/// engine's own containerd, or the system's), in the `moby` namespace.
fn tasks_of(ids: &[String]) -> Vec<String> {
    [
        "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
        "/run/containerd/io.containerd.runtime.v2.task/moby",
    ]
    .iter()
    .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .filter(|id| ids.contains(id))
    .collect()
}

#[test]
fn down_of_200_peers_leaves_no_containerd_task_or_shim() {
    images_built();
    let runs = tempfile::tempdir().unwrap();
    let id = run_id("shims");
    let _cleanup = RunCleanup {
        runs: runs.path().into(),
        id: id.clone(),
    };
    let spawned = launcher(
        runs.path(),
        &[
            "spawn",
            "--peers",
            "200",
            "--duration",
            "3s",
            "--write-interval",
            "1000..2000",
            "--run-id",
            &id,
        ],
    );
    assert_eq!(spawned.status.code(), Some(0), "{}", text(&spawned.stderr));
    let ids: Vec<String> = text(
        &Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label=io.cmesh.run={id}"))
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids.len(), 201, "200 peers and the coordinator");
    // The check sees shims where there are (peers may have begun to exit by now).
    assert!(shims_of(&ids).len() > 100, "a shim per running container");
    // All 200 exit at about the same time: the case that left tasks and shims behind.
    let waited = launcher(runs.path(), &["wait", "--run", &id]);
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));
    let down = launcher(runs.path(), &["down", "--run", &id, "--force", "--json"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down.stderr));
    assert_eq!(docker_objects(&id), (0, 0));
    assert_eq!(shims_of(&ids), Vec::<String>::new(), "shims left");
    assert_eq!(tasks_of(&ids), Vec::<String>::new(), "tasks left");
}
