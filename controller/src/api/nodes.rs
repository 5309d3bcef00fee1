//! Dedicated nodes that join, drain and leave without a restart (admin only). A join is
//! checked before anything is recorded: the type, the endpoint, and an engine that answers
//! within the time allowed with a certificate of the fleet CA naming the node.

use super::{caller, live_error, no_engine, Api, ApiError, Body, Caller};
use crate::store::Store;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

async fn admin<S: Store>(api: &Api<S>, headers: &axum::http::HeaderMap, what: &str) -> Result<(), ApiError> {
    match caller(api, headers).await? {
        Caller::Admin => Ok(()),
        Caller::Owner(_) => Err(ApiError::forbidden(what)),
    }
}

fn node_view(n: &crate::store::Node) -> Value {
    json!({
        "id": n.id, "name": n.name, "kind": crate::store::node_kind_str(n.kind), "type": n.type_name,
        "state": n.state, "ram_mib": n.ram_mib, "usable_mib": n.usable_mib, "drained": n.drained,
        "docker": n.docker, "address": n.address,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateRequest {
    name: String,
}

/// The engine certificate and key a node presents on its Docker API, with the CA it must
/// trust for the controller's client certificate. Returned once; only its serial is kept.
pub(super) async fn certificate<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<CertificateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&api, &headers, "issuing node certificates").await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let now = (api.config.now)();
    let mut live = live.lock().await;
    let (ca_pem, issued) = live.issue_node_certificate(now, &req.name).map_err(live_error)?;
    live.certificate_issued(now, &req.name, &issued.serial).await.map_err(live_error)?;
    let body = json!({
        "name": req.name,
        "server_name": crate::live::node_server_name(&req.name),
        "ca_pem": ca_pem,
        "cert_pem": issued.cert_pem,
        "key_pem": issued.key_pem.expose(),
        "serial": issued.serial,
    });
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddNode {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    /// `tls://host:port`.
    docker: String,
    /// The node's IP address: its game ports are published and reached there.
    host: String,
}

/// Adds a dedicated node: 201 with the node once its engine answered.
pub(super) async fn add<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<AddNode>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&api, &headers, "adding nodes").await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let (driver, within) =
        live.lock().await.join_driver(&req.name, &req.type_name, &req.docker, &req.host).map_err(live_error)?;
    // The engine is asked without the engine lock held: a silent node holds up nothing.
    let answer = match tokio::time::timeout(within, driver.ping()).await {
        Ok(r) => r.map_err(|e| e.message),
        Err(_) => Err(format!("no answer within {within:?}")),
    };
    if let Err(e) = answer {
        let certificate =
            ["certificate", "UnknownIssuer", "NotValidForName", "BadSignature"].iter().any(|k| e.contains(k));
        let (code, what) = if certificate {
            ("node_certificate", "its engine's certificate is not one the fleet CA issued for this node")
        } else {
            ("node_unreachable", "its Docker API did not answer")
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("node {}: {what} ({}): {e}", req.name, req.docker),
        ));
    }
    let now = (api.config.now)();
    let node = live
        .lock()
        .await
        .add_node(now, &req.name, &req.type_name, &req.docker, &req.host, driver)
        .await
        .map_err(live_error)?;
    Ok((StatusCode::CREATED, Json(node_view(&node))))
}

fn node_id(s: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found("node"))
}

async fn set_drained<S: Store + 'static>(
    api: &Api<S>,
    headers: &axum::http::HeaderMap,
    id: &str,
    drained: bool,
) -> Result<Json<Value>, ApiError> {
    admin(api, headers, "draining nodes").await?;
    let id = node_id(id)?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let now = (api.config.now)();
    let node = live.lock().await.drain_node(now, id, drained).await.map_err(live_error)?;
    Ok(Json(node_view(&node)))
}

/// Drains a joined node: it takes no new server; its sleeping worlds are archived.
pub(super) async fn drain<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_drained(&api, &headers, &id, true).await
}

pub(super) async fn undrain<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_drained(&api, &headers, &id, false).await
}

/// Removes a drained joined node once nothing lives or is pending there: 204.
pub(super) async fn remove<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&api, &headers, "removing nodes").await?;
    let id = node_id(&id)?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let now = (api.config.now)();
    live.lock().await.remove_node(now, id).await.map_err(live_error)?;
    Ok(StatusCode::NO_CONTENT)
}
