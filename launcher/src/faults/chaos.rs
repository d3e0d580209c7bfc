//! `launcher chaos`: faults injected into a running run.
//!
//! - Link shaping and partitions go to the coordinator (`POST /v1/chaos`), which records
//!   them in its timeline and hands them to the peers; each selected peer applies it to
//!   itself within about a second, exactly as a plan's `[[fault]]` (same selectors, same
//!   paths, `chaos#N` in its report).
//! - `kill`, `pause` and `restart` are recorded with the coordinator the same way (a kill
//!   marks its peers failed, so nobody waits for them), then done here through the Docker
//!   API of each container's host. `pause` holds for `--for`, then unpauses (also on
//!   Ctrl-C). `restart` is a crash and a start: SIGKILL, then the same container again;
//!   the peer rejoins the run with an empty store and measures its resync.
//!
//! Every action is appended to `runs/<id>/chaos.jsonl`, which `analyze` reads, and shows
//! in `analysis/summary.md` under Faults.

use crate::cluster::host::{Connector, Host};
use crate::faults::containers::{on_containers, Op};
use crate::run::dir::{RunDir, RunManifest};
use cmesh_common::exit::bad_input;
use cmesh_common::faults::{self, FaultSpec};
use cmesh_common::protocol::{ChaosAction, ChaosRequest, ErrorBody};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// What to inject, from the command line.
#[derive(Clone, Debug, Default)]
pub struct ChaosOrder {
    /// delay, loss, duplicate, corrupt, reorder, rate, partition, kill, pause or restart.
    pub action: String,
    /// A selector (all, 1-5, name:GLOB, group:NAME, N%) or a bare name glob.
    pub peers: Option<String>,
    /// `N%` picked with `seed`.
    pub random: Option<String>,
    pub seed: Option<u64>,
    /// Shaping only the traffic towards these peers (a selector, like `peers`).
    pub to: Option<String>,
    pub ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub percent: Option<f64>,
    pub kbit: Option<u64>,
    /// `NAME:SELECTOR`, for partitions.
    pub groups: Vec<String>,
    /// How long; left out: until the peers stop writing (pause needs it).
    pub duration: Option<String>,
}

/// One line of `chaos.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosRecord {
    pub action: ChaosAction,
    /// Who carries it out: `peers`, or `docker` (the launcher).
    pub by: String,
    /// For `pause`: when the containers were unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_unix_ms: Option<u64>,
    /// Containers the Docker API refused, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

pub const CHAOS_FILE: &str = "chaos.jsonl";

/// A peer selector for `run`: a bare glob (`peer-00[0-4]*`) is a `name:` glob, and a
/// name glob that does not start with the run's prefix gets it, so `peer-0003` means
/// `<run>-peer-0003`.
pub fn peer_selector(value: &str, run_id: &str) -> String {
    let value = value.trim();
    let glob = match value.strip_prefix("name:") {
        Some(g) => g,
        // Selectors as they are; numbers too, so a bad range gets the range's error.
        None if faults::Selector::parse(value).is_ok()
            || value.chars().all(|c| "0123456789-,.% ".contains(c)) =>
        {
            return value.to_owned()
        }
        None => value,
    };
    if glob.starts_with(&format!("{run_id}-")) || glob.starts_with('*') {
        format!("name:{glob}")
    } else {
        format!("name:{run_id}-{glob}")
    }
}

