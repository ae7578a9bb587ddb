//! What this process last wrote to each SecureVault's children, so that a
//! full reconcile writes only the children that need it.
//!
//! A full reconcile runs on every event of every child while a SecureVault
//! rolls out (a Deployment's status moves a dozen times), and each one used
//! to send a server-side apply for every child: a no-op for all but one,
//! yet each a request the API server decodes, merges and compares. Here,
//! after each apply, the child's uid and resourceVersion are kept with a
//! hash of what was applied (the intent). The next reconcile compares them
//! with the child's metadata in the watch cache (`cache`): the same intent
//! and the same uid and resourceVersion mean the object is exactly as this
//! process left it, and there is nothing to send.
//!
//! Drift is still repaired: any edit of a child, by anyone, moves its
//! resourceVersion (so does a status update), and a deleted child is no
//! longer in the cache; either way the apply is sent. What is kept is only
//! this process's memory: a restarted or newly elected operator knows
//! nothing and applies every child once, as before.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The children written for each SecureVault, by its uid, and when it was
/// last reconciled in full.
#[derive(Default)]
pub struct Written {
    vaults: Mutex<HashMap<String, Vault>>,
}

struct Vault {
    full_reconcile: Instant,
    /// By a hash of the child's kind and name.
    children: HashMap<u64, Record>,
}

/// One child as this process left it: hashes only, since a record is kept
/// for every child of every SecureVault being worked on (a collision of
/// 64-bit hashes is not a concern at a fleet's scale).
struct Record {
    intent: u64,
    /// Of its uid and resourceVersion.
    version: u64,
}

/// A hash of `parts`, stable within this process.
fn hash(parts: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// The hash of the child's identity: a recreated object has another uid.
fn version(meta: &ObjectMeta) -> Option<u64> {
    Some(hash(&[
        meta.uid.as_deref()?,
        meta.resource_version.as_deref()?,
    ]))
}

/// A hash of the object as it is applied; equal objects hash equal within
/// this process (the hash is never stored elsewhere).
pub fn intent<K: Serialize>(object: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    // Serialization of our own types cannot fail; an error hashes as
    // nothing, which can only cause one write too many.
    serde_json::to_vec(object)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl Written {
    /// A full reconcile of SecureVault `vault` starts now. SecureVaults not
    /// reconciled in full for `forget_after` are forgotten (a deleted one,
    /// or one so settled that it costs nothing anyway): the memory holds
    /// what is being worked on, not the whole fleet.
    pub fn full_reconcile(&self, vault: &str, forget_after: Duration) {
        if let Ok(mut vaults) = self.vaults.lock() {
            vaults.retain(|_, v| v.full_reconcile.elapsed() < forget_after);
            vaults
                .entry(vault.to_owned())
                .and_modify(|v| v.full_reconcile = Instant::now())
                .or_insert_with(|| Vault {
                    full_reconcile: Instant::now(),
                    children: HashMap::new(),
                });
        }
    }

    /// How long ago SecureVault `vault` was last reconciled in full by this
    /// process, if it was (and is still remembered).
    pub fn since_full_reconcile(&self, vault: &str) -> Option<Duration> {
        let vaults = self.vaults.lock().ok()?;
        Some(vaults.get(vault)?.full_reconcile.elapsed())
    }

    /// Whether the child of `kind` whose metadata the cache shows as `seen`
    /// is exactly what this process last applied with `intent`.
    pub fn is_current(&self, vault: &str, kind: &str, seen: &ObjectMeta, intent: u64) -> bool {
        self.with_record(vault, kind, seen, |r| {
            r.intent == intent && Some(r.version) == version(seen)
        })
    }

    /// Whether `after`, as an apply returned it, is the version of the
    /// child this process had already written (the apply changed nothing,
    /// whatever an older cached version said).
    pub fn is_version(&self, vault: &str, kind: &str, after: &ObjectMeta) -> bool {
        self.with_record(vault, kind, after, |r| Some(r.version) == version(after))
    }

    /// Keeps `after`, the child of `kind` as the apply of `intent` left it.
    pub fn record(&self, vault: &str, kind: &str, after: &ObjectMeta, intent: u64) {
        let (Some(name), Some(version)) = (&after.name, version(after)) else {
            return;
        };
        if let Ok(mut vaults) = self.vaults.lock()
            && let Some(v) = vaults.get_mut(vault)
        {
            v.children
                .insert(hash(&[kind, name]), Record { intent, version });
        }
    }

    fn with_record(
        &self,
        vault: &str,
        kind: &str,
        meta: &ObjectMeta,
        test: impl FnOnce(&Record) -> bool,
    ) -> bool {
        let Some(name) = &meta.name else {
            return false;
        };
        let Ok(vaults) = self.vaults.lock() else {
            return false;
        };
        vaults
            .get(vault)
            .and_then(|v| v.children.get(&hash(&[kind, name])))
            .is_some_and(test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("mail".into()),
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_child_is_current_only_as_it_was_left_with_the_same_intent() {
        let written = Written::default();
        let forget = Duration::from_secs(60);
        // Nothing is known before a full reconcile of its SecureVault.
        written.record("v1", "Service", &meta("c1", "7"), 42);
        assert!(!written.is_current("v1", "Service", &meta("c1", "7"), 42));

        written.full_reconcile("v1", forget);
        written.record("v1", "Service", &meta("c1", "7"), 42);
        assert!(written.is_current("v1", "Service", &meta("c1", "7"), 42));
        // Edited (or its status moved), deleted and recreated, another
        // intent, another kind or SecureVault: written again.
        assert!(!written.is_current("v1", "Service", &meta("c1", "8"), 42));
        assert!(!written.is_current("v1", "Service", &meta("c2", "7"), 42));
        assert!(!written.is_current("v1", "Service", &meta("c1", "7"), 43));
        assert!(!written.is_current("v1", "ConfigMap", &meta("c1", "7"), 42));
        assert!(!written.is_current("v2", "Service", &meta("c1", "7"), 42));
        assert!(written.is_version("v1", "Service", &meta("c1", "7")));
        assert!(!written.is_version("v1", "Service", &meta("c1", "8")));
    }

    #[test]
    fn a_secure_vault_not_reconciled_in_full_for_a_while_is_forgotten() {
        let written = Written::default();
        written.full_reconcile("old", Duration::from_secs(60));
        written.record("old", "Service", &meta("c1", "7"), 42);
        std::thread::sleep(Duration::from_millis(20));
        written.full_reconcile("new", Duration::from_millis(10));
        assert!(!written.is_current("old", "Service", &meta("c1", "7"), 42));
        assert_eq!(written.since_full_reconcile("old"), None);
        assert!(written.since_full_reconcile("new").is_some());
    }

    #[test]
    fn equal_objects_have_equal_intents() {
        assert_eq!(intent(&meta("c1", "7")), intent(&meta("c1", "7")));
        assert_ne!(intent(&meta("c1", "7")), intent(&meta("c1", "8")));
    }
}
