//! `launcher extract`: every container's report, logs and state, verified.
//!
//! For each container of the run, running or exited, into
//! `runs/<run>/extract/<host>/<container>/`:
//!
//! - `report.tar.gz`: its report directory, `/reports/<container>` (Docker archive API,
//!   gzipped, laid out under `report/`);
//! - `logs.txt.gz`: stdout and stderr with timestamps;
//! - `inspect.json`: exit code, OOM-killed, start and finish times;
//! - `meta.json`: the container's entry in the index, written last.
//!
//! The reports come through the Docker archive API. Every container writes its report to
//! `/reports/<container>` on the run's reports volume (see `spawn::reports_volume`), so
//! all reports on a host are fetched in one archive, from a helper container that mounts
//! the volume read-only and is never started: the engine mounts one root filesystem per
//! host instead of one per container (what `docker cp` costs). A container whose report
//! is not in the volume is asked for its own.
//!
//! The archive is streamed, never held: [`crate::results::archive`] splits it into the
//! containers' `report.tar.gz` files as it arrives, under byte caps per file, per
//! container and per host ([`Caps`]). A container over a cap is extracted up to it and
//! marked `truncated` in its entry, with what was cut and why.
//!
//! Files are written to a temporary name and renamed. A container whose `meta.json`
//! exists, that had already exited, and whose files still match their sha256 is not
//! fetched again: an interrupted extract is completed by running it again.
//! `extract.json` indexes every container with its checksums, sizes and outcome.

use crate::cluster::host::{Connector, Host};
use crate::cluster::scratch::with_scratch;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::{ContainerState, Engine, LogOptions};
use crate::results::archive::{self, Caps, FileEntry, Split};
use crate::run::dir::RunDir;
use crate::run::live::Ended;
use crate::run::live::LiveRun;
use crate::run::names::{coordinator_volume, report_dir, reports_volume, REPORTS_DIR};
use crate::tasks;
use anyhow::Context;
use cmesh_common::fsutil::write_atomic;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const EXTRACT_SCHEMA: &str = "cmesh.extract-index";

/// Whether the container's report made it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    /// The report directory holds the report file.
    Complete,
    /// The report directory has no final report, but the peer's last checkpoint
    /// (`checkpoint.json`): what it measured until it stopped.
    Checkpoint,
    /// The report directory exists but the report file is not in it.
    Partial,
    /// The report directory could not be fetched.
    Missing,
}

/// One container in `extract.json` (and its `meta.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEntry {
    pub name: String,
    pub host: String,
    pub role: String,
    pub index: u32,
    /// The engine's state when extracted: `exited`, `running`, …
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub report: ReportState,
    /// Why the report is partial or missing, or why the container failed.
    pub reason: Option<String>,
    /// What of its report directory was cut or left out by extract's byte caps, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// Relative to the container's directory.
    pub files: BTreeMap<String, FileEntry>,
}

/// `extract.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtractIndex {
    pub schema: String,
    pub schema_version: u32,
    pub run_id: String,
    pub extracted_at: String,
    pub containers: Vec<ContainerEntry>,
    /// Containers that could not be extracted at all, with the error.
    pub errors: BTreeMap<String, String>,
    /// Containers whose host could not be reached, with the reason: extract them again
    /// when the host is back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreachable: BTreeMap<String, String>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `dir/name` (atomically and durably) and records its checksum, off
/// the async threads.
async fn save(
    dir: &Path,
    name: &str,
    bytes: Vec<u8>,
    files: &mut BTreeMap<String, FileEntry>,
) -> anyhow::Result<()> {
    let path = dir.join(name);
    let entry = tasks::cpu(move || {
        write_atomic(&path, &bytes)?;
        Ok(FileEntry {
            sha256: sha256(&bytes),
            bytes: bytes.len() as u64,
        })
    })
    .await?;
    files.insert(name.to_owned(), entry);
    Ok(())
}