/// The request for `order`, checked the way a plan's fault is; errors are bad input.
pub fn request(order: &ChaosOrder, run_id: &str) -> anyhow::Result<ChaosRequest> {
    let peers = match (&order.peers, &order.random) {
        (Some(_), Some(_)) => {
            return Err(bad_input("give --peers or --random, not both".to_owned()))
        }
        (Some(p), None) => peer_selector(p, run_id),
        (None, Some(r)) => {
            let r = r.trim();
            if r.ends_with('%') {
                r.to_owned()
            } else {
                format!("{r}%")
            }
        }
        (None, None) => "all".into(),
    };
    let mut groups = BTreeMap::new();
    for g in &order.groups {
        let (name, sel) = g.split_once(':').ok_or_else(|| {
            bad_input(format!(
                "--groups `{g}`: use NAME:PEERS, e.g. a:1-50 b:51-100 (peers are numbered from 1, as in container names)"
            ))
        })?;
        groups.insert(name.to_owned(), peer_selector(sel, run_id));
    }
    let is_partition = order.action == "partition";
    if is_partition == groups.is_empty() {
        return Err(bad_input(if is_partition {
            "partition needs --groups NAME:PEERS NAME:PEERS, e.g. --groups a:1-50 b:51-100"
                .to_owned()
        } else {
            format!("--groups is for partition, not {}", order.action)
        }));
    }
    if order.action == "pause" && order.duration.is_none() {
        return Err(bad_input(
            "pause needs --for (how long the containers stay paused), e.g. --for 10s",
        ));
    }
    let fault = FaultSpec {
        at: "0s".into(),
        duration: order.duration.clone(),
        peers,
        to: order.to.as_deref().map(|t| peer_selector(t, run_id)),
        action: order.action.clone(),
        ms: order.ms,
        jitter_ms: order.jitter_ms,
        percent: order.percent,
        kbit: order.kbit,
        groups: is_partition.then(|| groups.keys().cloned().collect()),
        every: None,
    };
    // The same checks as a plan's, with the flags' names.
    faults::check(&groups, std::slice::from_ref(&fault)).map_err(|e| {
        bad_input(
            e.replace("[[fault]] #1 ", "")
                .replace("`ms`", "--ms")
                .replace("`percent`", "--percent")
                .replace("`kbit`", "--kbit")
                .replace("`for`", "--for")
                .replace("`peers`", "--peers")
                .replace("`to`", "--to")
                .replace("[groups]", "--groups")
                .replace("ms = N", "--ms N")
                .replace("percent = N", "--percent N")
                .replace("kbit = N", "--kbit N"),
        )
    })?;
    Ok(ChaosRequest {
        fault,
        groups,
        seed: order.seed,
        id: None,
    })
}

/// The running coordinator of `run`: its API base and the token.
pub(crate) async fn coordinator(
    run: &RunDir,
    manifest: &RunManifest,
    hosts: &[Host],
) -> anyhow::Result<(String, String)> {
    let manager = crate::cluster::host::manager(hosts)?;
    crate::run::coordinator::coordinator_api(manager, run, &manifest.coordinator.name)
        .await
        .map_err(|e| {
            bad_input(format!(
                "run {} is not running, so there is nothing to inject into: {e:#}",
                run.id
            ))
        })
}

/// Records `req` with the coordinator; a refusal (4xx) is bad input.
pub(crate) async fn post(
    base: &str,
    token: &str,
    req: &ChaosRequest,
) -> anyhow::Result<ChaosAction> {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chaos"))
        .header(cmesh_common::token::HEADER, token)
        .timeout(Duration::from_secs(10))
        .json(req)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the coordinator: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let message = response
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| status.to_string());
        return Err(if status.is_client_error() {
            bad_input(format!("the coordinator refused the action: {message}"))
        } else {
            anyhow::anyhow!("the coordinator failed: {message}")
        });
    }
    Ok(response.json().await?)
}

