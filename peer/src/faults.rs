//! The plan's fault timeline, as this peer carries it out: the link-shaping faults whose
//! selector includes this peer, and the partitions of groups it is in, are applied at
//! `start + at` and lifted at `start + at + for` (or when the peer stops writing),
//! through [`crate::shaping`]. Lifting a partition starts a resync measurement.

use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::shaping::{self, Active};
use cmesh_common::faults::{choose_path, partition_cut, Action, Fault, KernelCaps, Selector};
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::protocol::ChaosAction;
use cmesh_common::report::AppliedFault;
use serde_json::json;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The interface peers' overlay traffic leaves by.
const IFACE: &str = "eth0";

/// A fault of the plan that acts on this peer.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Where it comes from, as reports name it: `plan#N` (the N-th `[[fault]]`).
    pub id: String,
    pub fault: Fault,
    /// For a partition: the peers to cut off from, by index and address.
    pub cut: Vec<(u32, String)>,
    /// For shaping with `to`: the addresses of the peers whose traffic is shaped.
    pub to: Option<Vec<String>>,
}

/// The faults of `plan` that act on peer `me` (0-based index).
pub fn mine(plan: &ExecutionPlan, me: u32) -> Result<Vec<Planned>, String> {
    let (groups, faults) = plan.spec.checked_faults()?;
    let mut out = Vec::new();
    for (i, fault) in faults.into_iter().enumerate() {
        if fault.action.is_docker() || matches!(fault.action, Action::Mobility { .. }) {
            // Kill, pause and restart are done to the container from outside (`launcher wait`);
            // mobility moves the backend, not the network (`run::follow_mobility`).
            continue;
        }
        let id = format!("plan#{}", i + 1);
        out.extend(planned_for(plan, me, id, fault, &groups, plan.spec.seed)?);
    }
    Ok(out)
}

/// A `launcher chaos` action, if this peer carries it out: link shaping and partitions
/// (kill and pause are done to the container from outside).
pub fn from_chaos(plan: &ExecutionPlan, me: u32, a: &ChaosAction) -> Option<Planned> {
    let action = &a.fault.action;
    if !(action.is_shaping() || matches!(action, Action::Partition { .. })) {
        return None;
    }
    let planned = planned_for(plan, me, a.id.clone(), a.fault.clone(), &a.groups, a.seed);
    match planned {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("chaos action {} cannot be resolved here: {e}", a.id);
            None
        }
    }
}

