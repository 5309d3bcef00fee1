//! Templates, logs and the console of a server (admin or its owner; another owner's server
//! is "not found"). Logs stream from the node without holding the engine; console commands
//! are rate-limited per server and every one is in the event log.

use super::*;
use crate::template::Console;
use axum::extract::Query;

/// The most log lines one request returns (before following).
pub const MAX_LOG_LINES: usize = 5000;
/// The longest console command.
pub const MAX_COMMAND: usize = 256;
/// How long a console command may take end to end.
const CONSOLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The templates servers may be created with (their environment's names, not its values:
/// an operator's template may carry an API key for a modpack site).
pub(super) async fn list_templates<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&api, &headers).await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let live = live.lock().await;
    let t = live.templates();
    let list: Vec<serde_json::Value> = t
        .by_name
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "image": t.image,
                "version": t.version,
                "default": t.name == live.templates().default,
                "env": t.env.keys().collect::<Vec<_>>(),
                "properties": t.properties,
                "eula": t.eula,
                "memory_headroom_mib": t.memory_headroom_mib,
                "min_plan_mib": t.heap_env.as_ref().map(|_| t.memory_headroom_mib + crate::template::MIN_HEAP_MIB),
                "console": match t.console { Console::Stdin => "stdin", Console::Rcon => "rcon" },
            })
        })
        .collect();
    Ok(Json(json!({ "templates": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    #[serde(default = "hundred")]
    lines: usize,
    #[serde(default)]
    follow: bool,
}

fn hundred() -> usize {
    100
}

/// The server's last `lines` log lines (text), then with `follow=true` what it writes,
/// streamed until it stops or the client goes.
pub(super) async fn logs<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    if q.lines > MAX_LOG_LINES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_lines",
            format!("lines {}: at most {MAX_LOG_LINES}; follow=true streams what comes after", q.lines),
        ));
    }
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let (driver, token) = {
        let mut live = live.lock().await;
        let driver = live.logs_driver(server.id).map_err(live_error)?;
        let token = if q.follow { Some(live.follow_token(server.id).map_err(live_error)?) } else { None };
        (driver, token)
    };
    let stream = driver.logs(server.id, q.lines, q.follow).await.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, "driver_failed", format!("the node did not give the logs: {e}"))
    })?;
    // The token goes when the client does (the body, and so the stream, is dropped).
    let stream = futures_util::StreamExt::map(stream, move |chunk| {
        let _held = &token;
        chunk
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleRequest {
    command: String,
}

/// Sends one console command to a running server: 200 with the console's answer (empty
/// for a console on stdin: the answer is in the logs).
pub(super) async fn console<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<ConsoleRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let by = match caller(&api, &headers).await? {
        Caller::Admin => "admin".to_owned(),
        Caller::Owner(o) => format!("owner:{o}"),
    };
    let command = req.command.trim();
    if command.is_empty() || command.chars().count() > MAX_COMMAND || command.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "command: 1 to {MAX_COMMAND} characters on one line, without control characters"
        )));
    }
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let now = (api.config.now)();
    let (driver, via) = live.lock().await.console_target(now, server.id).map_err(live_error)?;
    let sent = match tokio::time::timeout(CONSOLE_TIMEOUT, driver.console(server.id, &via, command)).await {
        Ok(r) => r.map_err(|e| e.message),
        Err(_) => Err(format!("no answer within {CONSOLE_TIMEOUT:?}")),
    };
    let outcome = sent.as_ref().map(|_| ()).map_err(String::as_str);
    live.lock().await.console_sent(now, server.id, &by, command, outcome).await.map_err(live_error)?;
    match sent {
        Ok(answer) => Ok(Json(json!({ "answer": answer.trim_end() }))),
        Err(e) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "console_failed", format!("the console did not take it: {e}")))
        }
    }
}