/// True if every file of `entry` exists in `dir` with its recorded size and checksum
/// (hashed as a stream: files may be large).
pub fn verify(dir: &Path, entry: &ContainerEntry) -> bool {
    entry.files.iter().all(|(name, f)| {
        let hashed = std::fs::File::open(dir.join(name)).and_then(|mut file| {
            let mut hash = Sha256::new();
            let n = std::io::copy(&mut file, &mut hash)?;
            Ok((n, hex::encode(hash.finalize())))
        });
        matches!(hashed, Ok((n, h)) if n == f.bytes && h == f.sha256)
    })
}

/// Streams the archive of `path` in container `name` into `dirs`' containers'
/// `report.tar.gz` files ([`archive::split_to_disk`]), off the async threads.
async fn stream_reports(
    engine: &dyn Engine,
    name: &str,
    path: &str,
    caps: Caps,
    dirs: HashMap<String, PathBuf>,
) -> anyhow::Result<BTreeMap<String, Split>> {
    tasks::on_thread_reading(engine.download(name, path), move |reader| {
        archive::split_to_disk(reader, caps, |n| dirs.get(n).cloned())
    })
    .await
}

/// Where the helper mounts the coordinator's own volume.
const COORDINATOR_MOUNT: &str = "/coordinator";

/// Fetches the reports of `names` (all on `host`; `dirs` gives each one's directory),
/// through a helper container that mounts the run's volumes read-only and is never
/// started, streamed into each container's `report.tar.gz`: the peers' in one archive of
/// the shared reports volume, the coordinator's from its own volume (whatever a peer put
/// under its name in the shared one is not taken). Empty if the host has neither volume.
async fn fetch_reports(
    host: &Host,
    run: &str,
    image: &str,
    coordinator: &str,
    mut dirs: HashMap<String, PathBuf>,
    caps: Caps,
) -> anyhow::Result<BTreeMap<String, Split>> {
    let exists = |volume: String| async move {
        retry(|| host.engine.volume_exists(&volume))
            .await
            .unwrap_or(false)
            .then_some(volume)
    };
    let shared = exists(reports_volume(run)).await;
    let own = match dirs.remove_entry(coordinator) {
        Some(entry) => exists(coordinator_volume(run)).await.map(|v| (v, entry)),
        None => None,
    };
    let mut binds = Vec::new();
    if let Some(volume) = &shared {
        binds.push(format!("{volume}:{REPORTS_DIR}:ro"));
    }
    if let Some((volume, _)) = &own {
        binds.push(format!("{volume}:{COORDINATOR_MOUNT}:ro"));
    }
    if binds.is_empty() {
        return Ok(BTreeMap::new());
    }
    let helper = format!("{run}-extract");
    let labels = [(labels::RUN, run)];
    with_scratch(host, &helper, image, binds, &labels, || async {
        let engine = host.engine.as_ref();
        let context = || format!("fetching reports through {helper} on host {}", host.name());
        let mut fetched = BTreeMap::new();
        if shared.is_some() {
            fetched = stream_reports(engine, &helper, REPORTS_DIR, caps, dirs)
                .await
                .with_context(context)?;
        }
        if let Some((_, (name, dir))) = own {
            let path = format!("{COORDINATOR_MOUNT}/{name}");
            let one = HashMap::from([(name, dir)]);
            fetched.extend(
                stream_reports(engine, &helper, &path, caps, one)
                    .await
                    .with_context(context)?,
            );
        }
        Ok(fetched)
    })
    .await
}

/// Logs are gzipped in batches of this many bytes (what is held per container).
const LOG_BATCH: usize = 256 << 10;

/// The file in the report directory that proves a container finished its report.
fn report_file(role: &str) -> &'static str {
    if role == labels::ROLE_COORDINATOR {
        "report/coordinator.json"
    } else {
        "report/report.json"
    }
}

/// A peer's checkpoint in its report directory, read when it has no final report.
const CHECKPOINT_FILE: &str = "report/checkpoint.json";

/// [`already_extracted`] for each `(name, key, dir)`, off the async threads (it hashes
/// every file).
async fn check_extracted<K: Send + 'static>(
    items: Vec<(String, K, PathBuf)>,
) -> anyhow::Result<Vec<(String, K, Option<ContainerEntry>)>> {
    tasks::cpu(move || {
        Ok(items
            .into_iter()
            .map(|(n, k, dir)| {
                let before = already_extracted(&dir);
                (n, k, before)
            })
            .collect())
    })
    .await
}

