//! Wiring: which objects are watched and what triggers a reconcile.
//!
//! - SecureVaults, filtered on `metadata.generation`: a status write (ours)
//!   does not trigger another reconcile, a spec change does.
//! - The children we own (only those labelled as managed by us), as
//!   metadata only, kept trimmed in [`Caches`]: deleting or editing one
//!   brings its SecureVault back to reconcile at once.
//! - Secrets, as metadata only (their values never sit in our memory): a
//!   referenced Secret that appears or changes reconciles the SecureVaults
//!   that reference it, so recovery needs no resync.
//! - The optional kinds we own (the Prometheus Operator's, cert-manager's
//!   Certificate), watched only while the API server serves them; a change
//!   in what it serves reconciles every SecureVault.
//!
//! From those caches alone, a reconcile tells whether its SecureVault
//! changed since it last settled (`unchanged`): an idle fleet costs the
//! API server its watches and nothing else.

use std::sync::Arc;

use futures::StreamExt;

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::{CronJob, Job},
    core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};

use crate::{
    api::{
        SecureVault,
        cert_manager::Certificate,
        monitoring::{AlertmanagerConfig, Prometheus, PrometheusRule, ServiceMonitor},
    },
    cache::Caches,
    discovery::{Discovery, OptionalKind},
    names,
    policy::Policy,
    prometheus_selection::Prometheuses,
    reconcile::{error_policy, reconcile},
    telemetry::Metrics,
    validate::validate,
};

/// What the platform team set for every SecureVault (the chart's values).
#[derive(Debug)]
pub struct Platform {
    /// What a SecureVault may ask for.
    pub policy: Policy,
    /// The labels every ServiceMonitor and PrometheusRule carry, under the
    /// SecureVault's own `spec.monitoring.labels`.
    pub monitoring_labels: std::collections::BTreeMap<String, String>,
    /// Where a SecureVault without `spec.image` pulls the data plane from.
    pub dataplane_image_repository: String,
}

/// What every reconcile can reach.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on SecureVaults.
    pub recorder: Recorder,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
    /// Which optional kinds the API server serves.
    pub discovery: Discovery,
    /// What the platform team set for every SecureVault.
    pub platform: Arc<Platform>,
    /// The last look into each SecureVault's backup bucket (by uid): see
    /// `reconcile::observe_bucket`.
    pub bucket_views: crate::reconcile::BucketViews,
    /// The last listing of the events about each pending claim (by uid):
    /// see `reconcile::observe_claim`.
    pub claim_events: crate::reconcile::ClaimEvents,
    /// The selectors of the cluster's Prometheuses, kept by a watch.
    pub prometheuses: Prometheuses,
    /// The metadata of children and Secrets, kept by the watches.
    pub caches: Caches,
    /// What this process last applied to each child, and when each
    /// SecureVault was last reconciled in full (one whose status changes
    /// with time is looked at again after the resync interval even when its
    /// inputs did not change; see `unchanged`).
    pub written: crate::written::Written,
    /// What the reconcile in flight of each SecureVault created or updated,
    /// published as one Event per verb when it ends.
    pub changes: crate::changes::Changes,
}

/// How many SecureVaults are reconciled at once: enough that a burst of new
/// ones waits on the API server, not on this queue (with 16, 500 created at
/// once took 1.2 s a reconcile and 14 a second, slower than the control
/// plane), and a bound on the memory of reconciles in flight. An unchanged
/// SecureVault's reconcile sends nothing and ends at once.
const RECONCILE_CONCURRENCY: u16 = 64;

