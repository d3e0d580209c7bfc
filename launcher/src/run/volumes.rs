//! The run's volumes on each host: reports (every container writes its report there),
//! secrets (the peers' token and the admin token's digest, for every container) and the
//! backend's secret (for peers only), seeded through a scratch container so no secret
//! passes through an environment, a command line or an image.

use crate::cluster::host::Host;
use crate::cluster::images::tar_context;
use crate::cluster::scratch::with_scratch;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::run::names::{
    backend_secret_volume, reports_volume, secrets_volume, BACKEND_SECRET_DIR, TOKEN_DIR,
};
use anyhow::Context;

/// The run's secrets as they are written into its volumes.
pub struct Secrets<'a> {
    /// The peers' token.
    pub token: &'a str,
    /// The admin token's digest (`cmesh_common::token::digest`).
    pub admin_digest: &'a str,
    /// The backend's secret, if the backend has one.
    pub backend: Option<&'a [u8]>,
}

/// Creates the run's volumes on `host` and writes the secrets into them: through a
/// container that is created with the volumes mounted, never started, and removed again.
/// No secret appears in an environment, a command line, an image or `docker inspect`.
pub async fn ensure(
    host: &Host,
    run: &str,
    image: &str,
    secrets: &Secrets<'_>,
) -> anyhow::Result<()> {
    let mut volumes = vec![reports_volume(run), secrets_volume(run)];
    if secrets.backend.is_some() {
        volumes.push(backend_secret_volume(run));
    }
    for volume in &volumes {
        host.ensure_volume(volume, (labels::RUN, run)).await?;
    }
    let token_line = format!("{}\n", secrets.token);
    let digest_line = format!("{}\n", secrets.admin_digest);
    let mut uploads = vec![(
        secrets_volume(run),
        TOKEN_DIR,
        tar_context(&[
            ("token", token_line.as_bytes(), 0o400),
            ("admin.sha256", digest_line.as_bytes(), 0o444),
        ])?,
    )];
    if let Some(secret) = secrets.backend {
        uploads.push((
            backend_secret_volume(run),
            BACKEND_SECRET_DIR,
            tar_context(&[("secret", secret, 0o400)])?,
        ));
    }
    let seed = format!("{run}-secrets");
    let binds = uploads
        .iter()
        .map(|(volume, dir, _)| format!("{volume}:{dir}"))
        .collect();
    with_scratch(host, &seed, image, binds, &[(labels::RUN, run)], || async {
        for (volume, dir, tar) in &uploads {
            let tar = bytes::Bytes::from(tar.clone());
            retry(|| host.engine.upload(&seed, dir, tar.clone()))
                .await
                .with_context(|| {
                    format!(
                        "writing the run's secrets into volume {volume} on host {}",
                        host.name()
                    )
                })?;
        }
        Ok(())
    })
    .await
}
