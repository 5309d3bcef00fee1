//! Servers: create, list, show, start, stop, restart, delete.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    pub name: String,
    pub ram_mib: u32,
    #[serde(default)]
    pub disk_mb: u64,
    #[serde(default = "yes")]
    pub pay_per_use: bool,
    #[serde(default)]
    pub cost_mode: Option<String>,
    /// Only the admin creates servers for someone else.
    #[serde(default)]
    pub owner: Option<i64>,
    /// One of `GET /v1/templates` (absent: the default template).
    #[serde(default)]
    pub template: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize)]
pub struct ServerView {
    pub id: i64,
    pub owner: i64,
    pub name: String,
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub pay_per_use: bool,
    pub cost_mode: &'static str,
    pub state: ServerState,
    pub node: Option<i64>,
    /// RFC 3339 (UTC).
    pub created_at: String,
    /// Its template (`null`: the default).
    pub template: Option<String>,
}

impl From<Server> for ServerView {
    fn from(s: Server) -> Self {
        ServerView {
            id: s.id,
            owner: s.owner,
            name: s.name,
            ram_mib: s.ram_mib,
            disk_mb: s.disk_mb,
            pay_per_use: s.pay_per_use,
            cost_mode: store::cost_mode_str(s.cost_mode),
            state: s.state,
            node: s.node,
            created_at: conductor_forecast::timefmt::format_rfc3339(s.created_at),
            template: s.template,
        }
    }
}

pub(super) async fn list_servers<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Vec<ServerView>>, ApiError> {
    let owner = match caller(&api, &headers).await? {
        Caller::Admin => None,
        Caller::Owner(o) => Some(o),
    };
    Ok(Json(api.store.servers(owner).await?.into_iter().map(ServerView::from).collect()))
}

pub(super) async fn create_server<S: Store>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<CreateServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let owner = match (caller(&api, &headers).await?, req.owner) {
        (Caller::Owner(o), None) => o,
        (Caller::Owner(o), Some(x)) if x == o => o,
        (Caller::Owner(_), Some(_)) => return Err(ApiError::forbidden("creating a server for another owner")),
        (Caller::Admin, Some(x)) => x,
        (Caller::Admin, None) => return Err(ApiError::invalid("owner: the admin must name the owner")),
    };
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ApiError::invalid("name: 1 to 64 letters, digits, '-' or '_'"));
    }
    if req.ram_mib == 0 || req.ram_mib % 512 != 0 {
        return Err(ApiError::invalid("ram_mib: a positive multiple of 512"));
    }
    if req.ram_mib > api.config.max_plan_mib {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "impossible_plan",
            format!("ram_mib {}: no node can hold more than {} MiB", req.ram_mib, api.config.max_plan_mib),
        ));
    }
    let cost_mode = match req.cost_mode.as_deref() {
        None => CostMode::Off,
        Some(m) => store::parse_cost_mode(m).map_err(|_| ApiError::invalid("cost_mode: off, suggest or auto"))?,
    };
    // Checked before anything is stored: an unknown template or a plan too small for it.
    if let (Some(t), Some(live)) = (&req.template, &api.live) {
        live.lock()
            .await
            .templates()
            .check(t, req.ram_mib)
            .map_err(|(code, message)| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message))?;
    }
    let s = NewServer {
        owner,
        name: name.into(),
        ram_mib: req.ram_mib,
        disk_mb: req.disk_mb,
        pay_per_use: req.pay_per_use,
        cost_mode,
    };
    let now = (api.config.now)();
    let mut server = api.store.create_server(s, now).await?;
    if let Some(t) = &req.template {
        server = api.store.set_server_template(server.id, Some(t)).await?;
    }
    // The plan as it was at creation: what `conductor export` writes as the server's row.
    let plan = json!({
        "owner": server.owner,
        "ram_mib": server.ram_mib,
        "disk_mb": server.disk_mb,
        "pay_per_use": server.pay_per_use,
        "cost_mode": store::cost_mode_str(server.cost_mode),
        "template": server.template,
    });
    api.store
        .append_event(store::NewEvent {
            at: now,
            kind: "server.created".into(),
            server: Some(server.id),
            node: None,
            data: plan,
        })
        .await?;
    if let Some(live) = &api.live {
        live.lock().await.add_server(&server);
    }
    gateway::routes_changed(&api).await;
    Ok((StatusCode::CREATED, Json(server.into())))
}

/// The server `id` if the caller may see it (others' servers are "not found").
pub(super) async fn visible<S: Store>(
    api: &Api<S>,
    headers: &axum::http::HeaderMap,
    id: &str,
) -> Result<Server, ApiError> {
    let who = caller(api, headers).await?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("server"))?;
    let server = api.store.server(id).await?;
    if server.state == ServerState::Deleted || matches!(who, Caller::Owner(o) if o != server.owner) {
        return Err(ApiError::not_found("server"));
    }
    Ok(server)
}

