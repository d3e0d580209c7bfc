//! Helpers for cmesh's integration tests and benchmarks.
//!
//! - [`binary`]: the path of a workspace binary, built (once per process) in the same
//!   profile as the test itself, so tests always run the current code;
//! - [`token_file`]: a run token in a file;
//! - [`wait_until`]: wait on a condition, with a bound, never a fixed sleep;
//! - [`Mesh`]: a coordinator and N peers as plain processes on loopback;
//! - [`launcher`], [`images_built`], [`text`], [`read_json`]: driving the launcher CLI;
//! - [`browser`]: a page opened in a real headless browser;
//! - [`lab`]: a local lab of Docker hosts in containers, removed when dropped;
//! - [`imports`]: the import graph of a crate's modules, and its cycles;
//! - [`suite`]: the whole test suite as a schedule of test binaries (`scripts/test`).

pub mod browser;
pub mod imports;
pub mod lab;
pub mod suite;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_owned()
}

/// The target profile directory of the running executable (e.g. `target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the current executable has a path");
    // target/<profile>/deps/<test-binary> or target/<profile>/<binary>
    let mut dir = exe.parent().expect("exe in a directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of workspace binary `name` (`peer`, `coordinator`, `launcher`), built first.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let built = BUILT.get_or_init(|| {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(workspace_root()).args([
            "build",
            "--bins",
            "-p",
            "cmesh-peer",
            "-p",
            "cmesh-coordinator",
            "-p",
            "cmesh-launcher",
        ]);
        if release {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build failed: {s}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    if let Err(e) = built {
        panic!("building the workspace binaries: {e}");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist after the build",
        path.display()
    );
    path
}

/// Writes a token file into `dir` and returns its path.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    path
}

/// Files for bad-input tests: a valid token file, an empty one, and an output path that
/// must stay uncreated. All paths are UTF-8 strings, ready to pass as arguments.
pub struct BadInputFiles {
    _dir: tempfile::TempDir,
    pub token: String,
    pub empty_token: String,
    pub out: String,
}

impl BadInputFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let token = token_file(dir.path(), "t");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write the empty token file");
        let out = dir.path().join("out");
        let text = |p: &Path| p.to_str().expect("temporary paths are UTF-8").to_owned();
        BadInputFiles {
            token: text(&token),
            empty_token: text(&empty),
            out: text(&out),
            _dir: dir,
        }
    }
}

impl Default for BadInputFiles {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs workspace binary `program` once per case `(args, expected)` and asserts that each
/// exits 2 (bad input), says `expected` on stderr, and leaves `untouched` uncreated.
pub fn assert_bad_input(program: &str, cases: &[(Vec<&str>, &str)], untouched: &str) {
    let untouched = Path::new(untouched);
    for (args, expected) in cases {
        let out = Command::new(binary(program))
            .args(args)
            .output()
            .expect("run the program");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{program} {args:?}: expected `{expected}` in: {stderr}"
        );
        assert!(
            !untouched.exists(),
            "{program} {args:?}: bad input must not create {}",
            untouched.display()
        );
    }
}

