//! The peer's side of the coordinator API.
//!
//! Transient failures (connection refused, timeouts, 5xx) are retried with exponential
//! backoff until a deadline; answers that retrying cannot change (401 wrong token, 404,
//! 409 aborted) fail at once with what the coordinator said.

use cmesh_common::adapter::{Publication, PublishRequest};
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::protocol::{
    BarrierArrive, BarrierStatus, ChaosAction, ErrorBody, Heartbeat, PeerState, RegisterRequest,
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
    Fail(ClientError),
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
                }
                return Attempt::Retry(describe(&e));
            }
        };
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
            match call().await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Again => {
                    since = Instant::now();
                    backoff = Duration::from_millis(100);
                }
                Attempt::Retry(last) => {
                    let waited = since.elapsed();
                    if waited >= patience {
                        return Err(ClientError::Unreachable {
                            addr: self.addr.clone(),
                            waited,
                            last,
                        });
                    }
                    tracing::debug!("coordinator not reachable yet: {last}");
                    tokio::time::sleep(backoff.min(patience.saturating_sub(waited))).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
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
            Attempt::Fail(e) => Err(e),
            Attempt::Retry(last) => Err(ClientError::Unreachable {
                addr: self.addr.clone(),
                waited: Duration::ZERO,
                last,
            }),
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
        self.retry(patience, || async {
            match self.send_once("/v1/state", body).await {
                Ok(()) => Attempt::Done(()),
                Err(ClientError::Unreachable { last, .. }) => Attempt::Retry(last),
                Err(e) => Attempt::Fail(e),
            }
        })
        .await
    }

    async fn send_once<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ClientError> {
        let r = self
            .post(path)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized),
            Ok(r) if r.status().is_server_error() => Err(ClientError::Unreachable {
                addr: self.addr.clone(),
                waited: Duration::ZERO,
                last: format!("the coordinator answered {}", r.status()),
            }),
            Ok(r) => {
                let status = r.status();
                let message = r
                    .json::<ErrorBody>()
                    .await
                    .map(|b| b.error)
                    .unwrap_or_default();
                Err(ClientError::Refused { status, message })
            }
            Err(e) => Err(ClientError::Unreachable {
                addr: self.addr.clone(),
                waited: Duration::ZERO,
                last: describe(&e),
            }),
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
