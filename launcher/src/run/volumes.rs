//! The run's volumes on each host: reports (every container writes its report there)
//! and secrets (the token, and a backend's secret), seeded once through a scratch
//! container so no secret passes through an environment, a command line or an image.

use crate::engine::host::Host;
use crate::engine::images::tar_context;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::scratch::with_scratch;
use crate::run::names::{reports_volume, secrets_volume, TOKEN_DIR};
use anyhow::Context;

/// Creates the run's reports and secrets volumes on `host` and writes the token (and the
/// backend's secret) into the secrets volume: through a container that is created with
/// the volume mounted, never started, and removed again. The token never appears in an
/// environment, a command line, an image or `docker inspect`.
pub async fn ensure(
    host: &Host,
    run: &str,
    image: &str,
    token: &str,
    secret: Option<&[u8]>,
) -> anyhow::Result<()> {
    for volume in [reports_volume(run), secrets_volume(run)] {
        host.ensure_volume(&volume, (labels::RUN, run)).await?;
    }
    let volume = secrets_volume(run);
    let seed = format!("{run}-secrets");
    let token_line = format!("{token}\n");
    let mut files: Vec<(&str, &[u8], u32)> = vec![("token", token_line.as_bytes(), 0o400)];
    if let Some(secret) = secret {
        files.push(("backend-secret", secret, 0o400));
    }
    let tar = bytes::Bytes::from(tar_context(&files)?);
    let binds = vec![format!("{volume}:{TOKEN_DIR}")];
    with_scratch(host, &seed, image, binds, &[(labels::RUN, run)], || async {
        retry(|| host.engine.upload(&seed, TOKEN_DIR, tar.clone()))
            .await
            .with_context(|| {
                format!(
                    "writing the run token into volume {volume} on host {}",
                    host.name()
                )
            })
    })
    .await
}
