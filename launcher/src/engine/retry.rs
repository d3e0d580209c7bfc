//! The one retry: transient engine errors ([`EngineError::is_transient`]) are tried again
//! with exponential backoff and full jitter, so hosts that failed together do not retry
//! together.

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

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(200));
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }
}
