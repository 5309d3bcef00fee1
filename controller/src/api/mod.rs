//! The HTTP API (axum, JSON, `/v1`), first part: health, owners and their tokens, servers.
//!
//! Bearer tokens: the admin token comes from the configuration; owner tokens are created by
//! the admin and stored hashed. An owner sees and acts on its own servers only — another
//! owner's server is "not found", so ids leak nothing. Errors are JSON
//! `{"error": {"code", "message"}}` with a stable code; store internals are logged, not sent.

mod console;
mod gateway;
mod jobs;
mod nodes;
mod scaling;
mod servers;
mod worlds;

use servers::{
    create_server, delete_server, list_servers, patch_server, restart_server, show_server, start_server, stop_server,
    visible,
};
pub use servers::{CreateServer, ServerView};

pub use gateway::{valid_host, RouteFeed};

use crate::store::{self, NewServer, Server, ServerState, Store, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conductor_core::model::CostMode;
use conductor_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// What the API needs besides the store.
pub struct ApiConfig {
    /// SHA-256 of the admin token (the clear token stays in the config file).
    pub admin_token_sha256: [u8; 32],
    /// The largest plan a node can hold (usable RAM of the biggest node type), MiB.
    pub max_plan_mib: u32,
    /// The customer price list (the scenario's `[prices]`): the calculator and billing.
    pub prices: conductor_core::Prices,
    /// Owners are warned when their balance lasts less than this (as the engine warns).
    pub warn_before: Millis,
    /// The signing secret of the payment provider's webhook (`None`: no webhook).
    pub stripe_secret: Option<String>,
    /// The clock, passed in so tests control time.
    pub now: Box<dyn Fn() -> Millis + Send + Sync>,
}

pub struct Api<S: Store> {
    pub store: Arc<S>,
    pub config: ApiConfig,
    /// The live engine, when the API runs inside `conductor serve` (starts and stops go
    /// through the decision core); `None` for a store-only API.
    pub live: Option<Arc<tokio::sync::Mutex<crate::live::Live<S>>>>,
    /// The gateways' route table (`GET /v1/routes`).
    pub routes: gateway::RouteFeed,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn message(&self) -> &str {
        &self.message
    }
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
    }
    fn forbidden(what: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", format!("{what} needs the admin token"))
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, .. } => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::invalid(m),
            StoreError::Backend(m) => {
                // The cause goes to the log, not to the client.
                eprintln!("store error: {m}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store is not available; retry later")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } }))).into_response()
    }
}

/// `Json<T>` whose rejections (malformed JSON, unknown fields, wrong types, wrong content
/// type) are API errors with a stable code.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(match r {
                JsonRejection::JsonSyntaxError(e) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("malformed JSON: {}", e.body_text()),
                ),
                JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send Content-Type: application/json",
                ),
                other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
            }),
        }
    }
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Owner(i64),
}

