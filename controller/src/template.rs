//! Server templates (`[controller.templates.<name>]`): which image a server runs and how —
//! version, environment, server properties, data path, heap from the plan, EULA, CPU by
//! plan, console (stdin or RCON) and stop signal. A server names its template at creation;
//! it may change while the server is stopped (its container is made anew at the next start).
//!
//! Secrets stay out of the store, the events and the logs: a template on RCON gets a fresh
//! random password each time its container is made, written only into the container's
//! environment (`rcon_cli` inside the container reads it from there); the controller keeps
//! no copy and reaches the console through the Docker API's exec.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The name of the template made from `[controller] image`/`cmd` when none is configured.
pub const DEFAULT: &str = "default";
/// The smallest heap a template leaves a plan (MiB).
pub const MIN_HEAP_MIB: u32 = 256;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Console {
    /// Lines written to the container's standard input (the container keeps it open).
    #[default]
    Stdin,
    /// `rcon_cli <command>` run inside the container (RCON with the container's password).
    Rcon,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeapFormat {
    /// `-Xms<h>M -Xmx<h>M` (JVM flags, e.g. in `JVM_OPTS`).
    #[default]
    Jvm,
    /// `<h>M` (e.g. itzg/minecraft-server's `MEMORY`).
    Mib,
}

/// A template as written in `controller.toml`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    pub image: String,
    pub cmd: Option<Vec<String>>,
    /// Passed as `VERSION` (the Minecraft version or modpack release the image installs).
    pub version: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// server.properties entries, passed as environment variables the way the itzg images
    /// read them: `max-players` → `MAX_PLAYERS`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Where the world volume is mounted in the container.
    #[serde(default = "data_path")]
    pub data_path: String,
    /// Accept the Minecraft EULA for the customer (`EULA=TRUE`).
    #[serde(default)]
    pub eula: bool,
    /// The variable the heap goes in (`""`: none); heap = plan RAM − `memory_headroom_mib`.
    #[serde(default = "heap_env")]
    pub heap_env: String,
    #[serde(default)]
    pub heap_format: HeapFormat,
    /// What the JVM needs beside its heap (metaspace, threads, native buffers).
    #[serde(default = "headroom")]
    pub memory_headroom_mib: u32,
    /// A CPU limit proportional to the plan (absent: no limit; shares always follow RAM).
    pub cpus_per_gib: Option<f64>,
    #[serde(default)]
    pub console: Console,
    /// The RCON client inside the image (`console = "rcon"`).
    #[serde(default = "rcon_cli")]
    pub rcon_cli: Vec<String>,
    /// The signal a stop sends (the image saves the world on it); absent: the image's own.
    pub stop_signal: Option<String>,
    /// A console command a stop sends first (e.g. "stop"); the container is then given
    /// `stop_timeout_s` to exit by itself before the signal.
    pub stop_command: Option<String>,
    /// The ready check: the Minecraft status ping, answered within this many seconds of the
    /// start (a large modpack boots for minutes); absent: `controller.start_timeout_s`.
    pub start_timeout_s: Option<u64>,
}

fn data_path() -> String {
    "/data".into()
}
fn heap_env() -> String {
    "JVM_OPTS".into()
}
fn headroom() -> u32 {
    512
}
fn rcon_cli() -> Vec<String> {
    vec!["rcon-cli".into()]
}

/// A checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub version: Option<String>,
    pub env: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    pub data_path: String,
    pub eula: bool,
    pub heap_env: Option<String>,
    pub heap_format: HeapFormat,
    pub memory_headroom_mib: u32,
    /// Thousandths of a CPU per GiB of plan.
    pub millicpus_per_gib: Option<u32>,
    pub console: Console,
    pub rcon_cli: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_command: Option<String>,
    /// Milliseconds a start may take before it is given up (`None`: the controller's).
    pub start_timeout: Option<i64>,
}