/// Sends `order` to the run, does the Docker part, and records it. Returns the record.
pub async fn chaos(run: &RunDir, order: &ChaosOrder) -> anyhow::Result<ChaosRecord> {
    let req = request(order, &run.id)?;
    let manifest = run.read_manifest()?;
    let hosts = Connector::Docker
        .connect_all(&manifest.hosts_file())
        .await
        .require_all()?;
    let (base, token) = coordinator(run, &manifest, &hosts).await?;
    let action = post(&base, &token, &req).await?;
    let mut record = ChaosRecord {
        by: "peers".into(),
        until_unix_ms: None,
        errors: BTreeMap::new(),
        action,
    };
    match record.action.fault.action {
        faults::Action::Kill | faults::Action::Restart => {
            record.by = "docker".into();
            let op = if record.action.fault.action == faults::Action::Kill {
                Op::Kill
            } else {
                Op::Restart
            };
            record.errors = on_containers(&manifest, &hosts, &record.action.peers, op).await;
        }
        faults::Action::Pause => {
            record.by = "docker".into();
            record.errors = on_containers(&manifest, &hosts, &record.action.peers, Op::Pause).await;
            let hold = Duration::from_millis(record.action.fault.for_ms.unwrap_or(0));
            tracing::info!(
                "chaos: {} paused {} peers; unpausing in {:.0?} (Ctrl-C unpauses now)",
                record.action.id,
                record.action.peers.len(),
                hold
            );
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = tokio::signal::ctrl_c() => tracing::info!("chaos: interrupted; unpausing"),
            }
            let errors = on_containers(&manifest, &hosts, &record.action.peers, Op::Unpause).await;
            record.errors.extend(errors);
            record.until_unix_ms = Some(cmesh_common::unix_millis());
        }
        _ => {}
    }
    append(run, &record)?;
    Ok(record)
}

