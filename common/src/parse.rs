//! Parsers for the command-line forms the cmesh programs share.

use std::net::SocketAddr;
use std::time::Duration;

/// Parses a human duration such as `10s`, `1m30s` or `500ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 10s, 2m or 500ms"))
}

/// Parses a socket address `IP:PORT` (port 0 picks a free port where that makes sense).
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "`{s}` is not an address of the form IP:PORT (for example 127.0.0.1:7400 or 0.0.0.0:0)"
        )
    })
}

/// Parses `HOST:PORT` where HOST may be a name or an IP; returns it unchanged when valid.
pub fn host_port(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bad = || {
        format!("`{s}` is not an address of the form HOST:PORT (for example 127.0.0.1:7400 or coordinator:7400)")
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || port.parse::<u16>().is_err()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// A closed range of milliseconds written `MIN..MAX` (or a single number for a fixed value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MillisRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl MillisRange {
    /// Parses `200..500`, `200ms..500ms` or `1000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |part: &str| -> Result<u64, String> {
            let p = part.trim().trim_end_matches("ms");
            p.parse::<u64>().map_err(|_| {
                format!("`{s}` is not a range of milliseconds; write it like 200..500 or 1000")
            })
        };
        let (min_ms, max_ms) = match s.split_once("..") {
            Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
            None => {
                let v = num(s)?;
                (v, v)
            }
        };
        if min_ms == 0 || min_ms > max_ms {
            return Err(format!(
                "`{s}`: the range must satisfy 0 < MIN <= MAX (got {min_ms}..{max_ms})"
            ));
        }
        Ok(Self { min_ms, max_ms })
    }
}

impl std::fmt::Display for MillisRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.min_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(duration("ten").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn parses_addresses() {
        assert!(socket_addr("127.0.0.1:0").is_ok());
        assert!(socket_addr("127.0.0.1").is_err());
        assert!(socket_addr("localhost:7400").is_err());
        assert_eq!(host_port("coordinator:7400").unwrap(), "coordinator:7400");
        assert!(host_port("127.0.0.1:7400").is_ok());
        assert!(host_port("[::1]:7400").is_ok());
        assert!(host_port("nohost").is_err());
        assert!(host_port("host:99999").is_err());
        assert!(host_port("ho st:1").is_err());
        assert!(host_port(":7400").is_err());
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(
            MillisRange::parse("200..500").unwrap(),
            MillisRange {
                min_ms: 200,
                max_ms: 500
            }
        );
        assert_eq!(MillisRange::parse("1000").unwrap().max_ms, 1000);
        assert_eq!(MillisRange::parse("10ms..20ms").unwrap().min_ms, 10);
        assert!(MillisRange::parse("500..200").is_err());
        assert!(MillisRange::parse("0..10").is_err());
        assert!(MillisRange::parse("a..b").is_err());
    }
}
