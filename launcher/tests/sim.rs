//! spawn, wait, extract, down and chaos on the simulated engine: the orchestration code
//! the real engines run, without Docker, in virtual time (tokio's paused clock), so each
//! test is fast and deterministic.

use cmesh_launcher::cmd::{down, wait};
use cmesh_launcher::engine::sim::{Behaviour, Cluster, Model};
use cmesh_launcher::engine::ContainerState;
use cmesh_launcher::faults::containers::{on_containers, Op};
use cmesh_launcher::results::archive::Caps;
use cmesh_launcher::results::extract::{self, ReportState};
use cmesh_launcher::run::dir::RunDir;
use cmesh_launcher::run::live::LiveRun;
use cmesh_launcher::simlab::{self, SimLab};
use cmesh_launcher::spawn;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Peers exit 0 after `peer_secs` plus a spread by index; the coordinator a little later.
fn lab(hosts: usize, spread_secs: u64) -> SimLab {
    let cluster = Cluster::new(
        Model::calibrated(),
        Arc::new(move |name: &str, labels: &BTreeMap<String, String>| {
            // Index-scrambled, so peers exit in another order than they started.
            simlab::behaviour(name, labels, Duration::from_secs(40 + spread_secs), |i| {
                Duration::from_secs(20 + (i * 7919) % spread_secs.max(1))
            })
        }),
    );
    SimLab::new(cluster, hosts, 1000).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_run_goes_from_spawn_to_down_with_peers_exiting_in_any_order() {
    let lab = lab(3, 17);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    let spawned = spawn::spawn_with(&connector, lab.request(runs.path(), "sim1", 30))
        .await
        .unwrap();
    assert_eq!(spawned.peers, 30);
    assert_eq!(spawned.started, 30);
    assert_eq!(spawned.placement.values().sum::<usize>(), 30);
    assert_eq!(spawned.placement.len(), 3, "every host gets peers");
    assert_eq!(spawned.image_transport, "local");
    let run = RunDir::open(runs.path(), Some("sim1")).unwrap();
    let manifest = run.read_manifest().unwrap();
    assert_eq!(manifest.coordinator.host, "sim-1");

    let waited = wait::wait_with(&connector, &run, Duration::from_secs(600), &[])
        .await
        .unwrap();
    assert_eq!(waited.peers.len(), 30);
    assert!(waited.failed().is_empty(), "{:?}", waited.failed());
    assert!(waited.lost_hosts.is_empty());

    let x = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    assert!(x.index.errors.is_empty(), "{:?}", x.index.errors);
    assert_eq!(x.index.containers.len(), 31);
    let complete = x
        .index
        .containers
        .iter()
        .filter(|c| c.report == ReportState::Complete)
        .count();
    assert_eq!(complete, 30, "every peer's report came out");
    // A second extract verifies instead of fetching again.
    let again = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    assert_eq!((again.fetched, again.verified), (0, 31));

    let removed = down::down_with(&connector, &run, false, 16).await.unwrap();
    assert_eq!(removed.containers, 31);
    for host in ["sim-1", "sim-2", "sim-3"] {
        assert!(
            lab.cluster.containers(host).is_empty(),
            "{host} has containers left"
        );
        assert!(
            lab.cluster.volumes(host).is_empty(),
            "{host} has volumes left"
        );
    }
    assert!(lab.cluster.networks("sim-1").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_re_spawn_creates_only_what_is_missing_and_a_taken_name_is_no_error() {
    let lab = lab(2, 5);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim2", 8))
        .await
        .unwrap();
    // Remove two peers, as an interrupted spawn would have left them missing.
    let run = RunDir::open(runs.path(), Some("sim2")).unwrap();
    let manifest = run.read_manifest().unwrap();
    let live = LiveRun::load_with(&connector, &run).await.unwrap();
    for p in manifest.peers.iter().take(2) {
        let h = live.host_index(&p.host).unwrap();
        live.hosts[h]
            .engine
            .remove_container(&p.name)
            .await
            .unwrap();
    }
    let again = spawn::spawn_with(&connector, lab.request(runs.path(), "sim2", 8))
        .await
        .unwrap();
    assert_eq!((again.already_existed, again.started), (6, 2));
    let live = LiveRun::load_with(&connector, &run).await.unwrap();
    assert_eq!(live.states.len(), 9, "8 peers and the coordinator");
    // Creating a container whose name is taken is a conflict the engine reports as such.
    let spec = cmesh_launcher::engine::ContainerSpec {
        name: manifest.peers[3].name.clone(),
        image: manifest.images.peer.tag.clone(),
        ..Default::default()
    };
    let h = live.host_index(&manifest.peers[3].host).unwrap();
    let e = live.hosts[h]
        .engine
        .create_container(&spec)
        .await
        .unwrap_err();
    assert!(
        matches!(e, cmesh_launcher::engine::EngineError::Conflict(_)),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_lost_during_wait_makes_its_peers_unreachable_and_the_rest_still_end() {
    let lab = lab(3, 10);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim3", 30))
        .await
        .unwrap();
    let run = RunDir::open(runs.path(), Some("sim3")).unwrap();
    // sim-3 goes away 5 s into the wait, before any peer has exited.
    lab.cluster.vanish_at(
        "sim-3",
        tokio::time::Instant::now() + Duration::from_secs(5),
    );
    let waited = wait::wait_with(&connector, &run, Duration::from_secs(600), &[])
        .await
        .unwrap();
    let manifest = run.read_manifest().unwrap();
    let on_lost: Vec<&str> = manifest
        .peers
        .iter()
        .filter(|p| p.host == "sim-3")
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(on_lost.len(), 10);
    assert_eq!(waited.lost_hosts.len(), 1);
    assert_eq!(waited.lost_hosts[0].name, "sim-3");
    for e in &waited.peers {
        if on_lost.contains(&e.name.as_str()) {
            assert!(e.failed() && e.unreachable.is_some(), "{e:?}");
            assert!(e.reason().contains("unreachable"), "{}", e.reason());
        } else {
            assert_eq!(e.exit_code, Some(0), "{e:?}");
        }
    }
    assert_eq!(waited.failed().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_host_lost_during_extract_loses_only_its_own_containers() {
    let lab = lab(3, 10);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim4", 30))
        .await
        .unwrap();
    let run = RunDir::open(runs.path(), Some("sim4")).unwrap();
    wait::wait_with(&connector, &run, Duration::from_secs(600), &[])
        .await
        .unwrap();
    // sim-2 answers the listing (about 5 ms in the model), then goes away before any of
    // its containers has been read.
    lab.cluster.vanish_at(
        "sim-2",
        tokio::time::Instant::now() + Duration::from_millis(6),
    );
    let x = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    let manifest = run.read_manifest().unwrap();
    let on_lost: Vec<&String> = manifest
        .peers
        .iter()
        .filter(|p| p.host == "sim-2")
        .map(|p| &p.name)
        .collect();
    // Every container on sim-2 is listed as unreachable, with the reason; nothing is an
    // error of its own.
    for name in &on_lost {
        let e = x
            .index
            .unreachable
            .get(*name)
            .map(String::as_str)
            .unwrap_or("");
        assert!(e.contains("sim-2") && e.contains("gone"), "{name}: {e}");
    }
    assert_eq!(
        x.index.unreachable.len(),
        on_lost.len(),
        "{:?}",
        x.index.unreachable
    );
    assert!(x.index.errors.is_empty(), "{:?}", x.index.errors);
    for c in &x.index.containers {
        if c.host != "sim-2" && c.role == "peer" {
            assert_eq!(c.report, ReportState::Complete, "{}", c.name);
        }
    }
    let others = x
        .index
        .containers
        .iter()
        .filter(|c| c.host != "sim-2")
        .count();
    assert_eq!(
        others, 21,
        "every container on the other hosts is extracted"
    );
    // Back again: a second extract completes the job.
    lab.cluster.restore("sim-2");
    let again = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    assert!(again.index.errors.is_empty(), "{:?}", again.index.errors);
    assert!(
        again.index.unreachable.is_empty(),
        "{:?}",
        again.index.unreachable
    );
    assert_eq!(again.index.containers.len(), 31);
}

#[tokio::test(start_paused = true)]
async fn chaos_kills_pauses_and_restarts_containers_on_their_hosts() {
    let cluster = Cluster::new(
        Model::calibrated(),
        Arc::new(|_: &str, _: &BTreeMap<String, String>| Behaviour::Forever),
    );
    let lab = SimLab::new(cluster, 2, 100).unwrap();
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim5", 6))
        .await
        .unwrap();
    let run = RunDir::open(runs.path(), Some("sim5")).unwrap();
    let manifest = run.read_manifest().unwrap();
    let live = LiveRun::load_with(&connector, &run).await.unwrap();
    let names: Vec<String> = manifest.peers.iter().map(|p| p.name.clone()).collect();
    let state = |name: &str| {
        let p = manifest.peers.iter().find(|p| p.name == name).unwrap();
        lab.cluster.containers(&p.host)[name]
    };
    let failed = on_containers(&manifest, &live.hosts, &names[0..2], Op::Kill).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(state(&names[0]), ContainerState::Exited);
    let failed = on_containers(&manifest, &live.hosts, &names[2..4], Op::Pause).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(state(&names[2]), ContainerState::Paused);
    // Pausing again (a re-run after an interruption) is no failure.
    assert!(
        on_containers(&manifest, &live.hosts, &names[2..4], Op::Pause)
            .await
            .is_empty()
    );
    assert!(
        on_containers(&manifest, &live.hosts, &names[2..4], Op::Unpause)
            .await
            .is_empty()
    );
    assert_eq!(state(&names[3]), ContainerState::Running);
    assert!(
        on_containers(&manifest, &live.hosts, &names[4..5], Op::Restart)
            .await
            .is_empty()
    );
    assert_eq!(state(&names[4]), ContainerState::Running);
    // A name not in the run, and a host that is gone, are failures with the reason.
    lab.cluster
        .vanish_at(&manifest.peers[5].host, tokio::time::Instant::now());
    let failed = on_containers(
        &manifest,
        &live.hosts,
        &[names[5].clone(), "stranger".into()],
        Op::Kill,
    )
    .await;
    assert!(failed["stranger"].contains("not in the run"), "{failed:?}");
    assert!(failed[&names[5]].contains("unreachable"), "{failed:?}");
}

#[tokio::test(start_paused = true)]
async fn down_removes_what_it_can_reach_and_a_later_down_finishes() {
    let lab = lab(3, 5);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim6", 12))
        .await
        .unwrap();
    let run = RunDir::open(runs.path(), Some("sim6")).unwrap();
    wait::wait_with(&connector, &run, Duration::from_secs(600), &[])
        .await
        .unwrap();
    lab.cluster.vanish_at("sim-3", tokio::time::Instant::now());
    let x = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    assert_eq!(x.index.unreachable.len(), 4, "{:?}", x.index.unreachable);
    let removed = down::down_with(&connector, &run, false, 16).await.unwrap();
    assert_eq!(removed.remaining.len(), 1, "{:?}", removed.remaining);
    let left = &removed.remaining[0];
    assert_eq!(left.host, "sim-3");
    assert_eq!(
        left.objects.iter().filter(|o| o.contains("-peer-")).count(),
        4,
        "{left:?}"
    );
    assert!(
        left.objects.iter().any(|o| o.ends_with("-reports")),
        "{left:?}"
    );
    assert!(left.reason.contains("sim-3"), "{}", left.reason);
    for host in ["sim-1", "sim-2"] {
        assert!(lab.cluster.containers(host).is_empty(), "{host}");
        assert!(lab.cluster.volumes(host).is_empty(), "{host}");
    }
    assert!(
        lab.cluster.networks("sim-1").is_empty(),
        "the manager answered"
    );
    // The host comes back: extract fetches what survived there and keeps what it had
    // of the containers down removed; the same down finishes the job.
    lab.cluster.restore("sim-3");
    let x = extract::extract_with(&connector, &run, 16, Caps::default())
        .await
        .unwrap();
    assert!(x.index.errors.is_empty(), "{:?}", x.index.errors);
    assert!(x.index.unreachable.is_empty(), "{:?}", x.index.unreachable);
    assert_eq!(x.index.containers.len(), 13);
    assert_eq!((x.fetched, x.verified), (4, 9));
    let again = down::down_with(&connector, &run, false, 16).await.unwrap();
    assert!(again.remaining.is_empty(), "{:?}", again.remaining);
    assert_eq!(again.containers, 4);
    assert!(lab.cluster.containers("sim-3").is_empty());
    assert!(lab.cluster.volumes("sim-3").is_empty());
}

#[tokio::test(start_paused = true)]
async fn spawn_refuses_a_missing_host_or_leaves_it_out_when_allowed() {
    let lab = lab(3, 5);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    lab.cluster.vanish_at("sim-3", tokio::time::Instant::now());
    let e = spawn::spawn_with(&connector, lab.request(runs.path(), "sim7", 12))
        .await
        .unwrap_err();
    assert_eq!(cmesh_common::exit::code(&e), 1, "a lost host is a failure");
    assert!(format!("{e:#}").contains("sim-3"), "{e:#}");
    assert!(
        RunDir::open(runs.path(), Some("sim7")).is_err(),
        "nothing created"
    );
    assert!(lab.cluster.containers("sim-1").is_empty());

    let mut req = lab.request(runs.path(), "sim7", 12);
    req.allow_missing_hosts = true;
    let spawned = spawn::spawn_with(&connector, req).await.unwrap();
    assert_eq!(spawned.peers, 12);
    assert_eq!(
        spawned.placement.keys().cloned().collect::<Vec<_>>(),
        vec!["sim-1", "sim-2"]
    );
    let manifest = RunDir::open(runs.path(), Some("sim7"))
        .unwrap()
        .read_manifest()
        .unwrap();
    assert_eq!(manifest.hosts.len(), 2);
    assert_eq!(manifest.hosts_missing_at_spawn.len(), 1);
    assert_eq!(manifest.hosts_missing_at_spawn[0].name, "sim-3");
    // The run goes on without it: wait sees no lost host.
    let waited = wait::wait_with(
        &connector,
        &RunDir::open(runs.path(), Some("sim7")).unwrap(),
        Duration::from_secs(600),
        &[],
    )
    .await
    .unwrap();
    assert!(waited.failed().is_empty() && waited.lost_hosts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn spawn_refuses_a_run_past_a_hosts_hard_limit_and_creates_nothing() {
    use cmesh_launcher::engine::facts::HostFacts;
    let lab = lab(2, 5);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    // sim-2 has a low dockerd open-file limit and a small neighbour table: 40 peers (20
    // there, 8 descriptors each) pass both.
    lab.cluster.set_facts(
        "sim-2",
        HostFacts {
            dockerd_nofile: Some(200),
            dockerd_fds: Some(50),
            gc_thresh3: Some(100),
            ..HostFacts::default()
        },
    );
    let e = spawn::spawn_with(&connector, lab.request(runs.path(), "lim", 40))
        .await
        .unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(cmesh_common::exit::code(&e), 2, "{msg}");
    assert!(
        msg.contains("host `sim-2` (20 peers): dockerd files needs 160 / 150")
            && msg.contains("LimitNOFILE")
            && msg.contains("neighbour table needs 105 / 100")
            && msg.contains("gc_thresh3"),
        "{msg}"
    );
    assert!(!msg.contains("sim-1"), "sim-1's limits are unknown: {msg}");
    assert!(
        RunDir::open(runs.path(), Some("lim")).is_err(),
        "nothing created"
    );
    for host in ["sim-1", "sim-2"] {
        assert!(lab.cluster.containers(host).is_empty());
        assert!(lab.cluster.networks(host).is_empty());
    }
    // 10 peers fit: spawned.
    let spawned = spawn::spawn_with(&connector, lab.request(runs.path(), "lim", 10))
        .await
        .unwrap();
    assert_eq!(spawned.peers, 10);
}

/// A `Write` the test reads while `logs -f` writes into it.
#[derive(Clone, Default)]
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Waits (in virtual time) until `cond` holds; fails after a minute.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(start_paused = true)]
async fn logs_follow_a_glob_through_a_lost_host_and_pick_it_up_again() {
    use cmesh_launcher::cmd::logs::{self, Request};
    let lab = lab(3, 5);
    let runs = tempfile::tempdir().unwrap();
    let connector = lab.connector();
    spawn::spawn_with(&connector, lab.request(runs.path(), "sim9", 12))
        .await
        .unwrap();
    let run = RunDir::open(runs.path(), Some("sim9")).unwrap();
    let manifest = run.read_manifest().unwrap();
    let on_3: Vec<String> = manifest
        .peers
        .iter()
        .filter(|p| p.host == "sim-3")
        .map(|p| p.name.clone())
        .collect();
    assert!(!on_3.is_empty());
    let (out, notes) = (Sink::default(), Sink::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follow = {
        let (connector, run, mut out, mut notes) =
            (connector.clone(), run.clone(), out.clone(), notes.clone());
        tokio::spawn(async move {
            let request = Request {
                selector: Some("peer-*".into()),
                host_timeout: None,
                follow: true,
                since: None,
            };
            logs::logs_with(&connector, &run, &request, &mut out, &mut notes, stopped).await
        })
    };
    until("every peer's line", || out.text().lines().count() == 12).await;
    assert!(
        !out.text().contains("coordinator"),
        "the glob picks peers only: {}",
        out.text()
    );
    lab.cluster.vanish_at("sim-3", tokio::time::Instant::now());
    until("sim-3 said lost", || {
        notes.text().contains("host `sim-3` is lost")
    })
    .await;
    lab.cluster.restore("sim-3");
    until("sim-3 said back", || {
        notes.text().contains("host `sim-3` is back")
    })
    .await;
    // A few more rounds after it is back: nothing is shown twice.
    tokio::time::sleep(logs::ROUND * 3).await;
    stop.send(()).unwrap();
    follow.await.unwrap().unwrap();
    let text = out.text();
    assert_eq!(text.lines().count(), 12, "{text}");
    for name in &on_3 {
        assert_eq!(text.matches(&format!("{name} | ")).count(), 1, "{text}");
    }
}
