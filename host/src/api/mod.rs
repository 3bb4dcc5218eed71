//! The HTTP API (axum, JSON). Handlers only translate between HTTP and the
//! [`Runtime`]; the one error-to-status mapping is [`ApiError`], and every
//! handler but the clock's takes the caller's [`Tenant`] (see [`auth`]).
//!
//! - [`journeys`]: deploy, list, versions, activate, retire, enable, disable;
//! - [`runs`]: start, list, inspect, cancel;
//! - [`delivery`]: the outbox, dead letters, bounces, preferences,
//!   unsubscribe links, templates, a tenant's delivery settings;
//! - [`events`]: events, contacts, skipped enrollments.

mod auth;
mod delivery;
mod events;
mod journeys;
mod runs;

pub use auth::{Access, Tenant};

use crate::clock::ManualClock;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::StoreError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
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
    /// Who may call without an API key.
    pub access: Access,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let json_routes = Router::new()
        .route("/v1/journeys", get(journeys::list))
        .route("/v1/journeys/{id}/runs", post(runs::start))
        .route("/v1/journeys/{id}/versions", get(journeys::versions))
        .route(
            "/v1/journeys/{id}/versions/{version}",
            delete(journeys::retire),
        )
        .route("/v1/journeys/{id}/activate", post(journeys::activate))
        .route("/v1/journeys/{id}/enable", post(journeys::enable))
        .route("/v1/journeys/{id}/disable", post(journeys::disable))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/outbox", get(delivery::outbox))
        .route("/v1/outbox/{id}", get(delivery::outbox_message))
        .route("/v1/outbox/{id}/retry", post(delivery::retry))
        .route("/v1/delivery-events", post(delivery::feedback))
        .route("/v1/suppressions", get(delivery::suppressions))
        .route("/v1/suppressions/{address}", delete(delivery::unsuppress))
        .route(
            "/v1/users/{id}/preferences",
            get(delivery::preferences).post(delivery::set_preferences),
        )
        .route(
            "/v1/delivery",
            get(delivery::settings).put(delivery::set_settings),
        )
        .route("/v1/templates", get(delivery::templates))
        .route(
            "/v1/templates/{*name}",
            get(delivery::template)
                .put(delivery::put_template)
                .delete(delivery::delete_template),
        )
        .route("/v1/events", post(events::post))
        .route("/v1/users", post(events::identify))
        .route("/v1/users/{id}", delete(events::delete_user))
        .route(
            "/v1/users/{id}/skipped-enrollments",
            get(events::skipped_enrollments),
        )
        .route("/v1/clock/advance", post(advance_clock))
        .route("/v1/health", get(health))
        .layer(DefaultBodyLimit::max(state.max_json_bytes));
    let deploy = Router::new()
        .route("/v1/journeys", post(journeys::deploy))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES));
    // Reached from a mail client with a signed token, not an API key.
    let unsubscribe = Router::new()
        .route(
            "/v1/unsubscribe",
            get(delivery::unsubscribe_page).post(delivery::unsubscribe),
        )
        .layer(DefaultBodyLimit::max(4 << 10));
    json_routes
        .merge(deploy)
        .merge(unsubscribe)
        .with_state(state)
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
            RuntimeError::UnknownTenant(_) => StatusCode::UNAUTHORIZED,
            RuntimeError::Ingest(_) => StatusCode::SERVICE_UNAVAILABLE,
            RuntimeError::Store(store) => match store {
                StoreError::UnknownJourney(_)
                | StoreError::UnknownRun(_)
                | StoreError::UnknownMessage(_)
                | StoreError::UnknownVersion { .. } => StatusCode::NOT_FOUND,
                StoreError::AlreadyActive { .. }
                | StoreError::UserDeleted(_)
                | StoreError::RunEnded { .. }
                | StoreError::VersionInUse { .. } => StatusCode::CONFLICT,
                StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                // A retry may help.
                StoreError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Migrate(_)
                | StoreError::SchemaTooNew { .. }
                | StoreError::SchemaBehind { .. }
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

/// `GET /v1/health`, without a key (for load balancers and probes): whether
/// the database answers, and the backlog of due runs and messages (counts
/// only). 503 when the database does not answer.
async fn health(State(state): State<AppState>) -> Response {
    let runtime = &state.runtime;
    let started = std::time::Instant::now();
    match runtime
        .store
        .backlog(runtime.now(), runtime.lease_now())
        .await
    {
        Ok(backlog) => Json(json!({
            "status": "ok",
            "host_id": runtime.host_id(),
            "version": env!("CARGO_PKG_VERSION"),
            "schema_version": crate::store::schema_version(),
            "database": {"reachable": true, "latency_ms": started.elapsed().as_secs_f64() * 1e3},
            "backlog": backlog,
        }))
        .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "host_id": runtime.host_id(),
                "database": {"reachable": false, "error": err.to_string()},
            })),
        )
            .into_response(),
    }
}

/// `{"ms": N}` moves the virtual clock forward by N ms; `{"to": T}` moves
/// it to unix ms T (never backwards). A restarted host's virtual clock
/// resumes from the latest time in its database. The clock is the host's,
/// shared by every tenant: a test and development feature.
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
    _caller: Tenant,
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
    state.runtime.deliveries.notify_one();
    Ok(Json(json!({ "now": now, "now_rfc3339": crate::clock::format(now) })).into_response())
}
