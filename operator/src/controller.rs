//! Wiring: which objects are watched and what triggers a reconcile.
//!
//! - SecureVaults, filtered on `metadata.generation`: a status write (ours)
//!   does not trigger another reconcile, a spec change does.
//! - The children we own (only those labelled as managed by us are cached):
//!   deleting or editing one brings its SecureVault back to reconcile at once.
//! - Secrets, as metadata only (their values never sit in our memory): a
//!   referenced Secret that appears or changes reconciles the SecureVaults
//!   that reference it, so recovery needs no resync.

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
        monitoring::{PrometheusRule, ServiceMonitor},
    },
    names,
    reconcile::{error_policy, reconcile},
    telemetry::Metrics,
    validate::validate,
};

/// What every reconcile can reach.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on SecureVaults.
    pub recorder: Recorder,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
}

/// Runs the controller until `shutdown` resolves; reconciles in flight
/// finish first. With `namespace`, only that namespace is watched.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
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
    // The Prometheus Operator's kinds may not be installed: their watches
    // fail and retry with backoff (plain `owns` would retry at once, in a
    // loop), and start delivering once the CRDs appear.
    let service_monitors = watcher(
        api::<PartialObjectMeta<ServiceMonitor>>(&client, namespace),
        ours.clone(),
    )
    .default_backoff()
    .touched_objects();
    let prometheus_rules = watcher(
        api::<PartialObjectMeta<PrometheusRule>>(&client, namespace),
        ours.clone(),
    )
    .default_backoff()
    .touched_objects();

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
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            use kube::runtime::controller::Error as ControllerError;
            match result {
                // Reconcile failures are logged by `error_policy`.
                Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
                // A watch the API server refuses (RBAC, most often) leaves
                // the operator blind to a kind: say so. A missing kind (the
                // Prometheus Operator's CRDs) is expected and retried.
                Err(ControllerError::QueueError(e)) if !is_not_found(&e) => {
                    tracing::warn!(error = %e, "a watch failed; retrying with backoff");
                }
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
}

fn is_not_found(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) if s.code == 404)
}
