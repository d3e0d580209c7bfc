//! `launcher analyze runs/<run>`: the run directory read into the analysis crate's
//! [`RunInput`] (the manifest, the extract index, every readable report, the
//! coordinator's final status and the chaos records), analysed there
//! ([`cmesh_analysis::analyze`]), and every renderer's file written under
//! `analysis/` (docs/report-format.md).

use crate::results::extract::{self, ReportState};
use crate::run::dir::RunDir;
use cmesh_analysis::{render, Analysis, Intake, Interventions, RunInput};
use cmesh_common::fsutil::write_atomic;
use cmesh_common::report::PeerReport;
use serde::Deserialize;
use std::collections::BTreeMap;

pub use cmesh_analysis::summary::{to_markdown, Summary};

/// Reads an extracted run into the analysis, one report at a time (each is checked and
/// its window histograms folded as it comes, so a large run is never all in memory).
pub fn load(run: &RunDir) -> anyhow::Result<Intake> {
    let manifest = run.read_manifest()?;
    let index = extract::read_index(run).ok_or_else(|| {
        cmesh_common::exit::bad_input(format!(
            "run {} has not been extracted ({} is missing); run `launcher extract --run {}` first",
            run.id,
            run.extract_dir().join("extract.json").display(),
            run.id
        ))
    })?;
    let chaos = crate::faults::chaos::read(run);
    let peers = index
        .containers
        .iter()
        .filter(|c| c.role == crate::engine::labels::ROLE_PEER);
    let mut missing: BTreeMap<String, String> = index.errors.clone();
    for entry in peers
        .clone()
        .filter(|e| !matches!(e.report, ReportState::Complete | ReportState::Checkpoint))
    {
        missing.insert(
            entry.name.clone(),
            entry
                .reason
                .clone()
                .unwrap_or_else(|| format!("report {:?}", entry.report)),
        );
    }
    let coordinator = coordinator_status(run, &index);
    // What each peer said its report's SHA-256 was, as the coordinator recorded it.
    let posted: BTreeMap<String, (Option<String>, bool)> = coordinator
        .iter()
        .flat_map(|s| &s.peers)
        .map(|p| {
            (
                p.peer.clone(),
                (p.report_sha256.clone(), p.report_sha256_differs),
            )
        })
        .collect();
    let mut intake = Intake::new(RunInput {
        run_id: run.id.clone(),
        hosts: manifest.hosts.len(),
        peers: manifest
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.host.clone()))
            .collect(),
        coordinator_host: manifest.coordinator.host.clone(),
        clock_offsets_ms: manifest.clock_offsets_ms.clone(),
        spec: manifest.spec,
        reports: BTreeMap::new(),
        missing,
        unreadable: BTreeMap::new(),
        unreachable: index.unreachable.clone(),
        coordinator,
        interventions: Interventions {
            killed: crate::faults::chaos::killed(&chaos),
            disturbed: crate::faults::chaos::disturbed(&chaos)
                .into_keys()
                .collect(),
            external: crate::faults::chaos::external_actions(&chaos),
        },
    });
    // Reading, unpacking and parsing on one thread, checking and folding on this one,
    // with a few reports in flight at most: memory stays bounded by a few reports.
    let readable: Vec<_> = peers
        .filter(|e| matches!(e.report, ReportState::Complete | ReportState::Checkpoint))
        .collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        scope.spawn(move || {
            for entry in readable {
                let parsed = extract::read_report_file(run, entry).and_then(|bytes| {
                    if entry.report == ReportState::Complete {
                        if let Some((digest, differs)) = posted.get(&entry.name) {
                            check_digest(&bytes, digest.as_deref(), *differs)?;
                        }
                    }
                    PeerReport::from_json(&String::from_utf8_lossy(&bytes))
                        .map_err(anyhow::Error::msg)
                });
                if tx.send((entry.name.clone(), parsed)).is_err() {
                    return;
                }
            }
        });
        for (name, parsed) in rx {
            match parsed {
                Ok(r) => intake.add(name, r),
                Err(e) => intake.unreadable(name, format!("unreadable report: {e:#}")),
            }
        }
    });
    Ok(intake)
}

