//! `conductor serve`: connect to PostgreSQL (migrations run), wait to be the acting instance
//! (advisory lock; a second instance is a standby), build the drivers, start the live engine,
//! serve the HTTP API and run the reconcile loop every `tick_s`.

use crate::api::{router, Api, ApiConfig};
use crate::archive::Archive;
use crate::billing::BillingSetup;
use crate::cloud::{CloudConfig, HetznerCloud};
use crate::config::ControllerConfig;
use crate::docker::{DockerNode, Helper};
use crate::driver::NodeDriver;
use crate::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig};
use crate::store::token_hash;
use crate::PgStore;
use conductor_core::Millis;
use std::sync::Arc;
use std::time::Duration;

/// The advisory lock key of the acting controller.
pub const LEADER_KEY: i64 = 0x636f6e64; // "cond"

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn now() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// The live engine's configuration from `controller.toml`: the drivers (not contacted yet)
/// and the scheduler the twin would build from the same scenario sections.
pub fn live_config(cfg: &ControllerConfig) -> Result<LiveConfig, BoxError> {
    let c = &cfg.controller;
    let default_template = cfg.templates.of(None).clone();
    let helper_image = cfg.helper_image();
    let mut dedicated = Vec::new();
    for (node, kind) in c.node.iter().zip(&cfg.shared.dedicated) {
        let mut d = DockerNode::connect_with(&node.docker, node.game_host(), &node.access())?;
        if let Some(ip) = &node.game_bind {
            d.publish_ip = ip.clone();
        }
        let docker: Arc<dyn NodeDriver> = Arc::new(d);
        dedicated.push(DedicatedNode { name: node.name.clone(), kind: kind.clone(), docker });
    }
    let cloud = match (&c.cloud, &cfg.cloud_token) {
        (Some(cc), Some(token)) => {
            // Two attempts a call: the engine retries with its own backoff, outside any lock.
            let knobs = CloudConfig { requests_per_s: cc.requests_per_s, max_attempts: 2, ..CloudConfig::default() };
            let client = HetznerCloud::new(token, cc.base_url.as_deref(), knobs).with_network(cc.network.clone());
            let (user_data, docker_for_vm, bootstrap_marker) = match (&cc.vm_docker, &cfg.pki, &cfg.cloud_init) {
                (Some(endpoint), _, _) => {
                    let host = cc.vm_host.as_deref().unwrap_or("127.0.0.1");
                    let shared: Arc<dyn NodeDriver> = Arc::new(DockerNode::connect(endpoint, host)?);
                    let for_vm: crate::live::DockerForVm = Box::new(move |_, _| Ok(shared.clone()));
                    (CloudSetup::fixed_user_data(cc.user_data.clone()), for_vm, false)
                }
                (None, Some(pki), Some(template)) => {
                    let images = cfg.images();
                    vm_access(pki.clone(), template.clone(), cc, images)?
                }
                _ => return Err("controller.cloud: vm_docker or [controller.pki] is required".into()),
            };
            Some(CloudSetup {
                client: Arc::new(client),
                cluster: cc.cluster.clone(),
                // `snapshot:<id or labels>`: the cloud driver resolves it at each create.
                image: cc.image.clone(),
                location: cc.location.clone(),
                user_data,
                docker_for_vm,
                bootstrap_marker,
            })
        }
        _ => None,
    };
    let helper = Helper {
        image: helper_image.clone(),
        cmd: c.helper_cmd.clone().unwrap_or_else(|| vec!["/standin".into(), "hold".into()]),
    };
    let joining = crate::live::Joining {
        types: cfg.shared.catalogue.dedicated.clone(),
        connect: match &cfg.pki {
            Some(pki) => Some(join_access(pki.clone())?),
            None => None,
        },
        answer_within: Duration::from_secs(10),
        pki: cfg.pki.clone(),
    };
    Ok(LiveConfig {
        forecast: cfg.forecast.clone(),
        jobs: c.jobs.setup()?,
        joining,
        worlds: c.worlds(),
        game: crate::live::GameAccess {
            port_base: c.game_port_base,
            boot: cfg.shared.lifecycle.boot.planning_value(),
            restore_mb_per_s: cfg.shared.lifecycle.restore_mb_per_s,
        },
        scheduler: cfg.shared.scheduler.clone(),
        dedicated,
        cloud,
        idle_timeout: cfg.shared.lifecycle.idle_timeout,
        stop_timeout: Duration::from_secs(c.stop_timeout_s),
        templates: cfg.templates.clone(),
        image: default_template.image.clone(),
        cmd: default_template.cmd.clone(),
        helper,
        archive: Arc::new(match &c.archive_s3 {
            Some(s3) => Archive::s3(s3, &|k| std::env::var(k).ok())?,
            None => Archive::dir(&c.archive_dir)?,
        }),
        mode: c.mode,
        billing: BillingSetup {
            prices: cfg.shared.prices.clone(),
            window: c.billing_window_s as Millis * 1000,
            warn_before: (c.warn_hours * 3_600_000.0).round() as Millis,
            webhook: c.warn_webhook.clone(),
            promo_expiry: c.promo_expiry_days.map(|d| Millis::from(d) * conductor_core::time::DAY),
        },
        healing: Healing {
            start_timeout: c.start_timeout_s as Millis * 1000,
            crash_grace: c.crash_grace_s as Millis * 1000,
            unreachable_after: c.unreachable_after_s as Millis * 1000,
            vm_ready_timeout: c.vm_ready_timeout_s as Millis * 1000,
            gc_grace: c.gc_grace_s as Millis * 1000,
            stale_after: c.stale_after_s as Millis * 1000,
            ops_webhook: c.ops_webhook.clone(),
            seed: cfg.shared.seed,
            max_copies: c.max_copies,
            ..Healing::default()
        },
    })
}

