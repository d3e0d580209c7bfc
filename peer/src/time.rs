//! Unix times (as plans and the coordinator give them) on the peer's tokio clock.

use std::time::Duration;
use tokio::time::Instant;

/// The tokio instant of a Unix time in ms (a past time maps into the past, or now).
pub fn unix_ms_to_instant(unix_ms: u64) -> Instant {
    let now_unix = cmesh_common::unix_millis();
    let now = Instant::now();
    if unix_ms >= now_unix {
        now + Duration::from_millis(unix_ms - now_unix)
    } else {
        now.checked_sub(Duration::from_millis(now_unix - unix_ms))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_and_past_times_map_around_now() {
        let now = Instant::now();
        let ahead = unix_ms_to_instant(cmesh_common::unix_millis() + 5_000);
        assert!(ahead >= now + Duration::from_millis(4_900));
        assert!(unix_ms_to_instant(0) <= Instant::now());
    }
}
