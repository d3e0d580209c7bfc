//! The peers' backend for a run: checked from the flags before any engine is asked,
//! and against the peer image's `io.cmesh.backends` label before anything is created.

use crate::cluster::host::Host;
use crate::run::names::has_backend_secret;
use crate::spawn::flag_file::read_flag_file;
use cmesh_common::exit::bad_input;
use std::path::Path;

/// The peers' sync backend, its secret, and the peer image that has it.
#[derive(Clone, Debug, Default)]
pub struct BackendChoice {
    /// `mesh` (built in) or another backend the peer image declares.
    pub name: String,
    /// The secret file's bytes, read once (never logged).
    pub secret: Option<Vec<u8>>,
    /// A peer image to run instead of the workspace's.
    pub peer_image: Option<String>,
    /// The user's app and its adapter (`--app-image`, `--adapter`): the peer image is
    /// derived from it ([`super::app_image`]).
    pub app: Option<super::app_image::AppChoice>,
}

/// The largest secret file taken (Ditto's is a few hundred bytes).
pub const MAX_SECRET_BYTES: u64 = 64 << 10;

/// The label a peer image lists its backends in (comma-separated).
pub const BACKENDS_LABEL: &str = "io.cmesh.backends";

impl BackendChoice {
    /// Checks the flags without an engine: a secret file, when given, must be readable
    /// and not empty; the `adapter` backend needs an app and its adapter; another backend
    /// other than `mesh` needs a peer image built with it.
    pub fn new(
        name: &str,
        secret_file: Option<&Path>,
        peer_image: Option<&str>,
        app: Option<super::app_image::AppChoice>,
    ) -> anyhow::Result<BackendChoice> {
        match (name, &app) {
            ("adapter", None) => {
                return Err(bad_input(
                    "--backend adapter needs --app-image IMAGE --adapter PATH: your app's image and the program that drives it (docs/apps.md)",
                ))
            }
            ("adapter", Some(_)) => {}
            (_, Some(_)) => {
                return Err(bad_input(format!(
                    "--app-image and --adapter run your app with the adapter backend, not `{name}`; leave out --backend"
                )))
            }
            _ => {}
        }
        let secret = match secret_file {
            None => None,
            Some(path) => Some(read_flag_file(
                "--secret-file",
                path,
                &format!("it must hold what the {name} backend needs (docs/ditto.md for ditto)"),
                MAX_SECRET_BYTES,
            )?),
        };
        if has_backend_secret(name) && secret.is_none() {
            return Err(bad_input(format!(
                "--backend {name} needs --secret-file F (for ditto: license_token and database_id, docs/ditto.md)"
            )));
        }
        if !has_backend_secret(name) && secret.is_some() {
            return Err(bad_input(
                "--secret-file is for a backend that needs one (e.g. --backend ditto); the mesh backend takes none",
            ));
        }
        if name != "mesh" && name != "adapter" && peer_image.is_none() {
            return Err(bad_input(format!(
                "the peer image built from this workspace has only the mesh backend, not `{name}`. Build a peer image with it (for ditto: docker build -f images/peer-ditto/Dockerfile -t cmesh-peer-ditto . on a machine with the vendor's library, docs/ditto.md) and pass --peer-image cmesh-peer-ditto"
            )));
        }
        Ok(BackendChoice {
            name: name.to_owned(),
            secret,
            peer_image: peer_image.map(str::to_owned),
            app,
        })
    }
}

/// The backends a peer image declares in its [`BACKENDS_LABEL`].
pub fn image_backends(labels: Option<&std::collections::HashMap<String, String>>) -> Vec<String> {
    labels
        .and_then(|l| l.get(BACKENDS_LABEL))
        .map(|v| v.split(',').map(|b| b.trim().to_owned()).collect())
        .unwrap_or_else(|| vec!["mesh".to_owned()])
}

/// Checks that `image` (on this machine's engine) has the backend; returns its
/// reference. Bad input otherwise, before anything is created.
pub async fn chosen_peer_image(
    builder: &Host,
    image: &str,
    backend: &str,
) -> anyhow::Result<crate::run::dir::ImageRef> {
    let info = builder.engine.inspect_image(image).await.map_err(|e| {
        bad_input(format!(
            "--peer-image {image}: not on this machine's Docker Engine ({e}); build or load it first"
        ))
    })?;
    let has = image_backends(Some(&info.labels));
    if !has.iter().any(|b| b == backend) {
        return Err(bad_input(format!(
            "--peer-image {image} was built without the `{backend}` backend (its {BACKENDS_LABEL} label says: {}). Build the image for it: for ditto, docker build -f images/peer-ditto/Dockerfile -t cmesh-peer-ditto . (docs/ditto.md)",
            has.join(",")
        )));
    }
    Ok(crate::run::dir::ImageRef {
        tag: image.to_owned(),
        id: info.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_choice_is_checked_before_any_engine_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ditto.secret");
        std::fs::write(&secret, "license_token = t\ndatabase_id = d\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        let ok =
            BackendChoice::new("ditto", Some(&secret), Some("cmesh-peer-ditto"), None).unwrap();
        assert_eq!(ok.secret.as_deref().map(<[u8]>::len), Some(34));
        assert!(BackendChoice::new("mesh", None, None, None).is_ok());
        let adapter = dir.path().join("adapter.sh");
        std::fs::write(&adapter, "#!/bin/sh\n").unwrap();
        let app = || Some(super::super::app_image::AppChoice::new("my-app", &adapter).unwrap());
        assert!(BackendChoice::new("adapter", None, None, app()).is_ok());
        for (name, want) in [
            ("adapter", "needs --app-image"),
            ("mesh", "leave out --backend"),
        ] {
            let given = if name == "mesh" { app() } else { None };
            let e = BackendChoice::new(name, None, None, given).unwrap_err();
            assert_eq!(cmesh_common::exit::code(&e), 2);
            assert!(e.to_string().contains(want), "{e}");
        }
        let err = |name: &str, secret: Option<&Path>, image: Option<&str>| {
            let e = BackendChoice::new(name, secret, image, None).unwrap_err();
            assert_eq!(cmesh_common::exit::code(&e), 2);
            e.to_string()
        };
        assert!(err("ditto", None, Some("x")).contains("needs --secret-file"));
        assert!(err("ditto", Some(&empty), Some("x")).contains("is empty"));
        assert!(err("ditto", Some(&dir.path().join("none")), Some("x")).contains("cannot read it"));
        assert!(err("ditto", Some(dir.path()), Some("x")).contains("not a regular file"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        assert!(err("ditto", Some(&big), Some("x")).contains("is over 65536 bytes"));
        assert!(err("mesh", Some(&secret), None).contains("takes none"));
        let e = err("ditto", Some(&secret), None);
        assert!(
            e.contains("only the mesh backend") && e.contains("images/peer-ditto"),
            "{e}"
        );
        // The secret's content never shows in an error.
        assert!(!err("ditto", Some(&secret), None).contains("license_token = t"));
    }

    #[test]
    fn images_declare_backends() {
        let labels = std::collections::HashMap::from([(
            BACKENDS_LABEL.to_owned(),
            "mesh, ditto".to_owned(),
        )]);
        assert_eq!(image_backends(Some(&labels)), vec!["mesh", "ditto"]);
        assert_eq!(
            image_backends(None),
            vec!["mesh"],
            "unlabelled: the built-in one"
        );
    }
}
