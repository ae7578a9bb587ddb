//! The children a reconcile created or updated, said in one Event per verb
//! when it ends ("Created ServiceAccount mail, ConfigMap mail-config, …").
//!
//! kube's events recorder keeps every Event it published for six minutes
//! (to count repeats into a series), and is pruned only by the next
//! publication. An Event per child made a fleet's creation hold thousands
//! of them in memory after it was over (about 11 MB for 500 SecureVaults,
//! the difference between the process that created them and one that took
//! over), and cost the API server a request apiece.

use std::{collections::HashMap, sync::Mutex};

/// The Kubernetes limit on an Event's note, in bytes.
const NOTE_LIMIT: usize = 1024;

/// By SecureVault uid: what its reconcile in flight created and updated,
/// in order. A SecureVault is never reconciled twice at once, so each
/// entry belongs to one reconcile.
#[derive(Default)]
pub struct Changes {
    by_vault: Mutex<HashMap<String, Changed>>,
}

#[derive(Default)]
struct Changed {
    created: Vec<String>,
    updated: Vec<String>,
}

impl Changes {
    /// Notes that the reconcile of `vault` created (or else updated)
    /// `object` ("Kind name").
    pub fn note(&self, vault: &str, created: bool, object: String) {
        if let Ok(mut by_vault) = self.by_vault.lock() {
            let changed = by_vault.entry(vault.to_owned()).or_default();
            if created {
                changed.created.push(object);
            } else {
                changed.updated.push(object);
            }
        }
    }

    /// What the reconcile of `vault` noted, by verb (`Created`, `Updated`),
    /// forgotten here.
    pub fn take(&self, vault: &str) -> Vec<(&'static str, Vec<String>)> {
        let changed = self
            .by_vault
            .lock()
            .ok()
            .and_then(|mut by_vault| by_vault.remove(vault))
            .unwrap_or_default();
        [("Created", changed.created), ("Updated", changed.updated)]
            .into_iter()
            .filter(|(_, objects)| !objects.is_empty())
            .collect()
    }
}

/// The Event's note: the verb and the objects, cut to the API server's
/// limit with the count of those left out.
pub fn note(verb: &str, objects: &[String]) -> String {
    let mut note = verb.to_owned();
    for (i, object) in objects.iter().enumerate() {
        let separator = if i == 0 { " " } else { ", " };
        let left = objects.len() - i;
        // Room for this one and, after it, a mention of the rest.
        let tail = if left > 1 { 24 } else { 0 };
        if note.len() + separator.len() + object.len() + tail > NOTE_LIMIT {
            note.push_str(&format!(" and {left} more"));
            break;
        }
        note.push_str(separator);
        note.push_str(object);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_s_changes_come_out_once_by_verb_in_order() {
        let changes = Changes::default();
        changes.note("v1", true, "ServiceAccount mail".into());
        changes.note("v2", false, "Deployment other".into());
        changes.note("v1", true, "ConfigMap mail-config".into());
        changes.note("v1", false, "Deployment mail".into());
        let taken = changes.take("v1");
        assert_eq!(
            taken,
            vec![
                (
                    "Created",
                    vec![
                        "ServiceAccount mail".to_owned(),
                        "ConfigMap mail-config".into()
                    ]
                ),
                ("Updated", vec!["Deployment mail".to_owned()]),
            ]
        );
        assert_eq!(
            note("Created", &taken[0].1),
            "Created ServiceAccount mail, ConfigMap mail-config"
        );
        assert!(changes.take("v1").is_empty(), "forgotten once taken");
        assert_eq!(changes.take("v2").len(), 1);
    }

    #[test]
    fn a_long_note_is_cut_to_the_limit_and_says_how_many_are_left_out() {
        let objects: Vec<String> = (0..40)
            .map(|i| format!("ConfigMap {}", "x".repeat(50) + &i.to_string()))
            .collect();
        let note = note("Created", &objects);
        assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
        assert!(note.ends_with(" more"), "{note}");
        assert!(note.starts_with("Created ConfigMap x"));
    }
}