/// Polls `cond` every `every` until it returns `Some`, or fails after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Waits for a child to exit, killing it after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    match wait_until(
        "a process to exit",
        timeout,
        Duration::from_millis(50),
        || child.try_wait().ok().flatten(),
    ) {
        Ok(status) => Ok(status),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Each peer's name and exit code (`None`: killed by a signal).
pub type ExitCodes = Vec<(String, Option<i32>)>;

/// A coordinator and its peers, as processes on loopback. Dropping it kills what is left.
pub struct Mesh {
    pub dir: PathBuf,
    pub coordinator: Child,
    pub coordinator_addr: String,
    pub peers: Vec<(String, Child)>,
}

impl Mesh {
    /// Starts a coordinator with `--peers n` plus `extra` flags, then `n` peers
    /// (`peer-0001`...). Output goes under `dir`.
    pub fn start(dir: &Path, n: usize, extra: &[&str]) -> Result<Mesh> {
        Mesh::start_with(dir, n, extra, &[])
    }

    /// [`Mesh::start`], with `peer_extra` flags for every peer.
    pub fn start_with(dir: &Path, n: usize, extra: &[&str], peer_extra: &[&str]) -> Result<Mesh> {
        let mut mesh = Mesh::coordinator_only(dir, n, extra)?;
        for i in 1..=n {
            let name = format!("peer-{i:04}");
            let child = mesh.spawn_peer(&name, peer_extra)?;
            mesh.peers.push((name, child));
        }
        Ok(mesh)
    }

    /// Starts only the coordinator, expecting `n` peers; start them with [`Mesh::spawn_peer`].
    pub fn coordinator_only(dir: &Path, n: usize, extra: &[&str]) -> Result<Mesh> {
        let token = token_file(dir, "test-token");
        let coord_out = dir.join("coordinator");
        let log = std::fs::File::create(dir.join("coordinator.log"))?;
        let coordinator = Command::new(binary("coordinator"))
            .args(["--listen", "127.0.0.1:0", "--peers", &n.to_string()])
            .arg("--output")
            .arg(&coord_out)
            .arg("--token-file")
            .arg(&token)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start the coordinator")?;
        let addr_file = coord_out.join("coordinator.addr");
        let coordinator_addr = wait_until(
            "the coordinator to listen",
            Duration::from_secs(20),
            Duration::from_millis(20),
            || std::fs::read_to_string(&addr_file).ok(),
        )?;
        Ok(Mesh {
            dir: dir.to_owned(),
            coordinator,
            coordinator_addr,
            peers: Vec::new(),
        })
    }

    /// Starts one peer process against this mesh's coordinator.
    pub fn spawn_peer(&self, name: &str, extra: &[&str]) -> Result<Child> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        Command::new(binary("peer"))
            .args(["--name", name, "--coordinator", &self.coordinator_addr])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--output")
            .arg(self.dir.join(name))
            .arg("--token-file")
            .arg(self.dir.join("token"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name}"))
    }

    /// Waits for every peer and the coordinator to exit; returns the peers' exit codes
    /// and the coordinator's.
    pub fn wait(&mut self, timeout: Duration) -> Result<(ExitCodes, Option<i32>)> {
        let mut codes = Vec::new();
        for (name, child) in &mut self.peers {
            let status = wait_child(child, timeout).with_context(|| name.clone())?;
            codes.push((name.clone(), status.code()));
        }
        let coordinator = wait_child(&mut self.coordinator, timeout)?.code();
        Ok((codes, coordinator))
    }

    /// Reads a peer's report.json as JSON.
    pub fn report(&self, name: &str) -> Result<serde_json::Value> {
        let path = self.dir.join(name).join("report.json");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for (_, child) in &mut self.peers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
    }
}

/// Runs the launcher with `--runs-dir runs` and `args`.
pub fn launcher(runs: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("launcher"))
        .arg("--runs-dir")
        .arg(runs)
        .args(args)
        .output()
        .expect("run the launcher")
}

/// A free TCP port on the loopback (free when asked: bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Removes a run's containers, volumes and network when dropped (`launcher down
/// --force`), so a failed assertion leaves nothing behind.
pub struct RunCleanup {
    pub runs: PathBuf,
    pub id: String,
}

impl Drop for RunCleanup {
    fn drop(&mut self) {
        let _ = launcher(&self.runs, &["down", "--force", "--run", &self.id]);
    }
}

/// Lossy UTF-8 of a command's output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads a JSON file; panics naming it if it cannot.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Builds the images once per test process (`launcher images build`), so tests running
/// in parallel do not race to build them.
pub fn images_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(binary("launcher"))
            .args(["images", "build"])
            .output()
            .expect("run the launcher");
        assert!(
            out.status.success(),
            "launcher images build failed (is the Docker Engine running?):\n{}",
            text(&out.stderr)
        );
    });
}