async fn caller<S: Store>(api: &Api<S>, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let hash = store::token_hash(token);
    if constant_time_eq(&hash, &api.config.admin_token_sha256) {
        return Ok(Caller::Admin);
    }
    match api.store.owner_by_token(hash).await? {
        Some(owner) => Ok(Caller::Owner(owner)),
        None => Err(ApiError::unauthorized()),
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOwner {
    pub name: String,
}

pub fn router<S: Store + 'static>(api: Arc<Api<S>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<S>))
        .route("/v1/owners", axum::routing::post(create_owner::<S>))
        .route("/v1/owners/{id}/topups", axum::routing::post(top_up::<S>))
        .route("/v1/owners/{id}/account", get(account::<S>))
        .route("/v1/owners/{id}/statement", get(statement::<S>))
        .route("/v1/servers", get(list_servers::<S>).post(create_server::<S>))
        .route("/v1/servers/{id}", get(show_server::<S>))
        .route("/v1/servers/{id}/start", axum::routing::post(start_server::<S>))
        .route("/v1/servers/{id}/stop", axum::routing::post(stop_server::<S>))
        .route("/v1/servers/{id}/restart", axum::routing::post(restart_server::<S>))
        .route("/v1/servers/{id}", axum::routing::delete(delete_server::<S>).patch(patch_server::<S>))
        .route("/v1/servers/{id}/logs", get(console::logs::<S>))
        .route("/v1/servers/{id}/console", axum::routing::post(console::console::<S>))
        .route("/v1/templates", get(console::list_templates::<S>))
        .route("/v1/servers/{id}/backups", get(worlds::list::<S>).post(worlds::create::<S>))
        .route("/v1/servers/{id}/backups/{backup}", axum::routing::delete(worlds::delete::<S>))
        .route("/v1/servers/{id}/backups/{backup}/restore", axum::routing::post(worlds::restore::<S>))
        .route("/v1/wake/{id}", axum::routing::post(gateway::wake::<S>))
        .route("/v1/routes", get(gateway::routes::<S>))
        .route("/v1/gateways/{id}/players", axum::routing::put(gateway::players::<S>))
        .route("/v1/servers/{id}/hosts", get(gateway::list_hosts::<S>))
        .route(
            "/v1/servers/{id}/hosts/{host}",
            axum::routing::put(gateway::add_host::<S>).delete(gateway::remove_host::<S>),
        )
        .route("/v1/scaling", get(scaling::view::<S>))
        .route("/v1/scaling/mode", axum::routing::put(scaling::set_mode::<S>))
        .route("/v1/policies", get(scaling::policies::<S>))
        .route("/v1/recommendations", get(scaling::recommendations::<S>))
        .route("/v1/jobs", get(jobs::list::<S>).post(jobs::submit::<S>))
        .route("/v1/jobs/{id}", get(jobs::show::<S>).delete(jobs::cancel::<S>))
        .route("/v1/recommendations/{id}/accept", axum::routing::post(scaling::accept::<S>))
        .route("/v1/policies/{index}", axum::routing::put(scaling::set_policy::<S>))
        .route("/v1/forecast", get(scaling::read_forecast::<S>).put(scaling::upload_forecast::<S>))
        .route("/v1/price", get(price::<S>))
        .route("/v1/webhooks/stripe", axum::routing::post(stripe_webhook::<S>))
        .route("/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/v1/fleet", get(fleet::<S>))
        .route("/v1/nodes", axum::routing::post(nodes::add::<S>))
        .route("/v1/nodes/certificates", axum::routing::post(nodes::certificate::<S>))
        .route("/v1/nodes/{id}", axum::routing::delete(nodes::remove::<S>))
        .route("/v1/nodes/{id}/drain", axum::routing::post(nodes::drain::<S>))
        .route("/v1/nodes/{id}/undrain", axum::routing::post(nodes::undrain::<S>))
        .route("/v1/events", get(events::<S>))
        .route("/metrics", get(metrics::<S>))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(api)
}

async fn readyz<S: Store>(State(api): State<Arc<Api<S>>>) -> Result<&'static str, ApiError> {
    api.store.owners().await?;
    Ok("ready")
}

/// Creates an owner and its first token (returned once, stored hashed).
async fn create_owner<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<CreateOwner>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("creating owners"));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid("name: 1 to 64 characters"));
    }
    let now = (api.config.now)();
    let owner = api.store.create_owner(name, now).await?;
    let token = new_token();
    api.store.add_token(owner.id, store::token_hash(&token), now).await?;
    // The sign-up credit (SPEC §8: a promotion), once per owner by its key.
    let credit = api.config.prices.promo_credit;
    let mut balance = store::Money::ZERO;
    if credit > store::Money::ZERO {
        let grant = store::NewEntry {
            owner: owner.id,
            kind: store::EntryKind::Grant,
            amount: credit,
            key: crate::billing::signup_key(owner.id),
            at: now,
            server: None,
            window_start: None,
            data: json!({ "reason": "sign-up credit" }),
        };
        balance = api.store.post(grant).await?.balance;
    }
    let body = json!({ "id": owner.id, "name": owner.name, "token": token, "balance": balance.to_string() });
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    /// EUR, as a string or a JSON number (exact either way).
    amount: serde_json::Value,
    /// The payment's reference: a top-up is booked once per reference.
    reference: String,
}

/// Credits an owner (admin: a bank transfer, a voucher). Replaying a reference books nothing.
async fn top_up<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<TopUp>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("top-ups"));
    }
    let owner: i64 = id.parse().map_err(|_| ApiError::not_found("owner"))?;
    let amount = match &req.amount {
        serde_json::Value::String(s) => s.parse::<store::Money>().ok(),
        serde_json::Value::Number(n) => n.to_string().parse::<store::Money>().ok(),
        _ => None,
    }
    .filter(|a| *a > store::Money::ZERO && a.scale() <= 6)
    .ok_or_else(|| ApiError::invalid("amount: a positive amount in EUR with at most 6 decimals, such as \"10.00\""))?;
    let reference = req.reference.trim();
    if reference.is_empty() || reference.len() > 100 {
        return Err(ApiError::invalid("reference: 1 to 100 characters"));
    }
    let key = format!("topup:{reference}");
    book_topup(&api, owner, amount, key, (api.config.now)(), json!({ "reference": reference })).await
}