pub(crate) fn append(run: &RunDir, record: &ChaosRecord) -> anyhow::Result<()> {
    let path = run.path.join(CHAOS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// The run's chaos records (none if it had none); unreadable lines are skipped.
pub fn read(run: &RunDir) -> Vec<ChaosRecord> {
    std::fs::read_to_string(run.path.join(CHAOS_FILE))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The peers killed on purpose (by the plan or `launcher chaos`): name → the action's
/// id. They are not failures of the run.
pub fn killed(records: &[ChaosRecord]) -> BTreeMap<String, String> {
    done_to(records, |a| *a == faults::Action::Kill)
}

/// The peers killed, paused or restarted on purpose: name → the (last) action's id.
/// Their silence was planned, so it is no evidence against the hosts.
pub fn disturbed(records: &[ChaosRecord]) -> BTreeMap<String, String> {
    done_to(records, faults::Action::is_docker)
}

/// The peers an action for which `which` holds was done to: name → the action's id.
fn done_to(
    records: &[ChaosRecord],
    which: impl Fn(&faults::Action) -> bool,
) -> BTreeMap<String, String> {
    records
        .iter()
        .filter(|r| which(&r.action.fault.action))
        .flat_map(|r| {
            r.action
                .peers
                .iter()
                .filter(|p| !r.errors.contains_key(*p))
                .map(|p| (p.clone(), r.action.id.clone()))
        })
        .collect()
}

/// What `analyze` lines up with the peers' own records: the Docker-side actions.
pub fn external_actions(
    records: &[ChaosRecord],
) -> Vec<cmesh_analysis::impairment::ExternalAction> {
    records
        .iter()
        .filter(|r| r.by == "docker")
        .map(|r| cmesh_analysis::impairment::ExternalAction {
            id: r.action.id.clone(),
            action: r.action.fault.action.name().into(),
            peers: r.action.peers.len() - r.errors.len().min(r.action.peers.len()),
            at_unix_ms: r.action.at_unix_ms,
            until_unix_ms: r.until_unix_ms,
        })
        .collect()
}

/// One line for the terminal.
pub fn describe(r: &ChaosRecord) -> String {
    let a = &r.action;
    let shown: Vec<&str> = a.peers.iter().take(5).map(String::as_str).collect();
    format!(
        "{}: {} on {} peers ({}{}){}, {:.1} s after the start; {}",
        a.id,
        a.fault.action.name(),
        a.peers.len(),
        shown.join(", "),
        if a.peers.len() > 5 { ", …" } else { "" },
        a.fault
            .for_ms
            .map(|d| format!(" for {:.1} s", d as f64 / 1000.0))
            .unwrap_or_default(),
        a.fault.at_ms as f64 / 1000.0,
        if r.by == "docker" {
            if r.errors.is_empty() {
                "done through the Docker API".to_owned()
            } else {
                format!("{} containers refused", r.errors.len())
            }
        } else {
            "the peers apply it within a second".to_owned()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(action: &str) -> ChaosOrder {
        ChaosOrder {
            action: action.into(),
            ..ChaosOrder::default()
        }
    }

    #[test]
    fn bare_globs_and_short_names_get_the_run_prefix() {
        assert_eq!(
            peer_selector("peer-00[0-4]*", "r1"),
            "name:r1-peer-00[0-4]*"
        );
        assert_eq!(peer_selector("name:peer-0003", "r1"), "name:r1-peer-0003");
        assert_eq!(peer_selector("r1-peer-0003", "r1"), "name:r1-peer-0003");
        assert_eq!(peer_selector("*-0003", "r1"), "name:*-0003");
        assert_eq!(peer_selector("1-5,9", "r1"), "1-5,9");
        assert_eq!(peer_selector("10%", "r1"), "10%");
        assert_eq!(peer_selector("group:a", "r1"), "group:a");
    }

    #[test]
    fn orders_become_checked_requests() {
        let r = request(
            &ChaosOrder {
                peers: Some("peer-00[0-4]*".into()),
                ms: Some(200),
                jitter_ms: Some(20),
                duration: Some("60s".into()),
                ..order("delay")
            },
            "r1",
        )
        .unwrap();
        assert_eq!(r.fault.peers, "name:r1-peer-00[0-4]*");
        assert_eq!(r.fault.duration.as_deref(), Some("60s"));
        let to = request(
            &ChaosOrder {
                peers: Some("1".into()),
                to: Some("peer-0002".into()),
                ms: Some(50),
                ..order("delay")
            },
            "r1",
        )
        .unwrap();
        assert_eq!(to.fault.to.as_deref(), Some("name:r1-peer-0002"));
        let p = request(
            &ChaosOrder {
                groups: vec!["a:1-50".into(), "b:51-100".into()],
                duration: Some("30s".into()),
                ..order("partition")
            },
            "r1",
        )
        .unwrap();
        assert_eq!(p.fault.groups, Some(vec!["a".into(), "b".into()]));
        assert_eq!(p.groups["b"], "51-100");
        let k = request(
            &ChaosOrder {
                random: Some("10".into()),
                seed: Some(7),
                ..order("kill")
            },
            "r1",
        )
        .unwrap();
        assert_eq!((k.fault.peers.as_str(), k.seed), ("10%", Some(7)));
    }

    #[test]
    fn bad_orders_are_bad_input_with_the_flag_named() {
        let err = |o: ChaosOrder| {
            let e = request(&o, "r1").unwrap_err();
            assert_eq!(cmesh_common::exit::code(&e), 2);
            e.to_string()
        };
        assert!(
            err(order("delay")).contains("--ms"),
            "{}",
            err(order("delay"))
        );
        assert!(err(order("partition")).contains("--groups"));
        assert!(err(ChaosOrder {
            groups: vec!["a".into()],
            ..order("partition")
        })
        .contains("NAME:PEERS"));
        assert!(err(ChaosOrder {
            groups: vec!["a:0-49".into(), "b:50-99".into()],
            ..order("partition")
        })
        .contains("numbered from 1"));
        assert!(err(order("pause")).contains("--for"));
        assert!(err(order("teleport")).contains("unknown action"));
        assert!(err(ChaosOrder {
            percent: Some(5.0),
            ..order("kill")
        })
        .contains("--percent"));
        assert!(err(ChaosOrder {
            to: Some("2".into()),
            ..order("kill")
        })
        .contains("--to"));
        assert!(err(ChaosOrder {
            peers: Some("1".into()),
            random: Some("5%".into()),
            ..order("kill")
        })
        .contains("not both"));
    }
}
