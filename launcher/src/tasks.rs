//! Long operations as bounded-concurrency streams of per-item tasks.
//!
//! [`for_each`] runs a task per item, at most `concurrency` at a time, with a progress bar
//! on a terminal (a closing line otherwise), and returns every item's outcome: one item
//! failing never stops the others. [`retry`] retries transient Docker errors with backoff.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::time::{Duration, Instant};

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
    use futures_util::StreamExt;
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed} {per_sec}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    let start = Instant::now();
    let total = items.len();
    let results: Vec<(T, anyhow::Result<R>)> = futures_util::stream::iter(items)
        .map(|item| {
            let fut = task(item.clone());
            let bar = bar.clone();
            async move {
                let r = fut.await;
                bar.inc(1);
                (item, r)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    eprintln!(
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

/// Calls `op` until it succeeds, fails with a non-transient error, or 4 attempts are
/// used; waits 200 ms, 400 ms, 800 ms between attempts.
pub async fn retry<R, F, Fut>(mut op: F) -> Result<R, bollard::errors::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, bollard::errors::Error>>,
{
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 4 && crate::host::is_transient(&e) => {
                tracing::debug!("transient Docker error (attempt {attempt}): {e}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_item_gets_an_outcome_and_concurrency_is_bounded() {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let results = for_each("test", (0..20).collect(), 3, |i: u32| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
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
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let mut calls = 0;
        let r: Result<(), _> = retry(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 500,
                        message: "busy".into(),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = retry(|| {
            calls += 1;
            async {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message: "No such container".into(),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
