//! This peer's clock against the coordinator's, from NTP-style exchanges.
//!
//! At the start of the run (between Ready and the common start) and at the end (after
//! the `synced` barrier, when the host is quiet) the peer asks the coordinator for its
//! clock a number of times, a few ms apart with jitter so that peers do not ask in step.
//! Every exchange bounds the offset by its round trip; the estimate is what they all
//! agree on ([`cmesh_common::clock`]). Every exchange is valid, the first one too (its
//! round trip includes opening the connection, which only widens its bound), and a
//! failed one is left out. The two estimates go in the report; their difference over
//! the time between them is the drift.

use crate::client::CoordinatorClient;
use cmesh_common::clock::ClockEstimate;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::time::Instant;

/// Pause between exchanges: this plus up to as much again, random.
const SPACING: Duration = Duration::from_millis(2);

/// Up to `samples` exchanges, stopping at `deadline`; `None` if none succeeded.
pub async fn measure(
    client: &CoordinatorClient,
    samples: u32,
    deadline: Instant,
) -> Option<ClockEstimate> {
    let at = cmesh_common::unix_millis();
    let mut exchanges = Vec::with_capacity(samples as usize);
    let mut attempts = 0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cmesh_common::unix_micros());
    // Failed attempts count too, so a coordinator that does not answer ends the series.
    while attempts < samples && Instant::now() < deadline {
        attempts += 1;
        let t1 = cmesh_common::unix_micros() as i64;
        let reading = tokio::time::timeout_at(deadline, client.clock()).await;
        let t4 = cmesh_common::unix_micros() as i64;
        match reading {
            Ok(Ok(r)) => exchanges.push((t1, r.unix_us as i64, t4)),
            Ok(Err(e)) => tracing::debug!("a clock exchange failed: {e}"),
            Err(_) => break,
        }
        let jitter = rng.random_range(Duration::ZERO..=SPACING);
        tokio::time::sleep(
            (SPACING + jitter).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    ClockEstimate::of_exchanges(at, &exchanges)
}

/// The time to give a series of `samples` exchanges when nothing else bounds it: enough
/// for round trips of a few ms on a busy host.
pub fn budget(samples: u32) -> Duration {
    Duration::from_millis(500) + SPACING * 4 * samples
}
