//! Archives of servers' worlds (SPEC §6): the tar of `/data` streamed from the node's Docker
//! API, compressed (zstd; archives made before are gzip), hashed (SHA-256) and uploaded in
//! parts to an object store — a directory (a mounted storage box) or S3-compatible object
//! storage, both through `object_store`. Memory stays bounded whatever the world's size: a
//! few chunks in flight and the upload's parts. Compression, decompression and hashing run on
//! blocking threads, never on the runtime's workers (the API keeps answering).
//!
//! An upload becomes visible under its name only when complete (a directory store renames a
//! staged file, S3 completes a multipart upload), so a crash never leaves half an archive
//! taken for a whole one: the intent is carried out again from the start. An archive is read
//! back and verified before the node copy is deleted, and its checksum is checked while a
//! restore streams it — a mismatch fails the restore before the world is used.

use crate::docker::{ContainerSpec, Helper};
use crate::driver::{ByteStream, DriverError, NodeDriver};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {key}: {message}")]
    Io { key: String, message: String },
    #[error("archive {key}: checksum mismatch (expected {expected}, found {found})")]
    Checksum { key: String, expected: String, found: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl From<ArchiveError> for DriverError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Driver(d) => d,
            // A store that failed may work later; bytes that do not match never will.
            e @ ArchiveError::Io { .. } => DriverError::transient(e.to_string()),
            e @ ArchiveError::Checksum { .. } => DriverError::permanent(e.to_string()),
        }
    }
}

/// Where an archive is and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveRef {
    pub key: String,
    pub sha256: String,
    /// Stored (compressed) bytes.
    pub bytes: u64,
    /// The world's tar before compression: its measured size (0 where unknown: older
    /// archives).
    #[serde(default)]
    pub world_bytes: u64,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// How an archive's bytes are compressed, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    /// Archives made before zstd (their keys have no extension: stored as `<key>.tar.gz`).
    Gzip,
}

/// The object an archive key names, and its codec.
pub fn object_of(key: &str) -> (String, Codec) {
    if key.ends_with(".tar.zst") {
        (key.to_owned(), Codec::Zstd)
    } else if key.ends_with(".tar.gz") {
        (key.to_owned(), Codec::Gzip)
    } else {
        (format!("{key}.tar.gz"), Codec::Gzip)
    }
}

/// An S3-compatible bucket (`[controller.archive_s3]`); the keys come from the environment.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// `https://fsn1.your-objectstorage.com`, or `http://127.0.0.1:9000` for a local server.
    pub endpoint: String,
    #[serde(default = "region")]
    pub region: String,
    /// Environment variables holding the access key id and the secret.
    #[serde(default = "key_env")]
    pub access_key_env: String,
    #[serde(default = "secret_env")]
    pub secret_key_env: String,
}

fn region() -> String {
    "us-east-1".into()
}
fn key_env() -> String {
    "CONDUCTOR_S3_ACCESS_KEY".into()
}
fn secret_env() -> String {
    "CONDUCTOR_S3_SECRET_KEY".into()
}

/// Somewhere to keep archives: any `object_store` store.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// What it is, for messages (`dir:/…`, `s3://bucket`, `memory`).
    pub what: String,
    /// Upload part size (S3 wants ≥ 5 MiB) and parts in flight at most.
    part: usize,
    parts_in_flight: usize,
    /// zstd level of new archives.
    level: i32,
    /// The directory of a directory store (its staged uploads can be found there).
    root: Option<std::path::PathBuf>,
}

/// Whether a restored stream was the archive it claims (known once the stream ended).
pub type Verdict = tokio::task::JoinHandle<io::Result<()>>;

/// Bytes in flight between the stages of a pipeline (chunks of up to 256 KiB).
const CHANNEL: usize = 8;
const CHUNK: usize = 256 * 1024;

impl Archive {
    pub fn new(store: Arc<dyn ObjectStore>, what: impl Into<String>) -> Archive {
        Archive { store, what: what.into(), part: 8 << 20, parts_in_flight: 2, level: 3, root: None }
    }

