//! Dedicated nodes that join, drain and leave through the admin API, without a restart. A
//! joining node is checked first (its type in the catalogue, a `tls://` endpoint whose
//! engine answers with a certificate of the fleet's CA naming the node) and only then
//! recorded and given to the core; nothing is changed by a join that fails. A drained node
//! takes no new server; it is removed once nothing lives on it and nothing is pending there.

use super::*;
use crate::store::{Node, NodeState};
use conductor_core::scheduler::RetireError;
use conductor_core::NodeKind;

/// The name a joined node's engine certificate carries.
pub fn node_server_name(node: &str) -> String {
    format!("{node}.node.conductor")
}

fn invalid(code: &'static str, message: String) -> LiveError {
    LiveError::Invalid { code, message }
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl<S: Store> Live<S> {
    /// A joining node's engine certificate and key (its name checked), from the fleet CA.
    pub fn issue_node_certificate(&self, now: Millis, name: &str) -> Result<(String, crate::pki::Issued), LiveError> {
        let Some(pki) = &self.cfg.joining.pki else {
            return Err(LiveError::Conflict {
                code: "joining_disabled",
                message: "nodes join with certificates of the fleet CA: configure [controller.pki]".into(),
            });
        };
        if !valid_name(name) {
            return Err(invalid("invalid_request", format!("name {name:?}: 1 to 63 of a-z, 0-9 and -")));
        }
        let issued = pki
            .issue(&node_server_name(name), crate::pki::Role::Server, now / 1000, 365)
            .map_err(|e| LiveError::Driver(e.to_string()))?;
        Ok((pki.ca_pem().to_owned(), issued))
    }

    /// Records that a certificate was issued (never its key).
    pub async fn certificate_issued(&mut self, now: Millis, name: &str, serial: &str) -> Result<(), LiveError> {
        self.event(now, NODE_CERTIFICATE_ISSUED, None, None, json!({ "name": name, "serial": serial })).await
    }

    /// The driver of a node that asks to join (validated, not yet contacted) and how long
    /// its engine may take to answer. Called with the engine locked; the caller pings the
    /// driver unlocked, then calls [`Live::add_node`].
    pub fn join_driver(
        &self,
        name: &str,
        type_name: &str,
        docker: &str,
        host: &str,
    ) -> Result<(Arc<dyn NodeDriver>, Duration), LiveError> {
        let j = &self.cfg.joining;
        let Some(connect) = &j.connect else {
            return Err(LiveError::Conflict {
                code: "joining_disabled",
                message: "nodes join with certificates of the fleet CA: configure [controller.pki]".into(),
            });
        };
        if !valid_name(name) {
            return Err(invalid("invalid_request", format!("name {name:?}: 1 to 63 of a-z, 0-9 and -")));
        }
        if !j.types.contains_key(type_name) {
            let known: Vec<&str> = j.types.keys().map(String::as_str).collect();
            return Err(invalid(
                "unknown_node_type",
                format!("type {type_name:?} is not in the catalogue (known: {})", known.join(", ")),
            ));
        }
        let Some(address) = docker.strip_prefix("tls://") else {
            return Err(invalid(
                "unsupported_endpoint",
                format!("docker {docker:?}: a joining node's Docker API is tls://host:port (mutual TLS)"),
            ));
        };
        if !address.contains(':') || host.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "invalid_request",
                format!("docker {docker:?} needs host:port, and host {host:?} must be the node's IP address"),
            ));
        }
        let driver = connect(name, address, host).map_err(|e| invalid("node_unreachable", e))?;
        Ok((driver, j.answer_within))
    }

    /// Records a node whose engine answered and hands it to the core: queued servers that fit
    /// are placed on it at once.
    pub async fn add_node(
        &mut self,
        now: Millis,
        name: &str,
        type_name: &str,
        docker: &str,
        host: &str,
        driver: Arc<dyn NodeDriver>,
    ) -> Result<Node, LiveError> {
        let t = self
            .cfg
            .joining
            .types
            .get(type_name)
            .cloned()
            .ok_or_else(|| invalid("unknown_node_type", format!("type {type_name:?} is not in the catalogue")))?;
        let new = crate::store::NewNode {
            name: name.to_owned(),
            kind: NodeKind::Dedicated,
            type_name: t.name.clone(),
            provider_id: None,
            state: NodeState::Ready,
            ram_mib: t.ram_mib,
            usable_mib: t.usable_mib(),
        };
        let row = self.store.add_node(new, docker, host, now).await?;
        let node = self.core.add_dedicated(now, &t, &mut self.out);
        self.push_joined(node, &row, Some(driver));
        let data = json!({ "name": name, "type": type_name, "docker": docker, "address": host });
        self.event(now, NODE_ADDED, None, Some(row.id), data).await?;
        self.apply(now).await?;
        Ok(row)
    }

    /// A joined node's place in the per-node tables; without a driver it is unreachable
    /// until the configuration lets it be reached again.
    fn push_joined(&mut self, node: NodeId, row: &Node, driver: Option<Arc<dyn NodeDriver>>) {
        self.node_slot(node, row.id);
        self.docker[node.0 as usize] = driver;
        self.joined.insert(node, row.name.clone());
    }

    /// Start-up: a node that joined in an earlier run (its driver from the same connect).
    pub(super) fn adopt_joined(&mut self, now: Millis, row: &Node) -> Option<NodeId> {
        let t = self.cfg.joining.types.get(&row.type_name).cloned()?;
        let mut scratch = conductor_core::scheduler::Outbox::default();
        let node = self.core.add_dedicated(now, &t, &mut scratch);
        if row.drained {
            self.core.drain(node, &mut scratch);
        }
        let address = row.docker.as_deref().and_then(|d| d.strip_prefix("tls://")).unwrap_or_default();
        let host = row.address.as_deref().unwrap_or_default();
        let driver = self.cfg.joining.connect.as_ref().and_then(|c| c(&row.name, address, host).ok());
        self.push_joined(node, row, driver);
        Some(node)
    }

    fn joined_node(&self, store_id: i64) -> Result<NodeId, LiveError> {
        let node = self
            .core_node(store_id)
            .ok_or_else(|| LiveError::Store(StoreError::NotFound { what: "node", id: store_id.to_string() }))?;
        if self.core.node(node).state == conductor_core::scheduler::NodeState::Deleted {
            return Err(LiveError::Store(StoreError::NotFound { what: "node", id: store_id.to_string() }));
        }
        if !self.joined.contains_key(&node) {
            let what = if self.vm_names.contains_key(&node) {
                "a cloud VM (the policy scales those)"
            } else {
                "configured in controller.toml"
            };
            return Err(LiveError::Conflict {
                code: "configured_node",
                message: format!(
                    "node {} is {what}: only nodes that joined through the API are drained and removed here",
                    self.node_name(node)
                ),
            });
        }
        Ok(node)
    }

    /// Drains (or undrains) a joined node.
    pub async fn drain_node(&mut self, now: Millis, store_id: i64, drained: bool) -> Result<Node, LiveError> {
        let node = self.joined_node(store_id)?;
        if drained {
            self.core.drain(node, &mut self.out);
        } else {
            self.core.undrain(now, node, &mut self.out);
        }
        let row = self.store.set_node_drained(store_id, drained, now).await?;
        let state = if drained { NodeState::Cordoned } else { NodeState::Ready };
        let row = match self.core.node(node).state {
            conductor_core::scheduler::NodeState::Cordoned | conductor_core::scheduler::NodeState::Ready => {
                self.store.set_node_state(store_id, state, None, now).await?
            }
            _ => row,
        };
        let data = json!({ "name": row.name, "drained": drained });
        self.event(now, NODE_DRAINING, None, Some(store_id), data).await?;
        self.apply(now).await?;
        Ok(row)
    }

    /// Removes a drained joined node on which nothing lives and nothing is pending.
    pub async fn remove_node(&mut self, now: Millis, store_id: i64) -> Result<(), LiveError> {
        let node = self.joined_node(store_id)?;
        let pending: Vec<&str> = self
            .intents
            .items
            .values()
            .filter(|p| p.action.nodes().contains(&store_id))
            .map(|p| p.action.kind())
            .collect();
        let name = self.node_name(node);
        let busy = |servers: u32| LiveError::Conflict {
            code: "node_not_empty",
            message: format!(
                "node {name} still holds {servers} server(s) and pending work ({}): drain it and wait for them",
                if pending.is_empty() { "none".to_owned() } else { pending.join(", ") }
            ),
        };
        if !pending.is_empty() {
            return Err(busy(0));
        }
        match self.core.retire(node) {
            Ok(()) => {}
            Err(RetireError::NotDrained) => {
                return Err(LiveError::Conflict {
                    code: "node_not_drained",
                    message: format!("drain node {name} first (POST /v1/nodes/{store_id}/drain)"),
                })
            }
            Err(RetireError::NotEmpty { servers }) => return Err(busy(servers)),
        }
        self.store.set_node_state(store_id, NodeState::Deleted, None, now).await?;
        self.docker[node.0 as usize] = None;
        self.event(now, NODE_REMOVED, None, Some(store_id), json!({ "name": name })).await?;
        self.apply(now).await
    }
}
