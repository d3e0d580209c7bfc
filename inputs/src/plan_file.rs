//! Test plans: `configs/*.toml`, layered with the `config` crate.
//!
//! Layers, later wins: built-in defaults, the plan file (`--config`), `CMESH_PLAN_*`
//! environment variables (e.g. `CMESH_PLAN_DURATION=20s`), then command-line flags. The
//! format is documented in `docs/configs.md`.

use cmesh_common::exit::bad_input;
use cmesh_common::graph::GraphKind;
use cmesh_common::parse::{self, MillisRange};
use cmesh_common::plan::{Dissemination, PlanSpec};
use serde::Deserialize;
use std::path::Path;

/// A plan as users write it: durations as text (`30s`), ranges as `200..500`.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub peers: Option<usize>,
    pub min_peers: Option<usize>,
    pub duration: Option<String>,
    pub graph: Option<String>,
    pub degree: Option<usize>,
    pub seed: Option<u64>,
    pub write_interval: Option<String>,
    pub payload_bytes: Option<usize>,
    pub dissemination: Option<String>,
    pub start_delay: Option<String>,
    pub start_timeout: Option<String>,
    pub heartbeat: Option<String>,
    pub settle_timeout: Option<String>,
    /// `[groups]`: named peer sets.
    pub groups: Option<std::collections::BTreeMap<String, String>>,
    /// `[[fault]]`: the fault timeline (cmesh_common::faults).
    pub fault: Option<Vec<cmesh_common::faults::FaultSpec>>,
}

impl PlanFile {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: PlanFile) -> PlanFile {
        PlanFile {
            peers: over.peers.or(self.peers),
            min_peers: over.min_peers.or(self.min_peers),
            duration: over.duration.or(self.duration),
            graph: over.graph.or(self.graph),
            degree: over.degree.or(self.degree),
            seed: over.seed.or(self.seed),
            write_interval: over.write_interval.or(self.write_interval),
            payload_bytes: over.payload_bytes.or(self.payload_bytes),
            dissemination: over.dissemination.or(self.dissemination),
            start_delay: over.start_delay.or(self.start_delay),
            start_timeout: over.start_timeout.or(self.start_timeout),
            heartbeat: over.heartbeat.or(self.heartbeat),
            settle_timeout: over.settle_timeout.or(self.settle_timeout),
            groups: over.groups.or(self.groups),
            fault: over.fault.or(self.fault),
        }
    }

    /// The spec, on top of the defaults; `origin` names the source in errors.
    pub fn to_spec(&self, origin: &str) -> anyhow::Result<PlanSpec> {
        let d = PlanSpec::default();
        let ms = |key: &str, v: &Option<String>, default: u64| -> anyhow::Result<u64> {
            match v {
                None => Ok(default),
                Some(s) => parse::duration(s)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| bad_input(format!("{origin}: `{key}`: {e}"))),
            }
        };
        let peers = self.peers.unwrap_or(d.peers);
        let graph = match &self.graph {
            None => d.graph,
            Some(g) => {
                GraphKind::parse(g).map_err(|e| bad_input(format!("{origin}: `graph`: {e}")))?
            }
        };
        let spec = PlanSpec {
            peers,
            min_peers: self.min_peers,
            duration_ms: ms("duration", &self.duration, d.duration_ms)?,
            graph,
            degree: self
                .degree
                .unwrap_or_else(|| d.degree.min(peers.saturating_sub(1)).max(2)),
            seed: self.seed.unwrap_or(d.seed),
            write_interval: match &self.write_interval {
                None => d.write_interval,
                Some(r) => MillisRange::parse(r)
                    .map_err(|e| bad_input(format!("{origin}: `write_interval`: {e}")))?,
            },
            payload_bytes: self.payload_bytes.unwrap_or(d.payload_bytes),
            dissemination: match &self.dissemination {
                None => d.dissemination,
                Some(m) => Dissemination::parse(m)
                    .map_err(|e| bad_input(format!("{origin}: `dissemination`: {e}")))?,
            },
            start_delay_ms: ms("start_delay", &self.start_delay, d.start_delay_ms)?,
            // Container start takes time at scale: allow 0.5 s per peer on top.
            start_timeout_ms: ms(
                "start_timeout",
                &self.start_timeout,
                d.start_timeout_ms + 500 * peers as u64,
            )?,
            heartbeat_ms: ms("heartbeat", &self.heartbeat, d.heartbeat_ms)?,
            settle_timeout_ms: ms("settle_timeout", &self.settle_timeout, d.settle_timeout_ms)?,
            groups: self.groups.clone().unwrap_or_default(),
            faults: self.fault.clone().unwrap_or_default(),
        };
        spec.validate()
            .map_err(|e| bad_input(format!("{origin}: {e}")))?;
        Ok(spec)
    }
}

