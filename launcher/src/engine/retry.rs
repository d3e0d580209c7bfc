//! The one retry: transient engine errors ([`EngineError::is_transient`]) are tried again
//! with exponential backoff and full jitter, so hosts that failed together do not retry
//! together. [`retry`] bounds the attempts (a request); [`retry_for`] bounds the time
//! and takes the caller's test of what is worth trying again (a host that answers, but
//! too slowly: an sshd starved by the containers starting on its host).

use super::EngineError;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Attempts in all, the first included.
pub const ATTEMPTS: u32 = 4;
/// The first backoff's ceiling; each later one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A random duration in `[ceiling / 2, ceiling]`.
fn jittered(ceiling: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = ceiling / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64).max(1))
}

/// Calls `op` until it succeeds, fails with an error that is not transient, or
/// [`ATTEMPTS`] are used. Waits about 200 ms, 400 ms, 800 ms (jittered) in between.
pub async fn retry<R, F, Fut>(mut op: F) -> Result<R, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, EngineError>>,
{
    let mut ceiling = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && e.is_transient() => {
                tracing::debug!("transient engine error (attempt {attempt}): {e}");
                tokio::time::sleep(jittered(ceiling)).await;
                ceiling *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The longest wait between two tries of [`retry_for`].
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Calls `op` until it succeeds, fails with an error `again` refuses, or `grace` has
/// passed since the first call (then the last error; `again` is asked only while
/// there is time left, so it may say that it tries again). The same jittered backoff as
/// [`retry`], its ceiling doubling up to 5 s.
pub async fn retry_for<R, E, F, Fut>(
    grace: Duration,
    mut op: F,
    again: impl Fn(&E) -> bool,
) -> Result<R, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let deadline = tokio::time::Instant::now() + grace;
    let mut ceiling = FIRST_BACKOFF;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline && again(&e) => {
                let pause = jittered(ceiling).min(deadline - tokio::time::Instant::now());
                tokio::time::sleep(pause).await;
                ceiling = (ceiling * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only() {
        let mut calls = 0;
        let r: Result<(), _> = retry(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(EngineError::Server("busy".into()))
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
            async { Err(EngineError::NotFound("no such container".into())) }
        })
        .await;
        assert!(matches!(r, Err(EngineError::NotFound(_))));
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r: Result<(), _> = retry(|| {
            calls += 1;
            async { Err(EngineError::Unreachable("gone".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_for_tries_again_within_the_grace_only_what_the_caller_allows() {
        // Busy for 10 s, then answers: within a 60 s grace, it succeeds.
        let start = tokio::time::Instant::now();
        let r: Result<u32, &str> = retry_for(
            Duration::from_secs(60),
            || async move {
                if start.elapsed() < Duration::from_secs(10) {
                    Err("busy")
                } else {
                    Ok(7)
                }
            },
            |e| *e == "busy",
        )
        .await;
        assert_eq!(r, Ok(7));
        // Busy for ever: it gives up with the last error once the grace has passed.
        let start = tokio::time::Instant::now();
        let r: Result<(), &str> =
            retry_for(Duration::from_secs(30), || async { Err("busy") }, |_| true).await;
        assert_eq!(r, Err("busy"));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(30) && waited < Duration::from_secs(36));
        // Not worth trying again: one call.
        let mut calls = 0;
        let r: Result<(), &str> = retry_for(
            Duration::from_secs(30),
            || {
                calls += 1;
                async { Err("refused") }
            },
            |e| *e == "busy",
        )
        .await;
        assert_eq!(r, Err("refused"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(200));
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }
}
