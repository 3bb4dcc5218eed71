//! Runs: start one, list and inspect them (with the timeline), cancel one,

use super::{ApiError, ApiResult, AppState, Tenant};
use crate::store::{RunFilter, RunStatus};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRun {
    user_id: String,
    #[serde(default)]
    input: Option<Value>,
}

pub(super) async fn start(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(journey): Path<String>,
    body: Result<Json<StartRun>, JsonRejection>,
) -> ApiResult {
    let Json(req) = body?;
    let input = req.input.unwrap_or_else(|| json!({})).to_string();
    let run = state
        .runtime
        .start_run(&tenant, &journey, &req.user_id, &input)
        .await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

pub(super) async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(filter): Query<RunFilter>,
) -> ApiResult {
    if let Some(status) = &filter.status
        && RunStatus::parse(status).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown status {status:?}: use active, waiting, completed, failed or exited"),
        ));
    }
    let runs = state.runtime.store.runs(&tenant, &filter).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<i64>,
) -> ApiResult {
    let run = state.runtime.run(&tenant, id).await?;
    let timeline = state.runtime.store.timeline(id).await?;
    let mut body = serde_json::to_value(run).expect("run serializes");
    body["timeline"] = serde_json::to_value(timeline).expect("timeline serializes");
    Ok(Json(body).into_response())
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(Json(state.runtime.cancel_run(&tenant, id).await?).into_response())
}
