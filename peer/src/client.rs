//! The peer's side of the coordinator API.
//!
//! Transient failures (connection refused, timeouts, 5xx) are retried with exponential
//! backoff until a deadline; answers that retrying cannot change (401 wrong token, 404,
//! 409 aborted) fail at once with what the coordinator said.
//!
//! A slow coordinator is not a gone one:
//!
//! - `503` with `Retry-After` (a coordinator shedding load: the coordinator's
//!   `pressure` module) is an answer: the peer comes back after that long, give or take
//!   a quarter so that a host's peers do not come back together, and its patience
//!   starts over.
//! - A request that connected and then got no answer in time is a coordinator starved
//!   of CPU as often as a frozen one: those get [`SLOW_PATIENCE`] times the patience.
//! - Refused or unanswered connections are a coordinator that is gone, or not there
//!   yet: the patience as given.

use cmesh_common::adapter::{Publication, PublishRequest};
use cmesh_common::lifecycle::PeerState;
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::protocol::{
    BarrierArrive, BarrierStatus, ChaosAction, ErrorBody, Heartbeat, RegisterRequest,
    RegisterResponse, StateChange,
};
use cmesh_common::token;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::time::Instant;

/// Why a call to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the coordinator at {addr} could not be reached for {waited:?}: {last}")]
    Unreachable {
        addr: String,
        waited: Duration,
        last: String,
    },
    #[error("the coordinator at {addr} is busy; it asked to be asked again in {retry_after:?}")]
    Busy { addr: String, retry_after: Duration },
    #[error("the coordinator refused the run token (401); check that --token-file holds this run's token")]
    Unauthorized,
    #[error("the coordinator answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
}

enum Attempt<T> {
    Done(T),
    /// Ask again at once (a long-poll that answered "not yet").
    Again,
    /// A transient failure: back off, then ask again.
    Retry(String),
    /// Connected, and no answer in time: back off, then ask again, with more patience.
    Slow(String),
    /// The coordinator is there and busy: ask again after this long.
    Busy(Duration),
    Fail(ClientError),
}

/// How many times the patience a coordinator gets that accepts connections and answers
/// none in time (busy or frozen: from outside they look alike).
pub const SLOW_PATIENCE: u32 = 4;

/// The longest `Retry-After` taken: a coordinator cannot park a peer for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The `Retry-After` of a `503`, in seconds (the form the coordinator sends); `None`
/// without one, or with a date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// `d` give or take a quarter, so that peers told the same come back spread out.
pub fn spread(d: Duration) -> Duration {
    use rand::{Rng, SeedableRng};
    d.mul_f64(rand_chacha::ChaCha8Rng::from_os_rng().random_range(0.75..1.25))
}

/// A client for one peer.
#[derive(Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    addr: String,
    base: String,
    token: String,
    peer: String,
}