/// Unpacks an extracted `report.tar.gz` into a fresh temporary directory (its files are
/// under `report/`).
pub fn unpack(archive: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(
        status.success(),
        "tar could not unpack {}",
        archive.display()
    );
    dir
}

/// `launcher run --config PLAN --run-id ID --json` under `runs`: asserts it exits 0
/// (after removing what it left, if not) and returns the summary and the stderr.
pub fn run_plan_json(runs: &Path, plan: &Path, id: &str) -> (serde_json::Value, String) {
    run_json(
        runs,
        &["--config", plan.to_str().expect("a UTF-8 path")],
        id,
    )
}

/// `launcher run ARGS --run-id ID --json` under `runs`: asserts it exits 0 (after
/// removing what it left, if not) and returns the summary and the stderr.
pub fn run_json(runs: &Path, args: &[&str], id: &str) -> (serde_json::Value, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend(["--run-id", id, "--json"]);
    let out = launcher(runs, &all);
    let stderr = text(&out.stderr);
    if out.status.code() != Some(0) {
        let _ = launcher(runs, &["down", "--force", "--run", id]);
    }
    // On failure, what the summary says went wrong.
    let why = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .map(|s| {
            let keys = [
                "peers_failed",
                "peers_lost",
                "peers_invalid",
                "peers_unreachable",
            ];
            keys.iter()
                .map(|k| format!("{k}: {}", s[*k]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{id}: launcher run failed:\n{stderr}\n{why}"
    );
    let summary = serde_json::from_slice(&out.stdout).expect("summary.json on stdout");
    (summary, stderr)
}

/// True if `CONFIG` is `y` or `m` in this kernel's config (/proc/config.gz, or
/// /boot/config-RELEASE), or `module` is loaded or can be loaded.
fn kernel_config_has(config: &str, module: &str) -> bool {
    if Path::new("/sys/module").join(module).is_dir() {
        return true;
    }
    let script = format!(
        "(zcat /proc/config.gz || cat /boot/config-$(uname -r)) 2>/dev/null | grep -q '^{config}=[ym]' || modprobe -n {module} 2>/dev/null"
    );
    Command::new("sh")
        .args(["-c", &script])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether this machine's kernel can shape with netem, found by trying it: a netem qdisc
/// on the loopback of a throwaway network namespace. Where a namespace cannot be made
/// (no privilege), the kernel's config decides. Independent of the launcher's own probe,
/// so tests can check the launcher's choice on any kernel.
pub fn kernel_offers_netem() -> bool {
    let tried = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && tc qdisc add dev lo root netem delay 1ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let control = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && tc qdisc add dev lo root tbf rate 1mbit burst 32kbit latency 400ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match (tried, control) {
        (Ok(t), Ok(c)) if c.success() => t.success(),
        _ => kernel_config_has("CONFIG_NET_SCH_NETEM", "sch_netem"),
    }
}

/// Whether this machine's kernel can carry an encrypted overlay, found by trying it in a
/// throwaway network namespace: an ESP state with AES-GCM and an iptables policy match
/// (what Docker's `encrypted` overlay uses). Independent of the launcher's probe.
pub fn kernel_offers_ipsec() -> bool {
    Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode transport \
             aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 && \
             iptables -A INPUT -m policy --dir in --pol ipsec -j ACCEPT",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this machine's kernel has IPVS (the swarm routing mesh needs it).
pub fn kernel_offers_ipvs() -> bool {
    kernel_config_has("CONFIG_IP_VS", "ip_vs")
}

/// The shaping path a peer on this machine takes for an action whose no-netem path is
/// `without_netem` (`nfqueue` for delay, `iptables` for loss).
pub fn expected_shaping_path(without_netem: &str) -> &str {
    if kernel_offers_netem() {
        "netem"
    } else {
        without_netem
    }
}
