//! The SSH transport to a remote host: one OpenSSH master per host (native mux).
//!
//! The remote engine's socket is forwarded to `docker.sock` in a private directory (mode
//! 0700, removed on exit), and bollard talks to that. Commands (`exec`) and TCP forwards
//! (`forward_tcp`) share the same master. A supervisor task checks the master every few
//! seconds and, when it has dropped, starts a new one and restores every forward at the
//! same local path, so a client that retries its request carries on.

use crate::hosts::{parse_ssh, HostSpec, SshSettings};
use anyhow::Context;
use cmesh_common::exit::bad_input;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};

/// How often the supervisor checks a master.
const CHECK_EVERY: Duration = Duration::from_secs(3);

/// A live SSH link to one host.
pub struct Link {
    host: String,
    destination: String,
    builder: SessionBuilder,
    session: RwLock<Session>,
    dir: tempfile::TempDir,
    remote_docker_socket: PathBuf,
    /// TCP forwards to restore after a reconnect: (local port, remote port).
    tcp_forwards: Mutex<Vec<(u16, u16)>>,
}

/// What an `exec` returned.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn builder(spec: &HostSpec, settings: &SshSettings) -> anyhow::Result<(SessionBuilder, String)> {
    let dest = parse_ssh(spec.ssh.as_deref().unwrap_or_default())
        .map_err(|e| bad_input(format!("host `{}`: {e}", spec.name)))?;
    let mut b = SessionBuilder::default();
    b.port(dest.port)
        .connect_timeout(settings.connect_timeout())
        .server_alive_interval(Duration::from_secs(5))
        .known_hosts_check(if settings.strict_host_key_checking {
            KnownHosts::Strict
        } else {
            KnownHosts::Add
        });
    if let Some(user) = dest.user {
        b.user(user);
    }
    if let Some(k) = &settings.identity_file {
        b.keyfile(k);
    }
    if let Some(k) = &settings.known_hosts {
        b.user_known_hosts_file(k);
    }
    Ok((b, dest.host))
}

/// How long a host whose sshd accepts connections but answers too slowly is tried again
/// before it counts as lost: the time an engine request is given
/// ([`crate::engine::docker::ANSWER_TIMEOUT_SECS`]). At 500 containers starting or
/// exiting at once, a lab host's sshd missed a 5 s banner exchange.
pub const BUSY_GRACE: Duration = Duration::from_secs(crate::engine::docker::ANSWER_TIMEOUT_SECS);

/// True if ssh's failure says the host is there but slow: its TCP connection was
/// accepted and then the banner or key exchange did not come in time, or the sshd shed
/// the connection (MaxStartups). A host that does not answer at all, or refuses, is
/// not busy.
fn busy(detail: &str) -> bool {
    detail.contains("during banner exchange")
        || detail.contains("kex_exchange_identification")
        || detail.contains("Connection reset by peer")
}

/// An error and its sources, as one line each joined by ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Turns an ssh failure into an error that names the host and says what to do.
fn connect_error(spec: &HostSpec, e: openssh::Error) -> anyhow::Error {
    let mut detail = format!("{:#}", anyhow::Error::from(e));
    let dest = spec.ssh.as_deref().unwrap_or_default();
    let host_key = detail.contains("Host key verification failed");
    if host_key {
        // ssh's banner is long; keep the lines that say what and where.
        let keep = [
            "fingerprint for",
            "Offending",
            "has changed",
            "host key is known",
        ];
        let lines: Vec<&str> = detail
            .lines()
            .map(str::trim)
            .filter(|l| keep.iter().any(|k| l.contains(k)))
            .collect();
        detail = format!("host key verification failed: {}", lines.join(" "));
    }
    let advice = if host_key {
        "The host's key does not match the known_hosts file named in hosts.toml [ssh]. If the host was re-installed, replace its line there (ssh-keygen -R, then ssh-keyscan); otherwise someone may be in the middle"
    } else if detail.contains("Permission denied") {
        "The key was refused; check [ssh] identity_file and the user in `ssh`"
    } else {
        "Check that the host is up and that `ssh` works by hand with the same key and known_hosts"
    };
    let message = format!(
        "host `{}` ({dest}) is unreachable over SSH: {}. {advice}",
        spec.name,
        detail.trim().trim_end_matches('.')
    );
    // A wrong key or known_hosts is the input's fault (exit 2); a host that does not
    // answer is a failure (exit 1).
    if host_key || detail.contains("Permission denied") {
        bad_input(message)
    } else {
        anyhow::anyhow!(message)
    }
}

