//! A user's app as the peers' image (`--app-image IMAGE --adapter PATH`): their image,
//! with the workspace's peer binary and their adapter added, built on this machine's
//! engine and cached by content (the tag is a hash of the app image's id, the peer
//! binary, the adapter and the recipe), then put on every host like any peer image.
//!
//! The build checks what the peers will need, so that a run that cannot work is
//! refused before anything is created (exit 2) and says what is missing: `/bin/sh`
//! (the peer starts the adapter with it), a C library the peer binary runs on, the
//! adapter's interpreter (its `#!` line), and `tc` and `iptables` when the plan has
//! faults (peers shape their own traffic). Each check prints a `cmesh-check:` line when
//! it fails; the build's error is turned into those lines.

use crate::cluster::host::Host;
use crate::cluster::images::{ensure_on_base, image_id, ImageRef};
use cmesh_common::exit::bad_input;
use std::path::Path;

/// Where the adapter lives in the peer image.
pub const ADAPTER_DIR: &str = "/cmesh/app";
/// The largest adapter taken (a script; a large program belongs in the app image).
pub const MAX_ADAPTER_BYTES: u64 = 4 << 20;

/// The app and its adapter, checked from the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppChoice {
    /// The user's image, on this machine's engine.
    pub image: String,
    /// The adapter's file name, kept in the image under [`ADAPTER_DIR`].
    pub adapter_name: String,
    pub adapter: Vec<u8>,
}

/// What runs an adapter: its `#!` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interpreter {
    /// An absolute path (`#!/bin/sh`).
    Path(String),
    /// A program found on `PATH` (`#!/usr/bin/env python3`).
    OnPath(String),
    /// No `#!` line: `sh` runs it as a script.
    Shell,
}

impl AppChoice {
    /// Reads and checks the adapter; bad input if it cannot be used.
    pub fn new(image: &str, adapter: &Path) -> anyhow::Result<AppChoice> {
        if image.trim().is_empty() {
            return Err(bad_input("--app-image is empty; name your app's image"));
        }
        let bytes = super::flag_file::read_flag_file(
            "--adapter",
            adapter,
            "it must be the program that drives your app (docs/apps.md)",
            MAX_ADAPTER_BYTES,
        )?;
        let name = adapter
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 100
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
            .ok_or_else(|| {
                bad_input(format!(
                    "--adapter {}: name the file with 1 to 100 of a-z A-Z 0-9 . _ -",
                    adapter.display()
                ))
            })?;
        interpreter(&bytes)
            .map_err(|e| bad_input(format!("--adapter {}: {e}", adapter.display())))?;
        Ok(AppChoice {
            image: image.to_owned(),
            adapter_name: name.to_owned(),
            adapter: bytes,
        })
    }

    /// The adapter's command line inside the peer image.
    pub fn command(&self) -> String {
        format!("{ADAPTER_DIR}/{}", self.adapter_name)
    }
}

/// The interpreter an adapter's `#!` line names.
pub fn interpreter(script: &[u8]) -> Result<Interpreter, String> {
    let Some(rest) = script.strip_prefix(b"#!") else {
        return Ok(Interpreter::Shell);
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .map_err(|_| "its #! line is not UTF-8".to_owned())?
        .trim();
    let mut words = line.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| "its #! line names no interpreter".to_owned())?;
    let safe = |w: &str| {
        w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
    };
    if !program.starts_with('/') || !safe(program) {
        return Err(format!(
            "its #! line must start with an absolute path, not `{}`",
            program.chars().take(64).collect::<String>()
        ));
    }
    if program == "/usr/bin/env" {
        let mut on_path = words.next();
        if on_path == Some("-S") {
            on_path = words.next();
        }
        return match on_path {
            Some(p) if safe(p) && !p.starts_with('-') => Ok(Interpreter::OnPath(p.to_owned())),
            _ => Err("its #! line runs /usr/bin/env with no program to find".to_owned()),
        };
    }
    Ok(Interpreter::Path(program.to_owned()))
}