/// How long a SecureVault's reconcile waits for more news before it runs. A
/// rollout moves a Deployment's status several times within a second, and a
/// new SecureVault's children each report their creation: one reconcile
/// sees them all. Short enough that a user waits for nothing they notice,
/// and that a child updated without pause (which keeps pushing the
/// reconcile back) is not one of ours.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the controller until `shutdown` resolves; reconciles in flight
/// finish first. With `namespace`, only that namespace is watched.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    discovery: Discovery,
    platform: Arc<Platform>,
    identity: &str,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    let (reader, writer) = reflector::store();
    let vaults = watcher(
        api::<SecureVault>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // Who wrote which field is the largest part of an object and no
    // reconcile reads it.
    .modify(|sv: &mut SecureVault| sv.metadata.managed_fields = None)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    // Children are watched as metadata only, and kept (trimmed) in the
    // caches that tell whether a SecureVault changed (`unchanged`).
    let ours = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={}", names::MANAGER));
    let mut caches = Caches::default();
    let secrets = caches.keep_secrets(
        watcher(
            api::<PartialObjectMeta<Secret>>(&client, namespace),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    macro_rules! children {
        ($kind:ty) => {
            caches.keep_children::<$kind, _>(
                None,
                watcher(
                    api::<PartialObjectMeta<$kind>>(&client, namespace),
                    ours.clone(),
                )
                .default_backoff(),
            )
        };
    }
    let deployments = children!(Deployment);
    let services = children!(Service);
    let config_maps = children!(ConfigMap);
    let service_accounts = children!(ServiceAccount);
    let cron_jobs = children!(CronJob);
    // The upgrade's backup and migration Jobs: their end moves it on.
    let jobs = children!(Job);
    let autoscalers = children!(HorizontalPodAutoscaler);
    let network_policies = children!(NetworkPolicy);
    let disruption_budgets = children!(PodDisruptionBudget);
    let ingresses = children!(Ingress);
    // A retained claim has no owner reference: it names its SecureVault in
    // an annotation, which maps its changes back.
    let claims = children!(PersistentVolumeClaim);
    // The optional kinds (the Prometheus Operator's, cert-manager's) may not
    // be installed: each is watched only while the API server serves it.
    macro_rules! optional_children {
        ($kind:ty) => {{
            let (client, ours, namespace) =
                (client.clone(), ours.clone(), namespace.map(str::to_owned));
            caches.keep_children::<$kind, _>(
                Some(<$kind as crate::discovery::Optional>::KIND),
                discovery.while_served(<$kind as crate::discovery::Optional>::KIND, move || {
                    watcher(
                        api::<PartialObjectMeta<$kind>>(&client, namespace.as_deref()),
                        ours.clone(),
                    )
                    .default_backoff()
                }),
            )
        }};
    }
    let service_monitors = optional_children!(ServiceMonitor);
    let prometheus_rules = optional_children!(PrometheusRule);
    let alertmanager_configs = optional_children!(AlertmanagerConfig);
    let certificates = optional_children!(Certificate);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: names::MANAGER.into(),
                instance: Some(identity.to_owned()),
            },
        ),
        client: client.clone(),
        metrics,
        discovery: discovery.clone(),
        platform,
        bucket_views: crate::reconcile::BucketViews::new(crate::reconcile::BUCKET_VIEW_TTL),
        claim_events: crate::reconcile::ClaimEvents::new(crate::reconcile::WAITING_RETRY),
        prometheuses: Prometheuses::default(),
        caches,
        written: Default::default(),
        changes: Default::default(),
    });
    let lookup = reader.clone();

    // The cluster's Prometheuses, wherever they run (the chart grants this
    // read cluster-wide): a change of their selectors changes what every
    // SecureVault's MonitoringReady says. A refused watch leaves them
    // unknown, and MonitoringReady silent about them.
    let prometheus_changes = {
        let (client, known) = (client.clone(), ctx.prometheuses.clone());
        discovery
            .while_served(OptionalKind::Prometheus, move || {
                watcher(Api::<Prometheus>::all(client.clone()), watcher::Config::default())
                    .default_backoff()
            })
            .filter_map(move |event| {
                let known = known.clone();
                async move {
                    match event {
                        Ok(event) => known.apply(event).then_some(()),
                        Err(e) => {
                            tracing::debug!(error = %e, "the watch of Prometheuses failed; retrying with backoff");
                            None
                        }
                    }
                }
            })
    };

    Controller::for_stream(vaults, reader)
        // Bounded: after a start every SecureVault is reconciled at once,
        // and the memory of a reconcile in flight is what grows.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(RECONCILE_CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        .owns_stream(deployments)
        .owns_stream(services)
        .owns_stream(config_maps)
        .owns_stream(service_accounts)
        .owns_stream(cron_jobs)
        .owns_stream(jobs)
        .owns_stream(autoscalers)
        .owns_stream(network_policies)
        .owns_stream(disruption_budgets)
        .owns_stream(ingresses)
        .watches_stream(claims, |claim| {
            let namespace = claim.namespace().unwrap_or_default();
            let owners = claim
                .owner_references()
                .iter()
                .filter(|o| o.kind == "SecureVault")
                .map(|o| o.name.clone());
            let retained_for = claim
                .annotations()
                .get(names::RETAINED_FOR_ANNOTATION)
                .cloned();
            owners
                .chain(retained_for)
                .map(|name| ObjectRef::new(&name).within(&namespace))
                .collect::<Vec<_>>()
        })
        .owns_stream(service_monitors)
        .owns_stream(prometheus_rules)
        .owns_stream(alertmanager_configs)
        .owns_stream(certificates)
        // Every Secret: one a SecureVault owns (its generated key), or one
        // its spec refers to.
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            let owners: Vec<String> = secret
                .owner_references()
                .iter()
                .filter(|o| o.kind == "SecureVault")
                .map(|o| o.uid.clone())
                .collect();
            lookup
                .state()
                .into_iter()
                .filter(|sv| sv.namespace() == namespace)
                .filter(|sv| {
                    sv.uid().is_some_and(|uid| owners.contains(&uid))
                        || validate(sv).is_ok_and(|v| v.referenced_secrets().contains(&name))
                })
                .map(|sv| ObjectRef::from(sv.as_ref()))
                .collect::<Vec<_>>()
        })
        // A CRD installed or removed changes what every SecureVault gets.
        .reconcile_all_on(discovery.changes())
        .reconcile_all_on(prometheus_changes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let discovery = discovery.clone();
            async move {
                use kube::runtime::controller::Error as ControllerError;
                match result {
                    // Reconcile failures are logged by `error_policy`.
                    Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
                    // A watched optional kind went away (its CRD deleted):
                    // discovery stops the watch once it knows.
                    Err(ControllerError::QueueError(e)) if is_not_served(&e) => {
                        tracing::debug!(error = %e, "a watched kind is no longer served");
                        discovery.recheck();
                    }
                    // A watch the API server refuses (RBAC, most often)
                    // leaves the operator blind to a kind: say so.
                    Err(ControllerError::QueueError(e)) => {
                        tracing::warn!(error = %e, "a watch failed; retrying with backoff");
                    }
                    Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
                }
            }
        })
        .await;
}

fn is_not_served(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) if crate::discovery::is_not_served(e))
}