/// A directory only this user can enter (0700, whatever the umask), for the master's
/// control socket and the forwarded Docker socket: whoever reaches them drives the
/// remote engine.
fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("cmesh-ssh-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("cannot make a private directory for the SSH control socket")
}

impl Link {
    /// Starts the master and forwards the remote engine's socket.
    pub async fn open(spec: &HostSpec, settings: &SshSettings) -> anyhow::Result<Arc<Link>> {
        let (builder, destination) = builder(spec, settings)?;
        let dir = private_dir()?;
        let session = crate::engine::retry::retry_for(
            BUSY_GRACE,
            || Self::connect(&builder, &destination, dir.path()),
            |e| {
                let detail = chain(e);
                let again = busy(&detail);
                if again {
                    tracing::warn!(
                        "host `{}`: its sshd took too long to answer ({}); trying again for up to {} s in all (a host busy starting or stopping containers)",
                        spec.name,
                        first_line(&detail),
                        BUSY_GRACE.as_secs()
                    );
                }
                again
            },
        )
        .await
        .map_err(|e| connect_error(spec, e))?;
        let link = Arc::new(Link {
            host: spec.name.clone(),
            destination,
            builder,
            session: RwLock::new(session),
            dir,
            remote_docker_socket: PathBuf::from(&spec.docker_socket),
            tcp_forwards: Mutex::new(Vec::new()),
        });
        link.forward_docker().await?;
        let weak = Arc::downgrade(&link);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(link) = weak.upgrade() else { return };
                if let Err(e) = link.ensure_alive().await {
                    tracing::warn!(host = %link.host, "ssh reconnect failed: {e:#}");
                }
            }
        });
        Ok(link)
    }

    async fn connect(
        builder: &SessionBuilder,
        destination: &str,
        dir: &Path,
    ) -> Result<Session, openssh::Error> {
        let mut b = builder.clone();
        b.control_directory(dir);
        b.connect_mux(destination).await
    }

    /// The local end of the forwarded Docker socket.
    pub fn docker_socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    async fn forward_docker(&self) -> anyhow::Result<()> {
        let local = self.docker_socket();
        let _ = std::fs::remove_file(&local);
        self.session
            .read()
            .await
            .request_port_forward(
                ForwardType::Local,
                Socket::UnixSocket {
                    path: local.as_path().into(),
                },
                Socket::UnixSocket {
                    path: self.remote_docker_socket.as_path().into(),
                },
            )
            .await
            .with_context(|| {
                format!(
                    "host `{}`: forwarding the Docker socket {} over SSH (does the sshd allow AllowStreamLocalForwarding?)",
                    self.host,
                    self.remote_docker_socket.display()
                )
            })
    }

    /// Checks the master; if it has dropped, connects again and restores the forwards.
    pub async fn ensure_alive(&self) -> anyhow::Result<()> {
        if self.session.read().await.check().await.is_ok() {
            return Ok(());
        }
        let mut session = self.session.write().await;
        if session.check().await.is_ok() {
            return Ok(()); // another task reconnected first
        }
        tracing::warn!(host = %self.host, "ssh master dropped; reconnecting");
        *session = Self::connect(&self.builder, &self.destination, self.dir.path())
            .await
            .with_context(|| format!("reconnecting to host `{}` over SSH", self.host))?;
        drop(session);
        self.forward_docker().await?;
        for (local, remote) in self.tcp_forwards.lock().await.iter() {
            self.request_tcp(*local, *remote).await?;
        }
        Ok(())
    }

    async fn request_tcp(&self, local: u16, remote: u16) -> anyhow::Result<()> {
        self.session
            .read()
            .await
            .request_port_forward(
                ForwardType::Local,
                Socket::TcpSocket {
                    host: "127.0.0.1".into(),
                    port: local,
                },
                Socket::TcpSocket {
                    host: "127.0.0.1".into(),
                    port: remote,
                },
            )
            .await
            .with_context(|| {
                format!(
                    "host `{}`: forwarding local port {local} to its port {remote}",
                    self.host
                )
            })
    }

    /// Forwards a local port to `127.0.0.1:remote` on the host; returns the local address.
    /// The same remote port is forwarded once.
    pub async fn forward_tcp(&self, remote: u16) -> anyhow::Result<SocketAddr> {
        let mut forwards = self.tcp_forwards.lock().await;
        if let Some((local, _)) = forwards.iter().find(|(_, r)| *r == remote) {
            return Ok(SocketAddr::from(([127, 0, 0, 1], *local)));
        }
        // A free port: bind, note it, release. Another process could take it between
        // release and ssh's bind; then ssh's bind fails and the error says so.
        let local = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        self.request_tcp(local, remote).await?;
        forwards.push((local, remote));
        Ok(SocketAddr::from(([127, 0, 0, 1], local)))
    }

    /// Runs `script` with `sh -c` on the host, feeding it `stdin`.
    pub async fn exec(&self, script: &str, stdin: &[u8]) -> anyhow::Result<Output> {
        use tokio::io::AsyncWriteExt;
        let session = self.session.read().await;
        let mut cmd = session.command("sh");
        cmd.arg("-c")
            .raw_arg(shell_quote(script))
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let mut child = cmd
            .spawn()
            .await
            .with_context(|| format!("running a command on host `{}` over SSH", self.host))?;
        if let Some(mut input) = child.stdin().take() {
            input.write_all(stdin).await?;
            input.shutdown().await?;
        }
        let out = child
            .wait_with_output()
            .await
            .with_context(|| format!("running a command on host `{}` over SSH", self.host))?;
        Ok(out.into())
    }

    /// The ssh master's control socket (tests use it to drop the master on purpose).
    pub async fn control_socket(&self) -> PathBuf {
        self.session.read().await.control_socket().to_owned()
    }
}

