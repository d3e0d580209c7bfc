//! The run's containers: what each is created with, and how they come to exist.
//!
//! [`ContainerPlan`] says what one container is (name, role, image, command line,
//! limits); [`spec`] turns it into the engine's [`ContainerSpec`] with the run's labels,
//! volumes and network. [`ensure`] creates and starts a container idempotently, so an
//! interrupted spawn is completed by running it again.

use crate::cluster::host::Host;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::{ContainerSpec, ContainerState, EngineError, Publish, RestartPolicy};
use crate::run::names::{
    admin_digest_path, backend_secret_volume, coordinator_name, coordinator_volume,
    has_backend_secret, report_dir, reports_volume, secret_path, secrets_volume,
    BACKEND_SECRET_DIR, COORDINATOR_PORT, PEER_PORT, REPORTS_DIR, TOKEN_DIR,
};
use cmesh_common::plan::PlanSpec;
use std::collections::{BTreeMap, HashMap};

/// The coordinator's CPU weight: 100 peers' (1024 each, the engine's default). It is the
/// run's control plane; starved, it answers no one. Measured at 1000 peers on 2 CPUs
/// with equal weights: peers could not connect to it for over 60 s when all of them
/// came for the plan at once, and 239 gave up.
pub const COORDINATOR_CPU_SHARES: i64 = 102_400;

/// What to create for one container.
#[derive(Clone, Debug)]
pub struct ContainerPlan {
    pub name: String,
    pub role: &'static str,
    pub index: u32,
    pub image: String,
    pub args: Vec<String>,
    pub memory: i64,
    /// CPU quota in billionths of a CPU, if any.
    pub nano_cpus: Option<i64>,
    /// CPU weight against the other containers, if not the engine's default.
    pub cpu_shares: Option<i64>,
    /// Publish the coordinator's API on the host's loopback.
    pub publish: bool,
    /// Mount the backend's secret (peers of a backend that has one; never the
    /// coordinator).
    pub backend_secret: bool,
}

/// The coordinator's command line for a plan.
pub fn coordinator_args(run: &str, spec: &PlanSpec) -> Vec<String> {
    let ms = |v: u64| format!("{v}ms");
    let mut args = vec![
        "--listen".into(),
        format!("0.0.0.0:{COORDINATOR_PORT}"),
        "--output".into(),
        report_dir(&coordinator_name(run)),
        "--token-file".into(),
        format!("{TOKEN_DIR}/token"),
        "--admin-digest-file".into(),
        admin_digest_path(),
        "--run-id".into(),
        run.into(),
        "--peers".into(),
        spec.peers.to_string(),
        "--duration".into(),
        ms(spec.duration_ms),
        "--graph".into(),
        spec.graph.to_string(),
        "--degree".into(),
        spec.degree.to_string(),
        "--seed".into(),
        spec.seed.to_string(),
        "--write-interval".into(),
        spec.write_interval.to_string(),
        "--payload-bytes".into(),
        spec.payload_bytes.to_string(),
        "--dissemination".into(),
        spec.dissemination.name().into(),
        "--start-delay".into(),
        ms(spec.start_delay_ms),
        "--start-timeout".into(),
        ms(spec.start_timeout_ms),
        "--heartbeat".into(),
        ms(spec.heartbeat_ms),
        "--settle-timeout".into(),
        ms(spec.settle_timeout_ms),
        "--linger".into(),
        "2s".into(),
    ];
    if let Some(min) = spec.min_peers {
        args.extend(["--min-peers".into(), min.to_string()]);
    }
    if !spec.faults.is_empty() {
        let faults = serde_json::json!({ "groups": spec.groups, "faults": spec.faults });
        args.extend(["--faults".into(), faults.to_string()]);
    }
    args
}

