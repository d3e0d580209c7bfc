//! `launcher logs`: container logs, prefixed with the container name when several are
//! shown; `-f` follows them.

use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use futures_util::StreamExt;
use std::io::Write;

/// Prints the logs of one container (`peer`: a peer name like `peer-0003` or a full
/// container name) or of all containers of the run.
pub async fn logs(run: &RunDir, peer: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let live = LiveRun::load(run).await?;
    live.require_all_hosts()?;
    let mut names = live.containers();
    if let Some(p) = peer {
        let full = if p.starts_with(&format!("{}-", run.id)) {
            p.to_owned()
        } else {
            format!("{}-{p}", run.id)
        };
        names.retain(|(n, _)| *n == full);
        if names.is_empty() {
            return Err(crate::error::bad_input(format!(
                "run {} has no container `{full}`; `launcher status --run {}` lists them",
                run.id, run.id
            )));
        }
    }
    let prefix = names.len() > 1;
    let streams = names.into_iter().map(|(name, h)| {
        let options = crate::engine::LogOptions {
            follow,
            timestamps: false,
        };
        live.hosts[h]
            .engine
            .logs(&name, options)
            .map(move |chunk| (name.clone(), chunk))
            .boxed()
    });
    let mut merged = futures_util::stream::select_all(streams);
    let stdout = std::io::stdout();
    while let Some((name, chunk)) = merged.next().await {
        let text = String::from_utf8_lossy(&chunk?).into_owned();
        let mut out = stdout.lock();
        for line in text.lines() {
            if prefix {
                writeln!(out, "{name} | {line}")?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}
