//! Events and contacts in: `POST /v1/events` (one or a batch), identify,
//! delete (GDPR), and the enrollments a user's events did not make.

use super::{ApiError, ApiResult, AppState, MAX_BATCH, Tenant};
use crate::ingest::{Identify, IncomingEvent};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

/// `POST /v1/events`: one event, or `{"batch": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PostEvents {
    Batch { batch: Vec<IncomingEvent> },
    One(IncomingEvent),
}

pub(super) async fn post(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
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
            let outcome = state
                .runtime
                .ingest_events(&tenant, vec![event])
                .await?
                .remove(0);
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
            let results = state.runtime.ingest_events(&tenant, batch).await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response())
        }
    }
}

pub(super) async fn identify(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Json<Identify>, JsonRejection>,
) -> ApiResult {
    let Json(contact) = body?;
    Ok(Json(state.runtime.identify(&tenant, contact).await?).into_response())
}

pub(super) async fn delete_user(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(user): Path<String>,
) -> ApiResult {
    let exited = state.runtime.delete_user(&tenant, &user).await?;
    Ok(Json(json!({ "deleted": user, "exited": exited })).into_response())
}

pub(super) async fn skipped_enrollments(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(user): Path<String>,
) -> ApiResult {
    let skipped = state
        .runtime
        .store
        .skipped_enrollments(&tenant, &user)
        .await?;
    Ok(Json(json!({ "skipped": skipped })).into_response())
}