/// `fault` as peer `me` carries it out, if it acts on it.
fn planned_for(
    plan: &ExecutionPlan,
    me: u32,
    id: String,
    fault: Fault,
    groups: &BTreeMap<String, Selector>,
    seed: u64,
) -> Result<Option<Planned>, String> {
    let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
    if !fault
        .targets(&names, groups, seed)?
        .contains(&(me as usize))
    {
        return Ok(None);
    }
    let cut = match &fault.action {
        Action::Partition { groups: listed } => {
            partition_cut(listed, &names, groups, seed, me as usize)?
                .into_iter()
                .map(|i| (i as u32, plan.peers[i].addr.clone()))
                .collect()
        }
        _ => Vec::new(),
    };
    let to = match &fault.to {
        Some(sel) => Some(
            sel.resolve(&names, groups, seed)?
                .into_iter()
                .filter(|&i| i != me as usize)
                .map(|i| plan.peers[i].addr.clone())
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    if to.as_ref().is_some_and(Vec::is_empty) {
        // Shaping towards nobody but itself: nothing to shape, and nothing pretends to.
        return Ok(None);
    }
    Ok(Some(Planned { id, fault, cut, to }))
}

/// Refuses, before the run starts, faults this peer cannot carry out here.
pub fn precheck(faults: &[Planned], caps: KernelCaps, host: Option<&str>) -> Result<(), String> {
    let here = host
        .map(|h| format!("host `{h}`"))
        .unwrap_or_else(|| "this host".into());
    for Planned { fault: f, .. } in faults {
        choose_path(&f.action, caps).map_err(|e| format!("on {here}: {e}"))?;
    }
    Ok(())
}

/// Faults running in the background; [`Runner::add`] adds one while it runs (`launcher
/// chaos`), [`Runner::finish`] lifts what is still applied.
pub struct Runner {
    stop: oneshot::Sender<()>,
    add: mpsc::UnboundedSender<Planned>,
    task: tokio::task::JoinHandle<Vec<AppliedFault>>,
}

/// Lifts one applied fault.
pub type Undo = Box<dyn FnOnce() + Send>;

/// Starts applying `faults` relative to `start_unix_ms`, through [`shaping::apply`] and
/// [`shaping::partition`]. Lifting a partition tells `metrics` to measure the resync.
/// `caps`: the kernel's, if already read (else they are read at the first shaping).
pub fn start(
    faults: Vec<Planned>,
    start_unix_ms: u64,
    caps: Option<KernelCaps>,
    seed: u64,
    events: EventLog,
    metrics: Arc<Mutex<Metrics>>,
    live: Arc<crate::live::LiveBoard>,
) -> Runner {
    let known = std::sync::OnceLock::new();
    if let Some(caps) = caps {
        let _ = known.set(caps);
    }
    start_with(faults, start_unix_ms, events, move |i, planned| {
        let action = &planned.fault.action;
        if let Action::Partition { .. } = action {
            let addrs: Vec<String> = planned.cut.iter().map(|(_, a)| a.clone()).collect();
            let a = shaping::partition(&addrs, i)?;
            let cut: Vec<u32> = planned.cut.iter().map(|&(p, _)| p).collect();
            live.cut(&cut, true);
            let metrics = metrics.clone();
            let live = live.clone();
            let undo = move || {
                metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .begin_resync("partition", cmesh_common::unix_micros());
                a.undo();
                live.cut(&cut, false);
            };
            return Ok(("iptables".into(), Box::new(undo) as Undo));
        }
        let caps = *known.get_or_init(shaping::detect);
        precheck(std::slice::from_ref(planned), caps, None)?;
        let a: Active =
            shaping::apply(action, caps, IFACE, seed ^ i as u64, planned.to.as_deref())?;
        let path = format!("{:?}", a.path).to_lowercase();
        Ok((path, Box::new(move || a.undo()) as Undo))
    })
}

/// [`start`] with the applier given: `apply(index, fault)` returns the path used and
/// how to lift it. Blocking work is fine: it runs off the async threads.
pub fn start_with<F>(
    initial: Vec<Planned>,
    start_unix_ms: u64,
    events: EventLog,
    apply: F,
) -> Runner
where
    F: Fn(usize, &Planned) -> Result<(String, Undo), String> + Send + Sync + 'static,
{
    let apply = Arc::new(apply);
    let (stop, mut stopped) = oneshot::channel::<()>();
    let (add, mut added) = mpsc::unbounded_channel::<Planned>();
    let task = tokio::spawn(async move {
        let mut faults: Vec<Planned> = Vec::new();
        let mut records: Vec<AppliedFault> = Vec::new();
        let mut active: Vec<Option<Undo>> = Vec::new();
        // (time, is_lift, fault index), soonest first.
        let mut steps: BinaryHeap<Reverse<(u64, bool, usize)>> = BinaryHeap::new();
        let schedule =
            |f: Planned,
             faults: &mut Vec<Planned>,
             records: &mut Vec<AppliedFault>,
             active: &mut Vec<Option<Undo>>,
             steps: &mut BinaryHeap<Reverse<(u64, bool, usize)>>| {
                // Over already (a peer that restarted mid-run, or a late chaos action):
                // nothing to apply, and nothing to pretend was applied.
                if let Some(d) = f.fault.for_ms {
                    if start_unix_ms + f.fault.at_ms + d <= cmesh_common::unix_millis() {
                        return;
                    }
                }
                let i = faults.len();
                steps.push(Reverse((start_unix_ms + f.fault.at_ms, false, i)));
                if let Some(d) = f.fault.for_ms {
                    steps.push(Reverse((start_unix_ms + f.fault.at_ms + d, true, i)));
                }
                records.push(AppliedFault {
                    id: f.id.clone(),
                    action: f.fault.action.name().into(),
                    path: None,
                    applied_at_unix_ms: None,
                    lifted_at_unix_ms: None,
                    error: None,
                });
                active.push(None);
                faults.push(f);
            };
        for f in initial {
            schedule(f, &mut faults, &mut records, &mut active, &mut steps);
        }
        loop {
            let next = steps.peek().map(|Reverse((at, _, _))| *at);
            let wake = crate::time::unix_ms_to_instant(next.unwrap_or(u64::MAX / 4));
            tokio::select! {
                _ = tokio::time::sleep_until(wake), if next.is_some() => {}
                f = added.recv() => {
                    if let Some(f) = f {
                        schedule(f, &mut faults, &mut records, &mut active, &mut steps);
                    }
                    continue;
                }
                _ = &mut stopped => break,
            }
            let Some(Reverse((_, lift, i))) = steps.pop() else {
                continue;
            };
            let id = records[i].id.clone();
            if lift {
                if let Some(undo) = active[i].take() {
                    let _ = tokio::task::spawn_blocking(undo).await;
                    records[i].lifted_at_unix_ms = Some(cmesh_common::unix_millis());
                    events.log(
                        "fault_lifted",
                        json!({"fault": id, "action": records[i].action}),
                    );
                }
                continue;
            }
            let (planned, apply) = (faults[i].clone(), apply.clone());
            let applied = tokio::task::spawn_blocking(move || apply(i, &planned))
                .await
                .unwrap_or_else(|e| Err(format!("the shaping task failed: {e}")));
            match applied {
                Ok((path, undo)) => {
                    events.log(
                        "fault_applied",
                        json!({"fault": id, "action": records[i].action, "path": path}),
                    );
                    records[i].path = Some(path);
                    records[i].applied_at_unix_ms = Some(cmesh_common::unix_millis());
                    active[i] = Some(undo);
                }
                Err(e) => {
                    events.log("fault_failed", json!({"fault": id, "error": e}));
                    records[i].error = Some(e);
                }
            }
        }
        // Faults without an end stay until the peer stops writing; then everything still
        // applied is lifted.
        for (i, undo) in active.into_iter().enumerate() {
            if let Some(undo) = undo {
                let _ = tokio::task::spawn_blocking(undo).await;
                records[i].lifted_at_unix_ms = Some(cmesh_common::unix_millis());
            }
        }
        records
    });
    Runner { stop, add, task }
}

impl Runner {
    /// Adds a fault while the timeline runs (its `at` is from the same start).
    pub fn add(&self, fault: Planned) {
        let _ = self.add.send(fault);
    }

    /// Stops the timeline, lifts what is applied, and returns what was done.
    pub async fn finish(self) -> Vec<AppliedFault> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::faults::Selector;
    use std::time::Duration;

    fn fault(action: Action) -> Fault {
        Fault {
            at_ms: 0,
            for_ms: None,
            peers: Selector::All,
            to: None,
            action,
        }
    }

    fn planned(action: Action) -> Planned {
        Planned {
            id: "plan#1".into(),
            fault: fault(action),
            cut: Vec::new(),
            to: None,
        }
    }

    #[test]
    fn precheck_names_the_host_and_the_missing_feature() {
        let caps = KernelCaps::default();
        let e = precheck(
            &[planned(Action::Delay {
                ms: 200,
                jitter_ms: 0,
            })],
            caps,
            Some("lab-2"),
        )
        .unwrap_err();
        assert!(
            e.starts_with("on host `lab-2`: `delay` needs sch_netem or nfnetlink_queue"),
            "{e}"
        );
        let e = precheck(&[planned(Action::Restart)], caps, None).unwrap_err();
        assert!(e.contains("`restart` is not link shaping"), "{e}");
        let partition = Action::Partition {
            groups: vec!["a".into(), "b".into()],
        };
        assert!(
            precheck(&[planned(partition)], caps, None).is_ok(),
            "partitions need only iptables"
        );
        let here = KernelCaps {
            nfqueue: true,
            ..caps
        };
        assert!(precheck(
            &[planned(Action::Delay {
                ms: 1,
                jitter_ms: 0
            })],
            here,
            None
        )
        .is_ok());
    }

    #[tokio::test]
    async fn faults_are_applied_and_lifted_on_time_and_the_rest_at_the_end() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let faults = [
            Fault {
                at_ms: 0,
                ..fault(Action::Delay {
                    ms: 200,
                    jitter_ms: 0,
                })
            },
            Fault {
                at_ms: 30,
                for_ms: Some(30),
                ..fault(Action::Loss { percent: 5.0 })
            },
            Fault {
                at_ms: 0,
                ..fault(Action::Duplicate { percent: 1.0 })
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, fault)| Planned {
            id: format!("plan#{}", i + 1),
            fault,
            cut: Vec::new(),
            to: None,
        })
        .collect();
        let seen = log.clone();
        let start = cmesh_common::unix_millis();
        let runner = start_with(faults, start, EventLog::discard(), move |i, planned| {
            if matches!(planned.fault.action, Action::Duplicate { .. }) {
                return Err("`duplicate` needs sch_netem".into());
            }
            seen.lock().unwrap().push(format!("apply {i}"));
            let seen = seen.clone();
            Ok((
                "test".into(),
                Box::new(move || seen.lock().unwrap().push(format!("lift {i}"))) as Undo,
            ))
        });
        // The timed fault comes and goes; the open-ended one stays until finish.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !log.lock().unwrap().contains(&"lift 1".to_string()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!log.lock().unwrap().contains(&"lift 0".to_string()));
        // One added while running (as `launcher chaos` does), due now.
        runner.add(Planned {
            id: "chaos#1".into(),
            fault: Fault {
                at_ms: cmesh_common::unix_millis() - start,
                ..fault(Action::Loss { percent: 1.0 })
            },
            cut: Vec::new(),
            to: None,
        });
        while !log.lock().unwrap().contains(&"apply 3".to_string()) {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One that was over before it arrived is left out.
        runner.add(Planned {
            id: "chaos#2".into(),
            fault: Fault {
                at_ms: 0,
                for_ms: Some(1),
                ..fault(Action::Loss { percent: 1.0 })
            },
            cut: Vec::new(),
            to: None,
        });
        let records = runner.finish().await;
        assert_eq!(
            *log.lock().unwrap(),
            vec!["apply 0", "apply 1", "lift 1", "apply 3", "lift 0", "lift 3"]
        );
        assert_eq!(records.len(), 4, "{records:?}");
        assert_eq!(records[3].id, "chaos#1");
        assert_eq!(records[1].id, "plan#2");
        assert_eq!(records[0].path.as_deref(), Some("test"));
        assert!(records[0].lifted_at_unix_ms.is_some());
        assert!(records[1].applied_at_unix_ms.unwrap() <= records[1].lifted_at_unix_ms.unwrap());
        assert_eq!(
            records[2].error.as_deref(),
            Some("`duplicate` needs sch_netem")
        );
        assert!(records[2].applied_at_unix_ms.is_none());
    }
}
