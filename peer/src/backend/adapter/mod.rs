//! The `adapter` backend: any app, driven by the user's adapter program over
//! newline-delimited JSON on its standard input and output
//! ([`cmesh_common::adapter`], docs/apps.md).
//!
//! [`session`] keeps the protocol's state; this module is the I/O around it:
//! - the adapter runs as `sh -c 'exec CMD'` in the peer's data directory, with an
//!   empty environment but `PATH`, `HOME` (the data directory) and `LANG`: no token or
//!   other secret of the run reaches it through the environment or a message;
//! - one task writes [`ToAdapter`] lines to its stdin from a bounded queue (an adapter
//!   that stops reading fills it, and fails); one reads its stdout, at most
//!   [`MAX_LINE_BYTES`] a line, into the session; one logs its stderr, line by line
//!   with the prefix `adapter:`, and keeps the last [`STDERR_TAIL`] lines for the
//!   failure's reason; one watches the process and the session's deadlines;
//! - the sync service's requests go to the coordinator through the peer's client,
//!   and what a subscription brings back goes to the adapter as `published`.
//!
//! Whatever the adapter does wrong, exiting included, sets the one failure that
//! [`super::SyncBackend::failed`] returns: the peer then fails with that reason and
//! keeps what it measured. Dropping the backend kills the adapter.

pub mod session;

use crate::backend::{BackendStats, SyncBackend};
use crate::client::CoordinatorClient;
use crate::metrics::Metrics;
use bytes::Bytes;
use cmesh_common::adapter::{
    app_barrier, FromAdapter, Init, LogLevel, Neighbour, SubscribeFrom, ToAdapter, MAX_LINE_BYTES,
};
use futures_util::StreamExt;
use session::{Deadlines, Effect, Failure, Session};
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// How long a failed write to the adapter waits for its exit to be the reason.
const WRITE_FAILURE_GRACE: Duration = Duration::from_secs(2);
/// Lines of the adapter's stderr kept for a failure's reason.
pub const STDERR_TAIL: usize = 20;
/// Messages queued for the adapter before it counts as not reading its input.
pub const INPUT_QUEUE: usize = 4096;

/// How to start an adapter.
pub struct AdapterSetup {
    /// The command line, run with `sh -c`.
    pub command: String,
    pub run_id: String,
    pub me: u32,
    /// Every peer's name and advertised `host:port`, by plan index.
    pub names: Vec<String>,
    pub addrs: Vec<String>,
    pub neighbours: Vec<u32>,
    /// The address the peer was told to listen on, now free for the app.
    pub listen: String,
    /// The app's own directory.
    pub data_dir: PathBuf,
    pub duration_ms: u64,
    pub payload_bytes: usize,
    pub deadlines: Deadlines,
    /// The coordinator, for the sync service.
    pub client: CoordinatorClient,
    /// How long a sync request may keep retrying an unreachable coordinator.
    pub patience: Duration,
}

impl AdapterSetup {
    fn neighbour(&self, index: u32) -> Neighbour {
        let addr = self.addrs[index as usize].clone();
        Neighbour {
            peer: self.names[index as usize].clone(),
            index,
            host: addr
                .rsplit_once(':')
                .map_or(addr.as_str(), |(h, _)| h)
                .to_owned(),
            addr,
        }
    }
}

struct Shared {
    session: Mutex<Session>,
    metrics: Arc<Mutex<Metrics>>,
    changed: Notify,
    failure: watch::Sender<Option<String>>,
    ready: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
    stderr_tail: Mutex<VecDeque<String>>,
}

impl Shared {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the failure, once, with the adapter's last stderr lines.
    fn fail(&self, failure: Failure) {
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut reason = failure.to_string();
        if !tail.is_empty() {
            reason.push_str(&format!("; its last stderr lines: {}", tail.join(" | ")));
        }
        self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            tracing::error!("adapter: {reason}");
            *f = Some(reason);
            true
        });
    }
}