/// Parses a plan file's text (`origin` names it in errors), without the environment:
/// what `load` does with a file, for tests and fuzzing.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<PlanFile> {
    build(
        config::Config::builder().add_source(toml_text(text)),
        origin,
    )
}

fn toml_text(text: &str) -> config::File<config::FileSourceString, config::FileFormat> {
    config::File::from_str(text, config::FileFormat::Toml)
}

/// `builder`'s sources, built and read as a plan file.
fn build(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    origin: &str,
) -> anyhow::Result<PlanFile> {
    builder
        .build()
        .map_err(|e| bad_input(format!("{origin}: {e}")))?
        .try_deserialize::<PlanFile>()
        .map_err(|e| bad_input(format!("{origin}: {e}. See docs/configs.md for the keys")))
}

/// The largest plan file read (the shipped ones are under 4 KiB; 1,000 faults fit).
pub const MAX_PLAN_FILE_BYTES: u64 = 1 << 20;

/// Reads the plan file (if any) and the `CMESH_PLAN_*` environment, through `config`
/// (the environment over the file).
pub fn load(path: Option<&Path>) -> anyhow::Result<PlanFile> {
    let text = match path {
        None => None,
        Some(path) => {
            let size = std::fs::metadata(path)
                .map_err(|_| {
                    bad_input(format!(
                        "the plan file {} does not exist; see configs/ for examples",
                        path.display()
                    ))
                })?
                .len();
            if size > MAX_PLAN_FILE_BYTES {
                return Err(bad_input(format!(
                    "the plan file {} is {size} bytes; a plan file is at most {MAX_PLAN_FILE_BYTES}",
                    path.display()
                )));
            }
            Some(std::fs::read_to_string(path).map_err(|e| {
                bad_input(format!("cannot read the plan file {}: {e}", path.display()))
            })?)
        }
    };
    let origin = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "CMESH_PLAN_* environment".into());
    // Sources later in the builder win: the file first, then the environment.
    let mut builder = config::Config::builder();
    if let Some(text) = &text {
        builder = builder.add_source(toml_text(text));
    }
    let env = config::Environment::with_prefix("CMESH_PLAN").prefix_separator("_");
    build(builder.add_source(env), &origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // Plans are the .toml files; configs/grafana/ holds a dashboard.
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let file = load(Some(&path)).unwrap();
            file.to_spec(&path.display().to_string()).unwrap();
            n += 1;
        }
        assert!(n >= 2, "configs/ should hold example plans");
    }

    #[test]
    fn layers_file_then_flags_and_reports_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "peers = 7\nduration = \"20s\"\ngraph = \"ring\"\n").unwrap();
        let file = load(Some(&path)).unwrap();
        let flags = PlanFile {
            peers: Some(9),
            ..PlanFile::default()
        };
        let spec = file.merge(flags).to_spec("p.toml").unwrap();
        assert_eq!(
            (spec.peers, spec.duration_ms, spec.graph),
            (9, 20_000, GraphKind::Ring)
        );

        std::fs::write(&path, "peers = 7\nflavour = 1\n").unwrap();
        let e = load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("flavour"), "{e}");
        let bad = PlanFile {
            duration: Some("long".into()),
            ..PlanFile::default()
        };
        let e = bad.to_spec("x").unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
        let zero = PlanFile {
            peers: Some(0),
            ..PlanFile::default()
        };
        assert!(zero
            .to_spec("x")
            .unwrap_err()
            .to_string()
            .contains("--peers must be at least 1"));
    }
}
