//! The API's latency while a world copy runs (issue 13: must not rise above 5 ms p99 on
//! loopback). The daemon's own pieces: the axum router on a loopback listener, the engine
//! (`Live`, MemoryStore) behind its mutex, the reconcile loop (`serve::step`) every 100 ms on
//! a two-worker runtime (the machine has 2 cores), one in-memory node whose world is
//! `CONDUCTOR_BENCH_WORLD_MB` (default 256) of half-compressible bytes.
//!
//! A client asks `GET /v1/servers/{id}` (it takes the engine lock) back to back, first with
//! nothing copying, then while the stopped server's world is archived (download, zstd,
//! SHA-256, store, read-back verification), then — in the real mode — while it is restored
//! and started again, and prints p50/p99/max of each phase.
//!
//! `cargo bench -p conductor-controller --bench api_copy` (`CONDUCTOR_BENCH_WORKERS`: runtime
//! workers, default 2).
//!
//! With `CONDUCTOR_BENCH_DOCKER` (a Docker API endpoint, e.g. Podman's socket) and
//! `CONDUCTOR_BENCH_S3` (an S3-compatible endpoint, `bash .ci/s3.sh`) the world is real: it is
//! written into a volume on that engine first, read back through its archive endpoint (a
//! helper container) and stored in that S3 bucket; the rest of the node stays in memory.

use conductor_controller::api::{router, Api, ApiConfig};
use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::{ContainerInfo, ContainerSpec, Helper};
use conductor_controller::driver::{BoxFuture, ByteStream, DriverError, NodeDriver};
use conductor_controller::fake::{Clock, FakeNode, Faults, MemArchive};
use conductor_controller::live::{DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::mcping::Status;
use conductor_controller::store::{token_hash, NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::{Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token";

/// A fake node whose one world is big: the copy does the daemon's real work on real bytes,
/// generated here or read from a real Docker volume.
struct BigWorld {
    inner: Arc<FakeNode>,
    mb: usize,
    real: Option<(conductor_controller::docker::DockerNode, i64, Helper)>,
}

impl NodeDriver for BigWorld {
    fn engine(&self) -> &str {
        self.inner.engine()
    }
    fn game_host(&self) -> &str {
        self.inner.game_host()
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), DriverError>> {
        self.inner.ping()
    }
    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, DriverError>> {
        self.inner.list_managed()
    }
    fn running(&self, server: i64) -> BoxFuture<'_, Result<bool, DriverError>> {
        self.inner.running(server)
    }
    fn volumes(&self) -> BoxFuture<'_, Result<Vec<i64>, DriverError>> {
        NodeDriver::volumes(&*self.inner)
    }
    fn ensure_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<ContainerInfo, DriverError>> {
        self.inner.ensure_container(spec)
    }
    fn start(&self, server: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        self.inner.start(server)
    }
    fn stop(&self, server: i64, timeout: Duration) -> BoxFuture<'_, Result<(), DriverError>> {
        self.inner.stop(server, timeout)
    }
    fn remove(&self, server: i64, volume: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        self.inner.remove(server, volume)
    }
    fn probe(&self, server: i64) -> BoxFuture<'_, Result<Status, DriverError>> {
        self.inner.probe(server)
    }
    fn logs_tail(&self, server: i64, lines: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        self.inner.logs_tail(server, lines)
    }
    fn download_data<'a>(
        &'a self,
        _server: i64,
        _helper: &'a Helper,
    ) -> BoxFuture<'a, Result<ByteStream, DriverError>> {
        if let Some((docker, volume, helper)) = &self.real {
            return Box::pin(async move { docker.download_world(*volume, helper).await.map_err(DriverError::from) });
        }
        // Generated as it streams: the world is never in memory here either.
        let mb = self.mb;
        let chunks = futures_util::stream::iter((0..mb).map(move |i| Ok(bytes::Bytes::from(world_chunk(i)))));
        Box::pin(async move { Ok(Box::pin(chunks) as ByteStream) })
    }
    fn write_volume<'a>(&'a self, s: i64, tar: ByteStream, h: &'a Helper) -> BoxFuture<'a, Result<(), DriverError>> {
        match &self.real {
            // The restore goes into the real volume; the in-memory node only learns it exists.
            Some((docker, volume, helper)) => Box::pin(async move {
                docker.write_volume(*volume, tar, helper).await.map_err(DriverError::from)?;
                let nothing = futures_util::stream::iter(Vec::<Result<bytes::Bytes, std::io::Error>>::new());
                self.inner.write_volume(s, Box::pin(nothing), h).await
            }),
            None => self.inner.write_volume(s, tar, h),
        }
    }
}