/// Quotes `s` for a POSIX shell: the remote sshd hands our arguments to the user's shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_directory_is_private() {
        // The umask only takes bits away: under the usual 022 a directory made without
        // a mode was 0755, readable and enterable by every local user.
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_slow_sshd_is_busy_and_a_host_that_does_not_answer_is_not() {
        // What ssh printed for a lab host starting 500 containers.
        assert!(busy(
            "failed to connect to the remote host: Connection timed out during banner exchange"
        ));
        assert!(busy(
            "kex_exchange_identification: read: Connection reset by peer"
        ));
        // A stopped host, a closed port, a wrong key: no use waiting.
        assert!(!busy(
            "ssh: connect to host 172.31.247.13 port 22: Connection timed out"
        ));
        assert!(!busy(
            "ssh: connect to host 10.0.0.9 port 22: No route to host"
        ));
        assert!(!busy(
            "ssh: connect to host 10.0.0.9 port 22: Connection refused"
        ));
        assert!(!busy("root@10.0.0.9: Permission denied (publickey)."));
    }

    #[test]
    fn quotes_for_the_remote_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("x'y \"$HOME\"")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'y \"$HOME\"");
    }

    #[test]
    fn builder_takes_user_port_and_keys() {
        let spec = HostSpec {
            ssh: Some("admin@10.1.2.3:2200".into()),
            ..crate::hosts::local_default().hosts[0].clone()
        };
        let (b, host) = builder(&spec, &SshSettings::default()).unwrap();
        assert_eq!(host, "10.1.2.3");
        assert_eq!(b.get_user(), Some("admin"));
        assert_eq!(b.get_port(), Some("2200"));
    }
}