    /// A directory (created if missing).
    pub fn dir(root: &std::path::Path) -> Result<Archive, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("archive directory {}: {e}", root.display()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| format!("archive directory {}: {e}", root.display()))?;
        let mut a = Archive::new(Arc::new(fs), format!("dir:{}", root.display()));
        a.root = Some(root.to_path_buf());
        Ok(a)
    }

    pub fn memory() -> Archive {
        Archive::new(Arc::new(object_store::memory::InMemory::new()), "memory")
    }

    /// An S3-compatible bucket; `env` looks up the credentials' variables.
    pub fn s3(c: &S3Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Archive, String> {
        let key = env(&c.access_key_env).ok_or_else(|| format!("archive_s3: {} is not set", c.access_key_env))?;
        let secret = env(&c.secret_key_env).ok_or_else(|| format!("archive_s3: {} is not set", c.secret_key_env))?;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_endpoint(&c.endpoint)
            .with_region(&c.region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            // A world's transfer takes as long as it takes (the engine's data timeout bounds
            // it); connecting does not.
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(c.endpoint.starts_with("http://"))
                    .with_timeout(std::time::Duration::from_secs(3600))
                    .with_connect_timeout(std::time::Duration::from_secs(10)),
            )
            // The engine retries on its own schedule: the client gives up sooner.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .build()
            .map_err(|e| format!("archive_s3: {e}"))?;
        Ok(Archive::new(Arc::new(s3), format!("s3://{}", c.bucket)))
    }

    fn io(key: &str, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Io { key: key.into(), message: e.to_string() }
    }

    /// Compresses a tar stream and uploads it as `key` (`….tar.zst`); visible only once whole.
    pub async fn put_stream(&self, key: &str, tar: ByteStream) -> Result<ArchiveRef, ArchiveError> {
        let (path, codec) = object_of(key);
        if codec != Codec::Zstd {
            return Err(Self::io(key, "new archives are .tar.zst"));
        }
        let level = self.level;
        let (mut compressed, done) = pipe(tar, move |r, w| {
            let mut hashed = HashWriter { inner: w, hash: Sha256::new(), bytes: 0 };
            let mut enc = zstd::stream::write::Encoder::new(&mut hashed, level)?;
            let world = io::copy(r, &mut enc)?;
            enc.finish()?;
            Ok((hex(&hashed.hash.finalize()), hashed.bytes, world))
        });
        let upload = self.store.put_multipart(&ObjectPath::from(path.as_str())).await.map_err(|e| Self::io(key, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, self.part);
        let mut failed = None;
        while let Some(chunk) = compressed.next().await {
            match chunk {
                Ok(b) => {
                    if let Err(e) = w.wait_for_capacity(self.parts_in_flight).await {
                        failed = Some(Self::io(key, e));
                        break;
                    }
                    w.write(&b);
                }
                Err(e) => {
                    failed = Some(Self::io(key, e));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let _ = w.abort().await;
            drop(compressed);
            let _ = done.await;
            return Err(e);
        }
        let (sha256, bytes, world_bytes) = match done.await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let _ = w.abort().await;
                return Err(Self::io(key, e));
            }
            Err(e) => {
                let _ = w.abort().await;
                return Err(Self::io(key, e));
            }
        };
        w.finish().await.map_err(|e| Self::io(key, e))?;
        Ok(ArchiveRef { key: key.into(), sha256, bytes, world_bytes })
    }

    /// The stored bytes (compressed), as a stream.
    async fn raw(&self, key: &str) -> Result<ByteStream, ArchiveError> {
        let (path, _) = object_of(key);
        let got = self.store.get(&ObjectPath::from(path.as_str())).await.map_err(|e| Self::io(key, e))?;
        Ok(Box::pin(got.into_stream().map(|c| c.map_err(io::Error::other))))
    }

    /// Reads the archive back and checks its checksum (before the node copy goes).
    pub async fn verify(&self, r: &ArchiveRef) -> Result<(), ArchiveError> {
        let raw = self.raw(&r.key).await?;
        let (mut out, done) = pipe(raw, |r, _w| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok(hex(&h.finalize()));
                }
                h.update(&buf[..n]);
            }
        });
        while out.next().await.is_some() {}
        let found = done.await.map_err(|e| Self::io(&r.key, e))?.map_err(|e| Self::io(&r.key, e))?;
        if found != r.sha256 {
            return Err(ArchiveError::Checksum { key: r.key.clone(), expected: r.sha256.clone(), found });
        }
        Ok(())
    }

    /// The world's tar, decompressed as it streams, and the verdict on its checksum once the
    /// stream has ended (the stream also ends in an error on a mismatch, so a consumer never
    /// takes a corrupted world for a whole one).
    pub async fn open(&self, r: &ArchiveRef) -> Result<(ByteStream, Verdict), ArchiveError> {
        let raw = self.raw(&r.key).await?;
        let (_, codec) = object_of(&r.key);
        let expected = r.sha256.clone();
        let key = r.key.clone();
        let (out, done) = pipe(raw, move |r, w| {
            let mut hashed = HashReader { inner: r, hash: Sha256::new() };
            match codec {
                Codec::Zstd => {
                    let mut dec = zstd::stream::read::Decoder::new(&mut hashed)?;
                    io::copy(&mut dec, w)?;
                }
                Codec::Gzip => {
                    let mut dec = flate2::read::GzDecoder::new(&mut hashed);
                    io::copy(&mut dec, w)?;
                }
            }
            io::copy(&mut hashed, &mut io::sink())?; // anything after the frame counts too
            let found = hex(&hashed.hash.finalize());
            if found != expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("archive {key}: checksum mismatch (expected {expected}, found {found})"),
                ));
            }
            Ok(())
        });
        Ok((out, done))
    }

    pub async fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        let (path, _) = object_of(key);
        match self.store.delete(&ObjectPath::from(path.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::io(key, e)),
        }
    }

    /// The whole stored object (tests and checks; not for worlds in production paths).
    pub async fn read_raw(&self, key: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut s = self.raw(key).await?;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.map_err(|e| Self::io(key, e))?);
        }
        Ok(out)
    }

    /// Stores bytes as they are (tests: a corrupted archive).
    pub async fn write_raw(&self, key: &str, data: Vec<u8>) -> Result<(), ArchiveError> {
        let (path, _) = object_of(key);
        self.store.put(&ObjectPath::from(path.as_str()), data.into()).await.map_err(|e| Self::io(key, e))?;
        Ok(())
    }

    /// Removes the staged parts of uploads that never completed (a directory store names
    /// them `<archive>#<n>`; they are never taken for archives). Only while nothing uploads:
    /// the daemon calls it at start-up, before its engine runs. The names removed.
    pub fn remove_partial_uploads(&self) -> Result<Vec<String>, ArchiveError> {
        let Some(root) = &self.root else { return Ok(Vec::new()) };
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(root).map_err(|e| Self::io("(staged uploads)", e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains('#') && e.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(e.path()).map_err(|err| Self::io(&name, err))?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Every archive's name and size.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, ArchiveError> {
        let mut out = Vec::new();
        let mut s = self.store.list(None);
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| Self::io("(listing)", e))?;
            out.push((m.location.to_string(), m.size));
        }
        out.sort();
        Ok(out)
    }
}

