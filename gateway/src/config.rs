//! The `[gateway]` section of the controller's config file (or of a file of its own: a
//! gateway on another machine reads nothing else). Every key has a default but `controller`
//! and the token.

use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where players connect.
    #[serde(default = "listen")]
    pub listen: String,
    /// The controller's API, e.g. `http://10.0.0.1:8080`.
    pub controller: String,
    /// The admin token for the controller's API, or the environment variable holding it.
    pub token: Option<String>,
    pub token_env: Option<String>,
    /// This gateway's name in the controller (player counts are kept per gateway).
    pub id: Option<String>,
    /// Default host names are `<server>.<owner>.<domain>`.
    #[serde(default)]
    pub domain: String,
    /// How long a joining player is held while the server wakes (below the client's 30 s
    /// login timeout).
    #[serde(default = "hold")]
    pub hold_s: u64,
    /// The handshake and the packet after it must arrive within this.
    #[serde(default = "handshake")]
    pub handshake_timeout_s: u64,
    /// A running server's proxied status is reused this long.
    #[serde(default = "cache")]
    pub status_cache_s: u64,
    /// Prometheus metrics (`/metrics`) on their own port; empty: none.
    #[serde(default = "metrics")]
    pub metrics_listen: String,
    /// Send a PROXY protocol v2 header to backends (they must expect it).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Open connections at most (over it: closed at once).
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    /// New connections per client address and minute at most.
    #[serde(default = "per_ip")]
    pub per_ip_per_minute: u32,
    /// How often open player connections are reported to the controller.
    #[serde(default = "report")]
    pub report_every_s: u64,
    /// The version text of synthetic status answers.
    #[serde(default = "version_text")]
    pub version_text: String,
    #[serde(default)]
    pub messages: Messages,
}

/// What players see. `{eta}` is replaced by the seconds to wait.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    pub motd_sleeping: String,
    pub motd_archived: String,
    pub motd_starting: String,
    pub motd_new: String,
    pub motd_unknown: String,
    pub motd_offline: String,
    pub unknown_host: String,
    pub starting: String,
    pub not_pay_per_use: String,
    pub balance: String,
    pub unreachable: String,
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            motd_sleeping: "Asleep - join to wake it".into(),
            motd_archived: "Asleep - join to wake it (about {eta} s)".into(),
            motd_starting: "Starting, ready in about {eta} s".into(),
            motd_new: "New server - join to start it".into(),
            motd_unknown: "No server at this address".into(),
            motd_offline: "Stopped - its owner can start it".into(),
            unknown_host: "There is no server at this address.".into(),
            starting: "The server is starting. Join again in about {eta} seconds.".into(),
            not_pay_per_use: "This server is stopped. Its owner can start it from the panel.".into(),
            balance: "This server cannot start: its owner's balance is used up.".into(),
            unreachable: "The server did not answer. Try again in a minute.".into(),
        }
    }
}

