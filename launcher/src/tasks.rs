//! Long operations as bounded-concurrency streams of per-item tasks: the one runner.
//!
//! [`for_each_on_hosts`] runs a task per item, at most `per_host` at a time on each host
//! (an engine serves a few requests at once; more only queue inside it), with a progress
//! bar on a terminal and a closing line, and returns every item's outcome: one item
//! failing never stops the others. [`for_each`] is the same with one bound for all.
//! [`cpu`] runs CPU-bound work (gzip, sha256) off the async threads.
//!
//! Progress bars live in one [`indicatif::MultiProgress`] ([`progress`]); log lines go
//! through it ([`LogWriter`]) so a message never tears a bar.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

/// The process's progress bars (hidden when stderr is not a terminal, or with `-q`).
pub fn progress() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Hides every progress bar from now on (`-q`, `--json`).
pub fn hide_progress() {
    progress().set_draw_target(ProgressDrawTarget::hidden());
}

/// A bar of `len` steps labelled `what`.
pub fn bar(what: &str, len: u64, template: &str) -> ProgressBar {
    let bar = progress().add(ProgressBar::new(len));
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Writes log lines to stderr above the progress bars.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Runs `task(host, item)` on every `(host, item)`, at most `per_host` at a time on each
/// host; returns `((host, item), outcome)` in completion order.
pub async fn for_each_on_hosts<T, R, F, Fut>(
    what: &str,
    items: Vec<(usize, T)>,
    per_host: usize,
    task: F,
) -> Vec<((usize, T), anyhow::Result<R>)>
where
    T: Clone,
    F: Fn(usize, T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    let bar = bar(
        what,
        items.len() as u64,
        "{msg:>10} [{bar:30}] {pos}/{len} {elapsed} {per_sec}",
    );
    let start = Instant::now();
    let total = items.len();
    let results = bounded_on_hosts(items, per_host, |h, item| {
        let (bar, fut) = (bar.clone(), task(h, item));
        async move {
            let r = fut.await;
            bar.inc(1);
            r
        }
    })
    .await;
    bar.finish_and_clear();
    progress().remove(&bar);
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    tracing::info!(
        "{what}: {}/{total} done in {:.1}s{}",
        total - failed,
        start.elapsed().as_secs_f64(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    results
}

/// [`for_each_on_hosts`] without its bar and closing line, for work repeated every
/// second or so (`logs -f`'s rounds).
pub async fn bounded_on_hosts<T, R, F, Fut>(
    items: Vec<(usize, T)>,
    per_host: usize,
    task: F,
) -> Vec<((usize, T), anyhow::Result<R>)>
where
    T: Clone,
    F: Fn(usize, T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    use futures_util::StreamExt;
    let per_host = per_host.max(1);
    let hosts = items.iter().map(|(h, _)| h + 1).max().unwrap_or(0);
    let gates: Vec<tokio::sync::Semaphore> = (0..hosts)
        .map(|_| tokio::sync::Semaphore::new(per_host))
        .collect();
    futures_util::stream::iter(items)
        .map(|(h, item)| {
            let (gate, fut) = (&gates[h], task(h, item.clone()));
            async move {
                let r = match gate.acquire().await {
                    Ok(_permit) => fut.await,
                    Err(_) => Err(anyhow::anyhow!("the task runner was closed")),
                };
                ((h, item), r)
            }
        })
        .buffer_unordered((per_host * hosts).max(1))
        .collect()
        .await
}

/// Runs `task` on every item, `concurrency` at a time; returns `(item, outcome)` in
/// completion order.
pub async fn for_each<T, R, F, Fut>(
    what: &str,
    items: Vec<T>,
    concurrency: usize,
    task: F,
) -> Vec<(T, anyhow::Result<R>)>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    let items = items.into_iter().map(|i| (0, i)).collect();
    for_each_on_hosts(what, items, concurrency, |_, i| task(i))
        .await
        .into_iter()
        .map(|((_, i), r)| (i, r))
        .collect()
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM, with the signal's name. Never, if
/// the signals cannot be listened for.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs `work` unless a SIGINT or SIGTERM comes first; then it is dropped where it was
/// (every write it made is atomic, and every command can be re-run), and the error says
/// so and what to do.
pub async fn until_interrupted<T>(
    what: &str,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = work => r,
        signal = interrupted() => Err(anyhow::anyhow!(
            "{what} interrupted ({signal}): stopped where it was, nothing half-written. `launcher status` shows the run as it is; run the same command again to finish"
        )),
    }
}

/// Runs CPU-bound `work` on the blocking pool, off the async threads.
pub async fn cpu<R: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("a background task failed: {e}"))?
}

