//! A run is a directory: `runs/<run-id>/`.
//!
//! | path | written by | content |
//! |---|---|---|
//! | `manifest.json` | `spawn` | who is where, images, network, plan spec |
//! | `token` | `spawn` | the run token (mode 0600; copied into containers as a file) |
//! | `extract/<host>/<container>/` | `extract` | `report.tar.gz`, `logs.txt.gz`, `inspect.json`, `meta.json` |
//! | `extract/extract.json` | `extract` | the index: every container, its files' sha256 and sizes, its outcome |
//! | `analysis/` | `analyze` | `summary.json`, `summary.md` |
//!
//! `runs/latest` holds the id of the newest run, the default for `--run`.

pub use crate::cluster::images::{ImageRef, Images};
use anyhow::Context;
use cmesh_common::exit::bad_input;
use cmesh_common::fsutil::write_atomic;
use cmesh_common::plan::PlanSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_SCHEMA: &str = "cmesh.run-manifest";

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub schema: String,
    pub schema_version: u32,
    pub run_id: String,
    pub created_at: String,
    pub hosts: Vec<crate::hosts::HostSpec>,
    /// How remote hosts are reached (key paths absolute).
    #[serde(default)]
    pub ssh: crate::hosts::SshSettings,
    /// Each host's clock minus the launcher's, in ms, measured at spawn (see
    /// [`crate::cluster::clock`]). `analyze` corrects cross-host latencies with them.
    #[serde(default)]
    pub clock_offsets_ms: std::collections::BTreeMap<String, f64>,
    /// How images reached the hosts: `local`, `registry` or `load`.
    #[serde(default)]
    pub image_transport: String,
    /// The peers' sync backend (`mesh` unless `--backend` said otherwise).
    #[serde(default = "mesh")]
    pub backend: String,
    /// The adapter's command in the peer image, for the `adapter` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    pub network: NetworkInfo,
    pub images: Images,
    pub spec: PlanSpec,
    pub coordinator: Placement,
    pub peers: Vec<Placement>,
    /// Hosts of the hosts file that could not be reached at spawn and were left out
    /// (`spawn --allow-missing-hosts`), with the reason. `hosts` lists only the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_missing_at_spawn: Vec<crate::cluster::host::LostHost>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    pub subnet: String,
    /// Made with `spawn --encrypt-overlay` (IPsec between hosts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

fn mesh() -> String {
    "mesh".into()
}

/// Where one container is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub name: String,
    pub host: String,
    /// 1-based for peers, 0 for the coordinator.
    pub index: u32,
}

/// The largest manifest read (10,000 peers take about 1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

impl RunManifest {
    /// Checks what the launcher builds paths, names and commands from: the run id, host
    /// names, container names, and the plan. (A run directory may be copied or renamed
    /// for analysis, so its name need not be the run id.)
    pub fn check(&self) -> Result<(), String> {
        validate_run_id(&self.run_id).map_err(|e| e.to_string())?;
        for h in &self.hosts {
            crate::hosts::check_host(h).map_err(|(key, e)| format!("a host's `{key}`: {e}"))?;
        }
        if self.peers.len() > cmesh_common::plan::MAX_PEERS {
            return Err(format!(
                "{} peers; at most {}",
                self.peers.len(),
                cmesh_common::plan::MAX_PEERS
            ));
        }
        for p in self.peers.iter().chain(std::iter::once(&self.coordinator)) {
            cmesh_common::protocol::validate_peer_name(&p.name)?;
            crate::hosts::check_host_name(&p.host)?;
        }
        self.spec.validate().map_err(|e| e.to_string())
    }

    /// The run's hosts as a hosts file (hosts and SSH settings).
    pub fn hosts_file(&self) -> crate::hosts::HostsFile {
        crate::hosts::HostsFile {
            ssh: self.ssh.clone(),
            hosts: self.hosts.clone(),
        }
    }
}

/// A run's directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

