//! A local lab for tests: Docker hosts in containers on this machine (`launcher lab up`),
//! removed when dropped.

use crate::{binary, images_built, text};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// A lab of `n` hosts, removed when dropped.
pub struct Lab {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub hosts_file: PathBuf,
}

impl Lab {
    /// `launcher lab up --hosts n` under a name made from this process and `tag`.
    pub fn up(tag: &str, n: usize) -> Lab {
        images_built();
        let name = format!("t{}-{tag}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab {
            hosts_file: dir.path().join("hosts.toml"),
            name,
            dir,
        };
        let out = Command::new(binary("launcher"))
            .args([
                "lab",
                "up",
                "--hosts",
                &n.to_string(),
                "--name",
                &lab.name,
                "--dir",
            ])
            .arg(lab.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab up failed:\n{}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout).trim(),
            lab.hosts_file.display().to_string()
        );
        lab
    }

    /// The container of lab host `i` (1-based).
    pub fn container(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }

    /// `docker` inside lab host `i`.
    pub fn docker_in(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.container(i), "docker"])
            .args(args)
            .output()
            .unwrap();
        text(&out.stdout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(binary("launcher"))
            .args(["lab", "down", "--name", &self.name])
            .output();
    }
}

/// The hosts a run's manifest placed peers on.
pub fn hosts_placed(manifest: &Value) -> BTreeSet<&str> {
    manifest["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["host"].as_str().unwrap())
        .collect()
}
