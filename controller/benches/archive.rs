//! Archive and restore throughput and memory for worlds of several sizes, through the real
//! Docker API (Podman) and a real S3-compatible server (s3s-fs), compared with the physical
//! limit of this machine: `tar | zstd -3` of the same volume on the same disk, and back.
//!
//! Needs `CONDUCTOR_TEST_DOCKER` and `CONDUCTOR_TEST_S3` (`.ci/podman.sh`, `.ci/s3.sh`).
//! `cargo bench -p conductor-controller --bench archive` (`CONDUCTOR_BENCH_SIZES_GB=1,10`).
//! Worlds are half incompressible, half zeros (a region file and empty chunks).

use bytes::Bytes;
use conductor_controller::archive::{archive_server, restore_server, Archive, S3Config};
use conductor_controller::docker::{ContainerSpec, DockerNode, Helper};
use conductor_controller::driver::{ByteStream, NodeDriver};
use std::process::Command;
use std::time::Instant;

fn noise(i: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15 ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut v = vec![0u8; 1 << 20];
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    v
}

fn header(name: &str, bytes: u64) -> Bytes {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{bytes:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14712345670\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Bytes::copy_from_slice(&h)
}

/// `mib` MiB as two files: half noise, half zeros.
fn world(mib: u64) -> ByteStream {
    let half = mib / 2;
    let a = std::iter::once(header("region.dat", half << 20)).chain((0..half).map(|i| Bytes::from(noise(i))));
    let b = std::iter::once(header("empty.dat", (mib - half) << 20))
        .chain((0..mib - half).map(|_| Bytes::from(vec![0u8; 1 << 20])));
    let end = std::iter::once(Bytes::from(vec![0u8; 1024]));
    Box::pin(futures_util::stream::iter(a.chain(b).chain(end).map(Ok)))
}

fn kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap()
}

fn sh(script: &str) -> f64 {
    let t = Instant::now();
    let ok = Command::new("bash").arg("-c").arg(script).status().unwrap().success();
    assert!(ok, "{script}");
    t.elapsed().as_secs_f64()
}

fn main() {
    let (Ok(docker), Ok(endpoint)) = (std::env::var("CONDUCTOR_TEST_DOCKER"), std::env::var("CONDUCTOR_TEST_S3"))
    else {
        println!("skipped: set CONDUCTOR_TEST_DOCKER and CONDUCTOR_TEST_S3 (.ci/podman.sh, .ci/s3.sh)");
        return;
    };
    let sizes: Vec<u64> = std::env::var("CONDUCTOR_BENCH_SIZES_GB")
        .unwrap_or_else(|_| "1,10".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let n = DockerNode::connect(&docker, "127.0.0.1").unwrap();
    let c = S3Config {
        bucket: "conductor-test".into(),
        endpoint,
        region: "us-east-1".into(),
        access_key_env: "K".into(),
        secret_key_env: "S".into(),
    };
    let s3 = Archive::s3(&c, &|k| Some(if k == "K" { "conductor" } else { "conductor-secret" }.into())).unwrap();
    let helper =
        Helper { image: "localhost/conductor-standin:test".into(), cmd: vec!["/standin".into(), "hold".into()] };
    let id = 880_100;
    let spec = ContainerSpec {
        server: id,
        image: "localhost/conductor-standin:test".into(),
        cmd: None,
        memory_mib: 512,
        env: vec![],
        host_port: None,
        node: None,
    };
    let tmp = std::env::temp_dir().join("conductor-bench-archive");
    std::fs::create_dir_all(&tmp).unwrap();
    println!("| world | archive (Docker → zstd → S3, verified) | restore (S3 → Docker) | RSS growth | tar \\| zstd -3 | zstd -d \\| tar |");
    println!("|---|---|---|---|---|---|");
    for gb in sizes {
        let mib = gb * 1024;
        rt.block_on(async {
            NodeDriver::remove(&n, id, true).await.unwrap();
            n.write_volume(id, world(mib), &helper).await.unwrap();
            n.ensure_container(&spec).await.unwrap();
        });
        let mount = String::from_utf8(
            Command::new("podman")
                .args(["volume", "inspect", &format!("conductor-data-s{id}-world"), "--format", "{{.Mountpoint}}"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        // The physical limit: the same volume, the same disk, single-threaded zstd level 3.
        let out = tmp.join("w.tar.zst");
        let pack = sh(&format!("sync; tar -cf - -C {mount} . | zstd -q -3 -T1 -o {} -f", out.display()));
        let back = tmp.join("back");
        let _ = std::fs::remove_dir_all(&back);
        std::fs::create_dir_all(&back).unwrap();
        let unpack = sh(&format!("zstd -q -d -c {} | tar -xf - -C {}; sync", out.display(), back.display()));
        let _ = std::fs::remove_dir_all(&back);
        let _ = std::fs::remove_file(&out);

        if std::env::var("CONDUCTOR_BENCH_PHASES").is_ok() {
            // Where an archive's time goes: the Docker download alone, compress + upload from
            // memory-generated bytes, and the read-back check.
            rt.block_on(async {
                use futures_util::StreamExt;
                let t = Instant::now();
                let mut s = NodeDriver::download_data(&n, id).await.unwrap();
                while s.next().await.is_some() {}
                let dl = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let r = s3.put_stream("phase.tar.zst", world(mib)).await.unwrap();
                let up = t.elapsed().as_secs_f64();
                let t = Instant::now();
                s3.verify(&r).await.unwrap();
                let check = t.elapsed().as_secs_f64();
                s3.delete("phase.tar.zst").await.unwrap();
                let dir = Archive::dir(&std::env::temp_dir().join("conductor-bench-dir")).unwrap();
                let t = Instant::now();
                let r = dir.put_stream("phase.tar.zst", world(mib)).await.unwrap();
                let up_dir = t.elapsed().as_secs_f64();
                let t = Instant::now();
                dir.verify(&r).await.unwrap();
                let check_dir = t.elapsed().as_secs_f64();
                dir.delete("phase.tar.zst").await.unwrap();
                println!(
                    "phases: Docker download {dl:.1} s; zstd + upload {up:.1} s (S3), {up_dir:.1} s (directory); read-back check {check:.1} s (S3), {check_dir:.1} s (directory)"
                );
            });
        }
        let rss = kib("VmRSS:");
        let key = format!("bench-{gb}g.tar.zst");
        let t = Instant::now();
        let r = rt.block_on(archive_server(&n, &s3, id, &key)).unwrap();
        let archive = t.elapsed().as_secs_f64();
        let t = Instant::now();
        rt.block_on(restore_server(&n, &s3, &spec, &r, &helper)).unwrap();
        let restore = t.elapsed().as_secs_f64();
        let grew = kib("VmHWM:").saturating_sub(rss) / 1024;
        let mb = (mib << 20) as f64 / 1e6;
        println!(
            "| {gb} GB ({} MiB archived) | {archive:.0} s, {:.0} MB/s | {restore:.0} s, {:.0} MB/s | ≤ {grew} MiB | {pack:.0} s, {:.0} MB/s | {unpack:.0} s, {:.0} MB/s |",
            r.bytes >> 20,
            mb / archive,
            mb / restore,
            mb / pack,
            mb / unpack
        );
        rt.block_on(async {
            NodeDriver::remove(&n, id, true).await.unwrap();
            s3.delete(&key).await.unwrap();
        });
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
