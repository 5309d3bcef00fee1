//! Scaling: the view (policies with their modes, the forecast in use, what was done and
//! what shadow policies would have done), the engine's mode, each policy's shadow/enforce
//! switch, and the forecast document (upload and read).

use super::{caller, live_error, no_engine, Api, ApiError, Body, Caller};
use crate::events::*;
use crate::store::Store;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

async fn admin<S: Store>(api: &Api<S>, headers: &axum::http::HeaderMap, what: &str) -> Result<(), ApiError> {
    if caller(api, headers).await? != Caller::Admin {
        return Err(ApiError::forbidden(what));
    }
    Ok(())
}

/// Mode, policies, the forecast in use, and the latest decisions next to what shadow
/// policies would have done, newest first (admin only).
pub(super) async fn view<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&api, &headers, "the scaling view").await?;
    let (mode, policies, forecast) = match &api.live {
        Some(live) => {
            let live = live.lock().await;
            let forecast = match live.core().forecast() {
                Some(f) => json!({
                    "made_at": live.forecast_made_at(),
                    "origin": f.start,
                    "model": f.source,
                    "steps": f.mean.len(),
                    "stale": false,
                }),
                None => json!({ "made_at": live.forecast_made_at(), "stale": live.forecast_stale() }),
            };
            (json!(live.mode()), json!(live.policies()), forecast)
        }
        None => (json!(null), json!(null), json!(null)),
    };
    // The latest of each kind (an index on kind: no scan of the log).
    let decisions = api.store.latest_events(&[SCALING_DECISION, DECISION_OBSERVED], 50).await?;
    let shadow = api.store.latest_events(&[SCALING_SHADOW], 50).await?;
    let switches = api.store.latest_events(&[POLICY_MODE], 20).await?;
    Ok(Json(json!({
        "mode": mode,
        "policies": policies,
        "forecast": forecast,
        "decisions": decisions,
        "shadow": shadow,
        "switches": switches,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModeRequest {
    mode: crate::live::Mode,
}

/// Switches between observe and enforce (admin only).
pub(super) async fn set_mode<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<ModeRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&api, &headers, "switching the mode").await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    live.lock().await.set_mode(req.mode, (api.config.now)()).await.map_err(live_error)?;
    Ok(Json(json!({ "mode": req.mode })))
}

/// The scaling policies in configuration order, with their modes (admin only).
pub(super) async fn policies<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&api, &headers, "the scaling policies").await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    Ok(Json(json!(live.lock().await.policies())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyRequest {
    shadow: bool,
}

/// Switches one policy between shadow (`true`) and enforce (`false`); recorded as
/// `policy.mode` and kept across restarts while the configuration says what it said
/// (admin only).
pub(super) async fn set_policy<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(index): Path<String>,
    Body(req): Body<PolicyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&api, &headers, "switching a policy").await?;
    let index: usize = index.parse().map_err(|_| ApiError::not_found("policy"))?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let view = live
        .lock()
        .await
        .set_policy_shadow(index, req.shadow, "admin", (api.config.now)())
        .await
        .map_err(live_error)?;
    Ok(Json(json!(view)))
}

/// Uploads a forecast (a `conductor.forecast/1` document; admin only). It is handed to the
/// scheduler when it has the `ram_mib.peak` series (`applied`).
pub(super) async fn upload_forecast<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    admin(&api, &headers, "uploading forecasts").await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the body is not UTF-8"))?;
    conductor_forecast::ForecastDocument::from_json(text).map(|_| ()).map_err(ApiError::invalid)?;
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = (api.config.now)();
    let id = api.store.save_forecast(doc.clone(), now).await?;
    let applied = match &api.live {
        Some(live) => live.lock().await.use_forecast(now, &doc, now).await.map_err(live_error)?,
        None => false,
    };
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "applied": applied }))))
}

/// The latest forecast document (admin only).
pub(super) async fn read_forecast<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&api, &headers, "reading forecasts").await?;
    match api.store.latest_forecast().await? {
        Some((_, doc)) => Ok(Json(doc)),
        None => Err(ApiError::not_found("forecast")),
    }
}

/// The moves owners were asked to accept and have not answered (admin: all; an owner: its
/// own servers').
pub(super) async fn recommendations<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let owner = match caller(&api, &headers).await? {
        Caller::Admin => None,
        Caller::Owner(o) => Some(o),
    };
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    Ok(Json(json!(live.lock().await.recommendations(owner))))
}

/// Accepts a recommended move (the server's owner or an admin; 409 not_recommended when
/// none waits): it moves at the next consolidation (`server.consented`).
pub(super) async fn accept<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let server = super::servers::visible(&api, &headers, &id).await?;
    let by = match caller(&api, &headers).await? {
        Caller::Admin => "admin".to_owned(),
        Caller::Owner(o) => format!("owner:{o}"),
    };
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    live.lock().await.accept_move((api.config.now)(), server.id, &by).await.map_err(live_error)?;
    Ok(Json(json!({ "server": server.id, "accepted": true })))
}