/// Per-VM mode: each VM boots the cloud-init `template` with an engine certificate issued
/// for it, and is reached at `address:docker_port` with the controller's client certificate
/// (issued once per start), checking the engine's certificate names that VM.
pub fn vm_access(
    pki: Arc<crate::pki::Pki>,
    (template_name, template): (String, String),
    cc: &crate::config::CloudConfigFile,
    images: Vec<String>,
) -> Result<(crate::live::UserData, crate::live::DockerForVm, bool), BoxError> {
    use crate::pki::{vm_server_name, Role};
    let now_s = now() / 1000;
    let client = pki.issue("controller.conductor", Role::Client, now_s, 365)?;
    let (port, days) = (cc.docker_port, cc.certificate_days);
    let (controller_cidrs, gateway_cidrs) = (cc.controller_cidrs.clone(), cc.gateway_cidrs.clone());
    let issuing = pki.clone();
    // The template must render before any VM is asked for.
    crate::bootstrap::render(
        &template_name,
        &template,
        &crate::bootstrap::Vars {
            ca_pem: pki.ca_pem().into(),
            cert_pem: String::new(),
            key_pem: crate::pki::Secret::new(String::new()),
            docker_port: port,
            controller_cidrs: controller_cidrs.clone(),
            gateway_cidrs: gateway_cidrs.clone(),
            images: images.clone(),
        },
    )?;
    let user_data: crate::live::UserData = Box::new(move |name| {
        let issued =
            issuing.issue(&vm_server_name(name), Role::Server, now() / 1000, days).map_err(|e| e.to_string())?;
        let vars = crate::bootstrap::Vars {
            ca_pem: issuing.ca_pem().into(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            docker_port: port,
            controller_cidrs: controller_cidrs.clone(),
            gateway_cidrs: gateway_cidrs.clone(),
            images: images.clone(),
        };
        let text = crate::bootstrap::render(&template_name, &template, &vars).map_err(|e| e.to_string())?;
        Ok(Some(text.expose().to_owned()))
    });
    let docker_for_vm: crate::live::DockerForVm = Box::new(move |name, address| {
        let id = pki.client(&client, Some(vm_server_name(name)));
        let node = DockerNode::connect_tls(&format!("{address}:{port}"), address, &id).map_err(|e| e.to_string())?;
        Ok(Arc::new(node) as Arc<dyn NodeDriver>)
    });
    Ok((user_data, docker_for_vm, true))
}

/// Nodes that join through the API are reached over mutual TLS with the controller's client
/// certificate, and their engine must present a certificate of the fleet CA naming them
/// (`POST /v1/nodes/certificates` issues it).
pub fn join_access(pki: Arc<crate::pki::Pki>) -> Result<crate::live::JoinNode, BoxError> {
    let client = pki.issue("controller.conductor", crate::pki::Role::Client, now() / 1000, 365)?;
    Ok(Arc::new(move |name: &str, address: &str, host: &str| {
        let id = pki.client(&client, Some(crate::live::node_server_name(name)));
        let node = DockerNode::connect_tls(address, host, &id).map_err(|e| e.to_string())?;
        Ok(Arc::new(node) as Arc<dyn NodeDriver>)
    }))
}

pub async fn serve(cfg: ControllerConfig) -> Result<(), BoxError> {
    let c = &cfg.controller;
    let store = Arc::new(PgStore::connect(&c.database).await?);
    eprintln!("conductor: store ready (migrations applied)");
    let _leader =
        store.lead(LEADER_KEY, || eprintln!("conductor: another instance acts; waiting as a standby")).await?;
    eprintln!("conductor: acting instance");

    // No node or cloud is contacted before the engine runs: one that does not answer
    // starts as unreachable (its dead timer runs) and the rest of the fleet works.
    let live_cfg = live_config(&cfg)?;
    // Uploads a killed predecessor left half done are redone by their intents: their
    // staged parts go (nothing uploads before the engine runs).
    for name in live_cfg.archive.remove_partial_uploads()? {
        eprintln!("conductor: removed the staged part of an unfinished upload: {name}");
    }
    let live = Arc::new(tokio::sync::Mutex::new(Live::start(store.clone(), live_cfg, now()).await?));
    eprintln!("conductor: state adopted; mode {:?}", c.mode);

    let max_plan_mib = cfg
        .shared
        .dedicated
        .iter()
        .map(|d| d.usable_mib())
        .chain(cfg.shared.cloud.as_ref().map(|v| v.usable_mib()))
        .max()
        .unwrap_or(0);
    let api = Arc::new(Api {
        store: store.clone(),
        config: ApiConfig {
            admin_token_sha256: token_hash(&cfg.admin_token),
            max_plan_mib,
            now: Box::new(now),
            prices: cfg.shared.prices.clone(),
            stripe_secret: cfg.stripe_secret.clone(),
            warn_before: (c.warn_hours * 3_600_000.0).round() as Millis,
        },
        live: Some(live.clone()),
        routes: Default::default(),
    });
    let listener =
        tokio::net::TcpListener::bind(&c.listen).await.map_err(|e| format!("listening on {}: {e}", c.listen))?;
    eprintln!("conductor: API on http://{}/v1 (health: /healthz)", listener.local_addr()?);

    let tick = Duration::from_secs(c.tick_s.max(1));
    let looping = api.clone();
    let looping_forecast = cfg.forecast.clone();
    if let Some(f) = &cfg.forecast {
        eprintln!(
            "conductor: nightly forecast at {:02}:{:02} {} from the last {} days of the event log",
            f.at.0,
            f.at.1,
            f.timezone,
            f.window / conductor_core::time::DAY
        );
    }
    // SIGHUP: the file is read again; policy modes apply at once, the rest at a restart.
    let reloading = live.clone();
    let (file, running) = (cfg.file.clone(), fingerprint(&cfg));
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match ControllerConfig::load(&file) {
                Err(e) => {
                    eprintln!("conductor: SIGHUP: {e}; the running configuration stays");
                    if let Err(e) = reloading.lock().await.reload_failed(&e.to_string(), now()).await {
                        eprintln!("conductor: recording the failed reload: {e}");
                    }
                }
                Ok(new) => {
                    let print = fingerprint(&new);
                    let changed =
                        print.iter().zip(&running).filter(|(a, b)| a != b).map(|(a, _)| a.0.to_owned()).collect();
                    match reloading.lock().await.reload(&new.shared.scheduler, changed, now()).await {
                        Ok(r) => eprintln!(
                            "conductor: SIGHUP: {} read again; policies switched {:?}; at the next start: {:?}",
                            file.display(),
                            r.switched,
                            r.restart_needed
                        ),
                        Err(e) => eprintln!("conductor: SIGHUP: {e}"),
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut forecast_failure = None;
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let started = std::time::Instant::now();
            if let Err(e) = step(&live, now()).await {
                // A failed step (the store) is retried at the next tick: the loop is
                // level-triggered and intents are durable.
                eprintln!("conductor: reconcile step failed: {e}");
            }
            live.lock().await.record_tick(started.elapsed());
            if let Some(setup) = &looping_forecast {
                if let Err(e) =
                    crate::forecasting::step(&*looping.store, &live, setup, &mut forecast_failure, now()).await
                {
                    eprintln!("conductor: nightly forecast: {e}");
                }
            }
            // The gateways follow restores, moves and stops within a step.
            if let Err(e) = looping.routes.refresh(&looping).await {
                eprintln!("conductor: refreshing routes: {}", e.message());
            }
        }
    });
    axum::serve(listener, router(api)).await?;
    Ok(())
}

/// The parts of a configuration a reload compares (besides the policies, which `reload`
/// compares itself), by name.
fn fingerprint(cfg: &ControllerConfig) -> Vec<(&'static str, String)> {
    let s = &cfg.shared;
    vec![
        ("fleet", format!("{:?} {:?} {:?}", s.dedicated, s.cloud, s.image)),
        ("lifecycle", format!("{:?}", s.lifecycle)),
        ("prices", format!("{:?}", s.prices)),
        ("controller", format!("{:?}", cfg.controller)),
    ]
}

/// One step of the loop with the engine locked only for its two short phases: the driver
/// calls (heartbeats, listings, intents) run while the API can use the engine.
pub async fn step<S: crate::Store + 'static>(
    live: &tokio::sync::Mutex<Live<S>>,
    now: Millis,
) -> Result<(), crate::live::LiveError> {
    let work = live.lock().await.prepare(now).await?;
    let done = work.run().await;
    live.lock().await.finish(now, done).await
}