/// One MiB of the world, half random, half zeros in 4 KiB runs: zstd works about as hard as
/// on a real world.
fn world_chunk(i: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut out = vec![0u8; 1 << 20];
    for (j, chunk) in out.chunks_mut(4096).enumerate() {
        if j % 2 == 0 {
            for b in chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }
    out
}

fn main() {
    let workers = std::env::var("CONDUCTOR_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(run());
}

fn now() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as Millis
}

async fn run() {
    let mb: usize = std::env::var("CONDUCTOR_BENCH_WORLD_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let clock = Clock::new(now());
    let fake = FakeNode::new("ded-0", clock.clone(), Faults::none(), 0);
    let real = real_world(mb).await;
    let archive = match &real {
        Some(_) => Arc::new(s3_archive()),
        None => Arc::new(MemArchive::memory()),
    };
    let node = Arc::new(BigWorld { inner: fake.clone(), mb, real });
    let kind = conductor_controller::fake::ax41();
    let vm = conductor_controller::fake::cx23();
    let store = Arc::new(MemoryStore::new());
    let t0 = now();
    let owner = store.create_owner("o", t0).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(1_000_000), "credit", t0)).await.unwrap();
    let s = NewServer {
        owner,
        name: "big".into(),
        ram_mib: 4096,
        disk_mb: mb as u64,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    let id = store.create_server(s, t0).await.unwrap().id;
    let mut scheduler = SchedulerConfig::reference(vm, 0);
    // The archive is due a second after the stop: the copy starts at once.
    scheduler.sleep_window = 1_000;
    let cfg = LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler,
        dedicated: vec![DedicatedNode { name: "ded-0".into(), kind, docker: node.clone() as Arc<dyn NodeDriver> }],
        cloud: None,
        idle_timeout: 300_000,
        stop_timeout: Duration::from_secs(10),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: archive.clone(),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing::default(),
    };
    let live = Arc::new(tokio::sync::Mutex::new(Live::start(store.clone(), cfg, t0).await.unwrap()));
    let api = Arc::new(Api {
        store: store.clone(),
        config: ApiConfig {
            admin_token_sha256: token_hash(ADMIN),
            max_plan_mib: 60 * 1024,
            now: Box::new(now),
            prices: Default::default(),
            stripe_secret: None,
            warn_before: 86_400_000,
        },
        live: Some(live.clone()),
        routes: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await.unwrap() });
    let looping = live.clone();
    let clock2 = clock.clone();
    tokio::spawn(async move {
        loop {
            clock2.set(now());
            conductor_controller::serve::step(&looping, now()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/servers/{id}");
    let get = || async {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap();
        t.elapsed()
    };
    live.lock().await.request_start(id, now()).await.unwrap();
    wait_for(&live, id, |s| matches!(s, conductor_core::Residence::Running { .. })).await;

    let baseline: Vec<Duration> = {
        let mut v = Vec::new();
        for _ in 0..3000 {
            v.push(get().await);
        }
        v
    };
    let rss_before = rss_kib("VmRSS:") / 1024;
    live.lock().await.request_stop(id, now()).await.unwrap();
    // The copy runs from the step after the archive is due until the world is in the store.
    let started = Instant::now();
    let mut during = Vec::new();
    while fake.volumes().contains_key(&id) {
        during.push(get().await);
        assert!(started.elapsed() < Duration::from_secs(600), "the archive never finished");
    }
    let copy = started.elapsed();
    assert!(
        matches!(live.lock().await.core().residence(conductor_core::ServerId(0)), conductor_core::Residence::Archived),
        "the world ends in the archive"
    );
    // The first ~second is the sleep window before the archive is due: not part of the copy.
    let skip = during.iter().scan(Duration::ZERO, |t, d| {
        *t += *d;
        Some(*t)
    });
    let from = skip.take_while(|t| *t < Duration::from_millis(1_200)).count();
    let during = during.split_off(from.min(during.len()));
    let mut restore = None;
    if node.real.is_some() {
        // Back: S3 → the real volume (the node's copy was removed with the archive).
        let started = Instant::now();
        live.lock().await.request_start(id, now()).await.unwrap();
        let mut during = Vec::new();
        while !matches!(
            live.lock().await.core().residence(conductor_core::ServerId(0)),
            conductor_core::Residence::Running { .. }
        ) {
            during.push(get().await);
            assert!(started.elapsed() < Duration::from_secs(900), "the restore never finished");
        }
        restore = Some((started.elapsed(), during));
    }
    let at = if node.real.is_some() { "real Docker volume → S3" } else { "in memory" };
    println!(
        "world {mb} MiB ({at}); archive (stop → world in the store, node copy removed) {:.1} s",
        copy.as_secs_f64()
    );
    println!("peak RSS {} MiB ({rss_before} MiB before the archive)", rss_kib("VmHWM:") / 1024);
    if let Some((docker, volume, _)) = &node.real {
        NodeDriver::remove(docker, *volume, true).await.unwrap();
        // The server's archive and backups in the shared bucket go too.
        for (key, _) in archive.list().await.unwrap() {
            if key.starts_with(&format!("s{id}-")) || key.starts_with(&format!("b{id}-")) {
                archive.delete(&key).await.unwrap();
            }
        }
    }
    report("GET /v1/servers/{id}, nothing copying", baseline);
    report("GET /v1/servers/{id}, during the copy ", during);
    if let Some((took, during)) = restore {
        println!("restore (start → running from the archive) {:.1} s", took.as_secs_f64());
        report("GET /v1/servers/{id}, during the restore", during);
    }
}

/// The world of the real mode: `mb` MiB (half incompressible) written into a volume of the
/// engine at `CONDUCTOR_BENCH_DOCKER`, when both it and `CONDUCTOR_BENCH_S3` are set.
async fn real_world(mb: usize) -> Option<(conductor_controller::docker::DockerNode, i64, Helper)> {
    let endpoint = std::env::var("CONDUCTOR_BENCH_DOCKER").ok()?;
    std::env::var("CONDUCTOR_BENCH_S3").ok()?;
    let docker = conductor_controller::docker::DockerNode::connect(&endpoint, "127.0.0.1").unwrap();
    let helper =
        Helper { image: "localhost/conductor-standin:test".into(), cmd: vec!["/standin".into(), "hold".into()] };
    // One fixed id: what a broken run left is removed by the next.
    let volume = 880_201;
    NodeDriver::remove(&docker, volume, true).await.unwrap();
    let mb = mb as u64;
    let files = vec![
        ("region.dat".to_owned(), mb / 2, true),
        ("level.dat".to_owned(), 1, true),
        ("empty-chunks.dat".to_owned(), mb - mb / 2 - 1, false),
    ];
    let t = Instant::now();
    docker.write_volume(volume, conductor_controller::fake::world::tar(files), &helper).await.unwrap();
    println!("world of {mb} MiB written into volume {volume} in {:.1} s", t.elapsed().as_secs_f64());
    Some((docker, volume, helper))
}

fn s3_archive() -> conductor_controller::archive::Archive {
    let c = conductor_controller::archive::S3Config {
        bucket: "conductor-test".into(),
        endpoint: std::env::var("CONDUCTOR_BENCH_S3").unwrap(),
        region: "us-east-1".into(),
        access_key_env: "K".into(),
        secret_key_env: "S".into(),
    };
    let env = |k: &str| Some(if k == "K" { "conductor" } else { "conductor-secret" }.to_owned());
    conductor_controller::archive::Archive::s3(&c, &env).unwrap()
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn wait_for(
    live: &tokio::sync::Mutex<Live<MemoryStore>>,
    _id: i64,
    ok: impl Fn(conductor_core::Residence) -> bool,
) {
    for _ in 0..200 {
        if ok(live.lock().await.core().residence(conductor_core::ServerId(0))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never got there");
}

fn report(what: &str, mut v: Vec<Duration>) {
    assert!(!v.is_empty(), "{what}: no requests");
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    println!(
        "{what}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        p(0.5),
        p(0.99),
        ms(v[v.len() - 1])
    );
}