/// The variable a server property is passed in.
pub fn property_env(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn env_name_ok(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !k.as_bytes()[0].is_ascii_digit()
}

impl Template {
    /// The template `[controller] image`/`cmd` stand for: the image as it is, nothing added.
    pub fn plain(image: &str, cmd: Option<Vec<String>>) -> Template {
        Template {
            name: DEFAULT.into(),
            image: image.into(),
            cmd,
            version: None,
            env: BTreeMap::new(),
            properties: BTreeMap::new(),
            data_path: data_path(),
            eula: false,
            heap_env: None,
            heap_format: HeapFormat::Jvm,
            memory_headroom_mib: 0,
            millicpus_per_gib: None,
            console: Console::Stdin,
            rcon_cli: rcon_cli(),
            stop_signal: None,
            stop_command: None,
            start_timeout: None,
        }
    }

    /// Checks a template from the config; errors name the key (`controller.templates.<name>.<key>`).
    pub fn from_file(name: &str, f: TemplateFile) -> Result<Template, String> {
        let key = |k: &str| format!("controller.templates.{name}.{k}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("controller.templates.{name:?}: a name of letters, digits, '-' and '_'"));
        }
        if f.image.trim().is_empty() {
            return Err(format!("{}: required", key("image")));
        }
        if !f.data_path.starts_with('/') || f.data_path == "/" {
            return Err(format!("{}: an absolute path below / (got {:?})", key("data_path"), f.data_path));
        }
        let heap_env = Some(f.heap_env.clone()).filter(|h| !h.is_empty());
        let mut set: BTreeMap<String, &str> = BTreeMap::new();
        for k in f.env.keys() {
            if !env_name_ok(k) {
                return Err(format!("{}: {k:?} is not a variable name (A-Z, 0-9, _)", key("env")));
            }
            set.insert(k.clone(), "env");
        }
        let mut claim = |var: String, by: &'static str| match set.insert(var.clone(), by) {
            Some(other) => Err(format!("{}: {var} is set by both {other} and {by}", key(by))),
            None => Ok(()),
        };
        for p in f.properties.keys() {
            claim(property_env(p), "properties")?;
        }
        if let Some(h) = &heap_env {
            if !env_name_ok(h) {
                return Err(format!("{}: {h:?} is not a variable name", key("heap_env")));
            }
            claim(h.clone(), "heap_env")?;
        }
        if f.version.is_some() {
            claim("VERSION".into(), "version")?;
        }
        if f.eula {
            claim("EULA".into(), "eula")?;
        }
        if f.console == Console::Rcon {
            claim("RCON_PASSWORD".into(), "console")?;
            if f.rcon_cli.is_empty() {
                return Err(format!("{}: the RCON client's command, e.g. [\"rcon-cli\"]", key("rcon_cli")));
            }
        }
        let millicpus_per_gib = match f.cpus_per_gib {
            None => None,
            Some(c) if c.is_finite() && c > 0.0 && c <= 64.0 => Some((c * 1000.0).round() as u32),
            Some(c) => return Err(format!("{}: more than 0 and at most 64, got {c}", key("cpus_per_gib"))),
        };
        if let Some(s) = &f.stop_signal {
            if !s.starts_with("SIG") || s.len() < 5 {
                return Err(format!("{}: a signal name such as \"SIGTERM\", got {s:?}", key("stop_signal")));
            }
        }
        if let Some(c) = &f.stop_command {
            if c.trim().is_empty() || c.chars().any(char::is_control) {
                return Err(format!("{}: one console line, e.g. \"stop\"", key("stop_command")));
            }
        }
        let start_timeout = match f.start_timeout_s {
            Some(0) => return Err(format!("{}: at least 1", key("start_timeout_s"))),
            Some(s) => Some(i64::try_from(s).unwrap_or(i64::MAX / 1000).saturating_mul(1000)),
            None => None,
        };
        Ok(Template {
            stop_command: f.stop_command,
            start_timeout,
            name: name.into(),
            image: f.image,
            cmd: f.cmd,
            version: f.version,
            env: f.env,
            properties: f.properties,
            data_path: f.data_path,
            eula: f.eula,
            heap_env,
            heap_format: f.heap_format,
            memory_headroom_mib: f.memory_headroom_mib,
            millicpus_per_gib,
            console: f.console,
            rcon_cli: f.rcon_cli,
            stop_signal: f.stop_signal,
        })
    }

    /// The heap a plan of `plan_mib` gets, or why the plan is too small for this template.
    pub fn heap_mib(&self, plan_mib: u32) -> Result<Option<u32>, String> {
        if self.heap_env.is_none() {
            return Ok(None);
        }
        match plan_mib.checked_sub(self.memory_headroom_mib) {
            Some(h) if h >= MIN_HEAP_MIB => Ok(Some(h)),
            _ => Err(format!(
                "template {}: a plan of {plan_mib} MiB leaves less than {MIN_HEAP_MIB} MiB of heap beside its {} MiB headroom",
                self.name, self.memory_headroom_mib
            )),
        }
    }

    /// The container's environment for a plan (no secrets: see [`Template::secret_env`]).
    pub fn env(&self, plan_mib: u32) -> Vec<String> {
        let mut env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(self.properties.iter().map(|(k, v)| format!("{}={v}", property_env(k))));
        if let Some(v) = &self.version {
            env.push(format!("VERSION={v}"));
        }
        if self.eula {
            env.push("EULA=TRUE".into());
        }
        if let (Some(var), Ok(Some(h))) = (&self.heap_env, self.heap_mib(plan_mib)) {
            let value = match self.heap_format {
                HeapFormat::Jvm => format!("-Xms{h}M -Xmx{h}M"),
                HeapFormat::Mib => format!("{h}M"),
            };
            env.push(format!("{var}={value}"));
        }
        if self.console == Console::Rcon {
            env.push("ENABLE_RCON=true".into());
        }
        env
    }

    /// How a console command reaches this template's servers.
    pub fn console_via(&self) -> crate::driver::ConsoleVia {
        match self.console {
            Console::Stdin => crate::driver::ConsoleVia::Stdin,
            Console::Rcon => crate::driver::ConsoleVia::Exec(self.rcon_cli.clone()),
        }
    }

    /// The variable that gets a fresh random password when the container is made.
    pub fn secret_env(&self) -> Option<&'static str> {
        (self.console == Console::Rcon).then_some("RCON_PASSWORD")
    }

    /// The CPU limit of a plan, in billionths of a CPU (Docker's `NanoCpus`).
    pub fn nano_cpus(&self, plan_mib: u32) -> Option<i64> {
        self.millicpus_per_gib.map(|m| i64::from(m) * i64::from(plan_mib) * 1_000_000 / 1024)
    }
}