/// A running adapter.
pub struct AdapterBackend {
    shared: Arc<Shared>,
    input: mpsc::Sender<ToAdapter>,
    setup: Arc<AdapterSetup>,
    payload: String,
    tasks: Vec<JoinHandle<()>>,
    sync_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Drop for AdapterBackend {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for t in self
            .sync_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl AdapterBackend {
    /// Starts the adapter, sends `init`, and waits for `ready` (or its deadline, or a
    /// failure).
    pub async fn start(setup: AdapterSetup, metrics: Arc<Mutex<Metrics>>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&setup.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the app's directory {}: {e}",
                setup.data_dir.display()
            )
        })?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", setup.command))
            .current_dir(&setup.data_dir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &setup.data_dir)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the adapter `{}`: {e}", setup.command))?;
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let origins = setup.names.len();
        let shared = Arc::new(Shared {
            session: Mutex::new(Session::new(
                setup.me,
                origins,
                setup.deadlines,
                cmesh_common::unix_micros(),
            )),
            metrics,
            changed: Notify::new(),
            failure: watch::channel(None).0,
            ready: watch::channel(false).0,
            stopped: watch::channel(false).0,
            stderr_tail: Mutex::new(VecDeque::new()),
        });
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let setup = Arc::new(setup);
        let sync_tasks = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            tokio::spawn(write_input(stdin, input_rx, shared.clone())),
            tokio::spawn(log_stderr(stderr, shared.clone())),
            tokio::spawn(read_output(
                stdout,
                shared.clone(),
                setup.clone(),
                input.clone(),
                sync_tasks.clone(),
            )),
            tokio::spawn(watch_process(child, shared.clone())),
        ];
        let backend = AdapterBackend {
            payload: "x".repeat(setup.payload_bytes),
            shared,
            input,
            setup,
            tasks,
            sync_tasks,
        };
        let init = ToAdapter::Init(Init {
            protocol: cmesh_common::adapter::PROTOCOL_VERSION,
            run: backend.setup.run_id.clone(),
            peer: backend.setup.names[backend.setup.me as usize].clone(),
            index: backend.setup.me,
            peers: origins,
            data_dir: backend.setup.data_dir.display().to_string(),
            listen: backend.setup.listen.clone(),
            advertise: backend.setup.addrs[backend.setup.me as usize].clone(),
            neighbours: backend
                .setup
                .neighbours
                .iter()
                .map(|&n| backend.setup.neighbour(n))
                .collect(),
            duration_ms: backend.setup.duration_ms,
            payload_bytes: backend.setup.payload_bytes,
        });
        backend.send(init);
        let mut ready = backend.shared.ready.subscribe();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => Ok(backend),
            reason = backend.failed() => Err(anyhow::anyhow!(reason)),
        }
    }

    fn send(&self, message: ToAdapter) {
        if let Err(e) = self.input.try_send(message) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => format!(
                    "the adapter does not read its input: {INPUT_QUEUE} messages wait for it"
                ),
                mpsc::error::TrySendError::Closed(_) => "the adapter's input is closed".to_owned(),
            };
            self.shared.fail(Failure::Exited(why));
        }
    }
}

/// Sends queued messages to the adapter, a line each.
async fn write_input(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<ToAdapter>,
    shared: Arc<Shared>,
) {
    while let Some(message) = rx.recv().await {
        let mut line = serde_json::to_vec(&message).expect("protocol messages serialize");
        line.push(b'\n');
        if let Err(e) = stdin.write_all(&line).await {
            if !shared.session().is_stopping() {
                // A closed input is most often an adapter that has exited: its exit, with
                // its status, is the better reason, and it comes within moments.
                let mut failure = shared.failure.subscribe();
                let exit_seen = failure.wait_for(Option::is_some);
                let _ = tokio::time::timeout(WRITE_FAILURE_GRACE, exit_seen).await;
                shared.fail(Failure::Exited(format!(
                    "cannot write to the adapter's input: {e}"
                )));
            }
            return;
        }
    }
}

/// Logs the adapter's stderr and keeps its last lines.
async fn log_stderr(stderr: tokio::process::ChildStderr, shared: Arc<Shared>) {
    let mut lines = tokio::io::BufReader::new(stderr).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let line: String = String::from_utf8_lossy(&line).chars().take(500).collect();
        tracing::info!("adapter: {line}");
        let mut tail = shared.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Waits for the adapter to exit, and checks the session's deadlines every second.
async fn watch_process(mut child: tokio::process::Child, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            status = child.wait() => {
                let stopping = shared.session().is_stopping();
                if !stopping {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    // Its last stderr lines may still be on their way.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    shared.fail(Failure::Exited(format!("the adapter exited ({status}) before it was told to stop")));
                }
                shared.stopped.send_replace(true);
                return;
            }
            _ = tick.tick() => {
                let checked = shared.session().check(cmesh_common::unix_micros());
                if let Err(f) = checked {
                    shared.fail(f);
                    // kill_on_drop ends the adapter with this task.
                    return;
                }
            }
        }
    }
}