/// Runs `work` on a thread of its own with a blocking [`std::io::Read`] of `stream`,
/// which this task feeds a few chunks ahead (what is in flight is bounded, whatever the
/// stream holds): a large download is processed as it arrives, off the async threads,
/// never held whole. Not on tokio's blocking pool: a task there holds a paused test
/// clock still, and the stream may need that clock to move (the simulated engine).
/// When `work` stops early, the rest of the stream is not read; when this future is
/// dropped, `work` sees the stream end.
pub async fn on_thread_reading<R: Send + 'static>(
    stream: crate::engine::ByteStream,
    work: impl FnOnce(&mut dyn std::io::Read) -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cmesh-stream".into())
        .spawn(move || {
            let mut reader = ChannelReader {
                rx,
                chunk: bytes::Bytes::new(),
            };
            let _ = done_tx.send(work(&mut reader));
        })
        .map_err(|e| anyhow::anyhow!("cannot start a thread: {e}"))?;
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other);
        if tx.send(chunk).await.is_err() {
            break; // `work` is done with it.
        }
    }
    drop(tx);
    done_rx
        .await
        .map_err(|_| anyhow::anyhow!("a background thread failed"))?
}

/// The blocking side of [`on_thread_reading`].
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_read_on_a_thread_as_it_arrives_even_on_a_paused_clock() {
        use futures_util::StreamExt;
        // Each chunk comes after a sleep: the paused clock must keep moving while the
        // thread waits for it.
        let chunks = futures_util::stream::iter(0..5u8)
            .then(|i| async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                Ok(bytes::Bytes::from(vec![i; 3]))
            })
            .boxed();
        let all = on_thread_reading(chunks, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            Ok(v)
        })
        .await
        .unwrap();
        assert_eq!(all, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
        // An error in the stream reaches the reader; stopping early is fine.
        let broken = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"ab")),
            Err(crate::engine::EngineError::Unreachable("gone".into())),
        ])
        .boxed();
        let err = on_thread_reading(broken, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            Ok(v)
        })
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("gone"), "{err:#}");
        let endless =
            futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from_static(b"x"))).boxed();
        let first = on_thread_reading(endless, |r| {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)?;
            Ok(b[0])
        })
        .await
        .unwrap();
        assert_eq!(first, b'x');
    }

    #[tokio::test]
    async fn every_item_gets_an_outcome_and_concurrency_is_bounded() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let results = for_each("test", (0..20).collect(), 3, |i: u32| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, SeqCst);
                if i.is_multiple_of(5) {
                    anyhow::bail!("item {i} fails")
                }
                Ok(i * 2)
            }
        })
        .await;
        assert_eq!(results.len(), 20);
        assert_eq!(results.iter().filter(|(_, r)| r.is_err()).count(), 4);
        assert!(peak.load(SeqCst) <= 3);
    }

    #[tokio::test]
    async fn each_host_gets_its_own_bound_and_all_hosts_run_at_once() {
        let running: Arc<Vec<AtomicUsize>> =
            Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let peaks: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let items: Vec<(usize, u32)> = (0..60).map(|i| ((i % 3) as usize, i)).collect();
        let results = for_each_on_hosts("test", items, 2, |h, _| {
            let (running, peaks) = (running.clone(), peaks.clone());
            async move {
                let now = running[h].fetch_add(1, SeqCst) + 1;
                peaks[h].fetch_max(now, SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                running[h].fetch_sub(1, SeqCst);
                Ok(())
            }
        })
        .await;
        assert_eq!(results.len(), 60);
        for h in 0..3 {
            assert_eq!(peaks[h].load(SeqCst), 2, "host {h} kept at its bound");
        }
    }

    #[tokio::test]
    async fn cpu_work_runs_off_the_async_threads() {
        let n = cpu(|| Ok((0..1000u64).sum::<u64>())).await.unwrap();
        assert_eq!(n, 499_500);
        assert!(cpu(|| -> anyhow::Result<()> { anyhow::bail!("no") })
            .await
            .is_err());
    }
}