/// Books a top-up once per key: 201 with the entry, or 200 `replayed` when the key was
/// booked before (a retried request or a provider's repeated notification).
async fn book_topup<S: Store>(
    api: &Api<S>,
    owner: i64,
    amount: store::Money,
    key: String,
    at: Millis,
    data: serde_json::Value,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    api.store.owner(owner).await?;
    let entry = store::NewEntry {
        owner,
        kind: store::EntryKind::Topup,
        amount,
        key,
        at,
        server: None,
        window_start: None,
        data,
    };
    let posted = api.store.post(entry).await?;
    let status = if posted.new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "entry": posted.entry, "replayed": !posted.new, "balance": posted.balance.to_string() }))))
}

/// A payment provider's notification (Stripe's signed `checkout.session.completed`): the
/// paid amount is topped up once per checkout session; replays book nothing.
async fn stripe_webhook<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use crate::billing::{stripe_payment, verify_stripe_signature, WebhookError};
    let secret = api.config.stripe_secret.as_deref().ok_or_else(|| ApiError::not_found("webhook"))?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = (api.config.now)();
    let refused = |e: WebhookError| match e {
        WebhookError::Signature(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_signature", m),
        WebhookError::Invalid(m) => ApiError::invalid(m),
    };
    verify_stripe_signature(secret, signature, &body, now, 300).map_err(refused)?;
    let event: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
    let Some(payment) = stripe_payment(&event).map_err(refused)? else {
        return Ok((StatusCode::OK, Json(json!({ "ignored": event["type"] }))));
    };
    let key = format!("stripe:{}", payment.session);
    let data = json!({ "reference": payment.session, "event": event["id"] });
    book_topup(&api, payment.owner, payment.amount, key, now, data).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    /// YYYY-MM (UTC calendar month) [default: this month].
    month: Option<String>,
    /// json (default), md or html.
    format: Option<String>,
}

/// A monthly statement: opening balance, credits, usage by server and phase, closing balance.
async fn statement<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<StatementQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use chrono::{Datelike, TimeZone};
    let axum::extract::Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let owner = own_account(&api, &headers, &id).await?;
    let month = match &q.month {
        Some(m) => m.clone(),
        None => {
            let now = chrono::Utc.timestamp_millis_opt((api.config.now)()).single().unwrap_or_default();
            format!("{:04}-{:02}", now.year(), now.month())
        }
    };
    let bad = || ApiError::invalid(format!("month: YYYY-MM, got {month:?}"));
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let start = |y: i32, m: u32| chrono::Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map(|t| t.timestamp_millis());
    let from = start(y, m).filter(|_| (1..=12).contains(&m) && (1970..=9999).contains(&y)).ok_or_else(bad)?;
    let to = if m == 12 { start(y + 1, 1) } else { start(y, m + 1) }.ok_or_else(bad)?;
    let entries = api.store.ledger(owner, 0, u32::MAX).await?;
    let names = api.store.servers(Some(owner)).await?.into_iter().map(|s| (s.id, s.name)).collect();
    let st = crate::billing::statement(owner, &month, from, to, &entries, &names);
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(st).into_response(),
        "md" => ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], st.markdown()).into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], st.html()).into_response(),
        other => return Err(ApiError::invalid(format!("format: json, md or html, got {other:?}"))),
    })
}

/// The owner `id` if the caller may see its account (admin, or the owner itself; another
/// owner's account does not exist for the caller).
async fn own_account<S: Store>(api: &Api<S>, headers: &axum::http::HeaderMap, id: &str) -> Result<i64, ApiError> {
    let owner: i64 = id.parse().map_err(|_| ApiError::not_found("owner"))?;
    match caller(api, headers).await? {
        Caller::Admin => Ok(owner),
        Caller::Owner(o) if o == owner => Ok(owner),
        Caller::Owner(_) => Err(ApiError::not_found("owner")),
    }
}

