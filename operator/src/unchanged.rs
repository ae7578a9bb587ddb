//! Whether a SecureVault changed since its last settled reconcile, decided
//! from the watch caches alone, so that an unchanged SecureVault costs the
//! API server no request (a resync, a restart, a standby taking over).
//!
//! A reconcile that ends settled (nothing rolling out, no upgrade under way,
//! no deadline ahead) records in `status.observedInputs` a digest of
//! everything it read: the spec and its generation, the validated spec with
//! the platform's settings, what this operator's builders make of it, which
//! optional kinds are served, what the cluster's Prometheuses make of its
//! monitoring objects, and the resourceVersion of each child and of each
//! Secret the spec refers to. The next reconcile computes the digest from the caches first; the
//! same digest means the full work would read what it read then, and is
//! skipped. A child deleted, edited or whose status moved has another
//! resourceVersion (or none), so drift is still repaired at once, and a
//! status written by a reconcile that also wrote a child is followed by the
//! watch event of that write.
//!
//! Some of what a status says changes with time alone, or comes from
//! outside the cluster: a certificate's expiry (`spec.tls`), the age of the
//! last backup and the bucket's listing (`spec.backup` with a bucket, or a
//! PostgreSQL store's backup CronJob). A SecureVault with any of these is
//! [`time_dependent`]: it is still looked at fully once per resync interval.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::{
    api::SecureVault,
    cache::Caches,
    controller::Platform,
    discovery::Kinds,
    prometheus_selection::Verdict,
    validate::{BackupDestination, ValidatedVault},
};

/// What the digest is made of, read from the SecureVault, the platform's
/// settings and the caches (no request).
pub struct Inputs<'a> {
    /// The SecureVault, as the cache has it.
    pub sv: &'a SecureVault,
    /// Its validated spec, with the platform's monitoring labels and image
    /// repository applied.
    pub vault: &'a ValidatedVault,
    /// What the platform team set.
    pub platform: &'a Platform,
    /// The optional kinds the API server serves.
    pub served: Kinds,
    /// What each Prometheus makes of the monitoring objects, when known.
    pub selection: Option<&'a [Verdict]>,
}

