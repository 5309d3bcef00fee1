//! A VM's cloud-init user data: a shipped template (`controller/cloud-init/`, or the
//! operator's own file) with `${name}` placeholders, each replaced by its value as a JSON
//! string — a valid YAML double-quoted scalar, so no value (a PEM, a CIDR list) can break
//! out of its field. An unknown placeholder is an error naming the line; comment lines are
//! left as they are.

use crate::pki::Secret;

/// The full install (Debian/Ubuntu image): engine, firewall, images, certificates.
pub const VM: &str = include_str!("../cloud-init/vm.yaml");
/// A prepared snapshot: only this VM's certificates and settings.
pub const ATTACH: &str = include_str!("../cloud-init/attach.yaml");
/// What `conductor node image` prints: prepares a VM to be snapshotted.
pub const PREPARE: &str = include_str!("../cloud-init/prepare.yaml");

/// Hetzner refuses larger user data.
pub const MAX_USER_DATA: usize = 32 * 1024;

/// Where the bootstrap reports it finished (a volume the controller can see).
pub const READY_VOLUME: &str = "conductor-bootstrap";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("{source_name}:{line}: unknown placeholder ${{{name}}} (known: {known})")]
    Unknown { source_name: String, line: usize, name: String, known: String },
    #[error("{source_name}:{line}: unclosed placeholder")]
    Unclosed { source_name: String, line: usize },
    #[error("{source_name}: the user data is {size} bytes, more than the cloud's {MAX_USER_DATA}")]
    TooLarge { source_name: String, size: usize },
    #[error("image {0:?}: only letters, digits and . _ / : @ - are allowed")]
    Image(String),
}

/// What one VM's bootstrap needs.
#[derive(Clone, Debug)]
pub struct Vars {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: Secret,
    pub docker_port: u16,
    /// Who may reach the Docker API (the controller) and the game ports (also the gateways).
    pub controller_cidrs: Vec<String>,
    pub gateway_cidrs: Vec<String>,
    pub images: Vec<String>,
}

fn image_ok(image: &str) -> bool {
    !image.is_empty() && image.chars().all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c))
}

/// `docker pull` of every image, for `sh -c`.
pub fn pull_command(images: &[String]) -> Result<String, RenderError> {
    if let Some(bad) = images.iter().find(|i| !image_ok(i)) {
        return Err(RenderError::Image(bad.clone()));
    }
    if images.is_empty() {
        return Ok("true".into());
    }
    Ok(images.iter().map(|i| format!("docker pull {i}")).collect::<Vec<_>>().join(" && "))
}

impl Vars {
    fn daemon_json(&self) -> String {
        let json = serde_json::json!({
            "hosts": ["unix:///var/run/docker.sock", format!("tcp://0.0.0.0:{}", self.docker_port)],
            "tls": true,
            "tlsverify": true,
            "tlscacert": "/etc/docker/tls/ca.pem",
            "tlscert": "/etc/docker/tls/cert.pem",
            "tlskey": "/etc/docker/tls/key.pem",
        });
        format!("{}\n", serde_json::to_string_pretty(&json).expect("plain JSON"))
    }

    /// Input: the API from the controller only (and SSH from it, for operators). Published
    /// game ports are forwarded (DNAT) past the input chain, so the forward chain admits them
    /// from the gateways and the controller (its status pings) only.
    fn nftables(&self) -> String {
        let set = |cidrs: &[String]| format!("{{ {} }}", cidrs.join(", "));
        let mut players = self.controller_cidrs.clone();
        players.extend(self.gateway_cidrs.iter().cloned());
        format!(
            "#!/usr/sbin/nft -f\n\
             table inet conductor\n\
             delete table inet conductor\n\
             table inet conductor {{\n\
             \x20 chain input {{\n\
             \x20   type filter hook input priority 0; policy drop;\n\
             \x20   ct state established,related accept\n\
             \x20   iif lo accept\n\
             \x20   meta l4proto {{ icmp, ipv6-icmp }} accept\n\
             \x20   ip saddr {controller} tcp dport {{ 22, {port} }} accept\n\
             \x20 }}\n\
             \x20 chain forward {{\n\
             \x20   type filter hook forward priority -1; policy accept;\n\
             \x20   ct status dnat ip saddr != {players} drop\n\
             \x20 }}\n\
             }}\n",
            controller = set(&self.controller_cidrs),
            port = self.docker_port,
            players = set(&players),
        )
    }

