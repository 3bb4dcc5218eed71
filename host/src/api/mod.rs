//! The HTTP API (axum, JSON). Handlers only translate between HTTP and the
//! [`Runtime`]; the one error-to-status mapping is [`ApiError`].

use crate::clock::ManualClock;
use crate::ingest::{Identify, IncomingEvent};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{RunFilter, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The default limit on a JSON request body (events, runs): `serve --max-body-bytes`.
pub const MAX_JSON_BYTES: usize = 256 << 10;
/// The most events one `{"batch": [...]}` may hold.
pub const MAX_BATCH: usize = 1_000;
/// The largest component accepted by `POST /v1/journeys`.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Shared handler state.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Runtime,
    /// Present when the host runs on a virtual clock (`serve --virtual-clock`).
    pub virtual_clock: Option<Arc<ManualClock>>,
    /// The limit on JSON request bodies, in bytes.
    pub max_json_bytes: usize,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let json_routes = Router::new()
        .route("/v1/journeys/{id}/runs", post(start_run))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/events", post(post_events))
        .route("/v1/users", post(identify))
        .route("/v1/users/{id}", axum::routing::delete(delete_user))
        .route(
            "/v1/users/{id}/skipped-enrollments",
            get(skipped_enrollments),
        )
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/journeys/{id}/enable", post(enable))
        .route("/v1/journeys/{id}/disable", post(disable))
        .route("/v1/clock/advance", post(advance_clock))
        .route("/v1/journeys", get(list_journeys))
        .layer(DefaultBodyLimit::max(state.max_json_bytes));
    let deploy = Router::new()
        .route("/v1/journeys", post(deploy))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES));
    json_routes.merge(deploy).with_state(state)
}

/// An error response: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        let status = match &err {
            RuntimeError::Deploy(_) | RuntimeError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RuntimeError::UnknownVersion(_) => StatusCode::NOT_FOUND,
            RuntimeError::Ingest(_) => StatusCode::SERVICE_UNAVAILABLE,
            RuntimeError::Store(store) => match store {
                StoreError::UnknownJourney(_) | StoreError::UnknownRun(_) => StatusCode::NOT_FOUND,
                StoreError::AlreadyActive { .. }
                | StoreError::UserDeleted(_)
                | StoreError::RunEnded { .. } => StatusCode::CONFLICT,
                // A retry may help.
                StoreError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Migrate(_)
                | StoreError::Corrupt { .. }
                | StoreError::NoRandomness(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        ApiError::new(status, err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        RuntimeError::Store(err).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

type ApiResult = Result<Response, ApiError>;

async fn deploy(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a component (.wasm bytes)",
        ));
    }
    let deployed = state.runtime.deploy(body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(deployed)).into_response())
}

async fn list_journeys(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!({ "journeys": state.runtime.store.journeys().await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    user_id: String,
    #[serde(default)]
    input: Option<Value>,
}

async fn start_run(
    State(state): State<AppState>,
    Path(journey): Path<String>,
    body: Result<Json<StartRun>, JsonRejection>,
) -> ApiResult {
    let Json(req) = body?;
    let input = req.input.unwrap_or_else(|| json!({})).to_string();
    let run = state
        .runtime
        .start_run(&journey, &req.user_id, &input)
        .await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

async fn list_runs(State(state): State<AppState>, Query(filter): Query<RunFilter>) -> ApiResult {
    if let Some(status) = &filter.status
        && crate::store::RunStatus::parse(status).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown status {status:?}: use active, waiting, completed, failed or exited"),
        ));
    }
    Ok(Json(json!({ "runs": state.runtime.store.runs(&filter).await? })).into_response())
}

async fn get_run(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult {
    let run = state
        .runtime
        .store
        .run(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
    let timeline = state.runtime.store.timeline(id).await?;
    let mut body = serde_json::to_value(run).expect("run serializes");
    body["timeline"] = serde_json::to_value(timeline).expect("timeline serializes");
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct OutboxQuery {
    run_id: Option<i64>,
}

async fn list_outbox(State(state): State<AppState>, Query(q): Query<OutboxQuery>) -> ApiResult {
    Ok(Json(json!({ "messages": state.runtime.store.outbox(q.run_id).await? })).into_response())
}

/// `POST /v1/events`: one event, or `{"batch": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PostEvents {
    Batch { batch: Vec<IncomingEvent> },
    One(IncomingEvent),
}

async fn post_events(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let request: PostEvents = serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("expected an event {{user_id, name, properties?, timestamp?, idempotency_key?}} or {{\"batch\": [events]}}: {e}"),
        )
    })?;
    match request {
        PostEvents::One(mut event) => {
            // The header wins over the body for a single event.
            if let Some(key) = headers.get("idempotency-key") {
                let key = key.to_str().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "the Idempotency-Key header is not text",
                    )
                })?;
                event.idempotency_key = Some(key.to_string());
            }
            let outcome = state.runtime.ingest_events(vec![event]).await?.remove(0);
            let status = if outcome.stored {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(outcome)).into_response())
        }
        PostEvents::Batch { batch } => {
            if batch.is_empty() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the batch is empty",
                ));
            }
            if batch.len() > MAX_BATCH {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "a batch holds at most {MAX_BATCH} events, this one {}",
                        batch.len()
                    ),
                ));
            }
            let results = state.runtime.ingest_events(batch).await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response())
        }
    }
}

async fn identify(
    State(state): State<AppState>,
    body: Result<Json<Identify>, JsonRejection>,
) -> ApiResult {
    let Json(contact) = body?;
    Ok(Json(state.runtime.identify(contact).await?).into_response())
}

async fn delete_user(State(state): State<AppState>, Path(user): Path<String>) -> ApiResult {
    let exited = state.runtime.delete_user(&user).await?;
    Ok(Json(json!({ "deleted": user, "exited": exited })).into_response())
}

async fn skipped_enrollments(State(state): State<AppState>, Path(user): Path<String>) -> ApiResult {
    Ok(
        Json(json!({ "skipped": state.runtime.store.skipped_enrollments(&user).await? }))
            .into_response(),
    )
}

async fn cancel_run(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult {
    Ok(Json(state.runtime.cancel_run(id).await?).into_response())
}

async fn enable(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    state.runtime.set_enabled(&id, true).await?;
    Ok(Json(json!({ "journey": id, "enabled": true })).into_response())
}

async fn disable(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    state.runtime.set_enabled(&id, false).await?;
    Ok(Json(json!({ "journey": id, "enabled": false })).into_response())
}

/// `{"ms": N}` moves the virtual clock forward by N ms; `{"to": T}` moves
/// it to unix ms T (never backwards). A restarted host's virtual clock
/// resumes from the latest time in its database.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    ms: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
}

async fn advance_clock(
    State(state): State<AppState>,
    body: Result<Json<Advance>, JsonRejection>,
) -> ApiResult {
    let Json(advance) = body?;
    let Some(clock) = &state.virtual_clock else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this host runs on the system clock; start it with `cairn serve --virtual-clock`",
        ));
    };
    let now = match (advance.ms, advance.to) {
        (Some(ms), None) => clock.advance(ms),
        (None, Some(to)) => clock.advance_to(to),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give either {\"ms\": N} (forward by N ms) or {\"to\": T} (to unix ms T)",
            ));
        }
    };
    state.runtime.work.notify_one();
    Ok(Json(json!({ "now": now, "now_rfc3339": crate::clock::format(now) })).into_response())
}
