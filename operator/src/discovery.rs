//! Which optional kinds the API server serves.
//!
//! The operator writes four kinds whose CRDs belong to someone else: the
//! Prometheus Operator's `ServiceMonitor`, `PrometheusRule` (both
//! `monitoring.coreos.com/v1`) and `AlertmanagerConfig` (`v1alpha1`), and
//! cert-manager's `Certificate`; and it reads a fifth, the Prometheus
//! Operator's `Prometheus`, to tell whether one selects what it wrote. A cluster may serve any combination of
//! them, and one group may be served in one version but not another. Asking
//! for a kind that is not served gets the API server's plain `404 page not
//! found` (not a `Status` object), which looks like a missing object to code
//! that only checks the code; so the operator learns what is served from
//! discovery instead, and never reads, writes or cleans up a kind that is
//! not.
//!
//! What is served is learned by one aggregated discovery request (`GET
//! /apis`) for the whole process, not per SecureVault: at start, every
//! [`RECHECK_WHILE_MISSING`] while some optional kind is missing (so a CRD
//! installed later is picked up without a restart), and at once when the
//! API server answers "not served" for a kind discovery said it serves (so a
//! CRD removed later is noticed). Each change reconciles every SecureVault.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use kube::{Client, Resource, core::discovery::v2::APIGroupDiscoveryList};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        cert_manager::Certificate,
        monitoring::{AlertmanagerConfig, Prometheus, PrometheusRule, ServiceMonitor},
    },
    telemetry::Metrics,
};

/// How often discovery is asked again while an optional kind is missing.
pub const RECHECK_WHILE_MISSING: Duration = Duration::from_secs(10);

/// How often it is asked again when every kind is served: removals are
/// noticed earlier, by the "not served" answers.
const RECHECK_WHEN_COMPLETE: Duration = Duration::from_secs(600);

/// How long to wait before asking again after discovery itself failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// A kind the operator writes (or, `Prometheus`, reads) only where its CRD
/// is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionalKind {
    /// `monitoring.coreos.com/v1`, `servicemonitors`.
    ServiceMonitor,
    /// `monitoring.coreos.com/v1`, `prometheusrules`.
    PrometheusRule,
    /// `monitoring.coreos.com/v1alpha1`, `alertmanagerconfigs`.
    AlertmanagerConfig,
    /// `cert-manager.io/v1`, `certificates`.
    Certificate,
    /// `monitoring.coreos.com/v1`, `prometheuses` (read only).
    Prometheus,
}

impl OptionalKind {
    /// Every optional kind.
    pub const ALL: [OptionalKind; 5] = [
        OptionalKind::ServiceMonitor,
        OptionalKind::PrometheusRule,
        OptionalKind::AlertmanagerConfig,
        OptionalKind::Certificate,
        OptionalKind::Prometheus,
    ];