/// The templates a controller offers, and the one a server gets when it names none.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub by_name: BTreeMap<String, std::sync::Arc<Template>>,
    pub default: String,
}

impl Templates {
    /// Only the plain template of `image`.
    pub fn plain(image: &str, cmd: Option<Vec<String>>) -> Templates {
        let t = Template::plain(image, cmd);
        Templates { by_name: BTreeMap::from([(DEFAULT.to_owned(), std::sync::Arc::new(t))]), default: DEFAULT.into() }
    }

    /// From the config: `[controller.templates.*]` plus, when `[controller] image` is set and
    /// no template is called "default", the plain template of that image.
    pub fn from_config(
        files: &BTreeMap<String, TemplateFile>,
        image: Option<&str>,
        cmd: Option<Vec<String>>,
        default: Option<&str>,
    ) -> Result<Templates, String> {
        let mut by_name = BTreeMap::new();
        for (name, f) in files {
            by_name.insert(name.clone(), std::sync::Arc::new(Template::from_file(name, f.clone())?));
        }
        if let Some(image) = image {
            by_name.entry(DEFAULT.to_owned()).or_insert_with(|| std::sync::Arc::new(Template::plain(image, cmd)));
        }
        if by_name.is_empty() {
            return Err(
                "controller.image: required unless [controller.templates.<name>] sections name the images".into()
            );
        }
        let default = match default {
            Some(d) if by_name.contains_key(d) => d.to_owned(),
            Some(d) => {
                let known: Vec<&str> = by_name.keys().map(String::as_str).collect();
                return Err(format!(
                    "controller.default_template: {d:?} is not a template (known: {})",
                    known.join(", ")
                ));
            }
            None if by_name.contains_key(DEFAULT) => DEFAULT.to_owned(),
            None if by_name.len() == 1 => by_name.keys().next().expect("one").clone(),
            None => {
                return Err(
                    "controller.default_template: required with several templates and none called \"default\"".into()
                )
            }
        };
        Ok(Templates { by_name, default })
    }

    /// A server's template: its own if known, else the default (a template removed from the
    /// config leaves its servers on the default rather than unable to start).
    pub fn of(&self, name: Option<&str>) -> &std::sync::Arc<Template> {
        name.and_then(|n| self.by_name.get(n)).unwrap_or_else(|| &self.by_name[&self.default])
    }