impl CoordinatorClient {
    /// `addr` is the coordinator's `HOST:PORT`.
    pub fn new(addr: &str, token: &str, peer: &str) -> Self {
        CoordinatorClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(1)
                // Before the coordinator closes an idle connection (after 10 s, see
                // coordinator/src/conn.rs), so a beat never goes out on a closing one.
                .pool_idle_timeout(Duration::from_secs(5))
                // The coordinator's name looked up once, not per connection.
                .dns_resolver(std::sync::Arc::new(crate::resolve::Cached))
                .build()
                .expect("an HTTP client without TLS builds"),
            addr: addr.to_owned(),
            base: format!("http://{addr}"),
            token: token.to_owned(),
            peer: peer.to_owned(),
        }
    }

    async fn classify<T: serde::de::DeserializeOwned>(
        &self,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Attempt<T> {
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                if e.is_connect() {
                    // Ask DNS again next time: the address kept may be stale.
                    crate::resolve::forget(&self.addr);
                    return Attempt::Retry(describe(&e));
                }
                if e.is_timeout() {
                    return Attempt::Slow(describe(&e));
                }
                return Attempt::Retry(describe(&e));
            }
        };
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            if let Some(after) = retry_after(response.headers()) {
                return Attempt::Busy(after);
            }
        }
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Attempt::Again;
        }
        if status.is_success() {
            return match response.json::<T>().await {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Retry(format!("unreadable answer: {e}")),
            };
        }
        if status.is_server_error() {
            return Attempt::Retry(format!("the coordinator answered {status}"));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Attempt::Fail(ClientError::Unauthorized);
        }
        let message = match response.json::<ErrorBody>().await {
            Ok(b) => b.error,
            Err(_) => String::from("(no detail)"),
        };
        Attempt::Fail(ClientError::Refused { status, message })
    }

    /// Repeats `call` until it is done, fails for good, or `patience` passes without an
    /// answer. A "not yet" answer from a long-poll resets the patience: the coordinator is
    /// there, just not ready.
    async fn retry<T, F, Fut>(&self, patience: Duration, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut since = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let (last, limit) = match call().await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Again => {
                    since = Instant::now();
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Attempt::Busy(after) => {
                    // An answer: the coordinator is there.
                    tracing::debug!("coordinator busy; asking again in {after:?}");
                    tokio::time::sleep(spread(after)).await;
                    since = Instant::now();
                    continue;
                }
                Attempt::Retry(last) => (last, patience),
                Attempt::Slow(last) => (last, patience * SLOW_PATIENCE),
            };
            let waited = since.elapsed();
            if waited >= limit {
                return Err(ClientError::Unreachable {
                    addr: self.addr.clone(),
                    waited,
                    last,
                });
            }
            tracing::debug!("coordinator not reachable yet: {last}");
            tokio::time::sleep(backoff.min(limit.saturating_sub(waited))).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header(token::HEADER, &self.token)
    }

    /// Registers, retrying until `patience` runs out.
    pub async fn register(
        &self,
        addr: &str,
        host: Option<&str>,
        patience: Duration,
    ) -> Result<RegisterResponse, ClientError> {
        let body = RegisterRequest {
            peer: self.peer.clone(),
            addr: addr.to_owned(),
            host: host.map(str::to_owned),
            cpus: crate::usage::host_cpus(),
        };
        self.retry(patience, || async {
            self.classify(
                self.post("/v1/register")
                    .timeout(Duration::from_secs(10))
                    .json(&body)
                    .send()
                    .await,
            )
            .await
        })
        .await
    }

    /// Long-polls for the plan.
    pub async fn wait_plan(&self, patience: Duration) -> Result<ExecutionPlan, ClientError> {
        self.retry(patience, || async {
            let r = self
                .http
                .get(format!("{}/v1/plan", self.base))
                .query(&[("peer", &self.peer)])
                .header(token::HEADER, &self.token)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            self.classify(r).await
        })
        .await
    }

    /// Long-polls once for the chaos actions after the first `after` (maybe none).
    pub async fn chaos_since(&self, after: u32) -> Result<Vec<ChaosAction>, ClientError> {
        self.poll_once("/v1/chaos", u64::from(after)).await
    }

    /// Long-polls `path?after=N` once: what came after the first `after` (maybe none).
    async fn poll_once<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        after: u64,
    ) -> Result<Vec<T>, ClientError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(&[("after", after)])
            .header(token::HEADER, &self.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        match self.classify(r).await {
            Attempt::Done(v) => Ok(v),
            Attempt::Again => Ok(Vec::new()),
            other => Err(self.failed(other)),
        }
    }

    /// The error an attempt that did not succeed stands for, when it is not retried here.
    fn failed<T>(&self, attempt: Attempt<T>) -> ClientError {
        match attempt {
            Attempt::Fail(e) => e,
            Attempt::Busy(retry_after) => ClientError::Busy {
                addr: self.addr.clone(),
                retry_after,
            },
            Attempt::Retry(last) | Attempt::Slow(last) => ClientError::Unreachable {
                addr: self.addr.clone(),
                waited: Duration::ZERO,
                last,
            },
            Attempt::Done(_) | Attempt::Again => ClientError::Unreachable {
                addr: self.addr.clone(),
                waited: Duration::ZERO,
                last: "no answer".into(),
            },
        }
    }

    /// Publishes `value` on the sync service's `topic`, retrying until `patience` runs
    /// out; returns its number on the topic. Past a bound the coordinator answers 429,
    /// which fails at once with its message.
    pub async fn publish(
        &self,
        topic: &str,
        value: &str,
        patience: Duration,
    ) -> Result<u64, ClientError> {
        let body = PublishRequest {
            peer: self.peer.clone(),
            value: value.to_owned(),
        };
        self.retry(patience, || async {
            let r = self
                .post(&format!("/v1/sync/{topic}"))
                .timeout(Duration::from_secs(30))
                .json(&body)
                .send()
                .await;
            self.classify(r).await
        })
        .await
    }

    /// Long-polls once for `topic`'s publications after its first `after` (maybe none).
    pub async fn publications(
        &self,
        topic: &str,
        after: u64,
    ) -> Result<Vec<Publication>, ClientError> {
        self.poll_once(&format!("/v1/sync/{topic}"), after).await
    }

    /// One heartbeat, with the live counters if there are any yet; no retry (the next
    /// beat is the retry).
    pub async fn heartbeat(
        &self,
        state: PeerState,
        live: Option<cmesh_common::live::LiveCounters>,
    ) -> Result<(), ClientError> {
        let body = Heartbeat {
            peer: self.peer.clone(),
            state,
            live,
        };
        self.send_once("/v1/heartbeat", &body).await
    }

    /// Reports a state change, retrying until `patience` runs out.
    pub async fn set_state(
        &self,
        state: PeerState,
        reason: Option<String>,
        patience: Duration,
    ) -> Result<(), ClientError> {
        let body = StateChange {
            peer: self.peer.clone(),
            state,
            reason,
            report_sha256: None,
        };
        self.post_state(&body, patience).await
    }

    /// Reports Done with the SHA-256 of the report written, retrying until `patience`
    /// runs out.
    pub async fn set_done(
        &self,
        report_sha256: String,
        patience: Duration,
    ) -> Result<(), ClientError> {
        let body = StateChange {
            peer: self.peer.clone(),
            state: PeerState::Done,
            reason: None,
            report_sha256: Some(report_sha256),
        };
        self.post_state(&body, patience).await
    }

    async fn post_state(&self, body: &StateChange, patience: Duration) -> Result<(), ClientError> {
        self.retry(patience, || self.send_attempt("/v1/state", body))
            .await
    }

    /// One POST of `body` that expects no content back.
    async fn send_once<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ClientError> {
        match self.send_attempt(path, body).await {
            Attempt::Done(()) => Ok(()),
            other => Err(self.failed(other)),
        }
    }

    async fn send_attempt<B: serde::Serialize>(&self, path: &str, body: &B) -> Attempt<()> {
        let r = self
            .post(path)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await;
        match self.classify::<serde::de::IgnoredAny>(r).await {
            Attempt::Done(_) | Attempt::Again => Attempt::Done(()),
            Attempt::Retry(last) => Attempt::Retry(last),
            Attempt::Slow(last) => Attempt::Slow(last),
            Attempt::Busy(after) => Attempt::Busy(after),
            Attempt::Fail(e) => Attempt::Fail(e),
        }
    }

    /// Arrives at barrier `name` and waits until it is released or `timeout` passes;
    /// returns the barrier's last known state either way.
    pub async fn barrier(
        &self,
        name: &str,
        value: Option<u64>,
        timeout: Duration,
        patience: Duration,
    ) -> Result<BarrierStatus, ClientError> {
        let body = BarrierArrive {
            peer: self.peer.clone(),
            value,
        };
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let status: BarrierStatus = self
                .retry(patience, || async {
                    let r = self
                        .post(&format!("/v1/barrier/{name}"))
                        .timeout(Duration::from_secs(60))
                        .json(&body)
                        .send()
                        .await;
                    self.classify(r).await
                })
                .await?;
            if status.released || left.is_zero() {
                return Ok(status);
            }
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None, "a date is not taken");
        for _ in 0..100 {
            let d = spread(Duration::from_secs(4));
            assert!(
                d >= Duration::from_secs(3) && d < Duration::from_secs(5),
                "{d:?}"
            );
        }
    }

    /// A coordinator that answers `503` with `Retry-After: 1` to its first `busy`
    /// requests, then registers the peer.
    async fn busy_coordinator(busy: usize) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let mut requests = 0;
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                requests += 1;
                let answer = if requests <= busy {
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let body = r#"{"run_id":"r","heartbeat_ms":1000,"rejoined":false}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                conn.write_all(answer.as_bytes()).await.unwrap();
                if requests > busy {
                    return requests;
                }
            }
        });
        (addr, served)
    }

    #[tokio::test]
    async fn a_busy_coordinator_is_waited_for_past_the_patience() {
        // Three 503s of a second each: longer than the 1 s of patience, which each
        // answer starts over; a gone coordinator would have failed the peer after 1 s.
        let (addr, served) = busy_coordinator(3).await;
        let client = CoordinatorClient::new(&addr, "t", "p1");
        let started = Instant::now();
        let registered = client
            .register("127.0.0.1:1", None, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(registered.run_id, "r");
        assert_eq!(served.await.unwrap(), 4);
        assert!(started.elapsed() >= Duration::from_millis(2_250));
        // One heartbeat told the same says so, with the wait asked for.
        let (addr, _served) = busy_coordinator(1).await;
        let client = CoordinatorClient::new(&addr, "t", "p1");
        match client.heartbeat(PeerState::Running, None).await {
            Err(ClientError::Busy { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
    }
}
