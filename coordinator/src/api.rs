//! The coordinator's HTTP/JSON API (see `cmesh_common::protocol` for the endpoint table).
//!
//! Every route but `/healthz` needs a token; the check runs before any handler, so a
//! request with a wrong token is refused with `401` and changes nothing. The peers' token
//! opens the routes a peer uses; a route that changes the run (`POST /v1/chaos`) needs
//! the admin token, which no container holds ([`required_role`], `cmesh_common::token`).

use crate::state::{PlanSignal, Run, RunError};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cmesh_common::adapter::{Publication, PublishRequest};
use cmesh_common::protocol::{
    BarrierArrive, ChaosAction, ChaosRequest, ErrorBody, Heartbeat, RegisterRequest,
    RegisterResponse, StateChange,
};
use cmesh_common::token::{self, Role, Tokens};
use serde::Deserialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The largest request body taken (`413` past it): the largest a peer sends, a
/// registration or a chaos action, is well under 4 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
pub struct Shared {
    pub run: Mutex<Run>,
    pub tokens: Tokens,
    /// How long a long-poll (plan, barrier) holds before answering "not yet".
    pub long_poll: Duration,
    /// Peers that get series of their own on `GET /metrics`, at most.
    pub metrics_per_peer: usize,
    /// The coordinator's own lag, and what it sheds ([`crate::pressure`]).
    pub pressure: Mutex<crate::pressure::Pressure>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Run> {
        // A panic while holding the lock would be a bug; keep serving with the state as is.
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pressure(&self) -> MutexGuard<'_, crate::pressure::Pressure> {
        self.pressure.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `503` with a `Retry-After` of `seconds`: the coordinator is there, and busy.
fn busy(seconds: u64) -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the coordinator is busy; ask again in {seconds} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
    response
}

type AppState = Arc<Shared>;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/register", post(register))
        .route("/v1/plan", get(plan))
        .route(
            "/v1/heartbeat",
            post(heartbeat).layer(axum::extract::DefaultBodyLimit::max(
                cmesh_common::live::MAX_HEARTBEAT_BYTES,
            )),
        )
        .route("/v1/state", post(change_state))
        .route("/v1/barrier/{name}", post(barrier))
        .route("/v1/chaos", post(chaos).get(chaos_since))
        .route("/v1/sync/{topic}", post(publish).get(publications))
        .route("/status", get(status))
        .route("/v1/live", get(live))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(close_after_refused_body))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

impl IntoResponse for RunError {
    fn into_response(self) -> Response {
        let status = match &self {
            RunError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RunError::Conflict(_) => StatusCode::CONFLICT,
            RunError::NotFound(_) => StatusCode::NOT_FOUND,
            RunError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        error(status, self.to_string())
    }
}

/// A body refused for its size was not read to its end: the connection cannot carry
/// another request, so the answer says so (a client would otherwise reuse it and fail).
async fn close_after_refused_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Ends a request that runs past its long-poll by more than 10 s with `408`: a client
/// that sends its body slowly holds a connection no longer than that.
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.long_poll + Duration::from_secs(10);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took over {limit:?}; send it whole, at once"),
        ),
    }
}

/// The role a request needs: [`Role::Admin`] for what changes the run, else
/// [`Role::Peer`].
pub fn required_role(method: &Method, path: &str) -> Role {
    match (method, path) {
        (&Method::POST, "/v1/chaos") => Role::Admin,
        _ => Role::Peer,
    }
}