/// Checks a run id: 1 to 40 of `a-z 0-9 -`, starting with a letter or digit.
pub fn validate_run_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 40
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad_input(format!(
            "`{}` is not a run id: use 1 to 40 of a-z 0-9 -, not starting with -",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// A new run id from the UTC time: `r1122-031800`.
pub fn new_run_id() -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-11-22T03:18:00Z
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    format!("r{}-{}", &digits[4..8], &digits[8..14])
}

impl RunDir {
    /// Creates `base/<id>` (or opens it, if a spawn is being re-run) and marks it latest.
    pub fn create(base: &Path, id: &str) -> anyhow::Result<RunDir> {
        validate_run_id(id)?;
        let path = base.join(id);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        std::fs::write(base.join("latest"), id)
            .with_context(|| format!("cannot write {}", base.join("latest").display()))?;
        Ok(RunDir {
            id: id.to_owned(),
            path,
        })
    }

    /// Opens an existing run: `id`, or the latest if `None`.
    pub fn open(base: &Path, id: Option<&str>) -> anyhow::Result<RunDir> {
        let id = match id {
            Some(id) => id.to_owned(),
            None => std::fs::read_to_string(base.join("latest"))
                .map(|s| s.trim().to_owned())
                .map_err(|_| {
                    bad_input(format!(
                        "no run found under {}; start one with `launcher spawn` or `launcher run`, or pass --run",
                        base.display()
                    ))
                })?,
        };
        validate_run_id(&id)?;
        let path = base.join(&id);
        if !path.join("manifest.json").exists() {
            let known = list_runs(base);
            return Err(bad_input(format!(
                "unknown run `{id}`: {} has no manifest.json. Known runs: {}",
                path.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        Ok(RunDir { id, path })
    }

    /// Opens a run by its directory (`analyze runs/<id>`), or by its id under `base`
    /// when `arg` is a bare name that is no directory here (`analyze <id>`, as the other
    /// commands take it).
    pub fn open_arg(base: &Path, arg: &Path) -> anyhow::Result<RunDir> {
        match arg.to_str() {
            Some(id) if arg.components().count() == 1 && !arg.is_dir() => {
                RunDir::open(base, Some(id))
            }
            _ => RunDir::open_path(arg),
        }
    }

    /// Opens a run by its directory.
    fn open_path(path: &Path) -> anyhow::Result<RunDir> {
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad_input(format!("{} is not a run directory", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        RunDir::open(base, Some(id))
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("manifest.json")
    }
    /// The peers' token: in every container of the run.
    pub fn token_path(&self) -> PathBuf {
        self.path.join("token")
    }
    /// The admin token: with the launcher only (the coordinator holds its digest).
    /// `prometheus.json`: the coordinator as a Prometheus `file_sd` target.
    pub fn prometheus_targets_path(&self) -> PathBuf {
        self.path.join("prometheus.json")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.path.join("admin-token")
    }
    pub fn extract_dir(&self) -> PathBuf {
        self.path.join("extract")
    }
    pub fn analysis_dir(&self) -> PathBuf {
        self.path.join("analysis")
    }

    pub fn read_manifest(&self) -> anyhow::Result<RunManifest> {
        let path = self.manifest_path();
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= MAX_MANIFEST_BYTES,
            "{} is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} (was it edited by hand?)",
            path.display()
        );
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let m: RunManifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        m.check()
            .map_err(|e| anyhow::anyhow!("{}: {e} (was it edited by hand?)", path.display()))?;
        if m.schema != MANIFEST_SCHEMA || m.schema_version != 1 {
            anyhow::bail!(
                "{} has schema {} v{}; this launcher reads {MANIFEST_SCHEMA} v1",
                self.manifest_path().display(),
                m.schema,
                m.schema_version
            );
        }
        Ok(m)
    }

    pub fn write_manifest(&self, m: &RunManifest) -> anyhow::Result<()> {
        write_json(&self.manifest_path(), m)
    }

    /// The peers' token: read if it exists, else made and written (mode 0600).
    pub fn token(&self) -> anyhow::Result<String> {
        secret_file(&self.token_path())
    }

    /// The admin token: read if it exists, else made and written (mode 0600).
    pub fn admin_token(&self) -> anyhow::Result<String> {
        secret_file(&self.admin_token_path())
    }
}

/// A random token in `path`: read if the file exists, else made and written (mode 0600,
/// created exclusively).
fn secret_file(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        return Ok(cmesh_common::token::read_token_file(path)?);
    }
    let token = cmesh_common::token::random_token().context("cannot read /dev/urandom")?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Run ids under `base` that have a manifest, sorted.
pub fn list_runs(base: &Path) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("manifest.json").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    runs.sort();
    runs
}

/// Writes `value` as pretty JSON to `path`, atomically and durably.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    Ok(write_atomic(
        path,
        serde_json::to_string_pretty(value)?.as_bytes(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        let id = new_run_id();
        assert!(validate_run_id(&id).is_ok(), "{id}");
        assert_eq!(id.len(), 12, "{id}");
        assert!(validate_run_id("Run_1").is_err());
        assert!(validate_run_id("-x").is_err());
        assert!(validate_run_id(&"a".repeat(41)).is_err());
    }

    #[test]
    fn unknown_run_is_bad_input_and_lists_known_runs() {
        let base = tempfile::tempdir().unwrap();
        let e = RunDir::open(base.path(), None).unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
        std::fs::create_dir_all(base.path().join("r1")).unwrap();
        std::fs::write(base.path().join("r1/manifest.json"), "{}").unwrap();
        let e = RunDir::open(base.path(), Some("r2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown run `r2`") && e.contains("r1"), "{e}");
    }

    #[test]
    fn analyze_takes_a_run_directory_or_a_run_id() {
        let scratch = tempfile::tempdir().unwrap();
        let base = scratch.path().join("runs");
        std::fs::create_dir_all(base.join("r1")).unwrap();
        std::fs::write(base.join("r1/manifest.json"), "{}").unwrap();
        let by_dir = RunDir::open_arg(&base, &base.join("r1")).unwrap();
        let by_id = RunDir::open_arg(&base, Path::new("r1")).unwrap();
        assert_eq!((by_dir.id.as_str(), by_id.path), ("r1", base.join("r1")));
        let e = RunDir::open_arg(&base, Path::new("r2")).unwrap_err();
        assert!(e.to_string().contains("Known runs: r1"), "{e}");
    }

    fn manifest(run_id: &str) -> RunManifest {
        let image = serde_json::json!({ "tag": "t:1", "id": "sha256:x" });
        serde_json::from_value(serde_json::json!({
            "schema": MANIFEST_SCHEMA,
            "schema_version": 1,
            "run_id": run_id,
            "created_at": "2026-12-06T00:00:00Z",
            "hosts": [{ "name": "local" }],
            "network": { "name": "cmesh-r1", "id": "n", "subnet": "10.0.0.0/24" },
            "images": { "base": image, "peer": image, "coordinator": image },
            "spec": PlanSpec { peers: 2, ..Default::default() },
            "coordinator": { "name": "r1-coordinator", "host": "local", "index": 0 },
            "peers": [
                { "name": "r1-peer-0001", "host": "local", "index": 1 },
                { "name": "r1-peer-0002", "host": "local", "index": 2 },
            ],
        }))
        .unwrap()
    }

    #[test]
    fn a_hand_edited_manifest_is_checked_before_use() {
        let base = tempfile::tempdir().unwrap();
        let run = RunDir::create(base.path(), "r1").unwrap();
        run.write_manifest(&manifest("r1")).unwrap();
        assert_eq!(run.read_manifest().unwrap().peers.len(), 2);
        let bad = |edit: &dyn Fn(&mut RunManifest)| {
            let mut m = manifest("r1");
            edit(&mut m);
            run.write_manifest(&m).unwrap();
            run.read_manifest().unwrap_err().to_string()
        };
        assert!(bad(&|m| m.run_id = "../r2".into()).contains("not a run id"));
        let e = bad(&|m| m.peers[0].host = "../../etc".into());
        assert!(e.contains("not a host name"), "{e}");
        let e = bad(&|m| m.peers[1].name = "x".repeat(5_000_000));
        assert!(
            e.contains("not a valid peer name") && e.len() < 500,
            "{} bytes",
            e.len()
        );
        let e = bad(&|m| m.hosts[0].ssh = Some("-oProxyCommand=x".into()));
        assert!(e.contains("-"), "{e}");
        assert!(bad(&|m| m.spec.duration_ms = u64::MAX).contains("at most"));
        std::fs::write(
            run.manifest_path(),
            vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize],
        )
        .unwrap();
        assert!(run
            .read_manifest()
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn token_is_made_once_and_private() {
        let base = tempfile::tempdir().unwrap();
        let run = RunDir::create(base.path(), "r1").unwrap();
        let t1 = run.token().unwrap();
        assert_eq!(run.token().unwrap(), t1);
        assert_eq!(t1.len(), 48);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run.token_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let admin = run.admin_token().unwrap();
        assert_eq!(run.admin_token().unwrap(), admin);
        assert_ne!(admin, t1, "two tokens, not one");
        let mode = std::fs::metadata(run.admin_token_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(base.path().join("latest")).unwrap(),
            "r1"
        );
    }
}
