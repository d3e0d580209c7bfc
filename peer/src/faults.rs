//! The plan's fault timeline, as this peer carries it out: the link-shaping faults whose
//! selector includes this peer are applied at `start + at` and lifted at `start + at +
//! for` (or when the peer stops writing), through [`crate::shaping`].

use crate::events::EventLog;
use crate::shaping::{self, Active};
use cmesh_common::faults::{choose_path, Action, Fault, KernelCaps};
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::report::AppliedFault;
use serde_json::json;
use tokio::sync::oneshot;

/// The interface peers' overlay traffic leaves by.
const IFACE: &str = "eth0";

/// The faults of `plan` that select peer `me` (0-based index).
pub fn mine(plan: &ExecutionPlan, me: u32) -> Result<Vec<Fault>, String> {
    let (groups, faults) = plan.spec.checked_faults()?;
    let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
    let mut out = Vec::new();
    for f in faults {
        if f.peers
            .resolve(&names, &groups, plan.spec.seed)?
            .contains(&(me as usize))
        {
            out.push(f);
        }
    }
    Ok(out)
}

/// Refuses, before the run starts, faults this peer cannot carry out here.
pub fn precheck(faults: &[Fault], caps: KernelCaps, host: Option<&str>) -> Result<(), String> {
    let here = host
        .map(|h| format!("host `{h}`"))
        .unwrap_or_else(|| "this host".into());
    for f in faults {
        if !f.action.is_shaping() || f.to.is_some() {
            return Err(format!(
                "fault `{}`{} is not carried out by peers yet",
                f.action.name(),
                if f.to.is_some() { " with `to`" } else { "" }
            ));
        }
        choose_path(&f.action, caps).map_err(|e| format!("on {here}: {e}"))?;
    }
    Ok(())
}

/// Faults running in the background; [`Runner::finish`] lifts what is still applied.
pub struct Runner {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<AppliedFault>>,
}

/// Lifts one applied fault.
pub type Undo = Box<dyn FnOnce() + Send>;

/// Starts applying `faults` relative to `start_unix_ms`, through [`shaping::apply`].
pub fn start(
    faults: Vec<Fault>,
    start_unix_ms: u64,
    caps: KernelCaps,
    seed: u64,
    events: EventLog,
) -> Runner {
    start_with(faults, start_unix_ms, events, move |i, action| {
        let a: Active = shaping::apply(action, caps, IFACE, seed ^ i as u64)?;
        let path = format!("{:?}", a.path).to_lowercase();
        Ok((path, Box::new(move || a.undo()) as Undo))
    })
}

/// [`start`] with the applier given: `apply(index, action)` returns the path used and
/// how to lift it. Blocking work is fine: it runs off the async threads.
pub fn start_with<F>(faults: Vec<Fault>, start_unix_ms: u64, events: EventLog, apply: F) -> Runner
where
    F: Fn(usize, &Action) -> Result<(String, Undo), String> + Send + Sync + 'static,
{
    let apply = std::sync::Arc::new(apply);
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // (time, is_lift, fault index), in time order.
        let mut steps: Vec<(u64, bool, usize)> = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            steps.push((start_unix_ms + f.at_ms, false, i));
            if let Some(d) = f.for_ms {
                steps.push((start_unix_ms + f.at_ms + d, true, i));
            }
        }
        steps.sort();
        let mut records: Vec<AppliedFault> = faults
            .iter()
            .map(|f| AppliedFault {
                action: f.action.name().into(),
                path: None,
                applied_at_unix_ms: None,
                lifted_at_unix_ms: None,
                error: None,
            })
            .collect();
        let mut active: Vec<Option<Undo>> = faults.iter().map(|_| None).collect();
        let mut finished = false;
        for (at, lift, i) in steps {
            tokio::select! {
                _ = tokio::time::sleep_until(crate::run::unix_ms_to_instant(at)) => {}
                _ = &mut stopped => {
                    finished = true;
                    break;
                }
            }
            if lift {
                if let Some(undo) = active[i].take() {
                    let _ = tokio::task::spawn_blocking(undo).await;
                    records[i].lifted_at_unix_ms = Some(cmesh_common::unix_millis());
                    events.log(
                        "fault_lifted",
                        json!({"fault": i + 1, "action": records[i].action}),
                    );
                }
                continue;
            }
            let (action, apply) = (faults[i].action.clone(), apply.clone());
            let applied = tokio::task::spawn_blocking(move || apply(i, &action))
                .await
                .unwrap_or_else(|e| Err(format!("the shaping task failed: {e}")));
            match applied {
                Ok((path, undo)) => {
                    events.log(
                        "fault_applied",
                        json!({"fault": i + 1, "action": records[i].action, "path": path}),
                    );
                    records[i].path = Some(path);
                    records[i].applied_at_unix_ms = Some(cmesh_common::unix_millis());
                    active[i] = Some(undo);
                }
                Err(e) => {
                    events.log("fault_failed", json!({"fault": i + 1, "error": e}));
                    records[i].error = Some(e);
                }
            }
        }
        // Faults without an end stay until the peer stops writing; then everything still
        // applied is lifted.
        if !finished {
            let _ = stopped.await;
        }
        for (i, undo) in active.into_iter().enumerate() {
            if let Some(undo) = undo {
                let _ = tokio::task::spawn_blocking(undo).await;
                records[i].lifted_at_unix_ms = Some(cmesh_common::unix_millis());
            }
        }
        records
    });
    Runner { stop, task }
}

impl Runner {
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
    use std::sync::{Arc, Mutex};
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

    #[test]
    fn precheck_names_the_host_and_the_missing_feature() {
        let caps = KernelCaps::default();
        let e = precheck(
            &[fault(Action::Delay {
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
        let e = precheck(&[fault(Action::Kill)], caps, None).unwrap_err();
        assert!(e.contains("`kill` is not carried out by peers yet"), "{e}");
        let here = KernelCaps {
            nfqueue: true,
            ..caps
        };
        assert!(precheck(
            &[fault(Action::Delay {
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
        let faults = vec![
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
        ];
        let seen = log.clone();
        let runner = start_with(
            faults,
            cmesh_common::unix_millis(),
            EventLog::discard(),
            move |i, action| {
                if matches!(action, Action::Duplicate { .. }) {
                    return Err("`duplicate` needs sch_netem".into());
                }
                seen.lock().unwrap().push(format!("apply {i}"));
                let seen = seen.clone();
                Ok((
                    "test".into(),
                    Box::new(move || seen.lock().unwrap().push(format!("lift {i}"))) as Undo,
                ))
            },
        );
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
        let records = runner.finish().await;
        assert_eq!(
            *log.lock().unwrap(),
            vec!["apply 0", "apply 1", "lift 1", "lift 0"]
        );
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