fn listen() -> String {
    "0.0.0.0:25565".into()
}
fn hold() -> u64 {
    25
}
fn handshake() -> u64 {
    5
}
fn cache() -> u64 {
    3
}
fn metrics() -> String {
    "127.0.0.1:9150".into()
}
fn max_connections() -> usize {
    20_000
}
fn per_ip() -> u32 {
    120
}
fn report() -> u64 {
    5
}
fn version_text() -> String {
    "Conductor".into()
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

#[derive(Deserialize)]
struct File {
    gateway: Option<toml::Table>,
    controller: Option<ControllerKeys>,
}

/// What a gateway takes from the controller's section when both share a file.
#[derive(Deserialize)]
struct ControllerKeys {
    listen: Option<String>,
    admin_token: Option<String>,
    admin_token_env: Option<String>,
}

impl GatewayConfig {
    /// The `[gateway]` section of `text` (other sections are the controller's business).
    /// `env` looks up environment variables (passed in so tests control it).
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<GatewayConfig, ConfigError> {
        let err = |message: String| ConfigError { path: path.display().to_string(), message };
        let file: File = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut section = file.gateway.ok_or_else(|| err("no [gateway] section".into()))?;
        // In the controller's own file, the controller's address and token are the defaults.
        if let Some(c) = &file.controller {
            let listen = c.listen.clone().unwrap_or_else(|| "127.0.0.1:8080".into());
            let listen = listen.replace("0.0.0.0", "127.0.0.1");
            section.entry("controller").or_insert_with(|| toml::Value::String(format!("http://{listen}")));
            if !section.contains_key("token") && !section.contains_key("token_env") {
                if let Some(t) = &c.admin_token {
                    section.insert("token".into(), toml::Value::String(t.clone()));
                } else if let Some(e) = &c.admin_token_env {
                    section.insert("token_env".into(), toml::Value::String(e.clone()));
                }
            }
        }
        let mut cfg: GatewayConfig = serde_path_to_error::deserialize(toml::Value::Table(section))
            .map_err(|e| err(format!("key `gateway.{}`: {}", e.path(), e.inner())))?;
        if cfg.token.is_none() {
            if let Some(name) = &cfg.token_env {
                cfg.token = Some(env(name).ok_or_else(|| err(format!("key `gateway.token_env`: {name} is not set")))?);
            }
        }
        if cfg.token.as_deref().is_none_or(str::is_empty) {
            return Err(err("key `gateway.token`: the controller's admin token (or token_env) is required".into()));
        }
        if !(1..=28).contains(&cfg.hold_s) {
            return Err(err("key `gateway.hold_s`: expected 1 to 28 seconds (clients time out a login at 30)".into()));
        }
        if cfg.handshake_timeout_s == 0 {
            return Err(err("key `gateway.handshake_timeout_s`: expected at least 1 second".into()));
        }
        if !cfg.controller.starts_with("http://") {
            return Err(err(format!("key `gateway.controller`: expected http://host:port, got {:?}", cfg.controller)));
        }
        cfg.controller = cfg.controller.trim_end_matches('/').to_owned();
        Ok(cfg)
    }

    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(path, &text, env)
    }

    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "gateway".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        let env = |k: &str| (k == "GW_TOKEN").then(|| "secret-token-123456".to_owned());
        GatewayConfig::parse(Path::new("c.toml"), text, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_example_s_gateway_section_loads_with_the_controller_s_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../controller.example.toml");
        let env = |k: &str| (k == "CONDUCTOR_ADMIN_TOKEN").then(|| "local-admin-token-123".to_owned());
        let c = GatewayConfig::load(Path::new(path), &env).unwrap();
        assert_eq!(
            (c.controller.as_str(), c.domain.as_str(), c.hold_s),
            ("http://127.0.0.1:8080", "play.localhost", 25)
        );
        assert_eq!(c.token.as_deref(), Some("local-admin-token-123"));
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = parse(
            "[controller]\nx = 1\n[gateway]\ncontroller = \"http://127.0.0.1:8080/\"\ntoken_env = \"GW_TOKEN\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.hold_s, c.listen.as_str(), c.controller.as_str()),
            (25, "0.0.0.0:25565", "http://127.0.0.1:8080")
        );
        assert_eq!(c.token.as_deref(), Some("secret-token-123456"));
        let e = parse("[gateway]\ncontroller = \"http://x\"\ntoken = \"t\"\nhold_s = 40\n").unwrap_err();
        assert!(e.contains("gateway.hold_s"), "{e}");
        let e = parse("[gateway]\ncontroller = \"http://x\"\ntoken = \"t\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("key `gateway.colour`"), "{e}");
        let e = parse("[gateway]\ncontroller = \"http://x\"\ntoken_env = \"NOPE\"\n").unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = parse("[controller]\n").unwrap_err();
        assert!(e.contains("no [gateway] section"), "{e}");
        // In the controller's file: its address and token are the defaults.
        let c = parse("[controller]\nlisten = \"0.0.0.0:9000\"\nadmin_token_env = \"GW_TOKEN\"\n[gateway]\n").unwrap();
        assert_eq!(c.controller, "http://127.0.0.1:9000");
        assert_eq!(c.token.as_deref(), Some("secret-token-123456"));
        let e = parse("[gateway]\ncontroller = \"http://x\"\ntoken = \"t\"\n[gateway.messages]\nstarting = 3\n")
            .unwrap_err();
        assert!(e.contains("gateway.messages.starting"), "{e}");
    }
}