/// The container directory for `name` on `host`.
pub fn container_dir(run: &RunDir, host: &str, name: &str) -> PathBuf {
    run.extract_dir().join(host).join(name)
}

/// The container's entry, if its `meta.json` says it had exited, nothing of it was
/// cut by the caps (those are fetched again, so higher caps get more), and its files
/// still verify: then it need not be fetched again.
fn already_extracted(dir: &Path) -> Option<ContainerEntry> {
    std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<ContainerEntry>(&t).ok())
        .filter(|e| e.state != ContainerState::Running && e.truncated.is_none() && verify(dir, e))
}

/// What the first pass learned of a container: its state, and the files written so far.
#[derive(Clone)]
struct Observed {
    name: String,
    dir: PathBuf,
    role: String,
    index: u32,
    state: ContainerState,
    exit_code: Option<i64>,
    oom_killed: bool,
    files: BTreeMap<String, FileEntry>,
    /// The logs were cut at the file cap.
    truncated: Option<String>,
}

/// The first pass: the container's state (`inspect.json`) and logs (`logs.txt.gz`).
async fn observe(host: &Host, run: &RunDir, name: &str, caps: Caps) -> anyhow::Result<Observed> {
    let dir = container_dir(run, host.name(), name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let where_ = format!("container {name} on host {}", host.name());
    let info = retry(|| host.engine.inspect_container(name))
        .await
        .with_context(|| format!("inspecting {where_}"))?;
    let state = info.state();
    let mut files = BTreeMap::new();
    let inspect = serde_json::json!({
        "name": name,
        "id": info.id,
        "image": info.image,
        "host": host.name(),
        "labels": info.labels,
        "state": {
            "status": state,
            "exit_code": info.exit_code,
            "oom_killed": info.oom_killed,
            "error": info.error,
            "started_at": info.started_at,
            "finished_at": info.finished_at,
        },
        "restart_count": info.restart_count,
    });
    save(
        &dir,
        "inspect.json",
        serde_json::to_string_pretty(&inspect)?.into_bytes(),
        &mut files,
    )
    .await?;

    // Streamed to disk up to the file cap, gzipped a batch at a time off the async
    // threads (most logs are one batch).
    let mut stream = host.engine.logs(
        name,
        LogOptions {
            follow: false,
            timestamps: true,
            since: None,
        },
    );
    let path = dir.join("logs.txt.gz");
    let mut sink: Option<archive::CappedGz> = None;
    let mut batch = Vec::new();
    loop {
        let next = stream.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.with_context(|| format!("reading the logs of {where_}"))?;
            batch.extend_from_slice(&chunk);
        }
        if end || batch.len() >= LOG_BATCH {
            let (bytes, path) = (std::mem::take(&mut batch), path.clone());
            let mut gz = sink.take();
            let gz = tasks::cpu(move || {
                let mut gz = match gz.take() {
                    Some(gz) => gz,
                    None => archive::CappedGz::create(&path, caps.file)?,
                };
                gz.write(&bytes)?;
                Ok(gz)
            })
            .await?;
            let full = gz.is_full();
            sink = Some(gz);
            if end || full {
                break;
            }
        }
    }
    let sink = sink.expect("written at the end of the stream");
    let (entry, cut) = tasks::cpu(move || sink.finish()).await?;
    files.insert("logs.txt.gz".into(), entry);
    let truncated = cut.then(|| {
        format!(
            "logs.txt: longer than the {} MiB file cap (--max-file-mib); kept the first {} MiB",
            caps.file >> 20,
            caps.file >> 20
        )
    });
    Ok(Observed {
        name: name.to_owned(),
        dir,
        role: info.labels.get(labels::ROLE).cloned().unwrap_or_default(),
        index: info
            .labels
            .get(labels::INDEX)
            .and_then(|i| i.parse().ok())
            .unwrap_or(0),
        state,
        exit_code: info.exit_code,
        oom_killed: info.oom_killed,
        files,
        truncated,
    })
}