/// A server, with what it costs now: the rate per minute of its state and, while it runs
/// or sleeps, the cost of the current phase so far.
pub(super) async fn show_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::billing::{phase_cost, Phase};
    let server = visible(&api, &headers, &id).await?;
    let (current, world) = match &api.live {
        Some(live) => {
            let live = live.lock().await;
            (live.current_phase(server.id, (api.config.now)()), live.world_size(server.id).ok())
        }
        None => (None, None),
    };
    // Sleeping is charged at the measured size once there is one.
    let disk_mb = world.as_ref().and_then(|w| w.measured_mb).unwrap_or(server.disk_mb);
    let per_minute = phase_cost(
        Phase::of_state(server.state),
        server.ram_mib,
        disk_mb,
        conductor_core::time::MINUTE,
        &api.config.prices,
    );
    let id = server.id;
    let mut view = serde_json::to_value(ServerView::from(server)).expect("plain data");
    view["billing"] = json!({
        "rate_per_minute": per_minute.to_string(),
        "current": current.map(|(phase, since, cost)| json!({
            "phase": phase,
            "since": conductor_forecast::timefmt::format_rfc3339(since),
            "cost": cost.to_string(),
        })),
    });
    if let Some(w) = world {
        view["world"] = serde_json::to_value(w).expect("plain data");
    }
    debug_assert_eq!(view["id"], id);
    Ok(Json(view))
}

#[derive(Clone, Copy)]
enum Act {
    Start,
    Stop,
    Restart,
}

/// Start, stop or restart through the decision core; answers with the server afterwards.
async fn act<S: Store + 'static>(
    api: &Api<S>,
    headers: &axum::http::HeaderMap,
    id: &str,
    act: Act,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let server = visible(api, headers, id).await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let mut live = live.lock().await;
    let now = (api.config.now)();
    if matches!(act, Act::Stop | Act::Restart) {
        live.request_stop(server.id, now).await.map_err(live_error)?;
    }
    if matches!(act, Act::Start | Act::Restart) {
        live.request_start(server.id, now).await.map_err(live_error)?;
    }
    drop(live);
    gateway::routes_changed(api).await;
    Ok((StatusCode::ACCEPTED, Json(api.store.server(server.id).await?.into())))
}

/// Asks the decision core to start the server (placed at once, or queued).
pub(super) async fn start_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    act(&api, &headers, &id, Act::Start).await
}

/// Stops the server gracefully (world saved); it sleeps on its node.
pub(super) async fn stop_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    act(&api, &headers, &id, Act::Stop).await
}

/// Stop, then start again (a world save in between).
pub(super) async fn restart_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    act(&api, &headers, &id, Act::Restart).await
}

/// Deletes a server that does not run (its world on the node goes too).
pub(super) async fn delete_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let now = (api.config.now)();
    match &api.live {
        Some(live) => live.lock().await.delete_server(server.id, now).await.map_err(live_error)?,
        None => {
            if matches!(server.state, ServerState::Starting | ServerState::Running | ServerState::Queued) {
                return Err(ApiError::new(StatusCode::CONFLICT, "conflict", "the server runs: stop it first"));
            }
            api.store.set_server_state(server.id, ServerState::Deleted, None, now).await?;
        }
    }
    gateway::routes_changed(&api).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchServer {
    /// A template name, or `null` for the default (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    template: Option<Option<String>>,
    /// The plan's RAM (a positive multiple of 512).
    ram_mib: Option<u32>,
    /// Stop when idle (`true`) or run until stopped.
    pay_per_use: Option<bool>,
}

/// A field that is there, even as `null` (absent is `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Changes a server's plan (at any time: the core restarts or moves it as there is room,
/// `plan_change` says how) and what it runs (its template, while it is stopped).
pub(super) async fn patch_server<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<PatchServer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    if let Some(ram) = req.ram_mib {
        if ram == 0 || ram % 512 != 0 {
            return Err(ApiError::invalid("ram_mib: a positive multiple of 512"));
        }
        if ram > api.config.max_plan_mib {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "impossible_plan",
                format!("ram_mib {ram}: no node can hold more than {} MiB", api.config.max_plan_mib),
            ));
        }
    }
    if req.template.is_none() && req.ram_mib.is_none() && req.pay_per_use.is_none() {
        return Err(ApiError::invalid("give ram_mib, pay_per_use or template"));
    }
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let now = (api.config.now)();
    let mut live = live.lock().await;
    let mut row = server;
    if let Some(template) = &req.template {
        row = live.set_template(now, row.id, template.as_deref()).await.map_err(live_error)?;
    }
    if let Some(p) = req.pay_per_use {
        row = live.set_pay_per_use(now, row.id, p).await.map_err(live_error)?;
    }
    let mut how = None;
    if let Some(ram) = req.ram_mib {
        let (r, h) = live.change_plan(now, row.id, ram).await.map_err(live_error)?;
        (row, how) = (r, Some(h));
    }
    let mut view = serde_json::to_value(ServerView::from(row)).expect("plain data");
    if let Some(how) = how {
        view["plan_change"] = serde_json::Value::from(how);
    }
    Ok(Json(view))
}
