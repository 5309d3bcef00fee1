//! A server's world copies: list its backups (with its measured size and quota), take one
//! now, restore one (the server stopped; the world of now is backed up first), delete one.

use super::{live_error, no_engine, visible, Api, ApiError};
use crate::store::Store;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn backup_id(s: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found("backup"))
}

/// The server's backups, oldest first, and its world's measured size and quota.
pub(super) async fn list<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?.lock().await;
    let backups = live.backups(server.id).map_err(live_error)?;
    let world = live.world_size(server.id).map_err(live_error)?;
    let backups: Vec<Value> = backups
        .into_iter()
        .map(|b| {
            json!({
                "id": b.id,
                "taken_at": conductor_forecast::timefmt::format_rfc3339(b.taken_at),
                "reason": b.reason,
                "key": b.key,
                "bytes": b.bytes,
                "world_bytes": b.world_bytes,
                "sha256": b.sha256,
            })
        })
        .collect();
    Ok(Json(json!({ "server": server.id, "backups": backups, "world": world })))
}

/// Takes a backup now (202: it is carried out in the loop and listed once verified).
pub(super) async fn create<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let now = (api.config.now)();
    let mut live = api.live.as_ref().ok_or_else(no_engine)?.lock().await;
    live.backup_now(server.id, now).await.map_err(live_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "server": server.id, "backup": "queued" }))))
}

/// Restores a backup into the stopped server (202: carried out in the loop).
pub(super) async fn restore<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path((id, backup)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let backup = backup_id(&backup)?;
    let now = (api.config.now)();
    let mut live = api.live.as_ref().ok_or_else(no_engine)?.lock().await;
    live.restore_backup(server.id, backup, now).await.map_err(live_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "server": server.id, "restoring": backup }))))
}

/// Deletes a backup.
pub(super) async fn delete<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path((id, backup)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let backup = backup_id(&backup)?;
    let now = (api.config.now)();
    let mut live = api.live.as_ref().ok_or_else(no_engine)?.lock().await;
    live.delete_backup(server.id, backup, now, "owner").await.map_err(live_error)?;
    Ok(StatusCode::NO_CONTENT)
}
