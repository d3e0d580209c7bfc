//! `launcher wait`: until every peer container has exited, then say who failed.

use crate::live::LiveRun;
use crate::rundir::RunDir;
use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// How one container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub name: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Killed on purpose by this fault (`plan#N`, `chaos#N`): not a failure.
    pub killed_by: Option<String>,
}

impl Ended {
    pub fn failed(&self) -> bool {
        self.killed_by.is_none() && (self.oom_killed || self.exit_code != Some(0))
    }

    /// How it ended, in words.
    pub fn reason(&self) -> String {
        if let Some(id) = &self.killed_by {
            return format!("killed on purpose ({id})");
        }
        match (self.oom_killed, self.exit_code) {
            (true, _) => "killed for using too much memory (OOM)".into(),
            (_, Some(137)) => "killed (exit 137)".into(),
            (_, Some(c)) => format!("exited {c}"),
            (_, None) => "never ran".into(),
        }
    }
}

/// Waits until every peer has exited (or `timeout`); returns how each ended.
pub async fn wait(run: &RunDir, timeout: Duration) -> anyhow::Result<Vec<Ended>> {
    let mut live = LiveRun::load(run).await?;
    let manifest = live.manifest.clone();
    let bar = ProgressBar::new(manifest.peers.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} exited {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message("wait");
    let start = Instant::now();
    // The plan's kills and pauses are done from here, at their times.
    let mut planned = crate::chaos::PlannedDocker::new(&manifest.spec)?;
    let mut peers_done_at: Option<Instant> = None;
    let mut coordinator_gone_at: Option<Instant> = None;
    loop {
        let done = |name: &str| live.is_done(name);
        let exited = manifest.peers.iter().filter(|p| done(&p.name)).count();
        bar.set_position(exited as u64);
        if exited == manifest.peers.len() {
            // The coordinator exits once it has marked every peer done, failed or lost
            // (a killed peer takes 3 heartbeats) and written its report. Wait for that,
            // within reason, so extract gets its final report too.
            let since = *peers_done_at.get_or_insert_with(Instant::now);
            let grace = Duration::from_millis(4 * manifest.spec.heartbeat_ms + 30_000);
            if done(&manifest.coordinator.name) || since.elapsed() > grace {
                break;
            }
        } else if done(&manifest.coordinator.name) {
            // The run is over for the coordinator; peers still up after a minute are stuck.
            let gone = *coordinator_gone_at.get_or_insert_with(Instant::now);
            if gone.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        if start.elapsed() > timeout {
            bar.finish_and_clear();
            if let Some(p) = &mut planned {
                p.release(run, &manifest, &live.hosts).await;
            }
            let running: Vec<&str> = manifest
                .peers
                .iter()
                .filter(|p| !done(&p.name))
                .map(|p| p.name.as_str())
                .take(10)
                .collect();
            anyhow::bail!(
                "timed out after {:?}: {} peers still running ({}{}). `launcher status` shows where they are; `launcher extract` still collects what exists",
                timeout,
                manifest.peers.len() - exited,
                running.join(", "),
                if manifest.peers.len() - exited > running.len() { ", …" } else { "" }
            );
        }
        let mut pause = Duration::from_secs(1);
        if let Some(p) = &mut planned {
            match p.tick(run, &manifest, &live.hosts).await {
                Ok(Some(next)) => pause = pause.min(next),
                Ok(None) => {}
                Err(e) => bar.println(format!("wait: the plan's kills and pauses: {e:#}")),
            }
        }
        tokio::time::sleep(pause).await;
        live.refresh().await?;
    }
    bar.finish_and_clear();
    if let Some(p) = &mut planned {
        p.release(run, &manifest, &live.hosts).await;
    }
    let (hosts, final_states) = (&live.hosts, &live.states);
    let killed = crate::chaos::killed(&crate::chaos::read(run));
    let killed = &killed;
    // How each peer ended: inspected 16 at a time (over SSH, one at a time adds up).
    let inspect = |name: String| async move {
        let Some((h, _)) = final_states.get(&name) else {
            return Ok(Ended {
                killed_by: killed.get(&name).cloned(),
                name,
                exit_code: None,
                oom_killed: false,
            });
        };
        let info = hosts[*h]
            .docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .with_context(|| format!("inspecting {name} on host {}", hosts[*h].name()))?;
        let state = info.state.unwrap_or_default();
        anyhow::Ok(Ended {
            killed_by: killed.get(&name).cloned(),
            name,
            exit_code: if state.running == Some(true) {
                None
            } else {
                state.exit_code
            },
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    };
    let ended: Vec<Ended> =
        futures_util::stream::iter(manifest.peers.iter().map(|p| inspect(p.name.clone())))
            .buffered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let failed = ended.iter().filter(|e| e.failed()).count();
    let on_purpose = ended.iter().filter(|e| e.killed_by.is_some()).count();
    eprintln!(
        "wait: {} of {} peers exited 0{}{}",
        ended.len() - failed - on_purpose,
        ended.len(),
        if on_purpose > 0 {
            format!(", {on_purpose} killed on purpose")
        } else {
            String::new()
        },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(ended)
}
