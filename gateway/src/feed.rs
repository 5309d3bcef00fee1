//! The gateway's side of the controller's API: the route feed (a snapshot, then long-polled
//! changes), wakes, and the player counts it reports.

use crate::route::Update;
use crate::Gateway;
use std::sync::Arc;
use std::time::Duration;

/// How long one long poll waits for a change at the controller.
const WAIT_S: u64 = 20;

async fn get_update(gw: &Gateway, url: &str) -> Result<Update, String> {
    let r = gw
        .http
        .get(url)
        .bearer_auth(gw.cfg.token.as_deref().unwrap_or(""))
        .timeout(Duration::from_secs(WAIT_S + 10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("route feed: {e}"))
}

/// Follows the controller's routes for ever. When the controller is down the last known
/// table stays in use (players reach running servers); when it is back — or restarted, a new
/// epoch — the table is resynchronised.
pub async fn follow(gw: Arc<Gateway>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let (epoch, version) = {
            let t = gw.table.read().unwrap();
            (t.epoch.clone(), t.version)
        };
        let url = if epoch.is_empty() {
            format!("{}/v1/routes", gw.cfg.controller)
        } else {
            format!("{}/v1/routes?since={version}&epoch={epoch}&wait_s={WAIT_S}", gw.cfg.controller)
        };
        match get_update(&gw, &url).await {
            Ok(u) => {
                backoff = Duration::from_millis(250);
                if !gw.apply(u) {
                    // Not a continuation of our table: ask for a snapshot.
                    gw.table.write().unwrap().epoch.clear();
                }
            }
            Err(e) => {
                eprintln!("gateway: route feed: {e} (keeping the last known table)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Asks the controller to start `server` (idempotent there).
pub async fn wake(gw: &Gateway, server: i64) -> Result<(), String> {
    let url = format!("{}/v1/wake/{server}", gw.cfg.controller);
    let r = gw
        .http
        .post(url)
        .bearer_auth(gw.cfg.token.as_deref().unwrap_or(""))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        let s = r.status();
        Err(format!("{s}: {}", r.text().await.unwrap_or_default()))
    }
}

/// Reports this gateway's open player connections per server every `report_every_s`; the
/// controller keeps one count per gateway (so several never double-count) and forgets a
/// gateway's that stops reporting.
pub async fn report_players(gw: Arc<Gateway>) {
    let every = Duration::from_secs(gw.cfg.report_every_s.max(1));
    loop {
        tokio::time::sleep(every).await;
        let players: std::collections::BTreeMap<String, u32> =
            gw.players.lock().unwrap().iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let body = serde_json::json!({ "players": players, "ttl_s": 3 * every.as_secs() });
        let url = format!("{}/v1/gateways/{}/players", gw.cfg.controller, gw.id);
        let sent = gw
            .http
            .put(url)
            .bearer_auth(gw.cfg.token.as_deref().unwrap_or(""))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Err(e) = sent {
            eprintln!("gateway: reporting players: {e}");
        }
    }
}