/// Reads the adapter's lines into the session and carries out what each asks.
async fn read_output(
    stdout: tokio::process::ChildStdout,
    shared: Arc<Shared>,
    setup: Arc<AdapterSetup>,
    input: mpsc::Sender<ToAdapter>,
    sync_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    loop {
        let line = match lines.next().await {
            Some(Ok(line)) => line,
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                shared.fail(Failure::Protocol(format!(
                    "the adapter sent a line longer than {MAX_LINE_BYTES} bytes"
                )));
                return;
            }
            Some(Err(LinesCodecError::Io(e))) => {
                shared.fail(Failure::Protocol(format!(
                    "cannot read the adapter's output: {e} (lines must be UTF-8)"
                )));
                return;
            }
            // The process watcher says why.
            None => return,
        };
        let now = cmesh_common::unix_micros();
        let effect = FromAdapter::parse(&line)
            .map_err(Failure::Protocol)
            .and_then(|m| shared.session().on_message(m, now));
        let effect = match effect {
            Ok(e) => e,
            Err(f) => {
                shared.fail(f);
                return;
            }
        };
        match effect {
            Effect::None => {}
            Effect::Ready => {
                shared.ready.send_replace(true);
            }
            Effect::Seen {
                origin,
                written_at_us,
                at_us,
            } => {
                shared
                    .metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .on_new_record(origin, written_at_us, at_us);
                shared.changed.notify_one();
            }
            Effect::Duplicate => shared
                .metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .on_duplicate(),
            Effect::Log { level, message } => {
                let message: String = message.chars().take(2000).collect();
                match level {
                    LogLevel::Debug => tracing::debug!("adapter: {message}"),
                    LogLevel::Info => tracing::info!("adapter: {message}"),
                    LogLevel::Warn => tracing::warn!("adapter: {message}"),
                    LogLevel::Error => tracing::error!("adapter: {message}"),
                }
            }
            Effect::Stopped => {
                shared.stopped.send_replace(true);
            }
            Effect::Publish { topic, value } => {
                let (shared, setup) = (shared.clone(), setup.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) = setup.client.publish(&topic, &value, setup.patience).await {
                        shared.fail(Failure::Limit(format!("publishing on `{topic}`: {e}")));
                    }
                });
                sync_tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task);
            }
            Effect::Subscribe { topic, from } => {
                let task = tokio::spawn(follow_topic(
                    topic,
                    from,
                    setup.clone(),
                    input.clone(),
                    shared.clone(),
                ));
                sync_tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task);
            }
            Effect::Barrier { name } => {
                let (shared, setup, input) = (shared.clone(), setup.clone(), input.clone());
                let task = tokio::spawn(async move {
                    loop {
                        match setup
                            .client
                            .barrier(
                                &app_barrier(&name),
                                None,
                                Duration::from_secs(3600),
                                setup.patience,
                            )
                            .await
                        {
                            Ok(s) if s.released => {
                                let _ = input.send(ToAdapter::BarrierReleased { name }).await;
                                return;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                shared.fail(Failure::Limit(format!("app barrier `{name}`: {e}")));
                                return;
                            }
                        }
                    }
                });
                sync_tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task);
            }
        }
    }
}

/// Delivers `topic`'s publications from `from` to the adapter as they come.
async fn follow_topic(
    topic: String,
    from: SubscribeFrom,
    setup: Arc<AdapterSetup>,
    input: mpsc::Sender<ToAdapter>,
    shared: Arc<Shared>,
) {
    let wanted: Option<BTreeSet<&str>> = match from {
        SubscribeFrom::All => None,
        SubscribeFrom::Neighbours => Some(
            setup
                .neighbours
                .iter()
                .map(|&n| setup.names[n as usize].as_str())
                .collect(),
        ),
    };
    let index: std::collections::HashMap<&str, u32> = setup
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let mut after = 0;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    loop {
        match setup.client.publications(&topic, after).await {
            Ok(list) => {
                unreachable_since = None;
                for p in list {
                    after = after.max(p.seq);
                    if wanted
                        .as_ref()
                        .is_some_and(|w| !w.contains(p.peer.as_str()))
                    {
                        continue;
                    }
                    let Some(&index) = index.get(p.peer.as_str()) else {
                        continue;
                    };
                    let message = ToAdapter::Published {
                        topic: topic.clone(),
                        peer: p.peer,
                        index,
                        value: p.value,
                    };
                    if input.send(message).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                if matches!(e, crate::client::ClientError::Refused { .. })
                    || since.elapsed() > setup.patience
                {
                    shared.fail(Failure::Limit(format!("subscribing to `{topic}`: {e}")));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl SyncBackend for AdapterBackend {
    fn name(&self) -> &'static str {
        "adapter"
    }

    fn write(&self, _payload: Bytes) -> u64 {
        let id = self.shared.session().write(cmesh_common::unix_micros());
        self.send(ToAdapter::Write {
            id,
            payload: self.payload.clone(),
        });
        id.seq
    }

    fn progress(&self) -> Vec<u64> {
        self.shared.session().progress()
    }

    async fn changed(&self) {
        self.shared.changed.notified().await
    }

    fn connected(&self) -> usize {
        self.shared.session().links() as usize
    }

    fn link_gauge(&self) -> crate::backend::LinkGauge {
        let shared = self.shared.clone();
        Arc::new(move || shared.session().links() as usize)
    }

    fn set_neighbours(&self, neighbours: &[u32]) {
        self.send(ToAdapter::Neighbours {
            neighbours: neighbours
                .iter()
                .map(|&n| self.setup.neighbour(n))
                .collect(),
        });
    }

    async fn failed(&self) -> String {
        let mut failure = self.shared.failure.subscribe();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(f) => f.clone(),
            // The sender lives in `shared`, which outlives this borrow.
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    fn writes_in_time(&self) -> Option<u64> {
        Some(self.shared.session().writes_in_time())
    }

    async fn stop(self) -> BackendStats {
        self.shared.session().stopping(cmesh_common::unix_micros());
        self.send(ToAdapter::Stop);
        let mut stopped = self.shared.stopped.subscribe();
        let deadline = self.setup.deadlines.answer;
        if tokio::time::timeout(deadline, stopped.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::warn!("adapter: it did not answer `stop` within {deadline:?}; killing it");
        }
        BackendStats {
            writes_in_time: Some(self.shared.session().writes_in_time()),
            ..BackendStats::default()
        }
    }
}
