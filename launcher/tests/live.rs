//! A run while it goes, on this machine's Docker Engine: a real Prometheus (Debian's
//! `prometheus`, which scripts/prerequisites installs) scrapes a running 10-peer run
//! through the targets file spawn writes; `launcher watch` in a real terminal (tmux)
//! shows a partition come and go; `--abort-on isolated` stops a run whose peers cannot
//! link. Needs the Docker Engine; never skips. One test at a time: each is a run of its
//! own, and the figures they read are a busy machine's.
// suite: docker ~195s

use cmesh_testkit::{free_port, images_built, launcher, read_json, text, wait_until, RunCleanup};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(runs: &Path, plan: &Path, id: &str) {
    let out = launcher(
        runs,
        &["spawn", "--config", plan.to_str().unwrap(), "--run-id", id],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// One instant query of Prometheus' HTTP API: the first result's value.
fn query(port: u16, promql: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--get",
            &format!("http://127.0.0.1:{port}/api/v1/query"),
            "--data-urlencode",
            &format!("query={promql}"),
        ])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_a_running_run() {
    let _one = one_at_a_time();
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = scratch.path().join("plan.toml");
    std::fs::write(
        &plan,
        "peers = 10\nduration = \"40s\"\ngraph = \"ring\"\nwrite_interval = \"200..500\"\n",
    )
    .unwrap();
    let id = format!("t{}-prom", std::process::id() % 100_000);
    spawn(&runs, &plan, &id);
    let _down = RunCleanup {
        runs: runs.clone(),
        id: id.clone(),
    };
    let run_dir = runs.join(&id);
    let targets = read_json(&run_dir.join("prometheus.json"));
    assert_eq!(targets[0]["labels"]["cmesh_run"], id.as_str(), "{targets}");

    // Prometheus as a user would point it at the run: the targets file, and the run's
    // token as a bearer token.
    let port = free_port();
    let config = scratch.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: cmesh\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n\
             \x20   file_sd_configs:\n      - files: [{targets}]\n        refresh_interval: 1s\n",
            token = run_dir.join("token").display(),
            targets = run_dir.join("prometheus.json").display(),
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus (scripts/prerequisites installs it)"),
    );

    // While the peers write: records arrive, and every link of the ring is up.
    let (rate, links) = wait_until(
        "Prometheus to see records arriving and the ring's 20 links up",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let rate = query(
                port,
                &format!("rate(cmesh_records_received_total{{run=\"{id}\",host=\"all\"}}[5s])"),
            )?;
            let links = query(
                port,
                &format!("cmesh_links_up{{run=\"{id}\",host=\"all\"}}"),
            )?;
            (rate > 0.0 && links == 20.0).then_some((rate, links))
        },
    )
    .unwrap();
    assert!(rate > 0.0 && links == 20.0);
    let wanted = query(
        port,
        &format!("cmesh_links_wanted{{run=\"{id}\",host=\"all\"}}"),
    );
    assert_eq!(wanted, Some(20.0));
    let running = query(
        port,
        &format!("cmesh_peers{{run=\"{id}\",host=\"all\",state=\"running\"}}"),
    );
    assert_eq!(running, Some(10.0));
    // The latency histogram is there, with counts.
    let count = query(
        port,
        &format!("cmesh_latency_seconds_count{{run=\"{id}\",host=\"all\"}}"),
    );
    assert!(count.is_some_and(|c| c > 0.0), "{count:?}");
    let out = launcher(&runs, &["wait", "--run", &id, "--timeout", "5m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// What one capture of the watch screen says: elapsed seconds, whether the partition
/// shows as active, and the run's coverage so far (percent).
fn read_screen(screen: &str) -> Option<(u64, bool, f64)> {
    let first = screen.lines().find(|l| l.contains("cmesh watch"))?;
    let elapsed = first
        .split("running ")
        .nth(1)?
        .split('s')
        .next()?
        .parse()
        .ok()?;
    let partition = screen
        .lines()
        .any(|l| l.starts_with("faults now:") && l.contains("partition"));
    let run_row = screen
        .lines()
        .find(|l| l.trim_start().starts_with("run "))?;
    let coverage = run_row
        .split_whitespace()
        .find(|c| c.ends_with('%'))?
        .trim_end_matches('%')
        .parse()
        .ok()?;
    Some((elapsed, partition, coverage))
}

#[test]
fn watch_in_a_terminal_shows_a_partition_cut_and_heal() {
    let _one = one_at_a_time();
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = cmesh_testkit::workspace_root().join("configs/partition.toml");
    let id = format!("t{}-watch", std::process::id() % 100_000);
    spawn(&runs, &plan, &id);
    let _down = RunCleanup {
        runs: runs.clone(),
        id: id.clone(),
    };
    let session = format!("cmesh-{id}");
    let command = format!(
        "{} --runs-dir {} watch --run {id}; sleep 600",
        cmesh_testkit::binary("launcher").display(),
        runs.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output();
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ])
    .expect("run tmux (scripts/prerequisites installs it)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    struct Session(String);
    impl Drop for Session {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let _session = Session(session.clone());

    // Read the screen until the run is past its heal: (elapsed, partition, coverage).
    let mut seen: Vec<(u64, bool, f64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = tmux(&["capture-pane", "-p", "-t", &session]).unwrap();
        last = text(&out.stdout);
        if let Some(s) = read_screen(&last) {
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            if s.0 >= 28 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut: Vec<f64> = seen.iter().filter(|s| s.1).map(|s| s.2).collect();
    assert!(
        !cut.is_empty(),
        "the partition never showed as active: {seen:?}\n{last}"
    );
    let before = seen
        .iter()
        .filter(|s| !s.1 && s.0 < 8)
        .map(|s| s.2)
        .fold(0.0, f64::max);
    let during = cut.iter().copied().fold(f64::MAX, f64::min);
    let after = seen
        .iter()
        .filter(|s| !s.1 && s.0 >= 18)
        .map(|s| s.2)
        .fold(0.0, f64::max);
    eprintln!("coverage before the cut {before}%, during {during}%, after the heal {after}%");
    assert!(
        during < before - 5.0,
        "coverage did not drop during the cut: before {before}%, during {during}%: {seen:?}"
    );
    assert!(
        after > during + 10.0,
        "coverage did not recover after the heal: during {during}%, after {after}%: {seen:?}"
    );
    let out = launcher(&runs, &["wait", "--run", &id, "--timeout", "5m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn abort_on_isolated_stops_a_run_whose_peers_cannot_link() {
    let _one = one_at_a_time();
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = scratch.path().join("isolated.toml");
    // Every peer in a group of its own, cut from all the others from the start, for
    // the whole run.
    std::fs::write(
        &plan,
        "peers = 6\nduration = \"5m\"\ngraph = \"ring\"\nwrite_interval = \"500..1000\"\n\n\
         [groups]\na = \"1\"\nb = \"2\"\nc = \"3\"\nd = \"4\"\ne = \"5\"\nf = \"6\"\n\n\
         [[fault]]\nat = \"0s\"\naction = \"partition\"\ngroups = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]\n",
    )
    .unwrap();
    let id = format!("t{}-isolated", std::process::id() % 100_000);
    let _down = RunCleanup {
        runs: runs.clone(),
        id: id.clone(),
    };
    let started = Instant::now();
    let out = launcher(
        &runs,
        &[
            "run",
            "--config",
            plan.to_str().unwrap(),
            "--run-id",
            &id,
            "--abort-on",
            "isolated",
        ],
    );
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("aborted: isolated: 6 of 6 running peers have no link"),
        "{stderr}"
    );
    // Decided within 90 s of the plan's start (30 s of grace, then a check every 2 s).
    let at: u64 = stderr
        .split("(at ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in the reason: {stderr}"));
    assert!((30..=90).contains(&at), "aborted at {at}s: {stderr}");
    eprintln!("aborted {at}s after the start; the command took {took:?}");
    // And the whole command well before the planned 5 minutes.
    assert!(took < Duration::from_secs(280), "took {took:?}");
    // Extracted and analysed: every peer's last checkpoint is in the summary.
    let summary = read_json(&runs.join(&id).join("analysis/summary.json"));
    assert_eq!(summary["run_id"], id.as_str(), "{summary}");
    assert_eq!(summary["peers_expected"].as_u64(), Some(6), "{summary}");
}