/// The digest of `inputs` and of what `caches` hold of the SecureVault's
/// children and referenced Secrets: `sha256:` and 64 hex digits.
pub fn digest(inputs: &Inputs<'_>, caches: &Caches) -> String {
    let Inputs {
        sv,
        vault,
        platform,
        served,
        selection,
    } = inputs;
    // What this operator would write for it, with placeholders for the
    // generated values (never read here): another operator build that
    // writes something else does not skip, whatever its version says.
    let placeholder = |wanted: bool| wanted.then(|| "generated".to_owned());
    let intent = crate::build::build(
        vault,
        &crate::build::secret::Generated {
            secret_key: placeholder(vault.generates_secret_key),
            admin_password: placeholder(vault.generates_admin_password),
        },
    );
    // Of the Prometheuses, what the status says: one that selects nothing
    // of this SecureVault's comes and goes unseen.
    let selection = selection.map(crate::prometheus_selection::describe);
    // The spec itself and its generation besides what validation made of
    // it: the reconcile reads some fields from the spec directly.
    // Debug output is stable here: every map in these types is a BTreeMap.
    let mut text = format!(
        "operator {}\nplatform {platform:?}\nserved {served:?}\nselection {selection:?}\ngeneration {:?}\nspec {:?}\nvault {vault:?}\nintent {intent:?}\ndeleting {:?}\n",
        env!("CARGO_PKG_VERSION"),
        sv.metadata.generation,
        sv.spec,
        sv.metadata.deletion_timestamp,
    );
    for (child, version) in caches.children_of(sv) {
        let _ = writeln!(text, "child {child} {version}");
    }
    for name in vault.referenced_secrets() {
        let version = caches.secret_version(&vault.namespace, &name);
        let _ = writeln!(text, "secret {name} {version:?}");
    }
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Whether what the status says of `v` can change with time alone, or
/// depends on objects no cache holds (see the module's doc).
pub fn time_dependent(v: &ValidatedVault) -> bool {
    let bucket = v
        .backup
        .as_ref()
        .is_some_and(|b| matches!(b.destination, BackupDestination::Bucket(_)));
    // A certificate expires; a backup the operator sees (in a bucket, or
    // through the CronJob of a PostgreSQL store) grows old. The embedded
    // store's own backups are the data plane's to report.
    v.tls.is_some() || bucket || crate::build::backup_cron_job::build(v).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::StreamExt;
    use k8s_openapi::{
        api::{apps::v1::Deployment, core::v1::Secret},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    };
    use kube::{core::PartialObjectMeta, runtime::watcher::Event};

    use super::*;

    fn vault(spec: &str) -> (SecureVault, ValidatedVault) {
        let mut sv: SecureVault = serde_saphyr::from_str(&format!(
            "apiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata: {{name: mail, namespace: shop, uid: u1, generation: 1}}\nspec:\n{spec}"
        ))
        .unwrap();
        sv.metadata.uid = Some("u1".into());
        let v = crate::validate::validate(&sv).unwrap();
        (sv, v)
    }

    fn platform() -> Platform {
        Platform {
            policy: Default::default(),
            monitoring_labels: Default::default(),
            dataplane_image_repository: "ghcr.io/securevault/dataplane".into(),
        }
    }

    fn meta<K>(name: &str, owner: &str, version: &str) -> PartialObjectMeta<K>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        PartialObjectMeta::<K> {
            types: None,
            _phantom: Default::default(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                resource_version: Some(version.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        }
    }

    /// Caches filled with the given Deployments and Secrets, as a first
    /// listing would fill them.
    async fn caches(
        deployments: Vec<PartialObjectMeta<Deployment>>,
        secrets: Vec<PartialObjectMeta<Secret>>,
    ) -> Caches {
        fn listing<K: Send + 'static>(
            objects: Vec<K>,
        ) -> impl futures::Stream<Item = kube::runtime::watcher::Result<Event<K>>> + Send + 'static
        {
            let events = std::iter::once(Event::Init)
                .chain(objects.into_iter().map(Event::InitApply))
                .chain(std::iter::once(Event::InitDone))
                .map(Ok);
            futures::stream::iter(events.collect::<Vec<_>>())
        }
        let mut c = Caches::default();
        let d = c.keep_children(None, listing(deployments));
        let s = c.keep_secrets(listing(secrets));
        d.for_each(|_| async {}).await;
        s.for_each(|_| async {}).await;
        c
    }

    fn of(sv: &SecureVault, v: &ValidatedVault, p: &Platform, c: &Caches) -> String {
        digest(
            &Inputs {
                sv,
                vault: v,
                platform: p,
                served: Kinds::default(),
                selection: None,
            },
            c,
        )
    }

    const SPEC: &str =
        "  version: 0.1.0\n  replicas: 1\n  secretKeyRef: {name: relay, key: secret-key}\n";

    #[tokio::test]
    async fn the_same_world_gives_the_same_digest_and_any_change_another() {
        let (sv, v) = vault(SPEC);
        let p = platform();
        let world = || async {
            caches(
                vec![meta("mail", "u1", "10"), meta("other", "u2", "11")],
                vec![meta("relay", "x", "5")],
            )
            .await
        };
        let base = of(&sv, &v, &p, &world().await);
        assert!(base.starts_with("sha256:") && base.len() == 71, "{base}");
        assert_eq!(of(&sv, &v, &p, &world().await), base);

        // Another object's change is not this vault's.
        let c = caches(
            vec![meta("mail", "u1", "10"), meta("other", "u2", "99")],
            vec![meta("relay", "x", "5")],
        )
        .await;
        assert_eq!(of(&sv, &v, &p, &c), base);

        // A child edited (or its status moved), deleted; the referenced
        // Secret changed or gone: each gives another digest.
        for c in [
            caches(
                vec![meta("mail", "u1", "12")],
                vec![meta("relay", "x", "5")],
            )
            .await,
            caches(vec![], vec![meta("relay", "x", "5")]).await,
            caches(
                vec![meta("mail", "u1", "10")],
                vec![meta("relay", "x", "6")],
            )
            .await,
            caches(vec![meta("mail", "u1", "10")], vec![]).await,
        ] {
            assert_ne!(of(&sv, &v, &p, &c), base);
        }

        // The spec, and the platform's settings.
        let (sv2, v2) = vault(&SPEC.replace("replicas: 1", "replicas: 2"));
        assert_ne!(of(&sv2, &v2, &p, &world().await), base);
        let mut p2 = platform();
        p2.dataplane_image_repository = "registry.example/dataplane".into();
        assert_ne!(of(&sv, &v, &p2, &world().await), base);
    }

    #[test]
    fn what_changes_with_time_is_looked_at_each_resync() {
        // The embedded store backs itself up: nothing here ages.
        assert!(!time_dependent(&vault(SPEC).1));
        let tls = format!("{SPEC}  tls: {{secretName: mail-tls}}\n");
        assert!(time_dependent(&vault(&tls).1));
        let bucket = format!(
            "{SPEC}  backup:\n    s3: {{bucket: backups, endpoint: \"http://s3.example:9000\"}}\n"
        );
        assert!(time_dependent(&vault(&bucket).1));
    }
}