    fn value(&self, name: &str) -> Option<Result<String, RenderError>> {
        Some(Ok(match name {
            "ca_pem" => self.ca_pem.clone(),
            "cert_pem" => self.cert_pem.clone(),
            "key_pem" => self.key_pem.expose().to_owned(),
            "docker_port" => self.docker_port.to_string(),
            "daemon_json" => self.daemon_json(),
            "nftables" => self.nftables(),
            "pull" => return Some(pull_command(&self.images)),
            _ => return None,
        }))
    }
}

const KNOWN: &str = "ca_pem, cert_pem, key_pem, docker_port, daemon_json, nftables, pull";

/// `template` with every `${name}` replaced by its value as a JSON string. `source_name`
/// names the template in errors (a path or `vm.yaml`).
pub fn render(source_name: &str, template: &str, vars: &Vars) -> Result<Secret, RenderError> {
    let mut out = String::with_capacity(template.len() + 4096);
    for (i, line) in template.split_inclusive('\n').enumerate() {
        let mut rest = line;
        // Comments are the template's own text.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                return Err(RenderError::Unclosed { source_name: source_name.into(), line: i + 1 });
            };
            let name = &after[..end];
            let value = vars.value(name).ok_or_else(|| RenderError::Unknown {
                source_name: source_name.into(),
                line: i + 1,
                name: name.into(),
                known: KNOWN.into(),
            })??;
            out.push_str(&serde_json::to_string(&value).expect("a string serializes"));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if out.len() > MAX_USER_DATA {
        return Err(RenderError::TooLarge { source_name: source_name.into(), size: out.len() });
    }
    Ok(Secret::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\"quote\" ${pull} \\ end\n-----END CERTIFICATE-----\n".into(),
            cert_pem: "cert\n".into(),
            key_pem: Secret::new("-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n".into()),
            docker_port: 2376,
            controller_cidrs: vec!["10.0.0.2/32".into()],
            gateway_cidrs: vec!["10.0.1.0/24".into(), "10.0.2.7/32".into()],
            images: vec!["localhost/conductor-standin:test".into(), "itzg/minecraft-server:java21".into()],
        }
    }

    #[test]
    fn values_are_quoted_so_nothing_they_hold_is_read_as_a_placeholder_or_yaml() {
        let out = render("t", "a: ${ca_pem}\nb: ${docker_port}\n", &vars()).unwrap();
        let text = out.expose();
        // The value's own `${pull}` stays text, its quote and backslash are escaped.
        assert!(text.contains(r#"MIIB\"quote\" ${pull} \\ end\n"#), "{text}");
        assert!(text.ends_with("b: \"2376\"\n"), "{text}");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_and_oversize_are_errors_naming_the_line() {
        let e = render("mine.yaml", "ok: 1\nx: ${nope}\n", &vars()).unwrap_err();
        assert!(e.to_string().starts_with("mine.yaml:2: unknown placeholder ${nope}"), "{e}");
        let e = render("mine.yaml", "x: ${ca_pem\n", &vars()).unwrap_err();
        assert_eq!(e, RenderError::Unclosed { source_name: "mine.yaml".into(), line: 1 });
        let big = "#".repeat(MAX_USER_DATA + 1);
        assert!(matches!(render("big", &big, &vars()), Err(RenderError::TooLarge { .. })));
        let mut v = vars();
        v.images.push("evil; rm -rf /".into());
        assert!(matches!(render("t", "${pull}", &v), Err(RenderError::Image(_))));
    }

    #[test]
    fn the_firewall_admits_the_api_from_the_controller_and_game_ports_from_the_gateways() {
        let rules = vars().nftables();
        assert!(rules.contains("ip saddr { 10.0.0.2/32 } tcp dport { 22, 2376 } accept"), "{rules}");
        assert!(rules.contains("ct status dnat ip saddr != { 10.0.0.2/32, 10.0.1.0/24, 10.0.2.7/32 } drop"), "{rules}");
        assert!(rules.contains("policy drop"), "{rules}");
    }
}
