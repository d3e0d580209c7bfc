//! This peer's clock against the coordinator's, from NTP-style exchanges.
//!
//! At the start of the run (between Ready and the common start) and at the end (after
//! the `synced` barrier, when the host is quiet) the peer sends the coordinator a number
//! of clock requests over UDP, on the API's port, a few ms apart with jitter so that
//! peers do not ask in step. Every exchange bounds the offset by its round trip; the
//! estimate is what they all agree on ([`cmesh_common::clock`]). A request without an
//! answer within [`ANSWER_WAIT`] is left out (UDP may drop it), and so is an answer to
//! an older request. The two estimates go in the report; analyze derives the drift.

use cmesh_common::clock::{parse_reply, request, ClockEstimate};
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Pause between exchanges: this plus up to as much again, random.
const SPACING: Duration = Duration::from_millis(2);

/// How long one request waits for its answer.
pub const ANSWER_WAIT: Duration = Duration::from_millis(250);

/// Up to `samples` exchanges with the coordinator at `coordinator` (`HOST:PORT`),
/// stopping at `deadline`; `None` if none was answered.
pub async fn measure(coordinator: &str, samples: u32, deadline: Instant) -> Option<ClockEstimate> {
    let at = cmesh_common::unix_millis();
    let socket = match connect(coordinator).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no clock exchanges with {coordinator}: {e}");
            return None;
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cmesh_common::unix_micros());
    let mut exchanges = Vec::with_capacity(samples as usize);
    let mut buf = [0u8; 64];
    for nonce in 0..u64::from(samples) {
        if Instant::now() >= deadline {
            break;
        }
        let t1 = cmesh_common::unix_micros();
        if socket.send(&request(nonce)).await.is_err() {
            continue;
        }
        let wait = (Instant::now() + ANSWER_WAIT).min(deadline);
        // Read until this request's answer, or give up on it.
        while let Ok(Ok(n)) = tokio::time::timeout_at(wait, socket.recv(&mut buf)).await {
            let t4 = cmesh_common::unix_micros();
            if let Some((echo, t2, t3)) = parse_reply(&buf[..n]) {
                if echo == nonce {
                    exchanges.push((t1 as i64, t2 as i64, t3 as i64, t4 as i64));
                    break;
                }
            }
        }
        let jitter = rng.random_range(Duration::ZERO..=SPACING);
        tokio::time::sleep(
            (SPACING + jitter).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    ClockEstimate::of_exchanges(at, &exchanges)
}

async fn connect(coordinator: &str) -> std::io::Result<UdpSocket> {
    let addr = crate::resolve::lookup(coordinator).await?;
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// The time to give a series of `samples` exchanges when nothing else bounds it: enough
/// for round trips of a few ms on a busy host, and one lost answer.
pub fn budget(samples: u32) -> Duration {
    Duration::from_millis(500) + SPACING * 4 * samples
}