/// The second pass: the container's report (`report.tar.gz`), from its host's archive
/// or, when that did not have it, from the container itself; then `meta.json`, last.
async fn finish(
    host: &Host,
    o: Observed,
    prefetched: Option<Split>,
    caps: Caps,
) -> anyhow::Result<ContainerEntry> {
    let Observed {
        name,
        dir,
        role,
        index,
        state,
        exit_code,
        oom_killed,
        mut files,
        truncated: logs_cut,
    } = o;
    let fetched = match prefetched {
        Some(split) => Ok(Some(split)),
        // Not in the volume's archive: ask the container itself.
        None => {
            let dirs = HashMap::from([(name.clone(), dir.clone())]);
            stream_reports(host.engine.as_ref(), &name, &report_dir(&name), caps, dirs)
                .await
                .map(|mut m| m.remove(&name))
        }
    };
    let wanted = report_file(&role);
    let mut truncated = logs_cut;
    let (report, mut reason) = match fetched {
        Err(e) => (
            ReportState::Missing,
            Some(format!("cannot fetch its report directory: {e:#}")),
        ),
        Ok(None) => (
            ReportState::Missing,
            Some("its report directory is empty or absent".into()),
        ),
        Ok(Some(split)) => {
            let has = split.whole.contains(wanted);
            let checkpoint = !has && split.whole.contains(CHECKPOINT_FILE);
            files.insert("report.tar.gz".into(), split.file);
            truncated = match (truncated, split.truncated) {
                (Some(a), Some(b)) => Some(format!("{b}; {a}")),
                (a, b) => b.or(a),
            };
            if has {
                (ReportState::Complete, None)
            } else if checkpoint {
                (
                    ReportState::Checkpoint,
                    Some("no final report; its last checkpoint holds what it measured".into()),
                )
            } else {
                (
                    ReportState::Partial,
                    Some(format!(
                        "its report directory has no {}",
                        wanted.trim_start_matches("report/")
                    )),
                )
            }
        }
    };
    let ended = Ended {
        name: name.clone(),
        exit_code,
        oom_killed,
        killed_by: None,
        unreachable: None,
    };
    if state == ContainerState::Running {
        reason = Some(format!(
            "{}still running when extracted; run `launcher wait`, then extract again",
            reason.map(|r| format!("{r}; ")).unwrap_or_default()
        ));
    } else if ended.failed() {
        reason = Some(match reason {
            Some(r) => format!("{r} (container {})", ended.reason()),
            None => format!("container {}", ended.reason()),
        });
    }
    let entry = ContainerEntry {
        name,
        host: host.name().to_owned(),
        role,
        index,
        state,
        exit_code,
        oom_killed,
        report,
        reason,
        truncated,
        files,
    };
    crate::run::dir::write_json(&dir.join("meta.json"), &entry)?;
    Ok(entry)
}

/// The outcome of an extract.
pub struct Extracted {
    pub index: ExtractIndex,
    pub fetched: usize,
    pub verified: usize,
}

/// Extracts every container of the run, from real engines.
pub async fn extract(run: &RunDir, per_host: usize, caps: Caps) -> anyhow::Result<Extracted> {
    extract_with(&Connector::Docker, run, per_host, caps).await
}

