//! Archives in a real S3-compatible server (`s3s-fs`, started by `.ci/s3.sh`, which prints
//! `CONDUCTOR_TEST_S3`): multipart uploads, read-back verification, corruption, an
//! unreachable store; and, with Podman too, a world of several GB (`CONDUCTOR_TEST_WORLD_MB`,
//! default 3072) archived from and restored into a real volume in bounded memory.

use bytes::Bytes;
use conductor_controller::archive::{archive_server, collect, restore_server, Archive, ArchiveError, S3Config};
use conductor_controller::docker::{ContainerSpec, DockerNode, Helper};
use conductor_controller::driver::{ByteStream, NodeDriver};
use conductor_controller::fake::world::{noise, tar};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Instant;

fn s3() -> Option<Archive> {
    match std::env::var("CONDUCTOR_TEST_S3") {
        Ok(endpoint) => {
            let c = S3Config {
                bucket: "conductor-test".into(),
                endpoint,
                region: "us-east-1".into(),
                access_key_env: "K".into(),
                secret_key_env: "S".into(),
            };
            let env = |k: &str| Some(if k == "K" { "conductor" } else { "conductor-secret" }.to_owned());
            Some(Archive::s3(&c, &env).unwrap())
        }
        Err(_) if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() => panic!("CONDUCTOR_TEST_S3 is required"),
        Err(_) => {
            eprintln!("skipping: set CONDUCTOR_TEST_S3 (bash .ci/s3.sh)");
            None
        }
    }
}

fn chunks(n: u64) -> ByteStream {
    Box::pin(futures_util::stream::iter(
        (0..n).map(|i| Ok(if i % 2 == 0 { noise(i) } else { Bytes::from(vec![0; 1 << 20]) })),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_round_trip_through_s3_in_parts_and_corruption_is_caught() {
    let Some(a) = s3() else { return };
    let key = format!("t{}-roundtrip.tar.zst", std::process::id());
    // 40 MiB, ~20 MiB compressed: three 8 MiB parts.
    let r = a.put_stream(&key, chunks(40)).await.unwrap();
    assert!(r.bytes > 16 << 20, "{}", r.bytes);
    a.verify(&r).await.unwrap();
    let (s, verdict) = a.open(&r).await.unwrap();
    let back = collect(s).await.unwrap();
    verdict.await.unwrap().unwrap();
    let mut want = Sha256::new();
    let mut all = chunks(40);
    while let Some(c) = all.next().await {
        want.update(c.unwrap());
    }
    assert_eq!(Sha256::digest(&back), want.finalize(), "the same world back");
    assert!(a.list().await.unwrap().iter().any(|(k, n)| k == &key && *n == r.bytes));

    // Bytes changed in the bucket: verification and the restore stream refuse them.
    let mut raw = a.read_raw(&key).await.unwrap();
    raw[1000] ^= 1;
    a.write_raw(&key, raw).await.unwrap();
    assert!(matches!(a.verify(&r).await, Err(ArchiveError::Checksum { .. })));
    let (s, verdict) = a.open(&r).await.unwrap();
    assert!(collect(s).await.is_err());
    assert!(verdict.await.unwrap().is_err());
    a.delete(&key).await.unwrap();
    a.delete(&key).await.unwrap(); // gone is fine
    assert!(matches!(a.open(&r).await, Err(ArchiveError::Io { .. })));

    // A stream that breaks mid-upload leaves nothing under the name.
    let broken: ByteStream = Box::pin(
        chunks(12)
            .take(10)
            .chain(futures_util::stream::once(async { Err(std::io::Error::other("the node went away")) })),
    );
    let key2 = format!("t{}-broken.tar.zst", std::process::id());
    assert!(a.put_stream(&key2, broken).await.is_err());
    assert!(!a.list().await.unwrap().iter().any(|(k, _)| k == &key2), "no partial archive under its name");
}

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap()
}

async fn world_sha(n: &DockerNode, id: i64) -> (String, u64) {
    let mut s = n.download_stream(id);
    let mut h = Sha256::new();
    let mut len = 0u64;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        len += c.len() as u64;
        h.update(&c);
    }
    (h.finalize().iter().map(|b| format!("{b:02x}")).collect(), len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_of_several_gb_goes_to_s3_and_back_in_bounded_memory() {
    let Some(a) = s3() else { return };
    let Ok(endpoint) = std::env::var("CONDUCTOR_TEST_DOCKER") else {
        assert!(std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err(), "CONDUCTOR_TEST_DOCKER is required");
        return;
    };
    let mb: u64 = std::env::var("CONDUCTOR_TEST_WORLD_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(3072);
    let n = DockerNode::connect(&endpoint, "127.0.0.1").unwrap();
    // One fixed id: a run that failed half-way is cleaned up by the next.
    let id = 880_001;
    let helper =
        Helper { image: "localhost/conductor-standin:test".into(), cmd: vec!["/standin".into(), "hold".into()] };
    let spec = ContainerSpec {
        server: id,
        image: "localhost/conductor-standin:test".into(),
        cmd: None,
        memory_mib: 512,
        env: vec![],
        host_port: None,
        node: None,
        ..Default::default()
    };
    NodeDriver::remove(&n, id, true).await.unwrap();
    // The world: a few files, half incompressible, half zeros, written through the driver.
    let files = vec![
        ("region.dat".to_owned(), mb / 2, true),
        ("level.dat".to_owned(), 1, true),
        ("empty-chunks.dat".to_owned(), mb - mb / 2 - 1, false),
    ];
    let t = Instant::now();
    n.write_volume(id, tar(files), &helper).await.unwrap();
    n.ensure_container(&spec).await.unwrap();
    eprintln!("world written in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (before_sha, size) = world_sha(&n, id).await;
    eprintln!("world read back in {:.1} s", t.elapsed().as_secs_f64());
    assert!(size >= mb << 20, "{size}");

    let rss_before = rss_kib("VmRSS:");
    let key = format!("s{id}-{}.tar.zst", std::process::id());
    let t = Instant::now();
    let r = archive_server(&n, &a, id, &key, &helper).await.unwrap();
    let archive_s = t.elapsed().as_secs_f64();
    assert!(n.inspect(id).await.unwrap().is_none(), "the node copy goes once verified");
    let t = Instant::now();
    restore_server(&n, &a, &spec, &r, &helper).await.unwrap();
    let restore_s = t.elapsed().as_secs_f64();
    let peak = rss_kib("VmHWM:");
    let (after_sha, _) = world_sha(&n, id).await;
    assert_eq!(after_sha, before_sha, "the restored world is the archived one, byte for byte");
    let grew_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "world {} MiB → archive {} MiB: archive {archive_s:.1} s ({:.0} MB/s), restore {restore_s:.1} s ({:.0} MB/s); peak RSS {} MiB above the start",
        size >> 20,
        r.bytes >> 20,
        size as f64 / archive_s / 1e6,
        size as f64 / restore_s / 1e6,
        grew_mib
    );
    assert!(grew_mib < 100, "memory grew {grew_mib} MiB for a {mb} MiB world");
    NodeDriver::remove(&n, id, true).await.unwrap();
    a.delete(&key).await.unwrap();
}
