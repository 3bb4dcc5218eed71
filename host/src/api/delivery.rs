//! Delivery over HTTP: the outbox and its dead letters, provider feedback
//! (bounces, complaints), the suppression list, user preferences, the
//! one-click unsubscribe link, templates, and the tenant's delivery settings.

use super::{ApiError, ApiResult, AppState, Tenant};
use crate::delivery::token::Unsubscribe;
use crate::store::{Feedback, OutboxFilter};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) async fn outbox(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<OutboxFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(filter) =
        query.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()))?;
    let messages = state.runtime.store.outbox(&tenant, &filter).await?;
    Ok(Json(json!({ "messages": messages })).into_response())
}

pub(super) async fn outbox_message(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<i64>,
) -> ApiResult {
    match state.runtime.store.outbox_message(&tenant, id).await? {
        Some(message) => Ok(Json(message).into_response()),
        None => Err(crate::store::StoreError::UnknownMessage(id).into()),
    }
}

/// Queues a dead letter again, with a fresh set of attempts.
pub(super) async fn retry(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<i64>,
) -> ApiResult {
    let message = state
        .runtime
        .store
        .retry_dead(&tenant, id, state.runtime.now())
        .await?;
    state.runtime.deliveries.notify_one();
    Ok(Json(message).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedbackEvent {
    #[serde(rename = "type")]
    kind: Feedback,
    address: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum FeedbackBody {
    Batch { events: Vec<FeedbackEvent> },
    One(FeedbackEvent),
}

/// `POST /v1/delivery-events`: `{"type": "hard-bounce" | "soft-bounce" |
/// "complaint", "address": "..."}` or `{"events": [...]}`, from any provider.
pub(super) async fn feedback(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Json<FeedbackBody>, JsonRejection>,
) -> ApiResult {
    let events = match body? {
        Json(FeedbackBody::One(event)) => vec![event],
        Json(FeedbackBody::Batch { events }) => events,
    };
    let settings = state.runtime.settings(&tenant).await?;
    for event in &events {
        event.address.parse::<lettre::Address>().map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{:?} is not an email address: {e}", event.address),
            )
        })?;
    }
    let mut entries = Vec::with_capacity(events.len());
    for event in events {
        entries.push(
            state
                .runtime
                .store
                .record_feedback(
                    &tenant,
                    &event.address,
                    event.kind,
                    settings.delivery.hard_bounce_threshold,
                    state.runtime.now(),
                )
                .await?,
        );
    }
    Ok(Json(json!({ "suppressions": entries })).into_response())
}

pub(super) async fn suppressions(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult {
    let entries = state.runtime.store.suppressions(&tenant, None).await?;
    Ok(Json(json!({ "suppressions": entries })).into_response())
}

pub(super) async fn unsuppress(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(address): Path<String>,
) -> ApiResult {
    if state.runtime.store.unsuppress(&tenant, &address).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{address:?} is not on the suppression list"),
        ))
    }
}

pub(super) async fn preferences(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(user): Path<String>,
) -> ApiResult {
    Ok(Json(state.runtime.store.preferences(&tenant, &user).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PreferencesChange {
    /// Everything (`false`: unsubscribe from every non-transactional category).
    subscribed: Option<bool>,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, bool>,
}

/// `POST /v1/users/{id}/preferences`: `{"subscribed": false}` or
/// `{"categories": {"marketing": false}}`; the choices given replace the old ones.
pub(super) async fn set_preferences(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(user): Path<String>,
    body: Result<Json<PreferencesChange>, JsonRejection>,
) -> ApiResult {
    let Json(change) = body?;
    if change.categories.keys().any(|c| c.is_empty() || c == "*") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a category name is empty or \"*\"; use \"subscribed\" for every category",
        ));
    }
    let categories: Vec<(String, bool)> = change.categories.into_iter().collect();
    let store = &state.runtime.store;
    store
        .set_preferences(
            &tenant,
            &user,
            change.subscribed,
            &categories,
            state.runtime.now(),
        )
        .await?;
    Ok(Json(store.preferences(&tenant, &user).await?).into_response())
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

async fn verify(
    state: &AppState,
    query: &TokenQuery,
) -> Result<Unsubscribe, (StatusCode, Html<String>)> {
    let refuse = |status, why: &str| (status, Html(page("Unsubscribe", why)));
    let Some(token) = &query.token else {
        return Err(refuse(StatusCode::BAD_REQUEST, "The link has no token."));
    };
    let secret = state.runtime.unsubscribe_secret().await.map_err(|_| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a minute.",
        )
    })?;
    Unsubscribe::verify(token, &secret, state.runtime.lease_now()).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            &format!("{}.", capitalize(&e.to_string())),
        )
    })
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn page(title: &str, body: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1>{}</body></html>",
        escape(title),
        escape(title),
        body
    )
}

