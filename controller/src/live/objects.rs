//! Garbage collection of the archive store: every `object_gc_every_s` the store is listed
//! (in the work phase, outside the engine lock) and each of our objects (`s<id>-<ms>…`
//! archives, `b<id>-<ms>…` backups) is judged:
//!
//! - a live server's current archive, its listed backups and what a pending intent writes
//!   or reads are kept — never the last verified copy of a live server's world;
//! - the copies of a server deleted more than `deleted_retention_days` ago, and objects of a
//!   live server that nothing references (an archive superseded by a newer one, a backup
//!   the retention rule let go whose deletion did not happen, what a killed daemon left)
//!   are reported (`gc.found`) and removed `object_grace_s` later if still unreferenced;
//! - objects of servers the store does not know are reported once and kept (the store may
//!   be another controller's, or restored from an older dump).

use super::act::Action;
use super::*;

/// The archive-store collection's knobs (`[controller]` keys in brackets).
#[derive(Clone, Debug)]
pub struct ObjectGc {
    /// How often the store is listed (`object_gc_every_s`; 0: never).
    pub every: Millis,
    /// How long an object stays unreferenced before it is removed (`object_grace_s`).
    pub grace: Millis,
    /// How long a deleted server's copies are kept (`deleted_retention_days`).
    pub deleted_retention: Millis,
}

impl Default for ObjectGc {
    fn default() -> Self {
        const H: Millis = 3_600_000;
        ObjectGc { every: H, grace: 24 * H, deleted_retention: 30 * 24 * H }
    }
}

/// The server an object of ours belongs to: `s<id>-…` or `b<id>-…`.
pub(super) fn owner_of(object: &str) -> Option<i64> {
    if object.contains('#') {
        return None; // a staged part of an upload (directory store), never an archive
    }
    let rest = object.strip_prefix('s').or_else(|| object.strip_prefix('b'))?;
    let (id, after) = rest.split_once('-')?;
    let ms = after.split('.').next()?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

impl<S: Store> Live<S> {
    /// Whether this step lists the archive store.
    pub(super) fn objects_due(&mut self, now: Millis) -> bool {
        let every = self.cfg.worlds.objects.every;
        if every <= 0 || self.objects_listed.is_some_and(|t| now - t < every) {
            return false;
        }
        self.objects_listed = Some(now);
        true
    }

    /// The objects (by stored name) that must stay: every copy a live server's world needs.
    fn referenced(&self) -> HashSet<String> {
        let mut keys: Vec<String> = Vec::new();
        for (&core, r) in &self.archives {
            let store_id = self.server_ids[core.0 as usize];
            if !self.deleted.contains(&store_id) {
                keys.push(r.key.clone());
            }
        }
        for (store_id, list) in &self.backups {
            if !self.deleted.contains(store_id) {
                keys.extend(list.iter().map(|b| b.key.clone()));
            }
        }
        keys.extend(self.intents.object_keys());
        keys.into_iter().map(|k| crate::archive::object_of(&k).0).collect()
    }

    /// Judges a listing of the archive store (see the module's rules).
    pub(super) async fn collect_objects(&mut self, now: Millis, listed: Vec<(String, u64)>) -> Result<(), LiveError> {
        let referenced = self.referenced();
        let gc = self.cfg.worlds.objects.clone();
        let names: HashSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        self.orphans.retain(|k, _| names.contains(k.as_str()));
        for (name, bytes) in listed {
            let Some(server) = owner_of(&name) else { continue };
            let known = self.by_store_id.contains_key(&server) || self.deleted_at.contains_key(&server);
            if !known {
                if self.foreign.insert(name.clone()) {
                    let data =
                        json!({ "what": "object", "key": name, "bytes": bytes, "will": "keep: no such server here" });
                    self.event(now, GC_FOUND, None, None, data).await?;
                }
                continue;
            }
            let orphan = match self.deleted_at.get(&server) {
                Some(&at) => now - at >= gc.deleted_retention,
                None => !referenced.contains(&name),
            };
            if !orphan {
                self.orphans.remove(&name);
                continue;
            }
            match self.orphans.get(&name) {
                None => {
                    self.orphans.insert(name.clone(), now);
                    let data = json!({ "what": "object", "key": name, "bytes": bytes, "will": "remove" });
                    self.event(now, GC_FOUND, Some(server), None, data).await?;
                }
                Some(&since) if now - since >= gc.grace => {
                    self.orphans.remove(&name);
                    self.enqueue(now, Action::DropObject { server, key: name }, Some("garbage collection")).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::owner_of;

    #[test]
    fn our_objects_are_known_by_their_names() {
        assert_eq!(owner_of("s12-1760000000000.tar.zst"), Some(12));
        assert_eq!(owner_of("b7-1760000000000.tar.zst"), Some(7));
        assert_eq!(owner_of("s3-99.tar.gz"), Some(3));
        assert_eq!(owner_of("s3-99.tar.zst#1"), None);
        for foreign in ["backup-2024.tar", "sx-1.tar.zst", "s1.tar.zst", "s1-.tar.zst", "notes.txt"] {
            assert_eq!(owner_of(foreign), None, "{foreign}");
        }
    }
}