/// An owner's balance and ledger (admin, or the owner itself).
async fn account<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<EventQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::billing::{phase_cost, Phase};
    use conductor_core::billing::{account_action, AccountAction};
    let owner = own_account(&api, &headers, &id).await?;
    let balance = api.store.balance(owner).await?;
    let entries = api.store.ledger(owner, q.after, q.limit.unwrap_or(1000).min(10_000)).await?;
    // What the owner's servers cost per hour now, and what that means for the balance (the
    // core's rule, as the engine applies it).
    let hour = conductor_core::time::HOUR;
    let servers = api.store.servers(Some(owner)).await?;
    let burn: store::Money = servers
        .iter()
        .map(|s| phase_cost(Phase::of_state(s.state), s.ram_mib, s.disk_mb, hour, &api.config.prices))
        .sum();
    let status = match account_action(balance, burn, api.config.warn_before) {
        AccountAction::Fine => json!({ "state": "fine" }),
        AccountAction::Warn { covers } => json!({ "state": "low", "lasts_minutes": covers / 60_000 }),
        AccountAction::Stop => json!({ "state": "exhausted" }),
    };
    Ok(Json(json!({
        "owner": owner,
        "balance": balance.to_string(),
        "burn_per_hour": burn.to_string(),
        "status": status,
        "entries": entries,
    })))
}

fn new_token() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random source works");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cdt_{hex}")
}

fn no_engine() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no controller engine is running")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceQuery {
    ram_mib: u32,
    #[serde(default)]
    disk_gb: f64,
    hours_per_week: f64,
    competitor_eur: Option<String>,
}

/// The price calculator (public: it feeds the sales page): what a plan costs per minute, per
/// month at the given play time, and the saving against a competitor's monthly price.
async fn price<S: Store>(
    State(api): State<Arc<Api<S>>>,
    query: Result<axum::extract::Query<PriceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let competitor = match q.competitor_eur.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<conductor_core::Money>()
                .ok()
                .filter(|m| *m >= conductor_core::Money::ZERO)
                .ok_or_else(|| ApiError::invalid("competitor_eur: a non-negative amount such as 12.99"))?,
        ),
    };
    let quote = crate::billing::quote_checked(q.ram_mib, q.disk_gb, q.hours_per_week, competitor, &api.config.prices)
        .map_err(ApiError::invalid)?;
    Ok(Json(quote))
}

fn live_error(e: crate::live::LiveError) -> ApiError {
    match e {
        crate::live::LiveError::Store(s) => s.into(),
        e @ crate::live::LiveError::BalanceExhausted { .. } => {
            ApiError::new(StatusCode::PAYMENT_REQUIRED, "balance_exhausted", e.to_string())
        }
        e @ crate::live::LiveError::OverQuota { .. } => {
            ApiError::new(StatusCode::CONFLICT, "over_quota", e.to_string())
        }
        crate::live::LiveError::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
        crate::live::LiveError::Invalid { code, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        crate::live::LiveError::RateLimited { retry_after_s, message } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{message}: retry in {retry_after_s} s"),
        ),
        crate::live::LiveError::Driver(m) => {
            eprintln!("driver error: {m}");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "driver_failed",
                "a node or the cloud did not do what was asked; retry later",
            )
        }
    }
}

/// Nodes with their RAM and the address their game ports are reached at (admin only).
async fn fleet<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("the fleet view"));
    }
    let servers = api.store.servers(None).await?;
    let addresses = match &api.live {
        Some(live) => live.lock().await.node_addresses(),
        None => Default::default(),
    };
    let nodes: Vec<serde_json::Value> = api
        .store
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.state != store::NodeState::Deleted)
        .map(|n| {
            let reserved: u64 = servers
                .iter()
                .filter(|s| s.node == Some(n.id) && matches!(s.state, ServerState::Starting | ServerState::Running))
                .map(|s| u64::from(s.ram_mib))
                .sum();
            json!({
                "id": n.id, "name": n.name, "kind": store::node_kind_str(n.kind), "type": n.type_name,
                "state": n.state, "ram_mib": n.ram_mib, "usable_mib": n.usable_mib, "reserved_mib": reserved,
                "address": addresses.get(&n.id),
            })
        })
        .collect();
    let provisioning = nodes.iter().filter(|n| n["state"] == "provisioning").count();
    Ok(Json(json!({ "nodes": nodes, "vms_provisioning": provisioning })))
}

#[derive(Deserialize)]
struct EventQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

/// The event log, oldest first, paged by sequence (admin only).
async fn events<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<EventQuery>,
) -> Result<Json<Vec<store::Event>>, ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("the event log"));
    }
    Ok(Json(api.store.events(q.after, q.limit.unwrap_or(1000).min(10_000)).await?))
}