    /// The kind's name, e.g. `ServiceMonitor`.
    pub fn name(self) -> &'static str {
        match self {
            OptionalKind::ServiceMonitor => "ServiceMonitor",
            OptionalKind::PrometheusRule => "PrometheusRule",
            OptionalKind::AlertmanagerConfig => "AlertmanagerConfig",
            OptionalKind::Certificate => "Certificate",
            OptionalKind::Prometheus => "Prometheus",
        }
    }

    /// Group, version and plural, from the Rust type we write.
    fn resource(self) -> (String, String, String) {
        fn of<K: Resource<DynamicType = ()>>() -> (String, String, String) {
            (
                K::group(&()).into_owned(),
                K::version(&()).into_owned(),
                K::plural(&()).into_owned(),
            )
        }
        match self {
            OptionalKind::ServiceMonitor => of::<ServiceMonitor>(),
            OptionalKind::PrometheusRule => of::<PrometheusRule>(),
            OptionalKind::AlertmanagerConfig => of::<AlertmanagerConfig>(),
            OptionalKind::Certificate => of::<Certificate>(),
            OptionalKind::Prometheus => of::<Prometheus>(),
        }
    }

    /// `group/version`, e.g. `monitoring.coreos.com/v1`.
    pub fn api_version(self) -> String {
        let (group, version, _) = self.resource();
        format!("{group}/{version}")
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A Rust type of an optional kind.
pub trait Optional: Resource<DynamicType = ()> {
    /// Which one.
    const KIND: OptionalKind;
}

impl Optional for ServiceMonitor {
    const KIND: OptionalKind = OptionalKind::ServiceMonitor;
}

impl Optional for PrometheusRule {
    const KIND: OptionalKind = OptionalKind::PrometheusRule;
}

impl Optional for AlertmanagerConfig {
    const KIND: OptionalKind = OptionalKind::AlertmanagerConfig;
}

impl Optional for Certificate {
    const KIND: OptionalKind = OptionalKind::Certificate;
}

impl Optional for Prometheus {
    const KIND: OptionalKind = OptionalKind::Prometheus;
}

/// A set of optional kinds: those served, or those missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds(u8);

impl Kinds {
    /// Every optional kind.
    pub fn all() -> Kinds {
        OptionalKind::ALL.into_iter().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: OptionalKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind`.
    #[must_use]
    pub fn with(self, kind: OptionalKind) -> Kinds {
        Kinds(self.0 | kind.bit())
    }

    /// The set without `kind`.
    #[must_use]
    pub fn without(self, kind: OptionalKind) -> Kinds {
        Kinds(self.0 & !kind.bit())
    }

    /// The kinds not in the set, in [`OptionalKind::ALL`]'s order.
    pub fn missing(self) -> impl Iterator<Item = OptionalKind> {
        OptionalKind::ALL
            .into_iter()
            .filter(move |k| !self.contains(*k))
    }

    /// The kinds in the set, in [`OptionalKind::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = OptionalKind> {
        OptionalKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// What an aggregated discovery document (`GET /apis`) says is served.
    pub fn from_discovery(list: &APIGroupDiscoveryList) -> Kinds {
        OptionalKind::ALL
            .into_iter()
            .filter(|kind| {
                let (group, version, plural) = kind.resource();
                list.items
                    .iter()
                    .filter(|g| g.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some(&group))
                    .flat_map(|g| &g.versions)
                    .filter(|v| v.version.as_deref() == Some(&version))
                    .flat_map(|v| &v.resources)
                    .any(|r| r.resource.as_deref() == Some(&plural))
            })
            .collect()
    }
}

impl FromIterator<OptionalKind> for Kinds {
    fn from_iter<I: IntoIterator<Item = OptionalKind>>(kinds: I) -> Kinds {
        Kinds(kinds.into_iter().fold(0, |bits, k| bits | k.bit()))
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.iter().map(OptionalKind::name).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// Whether the API server answered that the kind asked for is not served:
/// a 404 that is not a `Status` saying the object is missing. The plain
/// `404 page not found` has no `Status` body, which kube reports with the
/// reason "Failed to parse error data".
pub fn is_not_served(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => {
            (status.code == 404 && status.reason != "NotFound")
                // A CRD being deleted still answers, but refuses every
                // creation: the kind is on its way out.
                || (status.code == 403
                    && status
                        .message
                        .contains("custom resource definition is terminating"))
        }
        _ => false,
    }
}

/// What the process knows of the served kinds, shared by every reconcile.
#[derive(Clone)]
pub struct Discovery {
    served: Arc<watch::Sender<Kinds>>,
    recheck: Arc<Notify>,
}

impl Discovery {
    /// Asks discovery once (retrying until it answers or `stop` fires), then
    /// keeps the answer fresh in the background until `stop`.
    pub async fn start(
        client: Client,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Option<Discovery> {
        let first = loop {
            match ask(&client).await {
                Ok(served) => break served,
                Err(e) => tracing::warn!(error = %e, "API discovery failed; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
            }
        };
        tracing::info!(served = %first, "optional kinds served by the API server");
        record(&metrics, first);
        let discovery = Discovery {
            served: Arc::new(watch::Sender::new(first)),
            recheck: Arc::new(Notify::new()),
        };
        tokio::spawn(discovery.clone().keep_fresh(client, metrics, stop));
        Some(discovery)
    }

    /// A fixed answer that never changes, for tests of what uses it.
    pub fn fixed(served: Kinds) -> Discovery {
        Discovery {
            served: Arc::new(watch::Sender::new(served)),
            recheck: Arc::new(Notify::new()),
        }
    }

    /// The kinds served, as last learned.
    pub fn served(&self) -> Kinds {
        *self.served.borrow()
    }

    /// The API server said `kind` is not served: believe it now, and ask
    /// discovery again soon (it may have been a CRD on its way in or out).
    pub fn not_served(&self, kind: OptionalKind) {
        let changed = self.served.send_if_modified(|s| {
            let before = *s;
            *s = s.without(kind);
            *s != before
        });
        if changed {
            tracing::info!(
                kind = kind.name(),
                "the API server no longer serves this kind"
            );
        }
        self.recheck.notify_one();
    }

    /// Ask discovery again soon (a watch of an optional kind failed).
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Yields once each time the set of served kinds changes.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.served.subscribe(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// The stream `make` builds, run only while `kind` is served: started
    /// when it becomes served, dropped when it stops being served, started
    /// again when it comes back. A watch of a kind that is not served would
    /// only fail and retry.
    pub fn while_served<S, F>(
        &self,
        kind: OptionalKind,
        make: F,
    ) -> impl Stream<Item = S::Item> + Send + 'static
    where
        S: Stream + Send + 'static,
        F: Fn() -> S + Send + 'static,
    {
        futures::stream::unfold(
            (self.served.subscribe(), make),
            move |(mut rx, make)| async move {
                rx.wait_for(|s| s.contains(kind)).await.ok().map(drop)?;
                let mut gone = rx.clone();
                let until = async move {
                    let _ = gone.wait_for(|s| !s.contains(kind)).await.map(drop);
                };
                Some((make().take_until(until), (rx, make)))
            },
        )
        .flatten()
    }

    async fn keep_fresh(self, client: Client, metrics: Arc<Metrics>, stop: CancellationToken) {
        let mut wait = self.next_wait();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.recheck.notified() => {}
            }
            match ask(&client).await {
                Ok(served) => {
                    let changed = self.served.send_if_modified(|s| {
                        let before = *s;
                        *s = served;
                        before != served
                    });
                    if changed {
                        tracing::info!(served = %served, "optional kinds served by the API server changed");
                    }
                    record(&metrics, served);
                    wait = self.next_wait();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "API discovery failed; retrying");
                    wait = RETRY_AFTER_FAILURE;
                }
            }
        }
    }

    fn next_wait(&self) -> Duration {
        if self.served().missing().next().is_some() {
            RECHECK_WHILE_MISSING
        } else {
            RECHECK_WHEN_COMPLETE
        }
    }
}

/// `securevault_optional_kind_served{kind}`: 1 for each kind served.
fn record(metrics: &Metrics, served: Kinds) {
    for kind in OptionalKind::ALL {
        metrics.set_optional_kind_served(kind.name(), served.contains(kind));
    }
}

async fn ask(client: &Client) -> Result<Kinds, kube::Error> {
    Ok(Kinds::from_discovery(
        &client.list_api_groups_aggregated().await?,
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::core::discovery::v2::{APIGroupDiscovery, APIResourceDiscovery, APIVersionDiscovery};

    use super::*;

    fn group(name: &str, versions: &[(&str, &[&str])]) -> APIGroupDiscovery {
        APIGroupDiscovery {
            metadata: Some(ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            }),
            versions: versions
                .iter()
                .map(|(version, resources)| APIVersionDiscovery {
                    version: Some((*version).to_owned()),
                    resources: resources
                        .iter()
                        .map(|r| APIResourceDiscovery {
                            resource: Some((*r).to_owned()),
                            ..APIResourceDiscovery::default()
                        })
                        .collect(),
                    ..APIVersionDiscovery::default()
                })
                .collect(),
        }
    }

    fn list(groups: Vec<APIGroupDiscovery>) -> APIGroupDiscoveryList {
        APIGroupDiscoveryList {
            items: groups,
            ..APIGroupDiscoveryList::default()
        }
    }

    #[test]
    fn each_kind_is_judged_by_its_own_group_version_and_plural() {
        // The cluster of the report: monitoring.coreos.com/v1 with the two
        // CRDs, no v1alpha1, no cert-manager.
        let served = Kinds::from_discovery(&list(vec![
            group("apps", &[("v1", &["deployments"])]),
            group(
                "monitoring.coreos.com",
                &[("v1", &["servicemonitors", "prometheusrules"])],
            ),
        ]));
        assert!(served.contains(OptionalKind::ServiceMonitor));
        assert!(served.contains(OptionalKind::PrometheusRule));
        assert_eq!(
            served.missing().collect::<Vec<_>>(),
            [
                OptionalKind::AlertmanagerConfig,
                OptionalKind::Certificate,
                OptionalKind::Prometheus
            ]
        );
        assert_eq!(served.to_string(), "ServiceMonitor, PrometheusRule");

        // The same plural in another version is not the kind we write.
        let other_version = Kinds::from_discovery(&list(vec![group(
            "monitoring.coreos.com",
            &[
                ("v1beta1", &["alertmanagerconfigs"]),
                ("v1", &["prometheusrules"]),
            ],
        )]));
        assert_eq!(
            other_version,
            [OptionalKind::PrometheusRule].into_iter().collect()
        );
        assert_eq!(Kinds::from_discovery(&list(vec![])).to_string(), "none");
    }

    #[test]
    fn everything_served_and_removal() {
        let served = Kinds::from_discovery(&list(vec![
            group(
                "monitoring.coreos.com",
                &[
                    (
                        "v1",
                        &[
                            "servicemonitors",
                            "prometheusrules",
                            "podmonitors",
                            "prometheuses",
                        ],
                    ),
                    ("v1alpha1", &["alertmanagerconfigs"]),
                ],
            ),
            group("cert-manager.io", &[("v1", &["certificates", "issuers"])]),
        ]));
        assert_eq!(served, Kinds::all());
        assert_eq!(served.missing().count(), 0);
        let fewer = served.without(OptionalKind::Certificate);
        assert!(!fewer.contains(OptionalKind::Certificate));
        assert!(fewer.contains(OptionalKind::AlertmanagerConfig));
    }

    #[test]
    fn each_kind_names_the_rust_type_it_is() {
        fn same<K: Optional>() {
            assert_eq!(K::kind(&()), K::KIND.name());
            assert_eq!(K::api_version(&()), K::KIND.api_version());
        }
        same::<ServiceMonitor>();
        same::<PrometheusRule>();
        same::<AlertmanagerConfig>();
        same::<Certificate>();
        same::<Prometheus>();
        assert_eq!(
            OptionalKind::AlertmanagerConfig.api_version(),
            "monitoring.coreos.com/v1alpha1"
        );
    }

    #[test]
    fn a_plain_404_page_is_not_served_and_a_status_404_is_a_missing_object() {
        let plain = kube::Error::Api(
            kube::core::Status::failure("404 page not found", "Failed to parse error data")
                .with_code(404)
                .boxed(),
        );
        assert!(is_not_served(&plain));
        let missing = kube::Error::Api(
            kube::core::Status::failure("servicemonitors \"mail\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        );
        assert!(!is_not_served(&missing));
        let terminating = kube::Error::Api(
            kube::core::Status::failure(
                "servicemonitors.monitoring.coreos.com \"mail\" is forbidden: create not allowed while custom resource definition is terminating",
                "Forbidden",
            )
            .with_code(403)
            .boxed(),
        );
        assert!(is_not_served(&terminating));
        let forbidden = kube::Error::Api(
            kube::core::Status::failure(
                "servicemonitors is forbidden: User cannot create",
                "Forbidden",
            )
            .with_code(403)
            .boxed(),
        );
        assert!(!is_not_served(&forbidden), "RBAC refusals stay errors");
    }

    #[tokio::test]
    async fn a_watch_runs_only_while_its_kind_is_served() {
        let discovery = Discovery::fixed(Kinds::default());
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let mut stream = Box::pin(discovery.while_served(OptionalKind::Certificate, move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::pending::<()>()
        }));
        let poll = |stream: &mut std::pin::Pin<Box<_>>| {
            futures::FutureExt::now_or_never(StreamExt::next(stream)).is_some()
        };
        assert!(!poll(&mut stream));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
        discovery.served.send_replace(Kinds::all());
        assert!(!poll(&mut stream));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        discovery.not_served(OptionalKind::Certificate);
        assert!(!poll(&mut stream));
        discovery.served.send_replace(Kinds::all());
        assert!(!poll(&mut stream));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