/// The derived image's Dockerfile: the checks, then the peer and the adapter.
pub fn dockerfile(app: &AppChoice, need_shaping: bool) -> Result<String, String> {
    let interpreter = interpreter(&app.adapter)?;
    let mut checks = vec![
        "RUN /usr/local/bin/peer --version >/dev/null 2>&1 || { echo \"cmesh-check: the peer binary does not run in this image: $(/usr/local/bin/peer --version 2>&1 | head -n 1). It needs glibc 2.36 or newer (Debian bookworm or later): base your app image on one, e.g. FROM the cmesh base image\"; exit 1; }".to_owned(),
    ];
    match &interpreter {
        Interpreter::Path(p) => checks.push(format!(
            "RUN test -x {p} || {{ echo \"cmesh-check: the adapter's interpreter {p} (its #! line) is not in this image: install it in your app image\"; exit 1; }}"
        )),
        Interpreter::OnPath(p) => checks.push(format!(
            "RUN test -x /usr/bin/env && command -v {p} >/dev/null || {{ echo \"cmesh-check: the adapter's interpreter {p} (its #! line, through /usr/bin/env) is not in this image: install it in your app image\"; exit 1; }}"
        )),
        Interpreter::Shell => {}
    }
    if need_shaping {
        checks.push("RUN command -v tc >/dev/null && command -v iptables >/dev/null || { echo \"cmesh-check: the plan has faults, and peers shape their own traffic with tc and iptables, which this image lacks: install iproute2 and iptables in your app image\"; exit 1; }".to_owned());
    }
    Ok(format!(
        "# A cmesh peer around the user's app: made by launcher spawn --app-image.\n\
         ARG BASE_IMAGE\n\
         FROM ${{BASE_IMAGE}}\n\
         COPY peer /usr/local/bin/peer\n\
         COPY adapter {ADAPTER_DIR}/{name}\n\
         {checks}\n\
         RUN mkdir -p /reports /cmesh\n\
         LABEL io.cmesh.backends=\"mesh,adapter\" io.cmesh.adapter=\"{name}\"\n\
         ENTRYPOINT [\"/usr/local/bin/peer\"]\n",
        name = app.adapter_name,
        checks = checks.join("\n"),
    ))
}

/// The `cmesh-check:` lines of a failed build, or its first lines when it has none.
pub fn failed_checks(build_error: &str) -> String {
    let checks: Vec<&str> = build_error
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cmesh-check: "))
        .collect();
    if !checks.is_empty() {
        return checks.join("; ");
    }
    if build_error.contains("/bin/sh") && build_error.contains("no such file") {
        return "the image has no /bin/sh, which starts the adapter: base your app image on one that has a shell".to_owned();
    }
    build_error.lines().take(5).collect::<Vec<_>>().join(" | ")
}

