//! What the operator keeps of the cluster between reconciles: the metadata
//! of every child it manages and of every Secret in the watched namespaces,
//! fed by the same watches that trigger reconciles.
//!
//! Only what tells a change is kept: name, namespace, uid, resourceVersion
//! and owners (and, on a claim, the annotation naming the SecureVault it is
//! retained for). Labels, annotations and managed fields are dropped as
//! each object arrives: a Secret applied with `kubectl apply` carries its
//! values in an annotation, and they must not sit in our memory; the rest
//! would only make the caches larger.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt as _, Stream, future::BoxFuture};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use crate::{api::SecureVault, discovery::OptionalKind, names};

/// How long after the start reconciles wait for the caches to be filled
/// before they do the full work without them.
const FILL_WAIT: Duration = Duration::from_secs(30);

/// The metadata caches; cheap to share (each store is an `Arc`).
#[derive(Clone)]
pub struct Caches {
    started: Instant,
    children: Vec<Arc<dyn Children>>,
    secrets: Option<Store<PartialObjectMeta<Secret>>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            started: Instant::now(),
            children: Vec::new(),
            secrets: None,
        }
    }
}

impl Caches {
    /// Keeps the children of kind `K` that `events` (a metadata watch)
    /// shows; returns the stream to hand to the controller, which must
    /// be polled for the cache to fill. `optional` names an optional kind,
    /// whose cache counts only while the API server serves it.
    pub fn keep_children<K, S>(
        &mut self,
        optional: Option<OptionalKind>,
        events: S,
    ) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
        S: Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<K>>>> + Send + 'static,
    {
        let (store, writer) = reflector::store();
        self.children.push(Arc::new(Kept {
            kind: K::kind(&()),
            optional,
            store,
        }));
        events
            .modify(|o: &mut PartialObjectMeta<K>| trim(&mut o.metadata))
            .reflect(writer)
            .touched_objects()
    }

    /// Keeps the Secrets that `events` shows (metadata only, trimmed): those
    /// a SecureVault refers to, and those it owns (its generated key);
    /// returns the stream to hand to the controller.
    pub fn keep_secrets<S>(
        &mut self,
        events: S,
    ) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
    where
        S: Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<Secret>>>>
            + Send
            + 'static,
    {
        let (store, writer) = reflector::store();
        // The Secret a SecureVault generates is one of its children too.
        self.children.push(Arc::new(Kept {
            kind: Secret::kind(&()),
            optional: None,
            store: store.clone(),
        }));
        self.secrets = Some(store);
        events
            .modify(|o: &mut PartialObjectMeta<Secret>| trim(&mut o.metadata))
            .reflect(writer)
            .touched_objects()
    }

    /// Whether every cache has been filled by its first listing (those of
    /// optional kinds only while `served` says they are served). In the
    /// first [`FILL_WAIT`] after the start it waits for that; later it
    /// only looks (a watch the API server refuses never fills its cache,
    /// and must not hold up every reconcile).
    pub async fn filled(&self, served: crate::discovery::Kinds) -> bool {
        let wanted = |c: &&Arc<dyn Children>| c.optional().is_none_or(|k| served.contains(k));
        // Once filled, a cache stays so: no wait to set up.
        if self.children.iter().filter(wanted).all(|c| c.ready()) {
            return true;
        }
        let waits = self.children.iter().filter(wanted).map(|c| c.filled());
        // `timeout` polls the waits before it looks at the clock: with no
        // time left, one look.
        let left = FILL_WAIT.saturating_sub(self.started.elapsed());
        tokio::time::timeout(left, futures::future::join_all(waits))
            .await
            .is_ok()
    }