/// Prometheus text format: servers by state, nodes by kind and state.
async fn metrics<S: Store>(State(api): State<Arc<Api<S>>>) -> Result<Response, ApiError> {
    use std::fmt::Write as _;
    let mut out = String::from("# HELP conductor_servers Servers by state.\n# TYPE conductor_servers gauge\n");
    let servers = api.store.servers(None).await?;
    for state in ServerState::ALL.iter().filter(|s| **s != ServerState::Deleted) {
        let n = servers.iter().filter(|s| s.state == *state).count();
        let _ = writeln!(out, "conductor_servers{{state=\"{}\"}} {n}", state.as_str());
    }
    out.push_str("# HELP conductor_nodes Nodes by kind and state.\n# TYPE conductor_nodes gauge\n");
    let nodes = api.store.nodes().await?;
    for kind in [conductor_core::NodeKind::Dedicated, conductor_core::NodeKind::Cloud] {
        for state in store::NodeState::ALL {
            let n = nodes.iter().filter(|x| x.kind == kind && x.state == state).count();
            let _ = writeln!(
                out,
                "conductor_nodes{{kind=\"{}\",state=\"{}\"}} {n}",
                store::node_kind_str(kind),
                state.as_str()
            );
        }
    }
    if let Some(live) = &api.live {
        engine_metrics(&mut out, &*live.lock().await);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The engine's own counters: node health, crashes, intents, retries and failures by kind,
/// garbage collected, and the step duration histogram.
fn engine_metrics<S: Store>(out: &mut String, live: &crate::live::Live<S>) {
    use std::fmt::Write as _;
    let m = live.metrics();
    let (up, silent, dead) = live.node_health();
    out.push_str("# HELP conductor_node_health Nodes by health.\n# TYPE conductor_node_health gauge\n");
    for (h, n) in [("answering", up), ("silent", silent), ("dead", dead)] {
        let _ = writeln!(out, "conductor_node_health{{health=\"{h}\"}} {n}");
    }
    let counters = [
        ("conductor_crashes_total", "Servers seen crashed.", m.crashes),
        ("conductor_crash_loops_total", "Servers stopped after a crash loop.", m.crash_loops),
        ("conductor_start_failures_total", "Placements that did not start their server.", m.start_failures),
        ("conductor_nodes_dead_total", "Nodes declared dead.", m.nodes_dead),
        ("conductor_gc_removed_total", "Strays and failed placements removed.", m.gc_removed),
        ("conductor_stale_intents_total", "Intents reported as not done after stale_after_s.", m.stale_intents),
        ("conductor_forecast_failures_total", "Nightly forecast runs that failed.", m.forecast_failures),
        ("conductor_migrations_total", "Running servers moved (consolidation, plan changes).", m.migrations),
        (
            "conductor_migration_failures_total",
            "Moves that failed (the server restarted where it was).",
            m.migration_failures,
        ),
        (
            "conductor_migration_disrupted_player_seconds_total",
            "Players' waiting time during moves.",
            m.disrupted_player_ms / 1000,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    // Alert on `time() - conductor_forecast_made_timestamp_seconds` or on the stale flag.
    if let Some(made) = live.forecast_made_at() {
        let _ = writeln!(
            out,
            "# HELP conductor_forecast_made_timestamp_seconds When the forecast handed to the scheduler was made.\n# TYPE conductor_forecast_made_timestamp_seconds gauge\nconductor_forecast_made_timestamp_seconds {}",
            made / 1000
        );
    }
    let _ = writeln!(
        out,
        "# HELP conductor_forecast_stale 1 while the forecast is older than max_age_h (forecast-driven policies neutral).\n# TYPE conductor_forecast_stale gauge\nconductor_forecast_stale {}",
        u8::from(live.forecast_stale())
    );
    let _ = writeln!(
        out,
        "# HELP conductor_intents_pending Intents not yet done.\n# TYPE conductor_intents_pending gauge\nconductor_intents_pending {}",
        live.pending_intents()
    );
    for (name, help, by) in [
        ("conductor_intent_retries_total", "Retries of intents, by kind.", &m.retries),
        ("conductor_intent_failures_total", "Intents failed for good, by kind.", &m.failures),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (kind, v) in by {
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {v}");
        }
    }
    out.push_str(
        "# HELP conductor_step_seconds Wall time of one reconcile step.\n# TYPE conductor_step_seconds histogram\n",
    );
    let mut cumulative = 0;
    for (i, b) in crate::live::TICK_BUCKETS_MS.iter().enumerate() {
        cumulative += m.tick_buckets[i];
        let _ = writeln!(out, "conductor_step_seconds_bucket{{le=\"{}\"}} {cumulative}", b / 1000.0);
    }
    cumulative += m.tick_buckets[crate::live::TICK_BUCKETS_MS.len()];
    let _ = writeln!(out, "conductor_step_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "conductor_step_seconds_sum {}", m.tick_ms_sum / 1000.0);
    let _ = writeln!(out, "conductor_step_seconds_count {}", m.ticks);
}