fn scope(grant: &Unsubscribe) -> String {
    if grant.category == "*" {
        "all messages except transactional ones".into()
    } else {
        format!("{:?} messages", grant.category)
    }
}

/// `GET /v1/unsubscribe?token=`: a confirmation page (link scanners follow
/// GETs, so only the POST unsubscribes).
pub(super) async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> impl IntoResponse {
    match verify(&state, &query).await {
        Ok(grant) => {
            let token = query.token.unwrap_or_default();
            let body = format!(
                "<p>Stop receiving {}?</p><form method=\"post\" action=\"?token={token}\">\
                 <button type=\"submit\">Unsubscribe</button></form>",
                scope(&grant).replace('<', "&lt;")
            );
            (StatusCode::OK, Html(page("Unsubscribe", &body)))
        }
        Err(refusal) => refusal,
    }
}

/// `POST /v1/unsubscribe?token=`: RFC 8058 one-click (the body,
/// `List-Unsubscribe=One-Click`, is not needed), or the page's button.
pub(super) async fn unsubscribe(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> impl IntoResponse {
    let grant = match verify(&state, &query).await {
        Ok(grant) => grant,
        Err(refusal) => return refusal,
    };
    let (all, categories) = if grant.category == "*" {
        (Some(false), vec![])
    } else {
        (None, vec![(grant.category.clone(), false)])
    };
    let result = state
        .runtime
        .store
        .set_preferences(
            &grant.tenant,
            &grant.user_id,
            all,
            &categories,
            state.runtime.now(),
        )
        .await;
    match result {
        Ok(()) => {
            tracing::info!(
                tenant = grant.tenant,
                user = grant.user_id,
                category = grant.category,
                "unsubscribed by link"
            );
            let body = format!(
                "<p>You will no longer receive {}.</p>",
                scope(&grant).replace('<', "&lt;")
            );
            (StatusCode::OK, Html(page("Unsubscribed", &body)))
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(page("Unsubscribe", "Please try again in a minute.")),
        ),
    }
}

pub(super) async fn templates(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    Ok(Json(json!({ "templates": state.runtime.store.templates(&tenant).await? })).into_response())
}

pub(super) async fn template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> ApiResult {
    match state.runtime.store.template(&tenant, &name).await? {
        Some(source) => Ok(source.into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no template {name:?}"),
        )),
    }
}

/// `PUT /v1/templates/{name}` with the template's source as the body.
pub(super) async fn put_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    source: String,
) -> ApiResult {
    let parts = state
        .runtime
        .store
        .put_template(&tenant, &name, &source, state.runtime.now())
        .await?;
    Ok(Json(json!({ "name": name, "parts": parts })).into_response())
}

pub(super) async fn delete_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> ApiResult {
    if state.runtime.store.delete_template(&tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no template {name:?}"),
        ))
    }
}

/// The tenant's delivery settings, with inline secrets blanked out.
pub(super) async fn settings(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let settings = state.runtime.settings(&tenant).await?;
    let mut json = serde_json::to_value(&*settings.delivery).expect("settings serialize");
    if let Some(Value::Object(providers)) = json.get_mut("providers") {
        for provider in providers.values_mut() {
            for secret in ["password", "secret"] {
                if let Some(value) = provider.get_mut(secret).filter(|v| !v.is_null()) {
                    *value = json!("(hidden)");
                }
            }
        }
    }
    Ok(Json(json).into_response())
}

/// `PUT /v1/delivery`: replaces the settings (see `host/src/delivery/config.rs`).
pub(super) async fn set_settings(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: String,
) -> ApiResult {
    state
        .runtime
        .store
        .set_delivery_config(&tenant, &body)
        .await?;
    state.runtime.forget_settings(&tenant);
    settings(State(state), Tenant(tenant)).await
}