    /// How long ago the caches were made (when the controller started).
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every cached child of `sv` (owned by it, or a claim retained for
    /// it), as `kind name -> resourceVersion`, in a stable order.
    pub fn children_of(&self, sv: &SecureVault) -> BTreeMap<String, String> {
        self.children.iter().flat_map(|c| c.of(sv)).collect()
    }

    /// What the cache of `kind` (`Deployment`, `Secret`…) holds of the
    /// object `name` in `namespace`: its trimmed metadata, or that it has
    /// none of that name. The children's caches hold only objects labelled
    /// as managed by this operator, so `Absent` means "no such object of
    /// ours", as of the last watch event.
    pub fn lookup(&self, kind: &str, namespace: &str, name: &str) -> Lookup {
        match self.children.iter().find(|c| c.kind() == kind) {
            Some(c) if c.ready() => match c.meta(namespace, name) {
                Some(meta) => Lookup::Present(Box::new(meta)),
                None => Lookup::Absent,
            },
            _ => Lookup::Unknown,
        }
    }

    /// The resourceVersion of Secret `name` in `namespace`; `None` when
    /// there is no such Secret (or no cache of them).
    pub fn secret_version(&self, namespace: &str, name: &str) -> Option<String> {
        let secret = self
            .secrets
            .as_ref()?
            .get(&ObjectRef::new(name).within(namespace))?;
        secret.resource_version()
    }
}

/// What a cache says of one object.
#[derive(Debug)]
pub enum Lookup {
    /// No cache of that kind, or not filled yet: ask the API server.
    Unknown,
    /// None of ours of that name.
    Absent,
    /// Its trimmed metadata.
    Present(Box<ObjectMeta>),
}

/// One kind's cache, with its type erased.
trait Children: Send + Sync {
    fn kind(&self) -> &str;
    fn optional(&self) -> Option<OptionalKind>;
    fn ready(&self) -> bool;
    fn filled(&self) -> BoxFuture<'static, ()>;
    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    fn of(&self, sv: &SecureVault) -> Vec<(String, String)>;
}

struct Kept<K: Resource<DynamicType = ()> + 'static> {
    kind: std::borrow::Cow<'static, str>,
    optional: Option<OptionalKind>,
    store: Store<PartialObjectMeta<K>>,
}

impl<K> Children for Kept<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn kind(&self) -> &str {
        &self.kind
    }

    fn optional(&self) -> Option<OptionalKind> {
        self.optional
    }

    fn ready(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some()
    }

    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        let object = self.store.get(&ObjectRef::new(name).within(namespace))?;
        Some(object.metadata.clone())
    }

    fn filled(&self) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        Box::pin(async move {
            let _ = store.wait_until_ready().await;
        })
    }

    fn of(&self, sv: &SecureVault) -> Vec<(String, String)> {
        self.store
            .state_filter(|o| belongs_to(&o.metadata, sv))
            .iter()
            .map(|o| {
                (
                    format!("{} {}", self.kind, o.name_any()),
                    o.resource_version().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Whether `meta` is one of `sv`'s children: owned by it, or (a claim)
/// retained for a SecureVault of its name in its namespace.
fn belongs_to(meta: &ObjectMeta, sv: &SecureVault) -> bool {
    let owned = sv.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| &o.uid == uid)
    });
    owned
        || (meta.namespace == sv.metadata.namespace
            && meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::RETAINED_FOR_ANNOTATION))
                .is_some_and(|name| Some(name) == sv.metadata.name.as_ref()))
}

/// Drops what a cache does not need (see the module's doc).
fn trim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = meta.annotations.take().and_then(|mut a| {
        a.retain(|k, _| k == names::RETAINED_FOR_ANNOTATION);
        (!a.is_empty()).then_some(a)
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn vault(uid: &str) -> SecureVault {
        serde_saphyr::from_str(&format!(
            "apiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata: {{name: mail, namespace: shop, uid: {uid}}}\nspec: {{version: 0.1.0, replicas: 1}}\n"
        ))
        .unwrap()
    }

    fn meta(owner_uid: Option<&str>, retained_for: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("mail-data".into()),
            namespace: Some("shop".into()),
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            annotations: retained_for
                .map(|name| [(names::RETAINED_FOR_ANNOTATION.to_owned(), name.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_child_is_owned_or_a_claim_retained_for_the_vault_s_name() {
        let sv = vault("u1");
        assert!(belongs_to(&meta(Some("u1"), None), &sv));
        assert!(!belongs_to(&meta(Some("u2"), None), &sv));
        assert!(belongs_to(&meta(None, Some("mail")), &sv));
        assert!(!belongs_to(&meta(None, Some("other")), &sv));
        let mut elsewhere = meta(None, Some("mail"));
        elsewhere.namespace = Some("other-team".into());
        assert!(!belongs_to(&elsewhere, &sv));
    }

    #[test]
    fn trimming_keeps_identity_and_owners_and_drops_values_in_annotations() {
        let mut m = meta(Some("u1"), Some("mail"));
        m.resource_version = Some("7".into());
        m.labels = Some([("a".to_owned(), "b".to_owned())].into());
        m.annotations.as_mut().unwrap().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            r#"{"data":{"password":"c2VjcmV0"}}"#.into(),
        );
        m.managed_fields = Some(vec![Default::default()]);
        trim(&mut m);
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        assert_eq!(m.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(m.labels, None);
        assert_eq!(m.managed_fields, None);
        assert_eq!(
            m.annotations.unwrap().keys().collect::<Vec<_>>(),
            vec![names::RETAINED_FOR_ANNOTATION]
        );
        let mut plain = meta(Some("u1"), None);
        plain.annotations = Some([("x".to_owned(), "y".to_owned())].into());
        trim(&mut plain);
        assert_eq!(plain.annotations, None);
    }
}
