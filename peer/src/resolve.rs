//! Names looked up once: the coordinator's and the neighbours'.
//!
//! Inside a container, names resolve through Docker's embedded DNS server, and the
//! engine answers every query under the lock of its network controller. A peer used to
//! look a name up for every new connection (each heartbeat that found the pooled
//! connection busy, each redial), so a run of 1000 peers sent the engine thousands of
//! queries a second. Measured on Docker 20.10.24 with 1000 peers: 34,000 queries stuck
//! behind that lock when it deadlocked (moby/moby#46661: a container exiting while
//! others started), and from that moment no peer could reach the coordinator by name.
//!
//! So each name is looked up once and its address kept. A connection to a kept address
//! that fails drops it ([`forget`]), and the next attempt looks the name up again: a
//! restarted container may have come back with another address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

fn cache() -> &'static Mutex<HashMap<String, std::net::IpAddr>> {
    static CACHE: OnceLock<Mutex<HashMap<String, std::net::IpAddr>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// `HOST:PORT` as its host and port (an IPv6 host in brackets).
fn split(host_port: &str) -> std::io::Result<(&str, u16)> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{host_port}` is not HOST:PORT"),
        )
    };
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host, port.parse().map_err(|_| bad())?))
}

/// The address of `host`, from the cache or looked up once (then kept).
pub async fn host(host: &str) -> std::io::Result<std::net::IpAddr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    if let Some(ip) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(host) {
        return Ok(*ip);
    }
    let ip = tokio::net::lookup_host((host, 0))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("`{host}` has no address")))?
        .ip();
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(host.to_owned(), ip);
    Ok(ip)
}

/// The address of `HOST:PORT`, its host looked up at most once.
pub async fn lookup(host_port: &str) -> std::io::Result<SocketAddr> {
    let (name, port) = split(host_port)?;
    Ok(SocketAddr::new(host(name).await?, port))
}

/// Drops what is kept for the host of `host_port` (or a bare host): a connection to it
/// failed, so the next attempt asks DNS again.
pub fn forget(host_port: &str) {
    let name = split(host_port).map_or(host_port, |(h, _)| h);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
}

/// The same cache for reqwest's connections (the coordinator client).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cached;

impl reqwest::dns::Resolve for Cached {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let ip = host(&name)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_looked_up_once_kept_and_forgotten_on_request() {
        let a = lookup("localhost:7400").await.unwrap();
        assert!(a.ip().is_loopback() && a.port() == 7400);
        // Kept: the cache answers, with the port asked for.
        assert!(cache().lock().unwrap().contains_key("localhost"));
        assert_eq!(lookup("localhost:1").await.unwrap().port(), 1);
        forget("localhost:7400");
        assert!(!cache().lock().unwrap().contains_key("localhost"));
        // Addresses need no lookup; bad input is an error, not a panic.
        assert_eq!(
            lookup("10.0.0.1:9").await.unwrap(),
            "10.0.0.1:9".parse().unwrap()
        );
        assert_eq!(lookup("[::1]:9").await.unwrap(), "[::1]:9".parse().unwrap());
        assert!(lookup("no-port").await.is_err());
        assert!(lookup("host:notaport").await.is_err());
    }
}