/// A peer's command line; a backend other than mesh gets `--backend`, and its secret or
/// (`adapter`) the adapter's command.
pub fn peer_args(
    run: &str,
    name: &str,
    host: &str,
    backend: &str,
    adapter: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--name",
        name,
        "--host",
        host,
        "--coordinator",
        &format!("{}:{COORDINATOR_PORT}", coordinator_name(run)),
        "--listen",
        &format!("0.0.0.0:{PEER_PORT}"),
        "--output",
        &report_dir(name),
        "--token-file",
        &format!("{TOKEN_DIR}/token"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if has_backend_secret(backend) {
        args.extend([
            "--backend".into(),
            backend.into(),
            "--secret-file".into(),
            secret_path(),
        ]);
    }
    if let Some(command) = adapter {
        args.extend([
            "--backend".into(),
            "adapter".into(),
            "--adapter".into(),
            command.into(),
        ]);
    }
    args
}

/// The engine's spec for container `c` of run `run` on host `host`, attached to
/// `network`: the run's labels, its secrets volume read-only (and the backend's secret,
/// for peers that need it), a reports volume (the host's shared one for peers, its own
/// for the coordinator), NET_ADMIN, memory without swap, capped json-file logs. Nothing
/// goes through the environment.
pub fn spec(run: &str, host: &str, network: &str, c: &ContainerPlan) -> ContainerSpec {
    let reports = if c.role == labels::ROLE_COORDINATOR {
        coordinator_volume(run)
    } else {
        reports_volume(run)
    };
    let mut binds = vec![
        format!("{}:{TOKEN_DIR}:ro", secrets_volume(run)),
        format!("{reports}:{REPORTS_DIR}"),
    ];
    if c.backend_secret {
        binds.push(format!(
            "{}:{BACKEND_SECRET_DIR}:ro",
            backend_secret_volume(run)
        ));
    }
    ContainerSpec {
        name: c.name.clone(),
        image: c.image.clone(),
        cmd: c.args.clone(),
        hostname: Some(c.name.clone()),
        labels: BTreeMap::from([
            (labels::RUN.to_owned(), run.to_owned()),
            (labels::ROLE.to_owned(), c.role.to_owned()),
            (labels::INDEX.to_owned(), c.index.to_string()),
            (labels::HOST.to_owned(), host.to_owned()),
        ]),
        binds,
        network: Some(network.to_owned()),
        cap_add: vec!["NET_ADMIN".into()],
        memory_bytes: Some(c.memory),
        nano_cpus: c.nano_cpus,
        cpu_shares: c.cpu_shares,
        init: true,
        capped_logs: true,
        publish: if c.publish {
            vec![Publish {
                port: COORDINATOR_PORT,
                host_ip: "127.0.0.1".into(),
                host_port: 0,
            }]
        } else {
            Vec::new()
        },
        restart: RestartPolicy::No,
        ..Default::default()
    }
}

/// The run's containers on `host`: name → state.
pub async fn existing(
    host: &Host,
    run: &str,
) -> Result<HashMap<String, ContainerState>, EngineError> {
    let list = retry(|| host.engine.list_containers((labels::RUN, run))).await?;
    Ok(list.into_iter().map(|c| (c.name, c.state)).collect())
}

/// Creates and starts `c` unless it exists: a container already running or that already
/// ran is left alone; one created but never started is started. A name taken by a create
/// that raced this one counts as created.
pub async fn ensure(
    host: &Host,
    run: &str,
    network: &str,
    c: &ContainerPlan,
    state: Option<ContainerState>,
) -> anyhow::Result<()> {
    let where_ = || format!("container {} on host {}", c.name, host.name());
    match state {
        Some(ContainerState::Created) => {}
        Some(_) => return Ok(()),
        None => {
            let spec = spec(run, host.name(), network, c);
            match retry(|| host.engine.create_container(&spec)).await {
                Ok(()) | Err(EngineError::Conflict(_)) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("creating {}", where_())))
                }
            }
        }
    }
    match retry(|| host.engine.start_container(&c.name)).await {
        Ok(()) | Err(EngineError::NotModified(_)) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("starting {}", where_()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_get_the_backend_and_the_secret_path() {
        let mesh = peer_args("r", "r-peer-0001", "local", "mesh", None);
        assert!(!mesh.contains(&"--backend".to_owned()));
        let ditto = peer_args("r", "r-peer-0001", "local", "ditto", None);
        let tail: Vec<&str> = ditto
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            vec![
                "--backend",
                "ditto",
                "--secret-file",
                "/cmesh-backend/secret"
            ]
        );
    }

    #[test]
    fn containers_get_net_admin_labels_limits_and_no_token() {
        let plan = PlanSpec::default();
        let c = ContainerPlan {
            name: "r-peer-0001".into(),
            role: labels::ROLE_PEER,
            index: 1,
            image: "img".into(),
            args: peer_args("r", "r-peer-0001", "local", "mesh", None),
            memory: 64 << 20,
            nano_cpus: Some(250_000_000),
            cpu_shares: Some(COORDINATOR_CPU_SHARES),
            publish: false,
            backend_secret: false,
        };
        let s = spec("r", "local", "cmesh-r", &c);
        assert_eq!(s.cap_add, vec!["NET_ADMIN".to_owned()]);
        assert_eq!(s.memory_bytes, Some(64 << 20));
        assert_eq!(s.nano_cpus, Some(250_000_000));
        assert_eq!(s.cpu_shares, Some(COORDINATOR_CPU_SHARES));
        assert!(s.capped_logs && s.init && s.publish.is_empty());
        assert_eq!(s.hostname.as_deref(), Some("r-peer-0001"));
        assert_eq!(s.labels[labels::RUN], "r");
        assert_eq!(
            s.binds,
            vec![
                "cmesh-r-secrets:/cmesh:ro".to_owned(),
                "cmesh-r-reports:/reports".to_owned()
            ]
        );
        assert!(s.cmd.join(" ").contains("--token-file /cmesh/token"));
        let ditto = ContainerPlan {
            backend_secret: true,
            ..c.clone()
        };
        assert_eq!(
            spec("r", "local", "cmesh-r", &ditto).binds[2],
            "cmesh-r-backend-secret:/cmesh-backend:ro"
        );
        assert!(!format!("{s:?}").contains("TOKEN="));
        let args = coordinator_args("r", &plan).join(" ");
        assert!(
            args.contains("--peers 10") && args.contains("--graph random-regular"),
            "{args}"
        );
        assert!(
            args.contains("--admin-digest-file /cmesh/admin.sha256"),
            "{args}"
        );
        let coordinator = ContainerPlan {
            role: labels::ROLE_COORDINATOR,
            ..c.clone()
        };
        assert_eq!(
            spec("r", "local", "cmesh-r", &coordinator).binds[1],
            "cmesh-r-coordinator:/reports",
            "the coordinator's report is out of the peers' reach"
        );
    }
}
