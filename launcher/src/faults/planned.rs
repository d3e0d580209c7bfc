//! A plan's kills, pauses and restarts: the faults peers cannot do to themselves, done
//! through the engines by `launcher wait` (and so `run`) at their times.

use crate::cluster::host::Host;
use crate::faults::chaos::{append, coordinator, post, ChaosRecord};
use crate::faults::containers::{on_containers, Op};
use crate::run::dir::{RunDir, RunManifest};
use cmesh_common::exit::bad_input;
use cmesh_common::faults::{self, FaultSpec};
use cmesh_common::protocol::ChaosRequest;
use std::collections::BTreeMap;
use std::time::Duration;

/// A plan's kills, pauses and restarts, which peers cannot do to themselves: `launcher wait` (and
/// so `run`) carries them out through the Docker API at their times, recorded with the
/// coordinator under the plan's names (`plan#N`) like chaos actions.
pub struct PlannedDocker {
    /// (due, unix ms; fault index; what): soonest last.
    steps: Vec<(u64, usize, Step)>,
    pending: Vec<(usize, faults::Fault)>,
    groups: BTreeMap<String, String>,
    specs: Vec<FaultSpec>,
    started: bool,
    records: BTreeMap<usize, ChaosRecord>,
    /// The coordinator's API and token, once found (asked once, not every tick).
    api: Option<(String, String)>,
}

#[derive(Clone, Debug)]
enum Step {
    Start,
    Unpause,
}

impl PlannedDocker {
    /// The plan's Docker-side faults, if it has any.
    pub fn new(spec: &cmesh_common::plan::PlanSpec) -> anyhow::Result<Option<PlannedDocker>> {
        let (_, checked) = spec.checked_faults().map_err(bad_input)?;
        let pending: Vec<(usize, faults::Fault)> = checked
            .into_iter()
            .enumerate()
            .filter(|(_, f)| f.action.is_docker())
            .collect();
        Ok((!pending.is_empty()).then(|| PlannedDocker {
            steps: Vec::new(),
            pending,
            groups: spec.groups.clone(),
            specs: spec.faults.clone(),
            started: false,
            records: BTreeMap::new(),
            api: None,
        }))
    }

    /// Carries out what is due; returns how long until the next step (`None`: nothing
    /// left). Before the plan's start is known (the coordinator has not planned yet) it
    /// asks again on the next call.
    pub async fn tick(
        &mut self,
        run: &RunDir,
        manifest: &RunManifest,
        hosts: &[Host],
    ) -> anyhow::Result<Option<Duration>> {
        if self.started && self.steps.is_empty() {
            return Ok(None);
        }
        if self.api.is_none() {
            match coordinator(run, manifest, hosts).await {
                Ok(c) => self.api = Some(c),
                // The coordinator is gone: the run is over; nothing more can be done.
                Err(_) if self.started => return Ok(None),
                Err(_) => return Ok(Some(Duration::from_secs(1))),
            }
        }
        let (base, token) = self.api.clone().expect("set above");
        if !self.started {
            let Some(start) = plan_start(&base, &token, manifest).await else {
                return Ok(Some(Duration::from_secs(1)));
            };
            for (i, f) in std::mem::take(&mut self.pending) {
                self.steps.push((start + f.at_ms, i, Step::Start));
            }
            self.started = true;
        }
        self.steps.sort_by_key(|s| std::cmp::Reverse(s.0));
        while let Some(&(due, i, _)) = self.steps.last() {
            if due > cmesh_common::unix_millis() {
                break;
            }
            let (_, _, step) = self.steps.pop().expect("peeked");
            match step {
                Step::Start => {
                    let req = ChaosRequest {
                        fault: self.specs[i].clone(),
                        groups: self.groups.clone(),
                        seed: None,
                        id: Some(format!("plan#{}", i + 1)),
                    };
                    let action = match post(&base, &token, &req).await {
                        Ok(a) => a,
                        Err(e) => {
                            // Already done (a re-run of wait), or the run moved on.
                            tracing::info!("wait: plan#{} not carried out: {e:#}", i + 1);
                            continue;
                        }
                    };
                    let op = match action.fault.action {
                        faults::Action::Kill => Op::Kill,
                        faults::Action::Restart => Op::Restart,
                        _ => Op::Pause,
                    };
                    let errors = on_containers(manifest, hosts, &action.peers, op).await;
                    tracing::info!(
                        "wait: {} {} on {} peers",
                        action.id,
                        action.fault.action.name(),
                        action.peers.len()
                    );
                    if let (Op::Pause, Some(d)) = (op, action.fault.for_ms) {
                        self.steps
                            .push((cmesh_common::unix_millis() + d, i, Step::Unpause));
                        self.steps.sort_by_key(|s| std::cmp::Reverse(s.0));
                    }
                    let record = ChaosRecord {
                        by: "docker".into(),
                        until_unix_ms: None,
                        errors,
                        action,
                    };
                    if op != Op::Pause || record.action.fault.for_ms.is_none() {
                        append(run, &record)?;
                    }
                    self.records.insert(i, record);
                }
                Step::Unpause => {
                    if let Some(mut record) = self.records.remove(&i) {
                        let errors =
                            on_containers(manifest, hosts, &record.action.peers, Op::Unpause).await;
                        record.errors.extend(errors);
                        record.until_unix_ms = Some(cmesh_common::unix_millis());
                        append(run, &record)?;
                    }
                }
            }
        }
        Ok(self.steps.last().map(|(due, _, _)| {
            Duration::from_millis(due.saturating_sub(cmesh_common::unix_millis()))
        }))
    }

    /// Unpauses what is still paused (wait is ending, or was interrupted).
    pub async fn release(&mut self, run: &RunDir, manifest: &RunManifest, hosts: &[Host]) {
        for (_, mut record) in std::mem::take(&mut self.records) {
            if record.action.fault.action == faults::Action::Pause {
                let errors =
                    on_containers(manifest, hosts, &record.action.peers, Op::Unpause).await;
                record.errors.extend(errors);
                record.until_unix_ms = Some(cmesh_common::unix_millis());
                let _ = append(run, &record);
            }
        }
    }
}

/// The plan's common start, once the coordinator has made the plan.
pub(crate) async fn plan_start(base: &str, token: &str, manifest: &RunManifest) -> Option<u64> {
    let peer = &manifest.peers.first()?.name;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/plan"))
        .query(&[("peer", peer)])
        .header(cmesh_common::token::HEADER, token)
        // The plan long-polls; a short wait is enough here, the caller asks again.
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let plan: cmesh_common::plan::ExecutionPlan = response.json().await.ok()?;
    Some(plan.start_at_unix_ms)
}
