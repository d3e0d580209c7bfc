//! Multi-host runs on a local lab: Docker hosts in containers, reached over real SSH.
//!
//! Each test starts its own lab (`launcher lab up`) under a name of its own, and removes
//! it when it ends, passing or not. These tests need the Docker Engine and fail without
//! one; they never skip. (The lab's workers with this machine's engine as their manager
//! are tests/lab_manager.rs': that test changes the swarm every local run shares.)
// suite: docker ~400s

use cmesh_testkit::lab::{hosts_placed, Lab};
use cmesh_testkit::{
    assert_bad_input, kernel_offers_ipvs, kernel_offers_netem, launcher, read_json, text,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// Runs 30 peers on a 3-host lab and checks what the multi-host issue promises.
/// With `keep`, the containers stay after `run`, and status, logs and down are checked
/// across the hosts too.
fn run_30_peers_across_3_hosts(transport: &str, keep: bool) -> Lab {
    let lab = Lab::up(transport, 3);
    let runs = tempfile::tempdir().unwrap();
    let id = format!("t{}-{transport}", std::process::id() % 100_000);
    let mut args = vec![
        "run",
        "--hosts",
        lab.hosts_file.to_str().unwrap(),
        "--peers",
        "30",
        "--duration",
        "20s",
        "--image-transport",
        transport,
        "--json",
        "--run-id",
        &id,
    ];
    if keep {
        args.push("--keep");
    }
    let out = launcher(runs.path(), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "launcher run failed:\n{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary.json on stdout");
    assert_eq!(summary["peers_reported"], 30, "{stderr}");
    assert_eq!(summary["coverage"], 1.0);

    let dir = runs.path().join(&id);
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["image_transport"], transport, "{stderr}");
    assert_eq!(
        hosts_placed(&manifest),
        BTreeSet::from(["lab-1", "lab-2", "lab-3"]),
        "peers on all 3 hosts"
    );
    let offsets = manifest["clock_offsets_ms"].as_object().unwrap();
    assert_eq!(offsets.len(), 3, "a clock offset per host: {offsets:?}");

    // Latency was measured between hosts, corrected for the clock offsets.
    assert_eq!(summary["clock_corrected"], true);
    assert!(summary["cross_host_latency"]["count"].as_u64().unwrap() > 0);
    let pairs = summary["latency_by_host_pair"].as_array().unwrap();
    assert_eq!(pairs.len(), 9, "3 × 3 host pairs");

    // The clocks, measured in-band by the peers. The lab hosts share one kernel, so
    // every host's true offset is 0: each estimate is within ±0.2 ms of it, and its
    // stated uncertainty holds it.
    let clock = &summary["clock"];
    eprintln!("clock ({transport}): {clock}");
    assert_eq!(clock["source"], "in_band", "{clock}");
    let hosts = clock["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{clock}");
    for h in hosts {
        let offset = h["offset_us"].as_i64().unwrap();
        let u = h["uncertainty_us"].as_i64().unwrap();
        assert!(offset.abs() <= 200, "host offset beyond ±0.2 ms: {h}");
        assert!(offset.abs() <= u, "the stated uncertainty must hold 0: {h}");
    }
    let peers: u64 = hosts.iter().map(|h| h["peers"].as_u64().unwrap()).sum();
    assert_eq!(peers, 30, "every peer's estimate counted: {clock}");
    // Corrected cross-host latencies: no sample below minus its pair's uncertainty.
    assert_eq!(clock["negative_beyond_uncertainty"], 0, "{clock}");
    for p in pairs
        .iter()
        .filter(|p| p["origin_host"] != p["reader_host"])
    {
        assert_eq!(p["negative_beyond_uncertainty"], 0, "{p}");
        assert!(p["uncertainty_us"].as_u64().is_some(), "{p}");
    }
    let md = std::fs::read_to_string(dir.join("analysis/summary.md")).unwrap();
    let across = md
        .lines()
        .find(|l| l.contains("(across hosts)"))
        .unwrap_or("");
    assert!(md.contains("## Clocks") && across.contains("± "), "{md}");

    // extract: every container's archives under its own host's directory.
    let index = read_json(&dir.join("extract/extract.json"));
    let containers = index["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 31, "30 peers and the coordinator");
    let placed: std::collections::HashMap<&str, &str> = manifest["peers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(std::iter::once(&manifest["coordinator"]))
        .map(|p| (p["name"].as_str().unwrap(), p["host"].as_str().unwrap()))
        .collect();
    for c in containers {
        let name = c["name"].as_str().unwrap();
        let host = placed[name];
        assert_eq!(c["host"], host, "{name}");
        assert_eq!(c["report"], "complete", "{name}");
        let d = dir.join("extract").join(host).join(name);
        for f in ["report.tar.gz", "logs.txt.gz", "inspect.json"] {
            assert!(d.join(f).is_file(), "{} missing", d.join(f).display());
        }
    }
    if keep {
        // status: placement per host, from the manifest and from every host's engine.
        let st = launcher(runs.path(), &["status", "--json", "--run", &id]);
        assert_eq!(st.status.code(), Some(0), "{}", text(&st.stderr));
        let st: Value = serde_json::from_slice(&st.stdout).unwrap();
        for h in ["lab-1", "lab-2", "lab-3"] {
            assert_eq!(st["hosts"][h]["placed"], 10, "{st}");
            assert_eq!(st["hosts"][h]["peers"]["exited"], 10, "{st}");
        }
        // logs: a peer on a worker, through its host's SSH link.
        let on_3 = placed.iter().find(|(_, h)| **h == "lab-3").unwrap().0;
        let peer = on_3.trim_start_matches(&format!("{id}-"));
        let logs = launcher(runs.path(), &["logs", "--run", &id, peer]);
        assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
        assert!(
            text(&logs.stdout).contains("registered"),
            "{}",
            text(&logs.stdout)
        );
        let down = launcher(runs.path(), &["down", "--run", &id]);
        assert_eq!(down.status.code(), Some(0), "{}", text(&down.stderr));
    }
    // The containers, network and volumes are gone from every host.
    for i in 1..=3 {
        let volumes = lab.docker_in(
            i,
            &[
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=io.cmesh.run={id}"),
            ],
        );
        assert!(
            volumes.trim().is_empty(),
            "lab host {i} still has volumes {volumes}"
        );
        let left = lab.docker_in(
            i,
            &["ps", "-aq", "--filter", &format!("label=io.cmesh.run={id}")],
        );
        assert!(left.trim().is_empty(), "lab host {i} still has {left}");
    }
    lab
}

#[test]
fn thirty_peers_on_three_hosts_through_ssh_and_the_registry() {
    let lab = run_30_peers_across_3_hosts("registry", false);
    // The swarm's nodes carry the host names; `swarm leave` takes every host out.
    for h in ["lab-1", "lab-2", "lab-3"] {
        let filter = format!("node.label=io.cmesh.host={h}");
        let node = lab.docker_in(1, &["node", "ls", "-q", "--filter", &filter]);
        assert_eq!(node.trim().lines().count(), 1, "node of {h}: {node}");
    }
    // The registry is published on the manager's advertise address only, and needs its
    // password: a pull without one is refused.
    let endpoint = lab.docker_in(
        1,
        &[
            "inspect",
            "cmesh-registry",
            "--format",
            "{{index .Config.Labels \"io.cmesh.registry-addr\"}}",
        ],
    );
    let endpoint = endpoint.trim();
    assert!(endpoint.ends_with(":5000"), "{endpoint}");
    let published = lab.docker_in(1, &["port", "cmesh-registry", "5000/tcp"]);
    assert_eq!(
        published.trim(),
        endpoint,
        "published on the advertise address only"
    );
    let pull = Command::new("docker")
        .args(["exec", &lab.container(2), "docker", "pull"])
        .arg(format!("{endpoint}/cmesh-peer:latest"))
        .output()
        .unwrap();
    let refused = text(&pull.stderr);
    assert!(
        !pull.status.success(),
        "a pull without credentials went through"
    );
    assert!(
        refused.contains("no basic auth credentials") || refused.contains("unauthorized"),
        "{refused}"
    );
    let runs = tempfile::tempdir().unwrap();
    let hosts = lab.hosts_file.to_str().unwrap();
    let out = launcher(runs.path(), &["registry", "rm", "--hosts", hosts]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left = lab.docker_in(1, &["ps", "-aq", "--filter", "name=cmesh-registry"]);
    assert_eq!(left.trim(), "", "the registry is gone");
    let volumes = lab.docker_in(
        1,
        &["volume", "ls", "-q", "--filter", "name=cmesh-registry"],
    );
    assert_eq!(volumes.trim(), "", "its volumes are gone");
    let out = launcher(runs.path(), &["swarm", "leave", "--hosts", hosts]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for i in 1..=3 {
        let state = lab.docker_in(i, &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        assert_eq!(state.trim(), "inactive", "lab host {i}");
    }
}

#[test]
fn thirty_peers_on_three_hosts_with_images_loaded_into_each_engine() {
    run_30_peers_across_3_hosts("load", true);
}

#[test]
fn hosts_check_reports_each_host_and_names_a_stopped_one() {
    let lab = Lab::up("check", 2);
    let runs = tempfile::tempdir().unwrap();
    let hosts = lab.hosts_file.to_str().unwrap();
    let out = launcher(runs.path(), &["hosts", "check", "--hosts", hosts, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["reachable"], true, "{row}");
        assert_eq!(row["api_version"], "1.41", "{row}");
        // The lab hosts share this machine's kernel: the probe must report what it has,
        // whichever that is (found here by trying netem, and from the kernel's config).
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        assert_eq!(row["netem"], yes_no(kernel_offers_netem()), "{row}");
        assert_eq!(row["ipvs"], yes_no(kernel_offers_ipvs()), "{row}");
        // Delay goes through netem where there is one, else the userspace path (NFQUEUE).
        let shaping = if kernel_offers_netem() {
            "netem"
        } else {
            "userspace"
        };
        assert_eq!(row["shaping"], shaping, "{row}");
        assert!(row["disk_free_gib"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["clock_offset_ms"].as_f64().unwrap().abs() < 1000.0,
            "{row}"
        );
    }

    // --peers: each host's headroom for its share, read over its SSH link.
    let out = launcher(
        runs.path(),
        &[
            "hosts", "check", "--hosts", hosts, "--peers", "40", "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let placed: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peers"].as_u64().unwrap())
        .sum();
    assert_eq!(placed, 40, "{rows}");
    for row in rows.as_array().unwrap() {
        let limits: Vec<&str> = row["headroom"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["limit"].as_str().unwrap())
            .collect();
        assert_eq!(
            limits,
            [
                "threads",
                "dockerd_files",
                "memory",
                "idle_cpu",
                "neighbour_table",
                "inotify",
                "disk",
                "disk_for_logs"
            ],
            "{row}"
        );
        assert!(row["facts"]["pid_max"].as_u64().unwrap() > 0, "{row}");
        assert!(
            row["facts"]["dockerd_nofile"].as_u64().unwrap() > 0,
            "{row}"
        );
        assert!(
            row["facts"]["mem_available_kib"].as_u64().unwrap() > 0,
            "{row}"
        );
        assert!(row["facts"]["cpus"].as_u64().unwrap() > 0, "{row}");
    }

    // A host stopped by hand is unreachable, with ssh's reason, and the check fails.
    let stop = Command::new("docker")
        .args(["stop", "-t", "1", &lab.container(2)])
        .output()
        .unwrap();
    assert!(stop.status.success());
    let out = launcher(runs.path(), &["hosts", "check", "--hosts", hosts]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let row = table.lines().find(|l| l.starts_with("lab-2")).unwrap();
    assert!(row.contains(" NO "), "{table}");
    assert!(
        table.contains("lab-2: host `lab-2` (root@") && table.contains("unreachable over SSH"),
        "{table}"
    );
    let lab1 = table.lines().find(|l| l.starts_with("lab-1")).unwrap();
    assert!(lab1.contains(" yes "), "{table}");
}

#[test]
fn a_host_key_mismatch_is_bad_input_and_creates_nothing() {
    let lab = Lab::up("hostkey", 2);
    // known_hosts with another key for lab-2's address.
    let dir = lab.dir.path();
    let wrong = dir.join("wrong_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .unwrap();
    assert!(keygen.success());
    let known = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    let lines: Vec<&str> = known.lines().collect();
    let addr2 = lines[1].split_whitespace().next().unwrap();
    let wrong_pub = std::fs::read_to_string(wrong.with_extension("pub")).unwrap();
    let key: Vec<&str> = wrong_pub.split_whitespace().take(2).collect();
    std::fs::write(
        dir.join("known_hosts_wrong"),
        format!("{}\n{addr2} {}\n", lines[0], key.join(" ")),
    )
    .unwrap();
    let hosts = std::fs::read_to_string(&lab.hosts_file)
        .unwrap()
        .replace("\"known_hosts\"", "\"known_hosts_wrong\"");
    let bad = dir.join("bad-hosts.toml");
    std::fs::write(&bad, hosts).unwrap();

    let runs = tempfile::tempdir().unwrap();
    let out = launcher(
        runs.path(),
        &["spawn", "--hosts", bad.to_str().unwrap(), "--peers", "4"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("host `lab-2`") && stderr.contains("known_hosts"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(runs.path()).unwrap().count(),
        0,
        "no run directory"
    );
    for i in 1..=2 {
        assert_eq!(
            lab.docker_in(i, &["ps", "-aq"]).trim(),
            "",
            "containers on lab host {i}"
        );
        let swarm = lab.docker_in(i, &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        assert_eq!(swarm.trim(), "inactive", "lab host {i} joined no swarm");
    }
}

#[test]
fn a_dropped_ssh_master_is_reconnected() {
    let lab = Lab::up("reconnect", 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let file = cmesh_launcher::hosts::load(&lab.hosts_file).unwrap();
        let host = cmesh_launcher::cluster::host::Host::connect(file.hosts[0].clone(), &file.ssh)
            .await
            .unwrap();
        host.engine.version().await.unwrap();
        let ctl = host.link().unwrap().control_socket().await;
        let exit = Command::new("ssh")
            .arg("-S")
            .arg(&ctl)
            .args(["-O", "exit", "lab"])
            .output()
            .unwrap();
        assert!(exit.status.success(), "{}", text(&exit.stderr));
        assert!(host.engine.version().await.is_err(), "the master is gone");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if host.engine.version().await.is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no reconnect within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let out = host.exec("echo ok", b"").await.unwrap();
        assert_eq!(out.stdout.trim(), "ok");
    });
}

#[test]
fn lab_and_hosts_commands_refuse_bad_input() {
    let scratch = tempfile::tempdir().unwrap();
    let untouched = scratch.path().join("lab");
    let missing = scratch.path().join("nope.toml");
    let keyless = scratch.path().join("keyless.toml");
    std::fs::write(
        &keyless,
        "[ssh]\nidentity_file = \"no-such-key\"\n\n[[host]]\nname = \"a\"\nssh = \"root@10.0.0.9\"\n",
    )
    .unwrap();
    let dir = untouched.to_str().unwrap();
    assert_bad_input(
        "launcher",
        &[
            (
                vec!["lab", "up", "--hosts", "0", "--dir", dir],
                "--hosts must be between 1 and 20",
            ),
            (
                vec!["hosts", "check", "--hosts", missing.to_str().unwrap()],
                "cannot read the hosts file",
            ),
            (
                vec!["hosts", "check", "--hosts", keyless.to_str().unwrap()],
                ":2: [ssh] `identity_file`",
            ),
            (
                vec!["spawn", "--peers", "2", "--host-label", "zone"],
                "--host-label `zone`: use KEY=VALUE",
            ),
            (
                vec!["spawn", "--peers", "2", "--host-label", "zone=mars"],
                "no host in hosts.toml matches --host-label zone=mars",
            ),
        ],
        dir,
    );
}

/// `docker exec` into container `inner` on lab host `i`; true if it exited 0.
fn exec_in(lab: &Lab, i: usize, inner: &str, args: &[&str]) -> bool {
    Command::new("docker")
        .args(["exec", &lab.container(i), "docker", "exec", inner])
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_stopped_host_stops_nothing_else_and_its_checkpoints_come_back() {
    let lab = Lab::up("lost", 3);
    let runs = tempfile::tempdir().unwrap();
    let id = format!("t{}-lost", std::process::id() % 100_000);
    let hosts = lab.hosts_file.to_str().unwrap();
    let out = launcher(
        runs.path(),
        &[
            "spawn",
            "--hosts",
            hosts,
            "--peers",
            "15",
            "--duration",
            "40s",
            "--run-id",
            &id,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let spawned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spawned["placement"]["lab-3"], 5, "{spawned}");
    let manifest = read_json(&runs.path().join(&id).join("manifest.json"));
    let on_3: Vec<String> = manifest["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["host"] == "lab-3")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    // Every peer writing, and each of lab-3's peers checkpointed (peers take theirs at
    // different phases of the interval): then stop lab-3.
    cmesh_testkit::wait_until(
        "15 peers running and a checkpoint of every peer on lab-3",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let s = launcher(runs.path(), &["status", "--json", "--run", &id]);
            let v: Value = serde_json::from_slice(&s.stdout).ok()?;
            (v["coordinator"]["counts"]["running"] == 15
                && on_3.iter().all(|p| {
                    let path = format!("/reports/{p}/checkpoint.json");
                    exec_in(&lab, 3, p, &["test", "-s", &path])
                }))
            .then_some(())
        },
    )
    .unwrap();
    // lab-3 frozen (a host so busy that sshd accepts and says nothing looks the same):
    // status answers within 10 s with the other hosts' peers and lab-3 as not answering.
    // The kernel's freezer can time out on a host this busy ("unable to freeze"): it is
    // asked again, a few times, before the test gives up.
    let pause_once = || {
        Command::new("docker")
            .args(["pause", &lab.container(3)])
            .output()
            .unwrap()
    };
    let mut pause = pause_once();
    for _ in 0..4 {
        if pause.status.success() || !text(&pause.stderr).contains("unable to freeze") {
            break;
        }
        pause = pause_once();
    }
    assert!(pause.status.success(), "{}", text(&pause.stderr));
    let asked = std::time::Instant::now();
    let s = launcher(runs.path(), &["status", "--json", "--run", &id]);
    let took = asked.elapsed();
    let unpause = Command::new("docker")
        .args(["unpause", &lab.container(3)])
        .output()
        .unwrap();
    assert!(unpause.status.success(), "{}", text(&unpause.stderr));
    assert_eq!(s.status.code(), Some(1), "{}", text(&s.stderr));
    assert!(took < Duration::from_secs(10), "status took {took:?}");
    let status: Value = serde_json::from_slice(&s.stdout).unwrap();
    let silent = status["unreachable_hosts"].as_array().unwrap();
    assert_eq!(silent.len(), 1, "{status}");
    assert_eq!(silent[0]["name"], "lab-3");
    assert!(
        silent[0]["reason"]
            .as_str()
            .unwrap()
            .contains("has not answered"),
        "{status}"
    );
    for h in ["lab-1", "lab-2"] {
        assert_eq!(status["hosts"][h]["peers"]["running"], 5, "{status}");
    }

    let stop = Command::new("docker")
        .args(["stop", "-t", "1", &lab.container(3)])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop.stderr));

    // status: the lost host with ssh's reason, the others as usual; exit 1.
    let s = launcher(runs.path(), &["status", "--json", "--run", &id]);
    assert_eq!(s.status.code(), Some(1), "{}", text(&s.stderr));
    let status: Value = serde_json::from_slice(&s.stdout).unwrap();
    let lost = status["unreachable_hosts"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{status}");
    assert_eq!(lost[0]["name"], "lab-3");
    assert!(
        lost[0]["reason"].as_str().unwrap().contains("lab-3"),
        "{status}"
    );
    assert_eq!(status["hosts"]["lab-1"]["placed"], 5, "{status}");

    // wait: ends when the other hosts' peers are done; lab-3's are unreachable; exit 1.
    let w = launcher(runs.path(), &["wait", "--json", "--run", &id]);
    assert_eq!(w.status.code(), Some(1), "{}", text(&w.stderr));
    let waited: Value = serde_json::from_slice(&w.stdout).unwrap();
    for p in waited["peers"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_owned();
        if on_3.contains(&name) {
            assert!(p["unreachable"].is_string(), "{p}");
        } else {
            assert_eq!(p["exit_code"], 0, "the other hosts' peers finish: {p}");
        }
    }

    // extract: everything reachable, lab-3's containers listed as unreachable; exit 1.
    let x = launcher(runs.path(), &["extract", "--json", "--run", &id]);
    assert_eq!(x.status.code(), Some(1), "{}", text(&x.stderr));
    let index: Value = serde_json::from_slice(&x.stdout).unwrap();
    for name in &on_3 {
        assert!(index["unreachable"][name].is_string(), "{name}: {index}");
    }
    let extracted = index["containers"].as_array().unwrap();
    assert_eq!(extracted.len(), 11, "10 peers and the coordinator");
    assert!(
        extracted.iter().all(|c| c["report"] == "complete"),
        "{index}"
    );

    // analyze: on what was extracted; lab-3's peers unreachable; exit 1.
    let dir = runs.path().join(&id);
    let a = launcher(runs.path(), &["analyze", dir.to_str().unwrap(), "--json"]);
    assert_eq!(a.status.code(), Some(1), "{}", text(&a.stderr));
    let summary: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(summary["peers_reported"], 10, "{summary}");
    assert_eq!(summary["peers_unreachable"].as_array().unwrap().len(), 5);

    // down: removes what it reaches, says what remains on lab-3; exit 1.
    let d = launcher(runs.path(), &["down", "--json", "--run", &id]);
    assert_eq!(d.status.code(), Some(1), "{}", text(&d.stderr));
    let removed: Value =
        serde_json::from_slice(&d.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&d.stderr)));
    assert_eq!(removed["containers"], 11, "{removed}");
    assert_eq!(removed["remaining"][0]["host"], "lab-3", "{removed}");
    let of_run = format!("label=io.cmesh.run={id}");
    for i in [1, 2] {
        let left = lab.docker_in(i, &["ps", "-aq", "--filter", &of_run]);
        assert_eq!(left.trim(), "", "lab host {i}");
    }

    // lab-3 comes back: extract fetches what survived, the checkpoints included.
    let start = Command::new("docker")
        .args(["start", &lab.container(3)])
        .output()
        .unwrap();
    assert!(start.status.success(), "{}", text(&start.stderr));
    let last = std::cell::RefCell::new(String::new());
    cmesh_testkit::wait_until(
        "extract with lab-3 back",
        Duration::from_secs(180),
        Duration::from_secs(2),
        || {
            let x = launcher(runs.path(), &["extract", "--run", &id]);
            *last.borrow_mut() = text(&x.stderr);
            (x.status.code() == Some(0)).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}; the last extract said:\n{}", last.borrow()));
    let index = read_json(&dir.join("extract/extract.json"));
    assert!(index.get("unreachable").is_none(), "{index}");
    for name in &on_3 {
        let c = index["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap();
        assert_eq!(c["report"], "checkpoint", "{c}");
    }
    let a = launcher(runs.path(), &["analyze", dir.to_str().unwrap(), "--json"]);
    let summary: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(summary["peers_reported"], 15, "{summary}");
    assert!(summary.get("peers_unreachable").is_none(), "{summary}");
    let lost = summary["peers_lost"].as_array().unwrap();
    assert_eq!(lost.len(), 5, "{summary}");
    for row in summary["per_peer"].as_array().unwrap() {
        if on_3.contains(&row["peer"].as_str().unwrap().to_owned()) {
            assert_eq!(row["outcome"], "lost", "{row}");
            assert!(row["records_produced"].as_u64().unwrap() > 0, "{row}");
        }
    }
    // A later down finishes the job.
    let d = launcher(runs.path(), &["down", "--run", &id]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d.stderr));
    for i in 1..=3 {
        let left = lab.docker_in(i, &["ps", "-aq", "--filter", &of_run]);
        assert_eq!(left.trim(), "", "lab host {i}");
        let volumes = lab.docker_in(i, &["volume", "ls", "-q", "--filter", &of_run]);
        assert_eq!(volumes.trim(), "", "volumes on lab host {i}");
    }
}
