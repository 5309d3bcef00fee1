//! `conductor serve` killed (SIGKILL) in the middle of an archive upload and in the middle of
//! a restore, on PostgreSQL and Podman with a world of 1 GiB: after each restart the copy is
//! done again from the start — never a half archive taken for a whole one — and the world
//! that comes back is the one that was archived.
//!
//! Needs `CONDUCTOR_TEST_PG` and `CONDUCTOR_TEST_DOCKER`; skipped otherwise, except under
//! `CONDUCTOR_REQUIRE_SERVICES`.

mod common;

use common::daemons::*;
use conductor_controller::docker::{DockerNode, Helper};
use conductor_controller::driver::{ByteStream, NodeDriver};
use conductor_controller::fake::world::{noise, tar};
use conductor_controller::store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

const ADMIN: &str = "copies-admin-token-123";
const IMAGE: &str = "localhost/conductor-standin:test";
const FIRST_ID: i64 = 7100;

/// A tar of one incompressible file of `mib` MiB.
fn region(mib: u64) -> ByteStream {
    tar(vec![("region.dat".into(), mib, true)])
}

/// SHA-256 of one file's contents in a tar stream (ustar; Docker names it `data/…`).
async fn file_sha(mut tar: ByteStream, name: &str) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    use sha2::Digest;
    let mut buf: Vec<u8> = Vec::new();
    // Ensures `n` bytes are buffered; false at the end of the stream.
    macro_rules! fill {
        ($n:expr) => {
            while buf.len() < $n {
                match tar.next().await {
                    Some(c) => buf.extend_from_slice(&c.ok()?),
                    None => break,
                }
            }
        };
    }
    loop {
        fill!(512);
        if buf.len() < 512 {
            return None;
        }
        let h: Vec<u8> = buf.drain(..512).collect();
        if h.iter().all(|&b| b == 0) {
            return None;
        }
        let entry = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_owned();
        let size =
            u64::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim_matches(|c| c == '\0' || c == ' '), 8)
                .ok()?;
        let hit = entry == name || entry.ends_with(&format!("/{name}"));
        let mut hash = sha2::Sha256::new();
        let mut left = size;
        while left > 0 {
            fill!(1);
            if buf.is_empty() {
                return None;
            }
            let take = (left as usize).min(buf.len());
            if hit {
                hash.update(&buf[..take]);
            }
            buf.drain(..take);
            left -= take as u64;
        }
        if hit {
            return Some(hash.finalize().to_vec());
        }
        let pad = ((512 - size % 512) % 512) as usize;
        fill!(pad);
        buf.drain(..pad.min(buf.len()));
    }
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn a_daemon_killed_mid_upload_and_mid_restore_redoes_the_copy_and_the_world_comes_back() {
    let (Ok(admin_url), Ok(docker_endpoint)) =
        (std::env::var("CONDUCTOR_TEST_PG"), std::env::var("CONDUCTOR_TEST_DOCKER"))
    else {
        assert!(std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err(), "services are required");
        eprintln!("skipping: set CONDUCTOR_TEST_PG and CONDUCTOR_TEST_DOCKER");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("conductor-copies-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("archive");
    let log = dir.join("daemon.log");
    let (url, store) = fresh_db(&rt, &admin_url, &format!("conductor_copies_{pid}"), FIRST_ID);
    let docker = DockerNode::connect(&docker_endpoint, "127.0.0.1").unwrap();
    for id in FIRST_ID..FIRST_ID + 3 {
        rt.block_on(NodeDriver::remove(&docker, id, true)).unwrap();
    }
    let api = free_port();
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!(
        r#"catalogue = "{root}/scenarios/catalogue.toml"

[controller]
database = "{url}"
listen = "127.0.0.1:{api}"
admin_token = "{ADMIN}"
tick_s = 1
archive_dir = "{archive}"
image = "{IMAGE}"
stop_timeout_s = 5

[[controller.node]]
name = "ded-1"
docker = "{docker_endpoint}"

[[fleet.dedicated]]
type = "AX41"
count = 1

[lifecycle]
sleep_window_h = 0.008

[policy]
kind = "fixed"

[prices]
promo_credit_eur = 5
"#,
        archive = archive.display(),
    );
    let file = dir.join("controller.toml");
    std::fs::write(&file, config).unwrap();
    let serve = ["serve", "--config", file.to_str().unwrap()];
    let daemon = spawn(&serve, &log);
    wait_healthy(api, &log);
    let (_, owner) = http(api, "POST", "/v1/owners", ADMIN, r#"{"name":"copier"}"#);
    let token = owner["token"].as_str().unwrap().to_owned();
    let (status, s) = http(api, "POST", "/v1/servers", &token, r#"{"name":"big","ram_mib":512,"pay_per_use":false}"#);
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_i64().unwrap();
    http(api, "POST", &format!("/v1/servers/{id}/start"), &token, "");
    wait_state(api, &token, id, "running", Duration::from_secs(60), &log);
    http(api, "POST", &format!("/v1/servers/{id}/stop"), &token, "");
    wait_state(api, &token, id, "sleeping", Duration::from_secs(60), &log);
    // While it sleeps (its archive is due 29 s after the stop), its world grows to 1 GiB.
    let helper = Helper { image: IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] };
    rt.block_on(docker.write_volume(id, region(1024), &helper)).unwrap();
    let saves = |s: &str| {
        s.split("\"saves\":").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
    };

    // 1. Killed while the archive uploads: a staged file, no archive under its name.
    let t = Instant::now();
    let staged = loop {
        let f = files(&archive);
        // The archive's (`s<id>-…`), not the stop's backup (`b<id>-…`, a small world then).
        if let Some(s) = f.iter().find(|n| n.starts_with('s') && n.contains('#')) {
            break s.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the archive never started:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(daemon);
    let archived = |n: &String| n.starts_with('s') && n.ends_with(".tar.zst");
    assert!(!files(&archive).iter().any(archived), "a half archive under a real name: {staged}");
    let daemon = spawn(&serve, &log);
    wait_healthy(api, &log);
    wait_state(api, &token, id, "archived", Duration::from_secs(180), &log);
    let events = rt.block_on(store.events(0, 100_000)).unwrap();
    let done: Vec<_> = events.iter().filter(|e| e.kind == conductor_controller::events::SERVER_ARCHIVED).collect();
    assert_eq!(done.len(), 1, "archived once");
    let key = done[0].data["archive"].as_str().unwrap();
    let (object, _) = conductor_controller::archive::object_of(key);
    let bytes = std::fs::read(archive.join(&object)).unwrap();
    assert_eq!(conductor_controller::archive::sha256_hex(&bytes), done[0].data["sha256"].as_str().unwrap());
    assert!(bytes.len() > 900 << 20, "the whole world: {} bytes", bytes.len());
    assert!(!files(&archive).iter().any(|n| n.contains('#')), "the staged part of the killed upload was removed");
    assert!(std::fs::read_to_string(&log).unwrap().contains("removed the staged part of an unfinished upload"));
    assert!(!rt.block_on(docker.volumes()).unwrap().contains(&id), "the node copy went once verified");
    assert!(
        events.iter().any(|e| e.kind == conductor_controller::events::INTENT_RESUMED),
        "the interrupted archive was resumed"
    );

    // 2. Killed while the world is restored: the helper container that writes the volume runs.
    http(api, "POST", &format!("/v1/servers/{id}/start"), &token, "");
    let t = Instant::now();
    loop {
        let helper_up = std::process::Command::new("podman")
            .args(["container", "exists", &format!("conductor-helper-s{id}")])
            .status()
            .is_ok_and(|s| s.success());
        if helper_up {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the restore never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(daemon);
    let _daemon = spawn(&serve, &log);
    wait_healthy(api, &log);
    wait_state(api, &token, id, "running", Duration::from_secs(180), &log);
    // The world is the archived one: its save counter (2 stops so far: one save each) and
    // the 1 GiB region file, byte for byte.
    let status = rt.block_on(docker.probe(id)).unwrap();
    assert_eq!(saves(&status.raw), Some(1), "{}", status.raw);
    let restored = rt.block_on(file_sha(docker.download_stream(id), "region.dat"));
    let expected = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for i in 0..1024 {
            h.update(noise(i));
        }
        h.finalize().to_vec()
    };
    assert_eq!(restored, Some(expected), "region.dat came back byte for byte");
    http(api, "POST", &format!("/v1/servers/{id}/stop"), &token, "");
    wait_state(api, &token, id, "sleeping", Duration::from_secs(60), &log);
    let _ = std::fs::remove_dir_all(&dir);
    rt.block_on(NodeDriver::remove(&docker, id, true)).unwrap();
}
