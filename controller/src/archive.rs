//! Archives of servers' worlds (SPEC §6): the tar of `/data` read through the Docker API,
//! gzip-compressed, stored with its SHA-256 behind [`ArchiveStore`] (a directory — a mounted
//! storage box — for now; object storage can implement the same trait). An archive is read
//! back and verified before the node copy is deleted, and verified again before a restore.

use crate::docker::{ContainerSpec, Helper};
use crate::driver::{DriverError, NodeDriver};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;

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
            // A store that failed to write may work later; bytes that do not match never will.
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
    pub bytes: u64,
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Somewhere to keep archives.
pub trait ArchiveStore: Send + Sync {
    fn put(&self, key: &str, data: &[u8]) -> Result<ArchiveRef, ArchiveError>;
    /// The archive's bytes as stored (not verified).
    fn read(&self, key: &str) -> Result<Vec<u8>, ArchiveError>;
    fn delete(&self, key: &str) -> Result<(), ArchiveError>;

    /// The bytes, only if they hash to what `r` says.
    fn get_verified(&self, r: &ArchiveRef) -> Result<Vec<u8>, ArchiveError> {
        let data = self.read(&r.key)?;
        let found = sha256_hex(&data);
        if found != r.sha256 {
            return Err(ArchiveError::Checksum { key: r.key.clone(), expected: r.sha256.clone(), found });
        }
        Ok(data)
    }
}

/// Archives as files below a directory: `<key>.tar.gz`, written to a temporary file, synced
/// and renamed, so a crash never leaves a half archive under the real name.
pub struct DirArchive {
    pub root: PathBuf,
}

impl DirArchive {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.tar.gz"))
    }
}

impl ArchiveStore for DirArchive {
    fn put(&self, key: &str, data: &[u8]) -> Result<ArchiveRef, ArchiveError> {
        let io = |e: std::io::Error| ArchiveError::Io { key: key.into(), message: e.to_string() };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let path = self.path(key);
        let tmp = path.with_extension("partial");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(ArchiveRef { key: key.into(), sha256: sha256_hex(data), bytes: data.len() as u64 })
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, ArchiveError> {
        std::fs::read(self.path(key)).map_err(|e| ArchiveError::Io { key: key.into(), message: e.to_string() })
    }

    fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::Io { key: key.into(), message: e.to_string() }),
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn gunzip(key: &str, data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| ArchiveError::Io { key: key.into(), message: format!("not a gzip archive: {e}") })?;
    Ok(out)
}

/// Archives a (stopped) server's world from `node`, verifies the stored copy, and only then
/// removes the container and its volume from the node.
pub async fn archive_server(
    node: &dyn NodeDriver,
    store: &dyn ArchiveStore,
    server: i64,
    key: &str,
) -> Result<ArchiveRef, ArchiveError> {
    let tar = node.download_data(server).await?;
    let r = store.put(key, &gzip(&tar))?;
    store.get_verified(&r)?;
    node.remove(server, true).await?;
    Ok(r)
}

/// Restores a world into the server's volume and creates its container (not started),
/// verifying the archive first.
pub async fn restore_server(
    node: &dyn NodeDriver,
    store: &dyn ArchiveStore,
    spec: &ContainerSpec,
    r: &ArchiveRef,
    helper: &Helper,
) -> Result<(), ArchiveError> {
    let tar = gunzip(&r.key, &store.get_verified(r)?)?;
    node.write_volume(spec.server, tar, helper).await?;
    node.ensure_container(spec).await?;
    Ok(())
}
