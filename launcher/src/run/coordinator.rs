//! The run's coordinator, reached from this machine: its API's address and the admin
//! token that opens every route (`status`, `watch`, `chaos`).

use crate::cluster::host::Host;
use crate::engine::retry::retry;
use crate::engine::ContainerState;
use crate::run::dir::RunDir;
use crate::run::names::COORDINATOR_PORT;

/// The running coordinator's API, `http://ADDR` (through the SSH master when the manager
/// is remote), and the admin token to call it with (it opens every route).
pub async fn coordinator_api(
    host: &Host,
    run: &RunDir,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let info = retry(|| host.engine.inspect_container(name)).await?;
    if info.state() != ContainerState::Running {
        anyhow::bail!(
            "the coordinator is not running (its final status is in extract/…/report.tar.gz)"
        );
    }
    let port = *info
        .published
        .get(&COORDINATOR_PORT)
        .ok_or_else(|| anyhow::anyhow!("the coordinator publishes no port"))?;
    // Read only: this must never make a token (RunDir::admin_token would, if missing).
    // A run spawned before there were two tokens has only the peers' one.
    let admin = run.admin_token_path();
    let path = if admin.exists() {
        admin
    } else {
        run.token_path()
    };
    let token = cmesh_common::token::read_token_file(&path)?;
    // On a remote manager the port is on its loopback: reach it through the SSH master.
    let addr = host.forward_tcp(port).await?;
    Ok((format!("http://{addr}"), token))
}