/// Builds (or finds) the peer image for `app` from the peer binary at `peer_binary`.
/// Bad input, naming what is missing, if the app image cannot carry a peer.
pub async fn ensure(
    builder: &Host,
    app: &AppChoice,
    peer_binary: &Path,
    need_shaping: bool,
) -> anyhow::Result<ImageRef> {
    let id = image_id(builder, &app.image).await.ok_or_else(|| {
        bad_input(format!(
            "--app-image {}: not on this machine's Docker Engine; build or load it first (docs/apps.md)",
            app.image
        ))
    })?;
    let binary = std::fs::read(peer_binary).map_err(|e| {
        bad_input(format!(
            "cannot read the peer binary at {}: {e}. Build the workspace first (cargo build --release) or pass --bin-dir",
            peer_binary.display()
        ))
    })?;
    let dockerfile = dockerfile(app, need_shaping).map_err(bad_input)?;
    let files = [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("peer", binary.as_slice(), 0o755),
        ("adapter", app.adapter.as_slice(), 0o755),
    ];
    let base = ImageRef {
        tag: app.image.clone(),
        id,
    };
    match ensure_on_base(
        builder,
        "cmesh-app-peer",
        &files,
        &base,
        Some(&format!("images: the peer around {}", app.image)),
    )
    .await
    {
        Ok((image, built)) => {
            tracing::info!(
                "images: {} ({})",
                image.tag,
                if built { "built" } else { "up to date" }
            );
            Ok(image)
        }
        Err(e) => Err(bad_input(format!(
            "--app-image {} cannot carry a cmesh peer: {}",
            app.image,
            failed_checks(&format!("{e:#}"))
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_come_from_the_shebang() {
        assert_eq!(
            interpreter(b"#!/usr/bin/env python3\nprint()"),
            Ok(Interpreter::OnPath("python3".into()))
        );
        assert_eq!(
            interpreter(b"#!/usr/bin/env -S node --harmony\n"),
            Ok(Interpreter::OnPath("node".into()))
        );
        assert_eq!(
            interpreter(b"#! /bin/bash -e\n"),
            Ok(Interpreter::Path("/bin/bash".into()))
        );
        assert_eq!(interpreter(b"echo hi\n"), Ok(Interpreter::Shell));
        for bad in [
            &b"#!\n"[..],
            b"#!python3\n",
            b"#!/usr/bin/env\n",
            b"#!/bin/s$(reboot)\n",
            b"#!/usr/bin/env $(x)\n",
            b"#!\xff\n",
        ] {
            assert!(
                interpreter(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn adapters_are_checked_before_any_engine_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("adapter.py");
        std::fs::write(&good, "#!/usr/bin/env python3\n").unwrap();
        let app = AppChoice::new("my-app", &good).unwrap();
        assert_eq!(app.command(), "/cmesh/app/adapter.py");
        let err = |image: &str, path: &Path| {
            let e = AppChoice::new(image, path).unwrap_err();
            assert_eq!(cmesh_common::exit::code(&e), 2);
            e.to_string()
        };
        assert!(err("my-app", &dir.path().join("none")).contains("cannot read it"));
        let empty = dir.path().join("empty.sh");
        std::fs::write(&empty, " \n").unwrap();
        assert!(err("my-app", &empty).contains("is empty"));
        let spaced = dir.path().join("my adapter");
        std::fs::write(&spaced, "echo\n").unwrap();
        assert!(err("my-app", &spaced).contains("name the file"));
        let relative = dir.path().join("rel");
        std::fs::write(&relative, "#!python3\n").unwrap();
        assert!(err("my-app", &relative).contains("absolute path"));
        assert!(err(" ", &good).contains("--app-image is empty"));
    }

    #[test]
    fn the_recipe_checks_what_the_peers_need() {
        let app = AppChoice {
            image: "my-app".into(),
            adapter_name: "adapter.py".into(),
            adapter: b"#!/usr/bin/env python3\n".to_vec(),
        };
        let d = dockerfile(&app, false).unwrap();
        assert!(d.contains("COPY adapter /cmesh/app/adapter.py"), "{d}");
        assert!(d.contains("command -v python3"), "{d}");
        assert!(d.contains("peer --version"), "{d}");
        assert!(d.contains("io.cmesh.backends=\"mesh,adapter\""), "{d}");
        assert!(!d.contains("iptables"), "no faults, no shaping check");
        assert!(dockerfile(&app, true).unwrap().contains("iptables"));
        let log = "Step 5/9 : RUN ...\ncmesh-check: the adapter's interpreter python3 is missing\nThe command returned 1";
        assert_eq!(
            failed_checks(log),
            "the adapter's interpreter python3 is missing"
        );
        assert!(
            failed_checks("exec: \"/bin/sh\": stat /bin/sh: no such file or directory")
                .contains("no /bin/sh")
        );
    }
}
