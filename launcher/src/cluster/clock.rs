//! Engine clocks read over the Docker API at spawn: each host's `SystemTime` in
//! `GET /info` against this machine's clock, the sample with the shortest round trip of
//! several, at its midpoint. Over SSH its error is about half a round trip of the tunnel,
//! so `analyze` uses these offsets only as a cross-check of the in-band ones, or when the
//! reports carry none (`cmesh_analysis::clock`).

use crate::cluster::host::Host;
use anyhow::Context;
use std::time::UNIX_EPOCH;

/// Samples per host; the one with the shortest round trip is kept.
const SAMPLES: usize = 5;

/// One host's clock against ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// Host clock minus launcher clock, in ms.
    pub offset_ms: f64,
    /// Round trip of the kept sample, in ms: the offset is good to about half of it.
    pub rtt_ms: f64,
}

/// Parses an RFC 3339 time with optional fraction and `Z` or `±hh:mm` offset into µs
/// since the Unix epoch.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let s = s.trim();
    let (body, tz_secs) = if let Some(b) = s.strip_suffix('Z') {
        (b, 0i64)
    } else {
        let at = s.len().checked_sub(6)?;
        let (b, tz) = s.split_at(at);
        let sign = match tz.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let h: i64 = tz.get(1..3)?.parse().ok()?;
        let m: i64 = tz.get(4..6)?.parse().ok()?;
        (b, sign * (h * 3600 + m * 60))
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let t = humantime::parse_rfc3339(&format!("{whole}Z")).ok()?;
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64 - tz_secs;
    let mut micros = 0i64;
    for (i, c) in frac.chars().take(6).enumerate() {
        micros += c.to_digit(10)? as i64 * 10i64.pow(5 - i as u32);
    }
    Some(secs * 1_000_000 + micros)
}

fn now_micros() -> i64 {
    cmesh_common::unix_micros() as i64
}

/// Measures `host`'s clock against this machine's.
pub async fn measure(host: &Host) -> anyhow::Result<Offset> {
    let mut best: Option<Offset> = None;
    for _ in 0..SAMPLES {
        let t0 = now_micros();
        let info = crate::engine::retry::retry(|| host.engine.info())
            .await
            .with_context(|| format!("reading the clock of host `{}`", host.name()))?;
        let t1 = now_micros();
        let Some(remote) = info.system_time.as_deref().and_then(parse_rfc3339_micros) else {
            anyhow::bail!("host `{}` reported no readable SystemTime", host.name());
        };
        let sample = Offset {
            offset_ms: (remote - (t0 + t1) / 2) as f64 / 1000.0,
            rtt_ms: (t1 - t0) as f64 / 1000.0,
        };
        if best.is_none_or(|b| sample.rtt_ms < b.rtt_ms) {
            best = Some(sample);
        }
    }
    Ok(best.expect("at least one sample"))
}

/// Measures every host at once.
pub async fn measure_all(hosts: &[Host]) -> anyhow::Result<Vec<Offset>> {
    futures_util::future::join_all(hosts.iter().map(measure))
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_times() {
        let z = parse_rfc3339_micros("2026-11-22T05:27:29.259437522Z").unwrap();
        assert_eq!(z % 1_000_000, 259_437);
        let plus = parse_rfc3339_micros("2026-11-22T06:27:29.259437522+01:00").unwrap();
        assert_eq!(z, plus);
        let minus = parse_rfc3339_micros("2026-11-22T04:57:29.259437-00:30").unwrap();
        assert_eq!(z, minus);
        assert_eq!(
            parse_rfc3339_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert!(parse_rfc3339_micros("yesterday").is_none());
    }
}
