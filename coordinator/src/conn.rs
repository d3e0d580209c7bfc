//! The coordinator's connections: who may hold one, and for how long.
//!
//! The API runs on one thread for a few thousand peers, so what a client can hold must
//! be bounded, or a slow or hostile one starves the peers' heartbeats:
//!
//! - [`Gate`] admits a connection or refuses it: at most [`Limits::total`] at once (sized
//!   from `--peers`), and at most [`Limits::per_address`] from one address other than
//!   the loopback (a peer needs 3 at most: a heartbeat and two long-polls). A refused
//!   connection gets a fixed `503` with a `Retry-After` ([`REFUSED`], written without
//!   waiting) and is closed at once, so a flood cannot queue in front of the peers, and
//!   a peer turned away knows the coordinator is there.
//! - Each connection must send its request head within [`Limits::header_read`]; an idle
//!   kept-alive connection is closed after the same time (hyper starts the timer when it
//!   waits for the next head). Bodies are capped in the router ([`crate::api`]).
//!
//! [`Gate`] is synchronous and unit-tested; [`serve`] is the accept loop around it.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The answer to a connection past the limits, before it is closed: the coordinator is
/// there and full ([`crate::pressure`] says what peers do with it).
pub const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What [`Gate`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, from everyone.
    pub total: usize,
    /// Connections at once from one address (the loopback is not limited: inside the
    /// coordinator's container it is the container itself, and in process tests every
    /// peer shares it).
    pub per_address: usize,
    /// How long a connection may take to send a request head, or sit idle between two.
    pub header_read: Duration,
}

impl Limits {
    /// The limits for a run of `peers`: 4 connections a peer and 64 more for the launcher
    /// and the run's operators; 16 from one address; 10 s for a request head (the peers'
    /// client drops idle connections after 5 s, before the coordinator does).
    pub fn for_peers(peers: usize) -> Limits {
        Limits {
            total: peers.saturating_mul(4).saturating_add(64),
            per_address: 16,
            header_read: Duration::from_secs(10),
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`Limits::total`] connections are open.
    Full,
    /// [`Limits::per_address`] connections are open from this address.
    AddressFull,
}

/// The open connections, counted against [`Limits`].
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    open: usize,
    by_address: HashMap<IpAddr, usize>,
    refused: u64,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            open: 0,
            by_address: HashMap::new(),
            refused: 0,
        }
    }

    /// Admits a connection from `from`, or says why not. Every admitted connection must be
    /// [`Gate::close`]d.
    pub fn admit(&mut self, from: IpAddr) -> Result<(), Refusal> {
        let refusal = if self.open >= self.limits.total {
            Some(Refusal::Full)
        } else if !from.is_loopback()
            && self.by_address.get(&from).copied().unwrap_or(0) >= self.limits.per_address
        {
            Some(Refusal::AddressFull)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refused += 1;
            return Err(r);
        }
        self.open += 1;
        if !from.is_loopback() {
            *self.by_address.entry(from).or_default() += 1;
        }
        Ok(())
    }

    /// A connection admitted from `from` has closed.
    pub fn close(&mut self, from: IpAddr) {
        self.open = self.open.saturating_sub(1);
        if let Some(n) = self.by_address.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&from);
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// An admitted connection's place in the gate, given back when the connection ends.
struct Admitted {
    gate: Arc<Mutex<Gate>>,
    from: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.gate).close(self.from);
    }
}

fn lock(gate: &Mutex<Gate>) -> std::sync::MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `app` on `listener` through a [`Gate`] with `limits` until `stop` turns true.
/// Connections open then are left to end with the process.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let gate = Arc::new(Mutex::new(Gate::new(limits)));
    loop {
        let (stream, from) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections end.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        };
        let from = from.ip();
        let admitted = {
            let mut g = lock(&gate);
            match g.admit(from) {
                Ok(()) => Admitted {
                    gate: gate.clone(),
                    from,
                },
                Err(refusal) => {
                    // Into the socket's buffer, or not at all: never waited on.
                    let _ = stream.try_write(REFUSED);
                    if g.refused().is_power_of_two() {
                        tracing::warn!(
                            %from,
                            open = g.open(),
                            refused = g.refused(),
                            "connection refused: {refusal:?} (limits: {limits:?})"
                        );
                    }
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%from, "connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let mut gate = Gate::new(Limits {
            total: 5,
            per_address: 2,
            header_read: Duration::from_secs(1),
        });
        assert_eq!(gate.admit(ip("10.0.0.9")), Ok(()));
        assert_eq!(gate.admit(ip("10.0.0.9")), Ok(()));
        assert_eq!(gate.admit(ip("10.0.0.9")), Err(Refusal::AddressFull));
        assert_eq!(gate.admit(ip("10.0.0.2")), Ok(()));
        // The loopback is not limited by address, only in total.
        assert_eq!(gate.admit(ip("127.0.0.1")), Ok(()));
        assert_eq!(gate.admit(ip("127.0.0.1")), Ok(()));
        assert_eq!(gate.admit(ip("127.0.0.1")), Err(Refusal::Full));
        assert_eq!(gate.admit(ip("10.0.0.3")), Err(Refusal::Full));
        assert_eq!((gate.open(), gate.refused()), (5, 3));
        gate.close(ip("10.0.0.9"));
        assert_eq!(gate.admit(ip("10.0.0.9")), Ok(()));
        gate.close(ip("127.0.0.1"));
        gate.close(ip("10.0.0.9"));
        gate.close(ip("10.0.0.9"));
        assert_eq!(gate.open(), 2);
        assert_eq!(gate.admit(ip("10.0.0.9")), Ok(()));
    }

    #[test]
    fn limits_grow_with_the_peers() {
        assert_eq!(Limits::for_peers(1000).total, 4064);
        assert_eq!(Limits::for_peers(0).total, 64);
        assert_eq!(Limits::for_peers(usize::MAX).total, usize::MAX);
    }
}