/// Extracts every container of the run on the hosts `connector` reaches, `per_host` at
/// a time on each host. A container that cannot be extracted (its host lost, say) is
/// listed in `errors` with the reason; the others are extracted all the same.
pub async fn extract_with(
    connector: &Connector,
    run: &RunDir,
    per_host: usize,
    caps: Caps,
) -> anyhow::Result<Extracted> {
    let live = LiveRun::load_with(connector, run).await?;
    let (manifest, hosts, states) = (&live.manifest, &live.hosts, &live.states);
    // What was extracted before and still verifies is not fetched again: checked once
    // per container, off the async threads (it hashes every file).
    let dirs: Vec<(String, usize, PathBuf)> = live
        .containers()
        .into_iter()
        .map(|(n, h)| {
            let dir = container_dir(run, hosts[h].name(), &n);
            (n, h, dir)
        })
        .collect();
    let checked = check_extracted(dirs).await?;
    let mut containers = Vec::new();
    let mut todo: Vec<(usize, String)> = Vec::new();
    for (name, h, done) in checked {
        match done {
            Some(entry) => containers.push(entry),
            None => todo.push((h, name)),
        }
    }
    let verified = containers.len();
    // Each host's reports come in one archive; fetched while the first pass reads every
    // container's state and logs, so the engines are kept busy with both.
    let per_host_dirs: Vec<HashMap<String, PathBuf>> = (0..hosts.len())
        .map(|h| {
            todo.iter()
                .filter(|(hh, _)| *hh == h)
                .map(|(_, n)| (n.clone(), container_dir(run, hosts[h].name(), n)))
                .collect()
        })
        .collect();
    let fetches = hosts
        .iter()
        .zip(per_host_dirs)
        .map(|(host, dirs)| async move {
            if dirs.is_empty() {
                return Ok(BTreeMap::new());
            }
            let coordinator = &manifest.coordinator.name;
            fetch_reports(
                host,
                &run.id,
                &manifest.images.peer.tag,
                coordinator,
                dirs,
                caps,
            )
            .await
        });
    let first_pass = tasks::for_each_on_hosts("extract", todo, per_host, |h, name: String| {
        let host = &hosts[h];
        async move { observe(host, run, &name, caps).await }
    });
    let (fetched_archives, observed) =
        tokio::join!(futures_util::future::join_all(fetches), first_pass);
    let mut prefetched: BTreeMap<String, Split> = BTreeMap::new();
    for fetched in fetched_archives {
        match fetched {
            Ok(map) => prefetched.extend(map),
            // Each container then falls back to its own archive.
            Err(e) => tracing::warn!("extract: {e:#}; fetching reports one by one"),
        }
    }
    let mut errors = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    // A container whose host stopped answering is unreachable, not an error of its own.
    let mut failed = |name: String, e: anyhow::Error| {
        // Streams carry the engine's error inside an I/O error.
        let lost = e.chain().any(|c| {
            c.downcast_ref::<crate::engine::EngineError>()
                .or_else(|| {
                    c.downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .and_then(|inner| inner.downcast_ref())
                })
                .is_some_and(crate::engine::EngineError::is_unreachable)
        });
        if lost {
            unreachable.insert(name, format!("{e:#}"));
        } else {
            errors.insert(name, format!("{e:#}"));
        }
    };
    let mut second: Vec<(usize, (Observed, Option<Split>))> = Vec::new();
    for ((h, name), r) in observed {
        match r {
            Ok(o) => {
                let pre = prefetched.remove(&name);
                second.push((h, (o, pre)));
            }
            Err(e) => failed(name, e),
        }
    }
    let finished = tasks::for_each_on_hosts("reports", second, per_host, |h, (o, pre)| {
        let host = &hosts[h];
        async move {
            let name = o.name.clone();
            finish(host, o, pre, caps)
                .await
                .map_err(|e| e.context(name))
        }
    })
    .await;
    let mut fetched = 0;
    for ((_, (o, _)), r) in finished {
        match r {
            Ok(entry) => {
                fetched += 1;
                containers.push(entry);
            }
            Err(e) => failed(o.name, e),
        }
    }
    // Containers in the manifest that no engine listed: removed (by a `down` while a
    // host was lost) or on a host that cannot be reached. What was extracted of them
    // before and still verifies stays in the index.
    let gone: Vec<(String, String, PathBuf)> = manifest
        .peers
        .iter()
        .chain(std::iter::once(&manifest.coordinator))
        .filter(|p| {
            !states.contains_key(&p.name)
                && !errors.contains_key(&p.name)
                && !unreachable.contains_key(&p.name)
        })
        .map(|p| {
            let dir = container_dir(run, &p.host, &p.name);
            (p.name.clone(), p.host.clone(), dir)
        })
        .collect();
    let gone = check_extracted(gone).await?;
    let mut verified = verified;
    for (name, host, before) in gone {
        match (before, live.lost.iter().find(|l| l.name == host)) {
            (Some(entry), _) => {
                verified += 1;
                containers.push(entry);
            }
            (None, Some(l)) => {
                unreachable.insert(name, l.reason.clone());
            }
            (None, None) => {
                errors.insert(name, "no such container on its host (removed?)".into());
            }
        }
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let index = ExtractIndex {
        schema: EXTRACT_SCHEMA.into(),
        schema_version: 1,
        run_id: run.id.clone(),
        extracted_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        containers,
        errors,
        unreachable,
    };
    std::fs::create_dir_all(run.extract_dir())?;
    crate::run::dir::write_json(&run.extract_dir().join("extract.json"), &index)?;
    Ok(Extracted {
        index,
        fetched,
        verified,
    })
}

/// Prints what extract did, naming every container whose report is not complete.
pub fn print_summary(x: &Extracted) {
    let i = &x.index;
    let complete = i
        .containers
        .iter()
        .filter(|c| c.report == ReportState::Complete)
        .count();
    tracing::info!(
        "extract: {} of {} containers extracted ({} fetched, {} already extracted and verified); {} complete reports",
        i.containers.len(),
        i.containers.len() + i.errors.len() + i.unreachable.len(),
        x.fetched,
        x.verified,
        complete
    );
    for c in i
        .containers
        .iter()
        .filter(|c| c.report != ReportState::Complete || c.reason.is_some())
    {
        tracing::info!(
            "  {}: report {:?}: {}",
            c.name,
            c.report,
            c.reason.as_deref().unwrap_or("")
        );
    }
    for c in i.containers.iter().filter(|c| c.truncated.is_some()) {
        tracing::warn!(
            "{}: truncated by extract's byte caps: {}",
            c.name,
            c.truncated.as_deref().unwrap_or("")
        );
    }
    for (name, e) in &i.errors {
        tracing::warn!("{name}: not extracted: {e}");
    }
    for (name, e) in &i.unreachable {
        tracing::warn!(
            "{name}: unreachable, not extracted (run extract again when its host is back): {e}"
        );
    }
}

/// Reads `extract.json`, if extract has run.
pub fn read_index(run: &RunDir) -> Option<ExtractIndex> {
    let text = std::fs::read_to_string(run.extract_dir().join("extract.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The report file's bytes from a container's `report.tar.gz`.
pub fn read_report_file(run: &RunDir, entry: &ContainerEntry) -> anyhow::Result<Vec<u8>> {
    let path = container_dir(run, &entry.host, &entry.name).join("report.tar.gz");
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted = match entry.report {
        ReportState::Checkpoint => CHECKPOINT_FILE,
        _ => report_file(&entry.role),
    };
    for e in archive.entries()? {
        let e = e?;
        if e.path()?.to_string_lossy() == wanted {
            // Bounded by the header, before anything is read.
            let size = e.header().size()?;
            let cap = cmesh_analysis::validate::MAX_REPORT_BYTES;
            if size > cap {
                anyhow::bail!(
                    "{wanted} is {size} bytes, over the {} MiB a report may have",
                    cap >> 20
                );
            }
            let mut out = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(e, cap), &mut out)?;
            return Ok(out);
        }
    }
    anyhow::bail!("{} has no {wanted}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_catches_changed_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        save(dir.path(), "a.gz", b"hello".to_vec(), &mut files)
            .await
            .unwrap();
        let entry = ContainerEntry {
            name: "c".into(),
            host: "h".into(),
            role: "peer".into(),
            index: 1,
            state: ContainerState::Exited,
            exit_code: Some(0),
            oom_killed: false,
            report: ReportState::Complete,
            reason: None,
            truncated: None,
            files,
        };
        assert!(verify(dir.path(), &entry));
        std::fs::write(dir.path().join("a.gz"), b"tampered").unwrap();
        assert!(!verify(dir.path(), &entry));
        std::fs::remove_file(dir.path().join("a.gz")).unwrap();
        assert!(!verify(dir.path(), &entry));
        assert!(
            !dir.path().join(".a.gz.tmp").exists(),
            "no temporary file left behind"
        );
    }
}