    /// Checks a template name and a plan for a new or changed server.
    pub fn check(&self, name: &str, plan_mib: u32) -> Result<(), (&'static str, String)> {
        let Some(t) = self.by_name.get(name) else {
            let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            return Err((
                "unknown_template",
                format!("template {name:?} is not offered (known: {})", known.join(", ")),
            ));
        };
        t.heap_mib(plan_mib).map(|_| ()).map_err(|e| ("plan_too_small", e))
    }

    /// Every image a node needs.
    pub fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.values().map(|t| t.image.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> TemplateFile {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn the_heap_is_the_plan_less_the_headroom_and_properties_become_variables() {
        let t = Template::from_file(
            "paper",
            file(
                r#"image = "itzg/minecraft-server"
version = "1.21.4"
eula = true
properties = { "max-players" = "12", motd = "hi" }
env = { TYPE = "PAPER" }
memory_headroom_mib = 768
cpus_per_gib = 0.5
console = "rcon""#,
            ),
        )
        .unwrap();
        let env = t.env(4096);
        assert_eq!(
            env,
            vec![
                "TYPE=PAPER",
                "MAX_PLAYERS=12",
                "MOTD=hi",
                "VERSION=1.21.4",
                "EULA=TRUE",
                "JVM_OPTS=-Xms3328M -Xmx3328M",
                "ENABLE_RCON=true"
            ]
        );
        assert_eq!(t.nano_cpus(4096), Some(2_000_000_000), "half a CPU per GiB of a 4 GiB plan");
        assert_eq!(t.secret_env(), Some("RCON_PASSWORD"));
        assert!(!env.iter().any(|e| e.starts_with("RCON_PASSWORD")), "no secret in the spec");
        assert!(t.heap_mib(512).unwrap_err().contains("less than 256 MiB"));
        let mib = Template { heap_env: Some("MEMORY".into()), heap_format: HeapFormat::Mib, ..t };
        assert!(mib.env(2048).contains(&"MEMORY=1280M".to_owned()));
    }

    #[test]
    fn bad_templates_are_refused_naming_the_key() {
        let e = |text: &str| Template::from_file("t", file(text)).unwrap_err();
        assert!(e("image = \"x\"\ndata_path = \"data\"").starts_with("controller.templates.t.data_path"));
        let both = e("image = \"x\"\nenv = { JVM_OPTS = \"-Xmx1G\" }");
        assert!(both.contains("JVM_OPTS is set by both env and heap_env"), "{both}");
        assert!(e("image = \"x\"\ncpus_per_gib = 0").starts_with("controller.templates.t.cpus_per_gib"));
        assert!(e("image = \"x\"\nstop_signal = \"TERM\"").contains("SIGTERM"));
        assert!(e("image = \"x\"\nstart_timeout_s = 0").starts_with("controller.templates.t.start_timeout_s"));
        assert!(e("image = \"x\"\nstop_command = \"\"").starts_with("controller.templates.t.stop_command"));
        assert!(e("image = \"x\"\nenv = { \"bad-name\" = \"1\" }").contains("not a variable name"));
        let unknown = toml::from_str::<TemplateFile>("image = \"x\"\nheap = 1").unwrap_err().to_string();
        assert!(unknown.contains("unknown field"), "{unknown}");
    }

    #[test]
    fn the_default_is_named_or_implied_and_unknown_names_fall_back_to_it() {
        let files: BTreeMap<String, TemplateFile> =
            [("a".to_owned(), file("image = \"a\"")), ("b".to_owned(), file("image = \"b\""))].into();
        let e = Templates::from_config(&files, None, None, None).unwrap_err();
        assert!(e.starts_with("controller.default_template"), "{e}");
        let t = Templates::from_config(&files, Some("plain"), None, None).unwrap();
        assert_eq!((t.default.as_str(), t.of(Some("gone")).image.as_str()), ("default", "plain"));
        let t = Templates::from_config(&files, None, None, Some("b")).unwrap();
        assert_eq!(t.of(None).name, "b");
        assert_eq!(t.check("c", 2048).unwrap_err().0, "unknown_template");
        assert_eq!(t.check("a", 512).unwrap_err().0, "plan_too_small");
        assert!(Templates::from_config(&BTreeMap::new(), None, None, None)
            .unwrap_err()
            .starts_with("controller.image"));
    }
}
