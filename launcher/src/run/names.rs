//! The names of a run's objects: containers, volumes, network, paths and ports inside
//! its containers. Every command derives them from the run id, so nothing needs to be
//! looked up to find them.

/// The coordinator's API port inside the network.
pub const COORDINATOR_PORT: u16 = 7400;
/// The peers' sync port inside the network.
pub const PEER_PORT: u16 = 7500;
/// Where the secrets volume (the peers' token, the admin token's digest) is mounted
/// inside every container.
pub const TOKEN_DIR: &str = "/cmesh";

/// The admin token's digest inside the coordinator (the admin token itself is in no
/// container).
pub fn admin_digest_path() -> String {
    format!("{TOKEN_DIR}/admin.sha256")
}

/// Where the backend's secret volume is mounted, in peers only.
pub const BACKEND_SECRET_DIR: &str = "/cmesh-backend";

/// Where the backend's secret is inside every peer (and in no other container).
pub fn secret_path() -> String {
    format!("{BACKEND_SECRET_DIR}/secret")
}

/// The run's network name.
pub fn network_name(run: &str) -> String {
    format!("cmesh-{run}")
}

/// A peer's container name: `<run>-peer-0001`.
pub fn peer_name(run: &str, index: usize, total: usize) -> String {
    let width = total.to_string().len().max(4);
    format!("{run}-peer-{index:0width$}")
}

/// The coordinator's container name.
pub fn coordinator_name(run: &str) -> String {
    format!("{run}-coordinator")
}

/// Where the run's reports volume is mounted in every container.
pub const REPORTS_DIR: &str = "/reports";

/// The run's reports volume on a host, mounted at [`REPORTS_DIR`] by every container of
/// the run. Each container writes its report to its own [`report_dir`]. One volume per
/// host (not per container: each volume costs the engine a serialized metadata write)
/// lets `extract` fetch every report on a host in one archive, and keeps report writes
/// off the containers' root filesystems.
pub fn reports_volume(run: &str) -> String {
    format!("cmesh-{run}-reports")
}

/// The coordinator's own reports volume, on the manager, mounted at [`REPORTS_DIR`] by the
/// coordinator only: no peer can write its report (which holds the digests of the peers'
/// reports, docs/security.md).
pub fn coordinator_volume(run: &str) -> String {
    format!("cmesh-{run}-coordinator")
}

/// A container's report directory: `/reports/<container>`.
pub fn report_dir(container: &str) -> String {
    format!("{REPORTS_DIR}/{container}")
}

/// The run's secrets volume on a host: holds the peers' token and the admin token's
/// digest, mounted read-only at [`TOKEN_DIR`] by every container of the run.
pub fn secrets_volume(run: &str) -> String {
    format!("cmesh-{run}-secrets")
}

/// The run's backend-secret volume on a host (a backend other than mesh, such as Ditto):
/// mounted read-only at [`BACKEND_SECRET_DIR`] by the peers only, never the coordinator.
pub fn backend_secret_volume(run: &str) -> String {
    format!("cmesh-{run}-backend-secret")
}

/// Whether a run's peers of `backend` have a secret (its volume, `--secret-file`): every
/// backend but the built-in `mesh` and `adapter` (an app's adapter gets no secret of
/// the run; what the app needs goes into its image).
pub fn has_backend_secret(backend: &str) -> bool {
    backend != "mesh" && backend != "adapter"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_zero_padded_to_the_count() {
        assert_eq!(peer_name("r", 7, 10), "r-peer-0007");
        assert_eq!(peer_name("r", 7, 12_000), "r-peer-00007");
        assert_eq!(report_dir("r-peer-0007"), "/reports/r-peer-0007");
        assert_eq!(network_name("r"), "cmesh-r");
    }
}
