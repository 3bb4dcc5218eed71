//! Who is calling: an API key (`Authorization: Bearer <key>`) names a
//! tenant. Without keys, a host on a loopback address serves the single
//! `default` tenant key-free (the quick start); once any key exists, every
//! request needs one. A host on a public address never runs key-free: `serve`
//! refuses to start there without keys.

use super::{ApiError, AppState};
use crate::store::DEFAULT_TENANT;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// Whether requests without a key are served (as the `default` tenant).
#[derive(Clone, Default)]
pub struct Access {
    /// Keys are required whatever else holds.
    keys_required: bool,
    /// Latched once a key was seen to exist.
    keys_exist: Arc<AtomicBool>,
}

impl Access {
    /// Key-free requests are served while no key exists (loopback hosts).
    pub fn open_until_keys_exist() -> Self {
        Access::default()
    }

    /// Every request needs a key (public addresses).
    pub fn keys_required() -> Self {
        Access {
            keys_required: true,
            ..Access::default()
        }
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let store = &state.runtime.store;
        if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let key = header
                .to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
            return match store.tenant_for_key(key).await? {
                Some(tenant) => Ok(Tenant(tenant)),
                None => Err(unauthorized("unknown or revoked API key")),
            };
        }
        let access = &state.access;
        if !access.keys_required && !access.keys_exist.load(Ordering::Relaxed) {
            if !store.api_keys_exist().await? {
                return Ok(Tenant(DEFAULT_TENANT.to_string()));
            }
            access.keys_exist.store(true, Ordering::Relaxed);
        }
        Err(unauthorized(
            "this host requires an API key: send `Authorization: Bearer <key>` \
             (an operator creates keys with `cairn key create --tenant <id>`)",
        ))
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}