/// Runs `work` on a blocking thread, reading `input` and writing an output stream, with a
/// few chunks in flight each way; also returns what `work` returns. An error of `work` ends
/// the output stream with that error.
fn pipe<R: Send + 'static>(
    mut input: ByteStream,
    work: impl FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<R> + Send + 'static,
) -> (ByteStream, tokio::task::JoinHandle<io::Result<R>>) {
    let (in_tx, in_rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL);
    let (out_tx, out_rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL);
    tokio::spawn(async move {
        while let Some(chunk) = input.next().await {
            if in_tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let done = tokio::task::spawn_blocking(move || {
        let mut r = ChanReader { rx: in_rx, chunk: Bytes::new() };
        let mut w = ChanWriter { tx: out_tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let result = work(&mut r, &mut w).and_then(|v| w.flush().map(|_| v));
        if let Err(e) = &result {
            let _ = out_tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let out: ByteStream =
        Box::pin(futures_util::stream::unfold(out_rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    (out, done)
}

struct ChanReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

struct ChanWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let b = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            self.tx.blocking_send(Ok(b)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"))?;
        }
        Ok(())
    }
}

struct HashWriter<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
    bytes: u64,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashReader<'a> {
    inner: &'a mut dyn Read,
    hash: Sha256,
}

impl Read for HashReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Archives a (stopped) server's world from `node`, verifies the stored copy, and only then
/// removes the container and its volume from the node.
pub async fn archive_server(
    node: &dyn NodeDriver,
    store: &Archive,
    server: i64,
    key: &str,
    helper: &Helper,
) -> Result<ArchiveRef, ArchiveError> {
    let r = backup_server(node, store, server, key, helper).await?;
    node.remove(server, true).await?;
    Ok(r)
}

/// Copies a server's world (running or not) from `node` into the store as `key`, verified
/// by reading it back; the node copy stays (a backup).
pub async fn backup_server(
    node: &dyn NodeDriver,
    store: &Archive,
    server: i64,
    key: &str,
    helper: &Helper,
) -> Result<ArchiveRef, ArchiveError> {
    let tar = node.download_data(server, helper).await?;
    let r = store.put_stream(key, tar).await?;
    store.verify(&r).await?;
    Ok(r)
}

/// Restores a world into the server's volume and creates its container (not started). The
/// checksum is checked as the archive streams: a mismatch fails the write, and what was
/// written goes again.
pub async fn restore_server(
    node: &dyn NodeDriver,
    store: &Archive,
    spec: &ContainerSpec,
    r: &ArchiveRef,
    helper: &Helper,
) -> Result<(), ArchiveError> {
    let (tar, verdict) = store.open(r).await?;
    let written = node.write_volume(spec.server, tar, helper).await;
    let failed = match (verdict.await, written) {
        (Ok(Err(e)), _) if e.kind() == io::ErrorKind::InvalidData => {
            Some(ArchiveError::Checksum { key: r.key.clone(), expected: r.sha256.clone(), found: e.to_string() })
        }
        // The node refused the world (its disk is full, say): the reader only saw its pipe
        // break, so the node's error is the cause to report.
        (Ok(Err(e)), Err(w)) if e.kind() == io::ErrorKind::BrokenPipe => Some(ArchiveError::from(w)),
        (Ok(Ok(())), Err(w)) => Some(ArchiveError::from(w)),
        (Ok(Ok(())), Ok(())) => None,
        // A damaged stream (not a zstd frame, cut short) or a reader that failed: the cause,
        // whatever the node made of what it got.
        (Ok(Err(e)), _) => Some(ArchiveError::Io { key: r.key.clone(), message: e.to_string() }),
        (Err(e), _) => Some(ArchiveError::Io { key: r.key.clone(), message: e.to_string() }),
    };
    if let Some(e) = failed {
        // Not (all of) the world that was archived: what was written is not kept — the
        // archive stays the copy of record, and a retry writes it again.
        let _ = node.remove(spec.server, true).await;
        return Err(e);
    }
    node.ensure_container(spec).await?;
    Ok(())
}

/// A whole buffer as a stream (tests, fakes).
pub fn stream_of(data: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(Bytes::from(data)) }))
}

/// A stream collected into memory (fakes, small worlds in tests).
pub async fn collect(mut s: ByteStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` chunks of 1 MiB: half pseudo-random, half zeros.
    fn world(n: usize) -> (ByteStream, Vec<u8>) {
        let mut all = Vec::new();
        let mut x: u64 = 7;
        let chunks: Vec<Bytes> = (0..n)
            .map(|i| {
                let mut c = vec![0u8; 1 << 20];
                if i % 2 == 0 {
                    for b in c.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                }
                all.extend_from_slice(&c);
                Bytes::from(c)
            })
            .collect();
        (Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok))), all)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_world_round_trips_through_zstd_with_its_checksum() {
        let a = Archive::memory();
        let (tar, original) = world(24);
        let r = a.put_stream("s1-5.tar.zst", tar).await.unwrap();
        let stored = a.read_raw(&r.key).await.unwrap();
        assert_eq!((sha256_hex(&stored), stored.len() as u64), (r.sha256.clone(), r.bytes));
        assert!(r.bytes < original.len() as u64 * 6 / 10, "compressed: {} of {}", r.bytes, original.len());
        a.verify(&r).await.unwrap();
        let (s, verdict) = a.open(&r).await.unwrap();
        assert_eq!(collect(s).await.unwrap(), original);
        verdict.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupted_bytes_fail_the_check_and_the_stream() {
        let a = Archive::memory();
        let (tar, _) = world(4);
        let r = a.put_stream("s2-5.tar.zst", tar).await.unwrap();
        let mut bad = a.read_raw(&r.key).await.unwrap();
        let at = bad.len() / 3;
        bad[at] ^= 0x40;
        a.write_raw(&r.key, bad).await.unwrap();
        assert!(matches!(a.verify(&r).await, Err(ArchiveError::Checksum { .. })));
        let (s, verdict) = a.open(&r).await.unwrap();
        assert!(collect(s).await.is_err(), "the stream ends in an error");
        assert_eq!(verdict.await.unwrap().unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A missing archive is an error, not an empty world.
        let gone = ArchiveRef { key: "nope.tar.zst".into(), sha256: r.sha256.clone(), bytes: 0, world_bytes: 0 };
        assert!(matches!(a.open(&gone).await, Err(ArchiveError::Io { .. })));
    }

    /// A node that cannot take the world (its disk fills half-way) is the error a restore
    /// reports — not the broken pipe its reader sees — and what it wrote is removed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_onto_a_full_disk_says_so_and_keeps_nothing() {
        use crate::fake::{Clock, FakeNode, Faults};
        let a = Archive::memory();
        let (tar, _) = world(64);
        let r = a.put_stream("s3-5.tar.zst", tar).await.unwrap();
        let node = FakeNode::new("ded-0", Clock::new(0), Faults::none(), 0);
        node.set_disk_left(Some(8 << 20));
        let spec = ContainerSpec {
            server: 3,
            image: "standin".into(),
            cmd: None,
            memory_mib: 512,
            env: vec![],
            host_port: None,
            node: None,
            ..Default::default()
        };
        let helper = Helper { image: "standin".into(), cmd: vec![] };
        let e = restore_server(&*node, &a, &spec, &r, &helper).await.unwrap_err().to_string();
        assert!(e.contains("no space left on device"), "{e}");
        assert!(node.volumes().is_empty() && node.containers().is_empty(), "nothing kept");
        node.set_disk_left(None);
        restore_server(&*node, &a, &spec, &r, &helper).await.unwrap();
        assert!(node.volumes().contains_key(&3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staged_parts_of_unfinished_uploads_are_removed_and_archives_kept() {
        let root = std::env::temp_dir().join(format!("conductor-partials-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = Archive::dir(&root).unwrap();
        let r = a.put_stream("s1-1.tar.zst", stream_of(vec![7; 1000])).await.unwrap();
        std::fs::write(root.join("s2-1.tar.zst#1"), b"half").unwrap();
        assert_eq!(a.remove_partial_uploads().unwrap(), vec!["s2-1.tar.zst#1".to_string()]);
        a.verify(&r).await.unwrap();
        assert!(a.remove_partial_uploads().unwrap().is_empty());
        assert!(Archive::memory().remove_partial_uploads().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn archives_made_before_zstd_are_read_as_gzip() {
        let a = Archive::memory();
        let tar = b"an old world".to_vec();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        let gz = e.finish().unwrap();
        // Old keys had no extension; their objects were `<key>.tar.gz`.
        a.write_raw("s3-1", gz.clone()).await.unwrap();
        assert_eq!(object_of("s3-1"), ("s3-1.tar.gz".into(), Codec::Gzip));
        let r = ArchiveRef { key: "s3-1".into(), sha256: sha256_hex(&gz), bytes: gz.len() as u64, world_bytes: 0 };
        let (s, verdict) = a.open(&r).await.unwrap();
        assert_eq!(collect(s).await.unwrap(), tar);
        verdict.await.unwrap().unwrap();
        assert!(a.put_stream("s3-2", stream_of(tar)).await.is_err(), "new archives are .tar.zst");
    }
}
