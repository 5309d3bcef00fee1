//! The OpenAPI document the API serves at `/v1/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, auth: &str, ok: &str) -> Value {
    json!({
        "summary": summary,
        "description": format!("Authorization: {auth}."),
        "security": [{ "bearer": [] }],
        "responses": {
            ok: { "description": "success" },
            "4XX": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    })
}

fn with_id(mut v: Value) -> Value {
    v["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    v
}

pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "Conductor controller API", "version": "1" },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "ok" } } } },
            "/readyz": { "get": { "summary": "Readiness (the store answers)", "responses": { "200": { "description": "ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text format" } } } },
            "/v1/owners": { "post": op("Create an owner (with the sign-up credit); returns its token once", "admin", "201") },
            "/v1/owners/{id}/topups": { "post": with_id(op("Credit an owner: {\"amount\": \"10.00\", \"reference\": \"payment id\"}; a replayed reference books nothing (200)", "admin", "201")) },
            "/v1/owners/{id}/statement": { "get": with_id(op("Monthly statement: ?month=YYYY-MM&format=json|md|html", "admin or the owner", "200")) },
            "/v1/owners/{id}/account": { "get": with_id(op("Balance and ledger entries: ?after=ID&limit=N", "admin or the owner", "200")) },
            "/v1/servers": {
                "get": op("List servers (an owner sees its own)", "admin or owner", "200"),
                "post": op("Create a server: name, ram_mib (multiple of 512), disk_mb, pay_per_use, cost_mode, template (422 unknown_template | plan_too_small)", "owner (admin: with owner)", "201")
            },
            "/v1/servers/{id}": {
                "get": with_id(op("Show a server", "admin or its owner", "200")),
                "delete": with_id(op("Delete a server that does not run", "admin or its owner", "204")),
                "patch": with_id(op("Change a server: {\"ram_mib\": n} its plan (plan_change: restart, move or next start), {\"pay_per_use\": bool} whether it stops when idle, {\"template\": name | null} while it is stopped (409 server_running), applied at its next start", "admin or its owner", "200"))
            },
            "/v1/servers/{id}/start": { "post": with_id(op("Start (placed or queued)", "admin or its owner", "202")) },
            "/v1/servers/{id}/stop": { "post": with_id(op("Stop gracefully (world saved)", "admin or its owner", "202")) },
            "/v1/servers/{id}/restart": { "post": with_id(op("Stop, then start", "admin or its owner", "202")) },
            "/v1/servers/{id}/backups": {
                "get": with_id(op("The server's backups (time, reason, sizes, checksum) and its world's measured size and quota", "admin or its owner", "200")),
                "post": with_id(op("Take a backup now (running or sleeping world; archived: 409 archived)", "admin or its owner", "202"))
            },
            "/v1/servers/{id}/backups/{backup}": {
                "delete": op("Delete a backup", "admin or its owner", "204")
            },
            "/v1/servers/{id}/backups/{backup}/restore": {
                "post": op("Restore a backup into the stopped server (the world of now is backed up first; running: 409 server_running)", "admin or its owner", "202")
            },
            "/v1/wake/{id}": { "post": with_id(op("Wake a pay-per-use server for a joining player (gateway; others: 409 not_pay_per_use)", "admin", "202")) },
            "/v1/routes": { "get": op("The gateways' route table: a snapshot, or ?since=VERSION&epoch=EPOCH&wait_s=N for the changes since (long poll); another epoch gets a snapshot", "admin", "200") },
            "/v1/gateways/{id}/players": { "put": op("A gateway's open player connections: {\"players\": {\"<server id>\": n}, \"ttl_s\": 15}", "admin", "204") },
            "/v1/servers/{id}/hosts": { "get": with_id(op("The server's custom host names", "admin or its owner", "200")) },
            "/v1/servers/{id}/hosts/{host}": {
                "put": op("Add a custom host name (unique, a DNS name)", "admin or its owner", "200"),
                "delete": op("Remove a custom host name", "admin or its owner", "204")
            },
            "/v1/fleet": { "get": op("Nodes, RAM reserved and usable, VMs provisioning", "admin", "200") },
            "/v1/scaling": { "get": op("Mode, policies with their modes, the forecast in use, the latest decisions with reasons next to what shadow policies would have done, the latest policy switches", "admin", "200") },
            "/v1/scaling/mode": { "put": op("Switch mode: {\"mode\": \"observe\" | \"enforce\"}", "admin", "200") },
            "/v1/forecast": {
                "get": op("The latest forecast document", "admin", "200"),
                "put": op("Upload a conductor.forecast/1 document; used at once when it has the ram_mib.peak series ({\"applied\": true})", "admin", "201")
            },
            "/v1/events": { "get": op("The event log, oldest first: ?after=SEQ&limit=N", "admin", "200") },
            "/v1/webhooks/stripe": { "post": {
                "summary": "Stripe checkout.session.completed (Stripe-Signature verified; client_reference_id = owner id); a replayed session books nothing",
                "responses": { "201": { "description": "topped up" }, "200": { "description": "replayed or ignored" }, "4XX": { "description": "bad signature or content" } }
            } },
            "/v1/price": { "get": {
                "summary": "Price calculator: ?ram_mib=&disk_gb=&hours_per_week=&competitor_eur= → per minute, per month, saving",
                "responses": { "200": { "description": "exact amounts as decimal strings" }, "4XX": { "description": "invalid input" } }
            } },
            "/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": { "error": { "type": "object", "properties": {
                        "code": { "type": "string", "description": "stable: unauthorized, forbidden, not_found, malformed_json, invalid_request, impossible_plan, conflict, unsupported_media_type, unavailable, driver_failed, balance_exhausted, not_pay_per_use" },
                        "message": { "type": "string" }
                    } } }
                }
            }
        }
    });
    // Built apart: one json! of every path passes the macro's recursion limit.
    let nodes = json!({
            "/v1/templates": { "get": op("The templates a server may run (names of their variables, not values)", "admin or an owner", "200") },
            "/v1/servers/{id}/logs": { "get": with_id(op("The last ?lines=N (100, at most 5000: else 400 too_many_lines) log lines as text; &follow=true streams what follows (4 followers per server: 429 rate_limited)", "admin or its owner", "200")) },
            "/v1/servers/{id}/console": { "post": with_id(op("Send a console command {\"command\"} to a running server (stdin or RCON, as its template says); 5 per 10 s (429 rate_limited); audited as console.command", "admin or its owner", "200")) },
            "/v1/nodes": { "post": op("Add a dedicated node: {\"name\", \"type\" (catalogue), \"docker\": \"tls://host:port\", \"host\": game address}; its engine must answer with a fleet-CA certificate (422 node_unreachable | node_certificate)", "admin", "201") },
            "/v1/nodes/certificates": { "post": op("Issue a joining node's engine certificate: {\"name\"} -> ca_pem, cert_pem, key_pem (once), server_name", "admin", "201") },
            "/v1/nodes/{id}": { "delete": with_id(op("Remove a drained, empty joined node (409 node_not_drained | node_not_empty | configured_node)", "admin", "204")) },
            "/v1/nodes/{id}/drain": { "post": with_id(op("Drain a node: no new server; its sleeping worlds are archived", "admin", "200")) },
            "/v1/nodes/{id}/undrain": { "post": with_id(op("Take a drained node back into placement", "admin", "200")) },
            "/v1/jobs": {
                "get": op("Preemptible jobs, oldest first (an owner: its own)", "admin or an owner", "200"),
                "post": op("Submit a job {image, cmd, ram_mib, max_duration_s} (an owner: an allowed image at the configured price; an admin: also owner and price_per_gib_hour); 422 image_not_allowed | job_too_large", "admin or an owner", "201")
            },
            "/v1/jobs/{id}": {
                "get": with_id(op("A job: state (queued, running, noticed, done, killed, cancelled, failed), node, times, outcome", "admin or its owner", "200")),
                "delete": with_id(op("Cancel an open job (killed if running, billed for the time it ran; 409 job_ended)", "admin or its owner", "200"))
            },
            "/v1/recommendations": { "get": op("Moves owners were asked to accept (cost_mode suggest) and have not answered: server, owner, since, saving_per_hour", "admin or an owner (its own)", "200") },
            "/v1/recommendations/{id}/accept": { "post": with_id(op("Accept the recommended move of a server (409 not_recommended); it moves at the next consolidation", "admin or its owner", "200")) },
            "/v1/policies": { "get": op("The scaling policies in order: index, name, shadow, configured_shadow", "admin", "200") },
            "/v1/policies/{index}": { "put": op("Switch a predictive or spare-pool policy: {\"shadow\": false} enforces (422 no_shadow_mode | unknown_policy); recorded as policy.mode, kept across restarts until the file changes", "admin", "200") },
    });
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), nodes) {
        paths.extend(more);
    }
    doc
}