async fn require_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    // Prometheus sends what it has as `Authorization: Bearer TOKEN`.
    let presented = headers
        .get(token::HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .unwrap_or("");
    let needed = required_role(request.method(), request.uri().path());
    match state.tokens.role(presented) {
        None => error(
            StatusCode::UNAUTHORIZED,
            format!(
                "missing or wrong run token in the `{}` header",
                token::HEADER
            ),
        ),
        Some(role) if role < needed => error(
            StatusCode::UNAUTHORIZED,
            format!(
                "{} {} changes the run and needs the admin token (runs/ID/admin-token, held \
                 by the launcher); the peers' token cannot. Use `launcher chaos`",
                request.method(),
                request.uri().path()
            ),
        ),
        Some(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_posting_chaos_needs_the_admin_token() {
        assert_eq!(required_role(&Method::POST, "/v1/chaos"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/v1/chaos"), Role::Peer);
        for path in [
            "/v1/register",
            "/v1/heartbeat",
            "/v1/state",
            "/v1/barrier/x",
        ] {
            assert_eq!(required_role(&Method::POST, path), Role::Peer, "{path}");
        }
        assert_eq!(required_role(&Method::GET, "/status"), Role::Peer);
    }
}

fn now() -> u64 {
    cmesh_common::unix_millis()
}

async fn register(State(state): State<AppState>, Json(req): Json<RegisterRequest>) -> Response {
    let now = now();
    if let Some(after) = state
        .pressure()
        .shed(now, crate::pressure::MAX_RETRY_AFTER_S)
    {
        return busy(after);
    }
    let mut run = state.lock();
    match run.register_on(&req.peer, &req.addr, req.host.as_deref(), req.cpus, now) {
        Ok(rejoined) => Json(RegisterResponse {
            run_id: run.run_id().to_owned(),
            heartbeat_ms: run.spec().heartbeat_period_ms(),
            rejoined,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct PlanQuery {
    peer: String,
}

async fn plan(State(state): State<AppState>, Query(q): Query<PlanQuery>) -> Response {
    let mut signal = {
        let run = state.lock();
        if !run.is_registered(&q.peer) {
            return RunError::NotFound(format!(
                "peer `{}` is not registered in run {}; register first",
                q.peer,
                run.run_id()
            ))
            .into_response();
        }
        run.plan_signal()
    };
    let polled = tokio::time::Instant::now();
    let current = {
        // The watch's guard is not held past here (nor across an await).
        let waited = tokio::time::timeout(
            state.long_poll,
            signal.wait_for(|s| !matches!(s, PlanSignal::Pending)),
        )
        .await;
        match waited {
            Ok(Ok(signal)) => signal.clone(),
            _ => return StatusCode::NO_CONTENT.into_response(),
        }
    };
    match current {
        PlanSignal::Ready(p) => {
            // Each peer gets the plan at its turn in the start ramp, so that a thousand
            // peers do not read it, and start, in the same millisecond; past the
            // long-poll, "not yet", and it asks again.
            let turn = p
                .plan
                .peer(&q.peer)
                .and_then(|me| p.plan.connect_at_unix_ms(me.index));
            if let Some(at) = turn {
                // Within the long-poll as a whole, whatever part of it the plan took.
                let left = state.long_poll.saturating_sub(polled.elapsed());
                let wait = Duration::from_millis(at.saturating_sub(now()));
                if wait > left {
                    tokio::time::sleep(left).await;
                    return StatusCode::NO_CONTENT.into_response();
                }
                tokio::time::sleep(wait).await;
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(p.json.clone()))
                .expect("static response parts are valid")
        }
        PlanSignal::Aborted(reason) => {
            error(StatusCode::CONFLICT, format!("run aborted: {reason}"))
        }
        PlanSignal::Pending => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn heartbeat(State(state): State<AppState>, Json(beat): Json<Heartbeat>) -> Response {
    let now = now();
    let mut run = state.lock();
    let period_s = run.spec().heartbeat_period_ms() / 1000;
    if let Some(after) = state.pressure().shed(now, period_s) {
        // Shed, but alive: the beat counts, its state and counters wait for the next.
        return match run.alive(&beat.peer, now) {
            Ok(()) => busy(after),
            Err(e) => e.into_response(),
        };
    }
    let observed = run.heartbeat(&beat.peer, beat.state, now).and_then(|()| {
        beat.live
            .as_ref()
            .map_or(Ok(()), |live| run.observe_live(&beat.peer, live, now))
    });
    match observed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn change_state(
    State(state): State<AppState>,
    Json(change): Json<StateChange>,
) -> Result<StatusCode, RunError> {
    let mut run = state.lock();
    if let Some(digest) = &change.report_sha256 {
        run.report_digest(&change.peer, digest, now())?;
    }
    run.change_state(&change.peer, change.state, change.reason, now())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn barrier(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(arrive): Json<BarrierArrive>,
) -> Response {
    let mut released = match state
        .lock()
        .arrive(&name, &arrive.peer, arrive.value, now())
    {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    // Released or not, answer with the barrier's state; the peer polls again if not.
    let _ = tokio::time::timeout(state.long_poll, released.wait_for(|r| *r)).await;
    let status = state.lock().barrier_status(&name);
    match status {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "barrier vanished"),
    }
}

async fn chaos(
    State(state): State<AppState>,
    Json(req): Json<ChaosRequest>,
) -> Result<Json<ChaosAction>, RunError> {
    Ok(Json(state.lock().chaos(&req, now())?))
}

#[derive(Deserialize)]
struct ChaosQuery {
    after: u32,
}

/// Long-polls for chaos actions after the first `after`; answers with what there is
/// (maybe nothing) when the poll times out.
async fn chaos_since(
    State(state): State<AppState>,
    Query(q): Query<ChaosQuery>,
) -> Json<Vec<ChaosAction>> {
    let mut signal = state.lock().chaos_signal();
    let _ = tokio::time::timeout(state.long_poll, signal.wait_for(|n| *n > q.after)).await;
    Json(state.lock().chaos_after(q.after))
}

async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Json(req): Json<PublishRequest>,
) -> Result<Json<u64>, RunError> {
    Ok(Json(state.lock().publish(&topic, &req.peer, &req.value)?))
}

/// The most publications one answer carries; a reader asks again for the rest.
const MAX_PUBLICATIONS_PER_ANSWER: usize = 1024;

#[derive(Deserialize)]
struct SyncQuery {
    after: u64,
}

/// Long-polls for `topic`'s publications after its first `after`; answers with what
/// there is (maybe nothing) when the poll times out.
async fn publications(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<SyncQuery>,
) -> Json<Vec<Publication>> {
    let mut signal = state.lock().sync_signal();
    let deadline = tokio::time::Instant::now() + state.long_poll;
    loop {
        let found = state
            .lock()
            .publications(&topic, q.after, MAX_PUBLICATIONS_PER_ANSWER);
        if !found.is_empty() {
            return Json(found);
        }
        match tokio::time::timeout_at(deadline, signal.changed()).await {
            Ok(Ok(())) => {}
            _ => return Json(found),
        }
    }
}

async fn status(State(state): State<AppState>) -> Response {
    Json(state.lock().status()).into_response()
}

async fn live(State(state): State<AppState>) -> Response {
    Json(state.lock().live_report(now())).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = {
        let run = state.lock();
        crate::metrics::render(&run.live_report(now()), run.live(), state.metrics_per_peer)
    };
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