/// Checks a peer's `report.json` against the SHA-256 it posted with Done: a report
/// altered afterwards (another container on the host's shared reports volume can write
/// it), or one under whose name two different digests were posted, is not taken.
fn check_digest(report: &[u8], posted: Option<&str>, differs: bool) -> anyhow::Result<()> {
    if differs {
        anyhow::bail!(
            "not trusted: two different report digests were posted under this peer's name \
             (another container posted as it; see the coordinator's timeline)"
        );
    }
    let Some(posted) = posted else {
        return Ok(());
    };
    let actual = cmesh_common::token::sha256_hex(report);
    anyhow::ensure!(
        actual.eq_ignore_ascii_case(posted),
        "altered after the peer wrote it: report.json has SHA-256 {actual}, the peer posted \
         {posted} when it finished (another container on its host's reports volume changed it)"
    );
    Ok(())
}

/// Analyzes an extracted run; writes every renderer's file under `analysis/`.
pub fn analyze(run: &RunDir) -> anyhow::Result<Summary> {
    let analysis = load(run)?.finish();
    write(run, &analysis)?;
    Ok(analysis.summary)
}

/// `launcher report`: analyzes the run again and writes only `analysis/report.html`;
/// returns its path.
pub fn report(run: &RunDir) -> anyhow::Result<std::path::PathBuf> {
    render_one(run, &render::html::Html)
}

/// Analyzes the run again and writes only `renderer`'s file; returns its path.
pub fn render_one(
    run: &RunDir,
    renderer: &dyn render::Renderer,
) -> anyhow::Result<std::path::PathBuf> {
    let analysis = load(run)?.finish();
    write_with(run, &analysis, &[renderer])?;
    Ok(run.analysis_dir().join(renderer.file_name()))
}

/// Opens `path` in the desktop's browser: `$BROWSER`, else `xdg-open`.
pub fn open_in_browser(path: &std::path::Path) -> anyhow::Result<()> {
    let browser = std::env::var("BROWSER").unwrap_or_else(|_| "xdg-open".into());
    let status = std::process::Command::new(&browser)
        .arg(path)
        .status()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start `{browser}` to open {}: {e}; open the file by hand, or set BROWSER",
                path.display()
            )
        })?;
    anyhow::ensure!(
        status.success(),
        "`{browser} {}` exited {status}; open the file by hand, or set BROWSER",
        path.display()
    );
    Ok(())
}

/// Writes `analysis` as every renderer renders it, each file atomically.
pub fn write(run: &RunDir, analysis: &Analysis) -> anyhow::Result<()> {
    let all = render::all();
    let refs: Vec<&dyn render::Renderer> = all.iter().map(|r| r.as_ref()).collect();
    write_with(run, analysis, &refs)
}

/// Writes `analysis` as each of `renderers` renders it, each file atomically.
fn write_with(
    run: &RunDir,
    analysis: &Analysis,
    renderers: &[&dyn render::Renderer],
) -> anyhow::Result<()> {
    let dir = run.analysis_dir();
    std::fs::create_dir_all(&dir)?;
    for r in renderers {
        let path = dir.join(r.file_name());
        let bytes = r
            .render(analysis)
            .map_err(|e| anyhow::anyhow!("rendering {} for run {}: {e}", path.display(), run.id))?;
        write_atomic(&path, &bytes)?;
    }
    Ok(())
}

/// The coordinator's final status from its extracted `coordinator.json`, if it is there.
fn coordinator_status(
    run: &RunDir,
    index: &extract::ExtractIndex,
) -> Option<cmesh_common::protocol::StatusReport> {
    #[derive(Deserialize)]
    struct CoordinatorReport {
        status: cmesh_common::protocol::StatusReport,
    }
    let entry = index
        .containers
        .iter()
        .find(|c| c.role == crate::engine::labels::ROLE_COORDINATOR)?;
    let bytes = extract::read_report_file(run, entry)
        .map_err(|e| tracing::warn!("analyze: the coordinator's report: {e:#}"))
        .ok()?;
    serde_json::from_slice::<CoordinatorReport>(&bytes)
        .map_err(|e| tracing::warn!("analyze: the coordinator's report is not readable: {e}"))
        .ok()
        .map(|r| r.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_must_match_the_digest_its_peer_posted() {
        let report = b"{\"peer\": \"p\"}";
        let digest = cmesh_common::token::sha256_hex(report);
        check_digest(report, Some(&digest), false).unwrap();
        check_digest(report, Some(&digest.to_uppercase()), false).unwrap();
        check_digest(report, None, false).unwrap();
        let altered = check_digest(b"{}", Some(&digest), false).unwrap_err();
        assert!(altered.to_string().contains("altered"), "{altered}");
        let twice = check_digest(report, Some(&digest), true).unwrap_err();
        assert!(twice.to_string().contains("two different"), "{twice}");
    }
}
