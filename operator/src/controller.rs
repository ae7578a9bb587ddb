//! Wiring: which objects are watched and what triggers a reconcile.
//!
//! - SecureVaults, filtered on `metadata.generation`: a status write (ours)
//!   does not trigger another reconcile, a spec change does.
//! - The children we own (only those labelled as managed by us are cached):
//!   deleting or editing one brings its SecureVault back to reconcile at once.
//! - Secrets, as metadata only (their values never sit in our memory): a
//!   referenced Secret that appears or changes reconciles the SecureVaults
//!   that reference it, so recovery needs no resync.
//! - The optional kinds we own (ServiceMonitor, PrometheusRule), watched
//!   only while the API server serves them; a change in what it serves
//!   reconciles every SecureVault.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::{CronJob, Job},
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    networking::v1::NetworkPolicy,
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
        monitoring::{Prometheus, PrometheusRule, ServiceMonitor},
    },
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
    /// The selectors of the cluster's Prometheuses, kept by a watch.
    pub prometheuses: Prometheuses,
}

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
        bucket_views: Default::default(),
        prometheuses: Prometheuses::default(),
    });

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
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    let ours = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={}", names::MANAGER));
    let secrets = watcher(
        api::<PartialObjectMeta<Secret>>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let lookup = reader.clone();
    // The Prometheus Operator's kinds may not be installed: each is watched
    // only while the API server serves it.
    let service_monitors = {
        let (client, ours, namespace) =
            (client.clone(), ours.clone(), namespace.map(str::to_owned));
        discovery.while_served(OptionalKind::ServiceMonitor, move || {
            watcher(
                api::<PartialObjectMeta<ServiceMonitor>>(&client, namespace.as_deref()),
                ours.clone(),
            )
            .default_backoff()
            .touched_objects()
        })
    };
    let prometheus_rules = {
        let (client, ours, namespace) =
            (client.clone(), ours.clone(), namespace.map(str::to_owned));
        discovery.while_served(OptionalKind::PrometheusRule, move || {
            watcher(
                api::<PartialObjectMeta<PrometheusRule>>(&client, namespace.as_deref()),
                ours.clone(),
            )
            .default_backoff()
            .touched_objects()
        })
    };

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
        .owns(api::<Deployment>(&client, namespace), ours.clone())
        .owns(api::<Service>(&client, namespace), ours.clone())
        .owns(api::<ConfigMap>(&client, namespace), ours.clone())
        .owns(api::<ServiceAccount>(&client, namespace), ours.clone())
        .owns(api::<Secret>(&client, namespace), ours.clone())
        .owns(api::<CronJob>(&client, namespace), ours.clone())
        // The upgrade's backup and migration Jobs: their end moves it on.
        .owns(api::<Job>(&client, namespace), ours.clone())
        .owns(
            api::<HorizontalPodAutoscaler>(&client, namespace),
            ours.clone(),
        )
        .owns(api::<NetworkPolicy>(&client, namespace), ours.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), ours)
        .owns_stream(service_monitors)
        .owns_stream(prometheus_rules)
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            lookup
                .state()
                .into_iter()
                .filter(|sv| sv.namespace() == namespace)
                .filter(|sv| validate(sv).is_ok_and(|v| v.referenced_secrets().contains(&name)))
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
