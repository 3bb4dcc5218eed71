//! Journeys and their versions: deploy, list, versions, roll back, retire,
//! enable and disable enrollment.

use super::{ApiError, ApiResult, AppState, Tenant};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

pub(super) async fn deploy(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: axum::body::Bytes,
) -> ApiResult {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a component (.wasm bytes)",
        ));
    }
    let deployed = state.runtime.deploy(&tenant, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(deployed)).into_response())
}

pub(super) async fn list(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let journeys = state.runtime.store.journeys(&tenant).await?;
    Ok(Json(json!({ "journeys": journeys })).into_response())
}

/// Every version of a journey: active or not, runs per status, when it drained.
pub(super) async fn versions(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(journey): Path<String>,
) -> ApiResult {
    let versions = state.runtime.store.versions(&tenant, &journey).await?;
    Ok(Json(json!({ "journey": journey, "versions": versions })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Activate {
    version: String,
}

/// `{"version": "<hash>"}`: new runs use that version from now on.
pub(super) async fn activate(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(journey): Path<String>,
    body: Result<Json<Activate>, JsonRejection>,
) -> ApiResult {
    let Json(Activate { version }) = body?;
    state.runtime.activate(&tenant, &journey, &version).await?;
    Ok(Json(json!({ "journey": journey, "active_version": version })).into_response())
}

pub(super) async fn retire(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((journey, version)): Path<(String, String)>,
) -> ApiResult {
    state.runtime.retire(&tenant, &journey, &version).await?;
    Ok(Json(json!({ "journey": journey, "retired": version })).into_response())
}

pub(super) async fn enable(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult {
    state.runtime.set_enabled(&tenant, &id, true).await?;
    Ok(Json(json!({ "journey": id, "enabled": true })).into_response())
}

pub(super) async fn disable(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult {
    state.runtime.set_enabled(&tenant, &id, false).await?;
    Ok(Json(json!({ "journey": id, "enabled": false })).into_response())
}
