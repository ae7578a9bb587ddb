//! The operator on any cluster: each combination of the optional CRDs
//! (the Prometheus Operator's ServiceMonitor, PrometheusRule and
//! AlertmanagerConfig; cert-manager's Certificate) present or absent. For
//! each, the minimal and the complete sample, each on a fresh namespace with
//! its own operator: Ready for its generation, every core child present,
//! each condition saying exactly what is missing of what it asked for, no
//! failed reconcile in the operator's metrics. Then the missing CRDs are
//! installed while the operators run, and the children appear; removed
//! while they run, and the conditions say so.
//!
//! Alone in its own test binary on purpose: it deletes CRDs from the shared
//! cluster, and cargo runs test binaries one after the other, so no other
//! test sees them missing. Its own tests take turns (one lock), and the CRDs
//! are all put back however a test ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use operator::{
    api::{
        SecureVault,
        monitoring::{AlertmanagerConfig, PrometheusRule, ServiceMonitor},
    },
    discovery::OptionalKind::{
        self, AlertmanagerConfig as Amc, Certificate, PrometheusRule as Pr, ServiceMonitor as Sm,
    },
};

/// One test at a time: the CRDs are the whole cluster's.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each optional kind's CRD: its name, the cache directory's prefix and the
/// file `tests/cluster/cluster.sh` installed it from.
fn crd(kind: OptionalKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        Sm => (
            "servicemonitors.monitoring.coreos.com",
            "prometheus-operator-",
            "monitoring.coreos.com_servicemonitors.yaml",
        ),
        Pr => (
            "prometheusrules.monitoring.coreos.com",
            "prometheus-operator-",
            "monitoring.coreos.com_prometheusrules.yaml",
        ),
        Amc => (
            "alertmanagerconfigs.monitoring.coreos.com",
            "prometheus-operator-",
            "monitoring.coreos.com_alertmanagerconfigs.yaml",
        ),
        Certificate => (
            "certificates.cert-manager.io",
            "cert-manager-",
            "cert-manager.io_certificates.yaml",
        ),
        OptionalKind::Prometheus => (
            "prometheuses.monitoring.coreos.com",
            "prometheus-operator-",
            "monitoring.coreos.com_prometheuses.yaml",
        ),
    }
}

/// The cached CRD file of `kind`.
fn crd_file(kind: OptionalKind) -> PathBuf {
    let (_, prefix, file) = crd(kind);
    let cache = std::env::var_os("SECUREVAULT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/securevault")
        });
    std::fs::read_dir(cache.join("crds"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("{prefix}* CRDs cached by tests/cluster/cluster.sh"))
        .join(file)
}

/// Sets which optional CRDs the cluster has; all of them again on drop.
/// The lock keeps the other lane's tests that need the CRDs waiting until
/// they are all back (it is released after `drop` has reinstalled them).
struct Crds {
    cluster: &'static Cluster,
    _lock: std::fs::File,
}

impl Crds {
    fn take() -> Crds {
        let cluster = Cluster::shared().unwrap();
        Crds {
            cluster,
            _lock: cluster.crds_lock(true).unwrap(),
        }
    }
}

impl Crds {
    /// Installs the CRDs of `wanted` and deletes the others, waiting until
    /// the installed ones are Established and the deleted ones gone.
    fn only(&self, wanted: &[OptionalKind]) {
        let (keep, drop): (Vec<OptionalKind>, Vec<OptionalKind>) = OptionalKind::ALL
            .into_iter()
            .partition(|k| wanted.contains(k));
        if !drop.is_empty() {
            let mut args = vec!["delete", "crd", "--wait=true", "--ignore-not-found"];
            args.extend(drop.iter().map(|k| crd(*k).0));
            self.cluster.kubectl(&args).unwrap();
        }
        if !keep.is_empty() {
            let files: Vec<String> = keep
                .iter()
                .map(|k| crd_file(*k).display().to_string())
                .collect();
            let mut args = vec!["apply", "--server-side", "--force-conflicts"];
            for f in &files {
                args.extend(["-f", f.as_str()]);
            }
            self.cluster.kubectl(&args).unwrap();
            for k in keep.iter() {
                let name = crd(*k).0;
                self.cluster
                    .wait_established(name)
                    .unwrap_or_else(|e| panic!("{name} is not Established: {e}"));
            }
        }
    }
}

impl Drop for Crds {
    fn drop(&mut self) {
        self.only(&OptionalKind::ALL);
    }
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("config/samples").join(name)).unwrap()
}

/// Which sample a namespace runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sample {
    Minimal,
    Complete,
}

/// A namespace running one sample, with its operator.
struct Run {
    world: World,
    sample: Sample,
    operator: Operator,
}

impl Run {
    async fn start(prefix: &str, sample: Sample) -> Run {
        let world = World::new(prefix).await;
        let operator = world.operator("solo");
        operator.wait_leader();
        world
            .apply(&self::sample(match sample {
                Sample::Minimal => "minimal.yaml",
                Sample::Complete => "complete.yaml",
            }))
            .unwrap();
        Run {
            world,
            sample,
            operator,
        }
    }

    /// Waits until the SecureVault is Ready for its generation, with every
    /// core child, and with conditions and optional children that match
    /// what the cluster serves; then checks the operator never failed.
    async fn expect(&self, served: &[OptionalKind]) {
        let w = &self.world;
        wait_ready(w, "mail").await;
        let mut core = vec![
            "serviceaccount/mail",
            "configmap/mail-config",
            "deployment/mail",
            "service/mail",
        ];
        match self.sample {
            Sample::Minimal => core.push("secret/mail-secret-key"),
            Sample::Complete => core.extend([
                "poddisruptionbudget/mail",
                "horizontalpodautoscaler/mail",
                "networkpolicy/mail",
                "ingress/mail",
                "cronjob/mail-backup",
            ]),
        }
        for child in core {
            let found = w
                .kubectl(&["get", child, "--ignore-not-found", "-o", "name"])
                .unwrap();
            assert!(
                !found.trim().is_empty(),
                "{:?} sample, {served:?} served: {child} missing",
                self.sample
            );
        }

        let api = w.api::<SecureVault>();
        let sample = self.sample;
        let what = format!("{sample:?} sample's conditions with {served:?} served");
        let sv = eventually(
            Duration::from_secs(60),
            &what,
            || async { api.get_opt("mail").await.ok().flatten() },
            |sv: &SecureVault| conditions_match(sv, sample, served),
        )
        .await;
        let status = sv.status.unwrap();
        assert_eq!(status.observed_generation, sv.metadata.generation);
        let monitoring = status.condition("MonitoringReady").unwrap();
        for kind in [Sm, Pr] {
            let named = format!("{} ({})", kind.name(), kind.api_version());
            assert_eq!(
                monitoring.message.contains(&named),
                !served.contains(&kind),
                "MonitoringReady names exactly the missing kinds: {}",
                monitoring.message
            );
        }
        if sample == Sample::Complete {
            let routing = &status.condition("AlertRoutingReady").unwrap().message;
            let tls = &status.condition("TLSReady").unwrap().message;
            if !served.contains(&Amc) {
                assert!(
                    routing.contains("AlertmanagerConfig CRD")
                        && routing.contains("operator alertmanager"),
                    "{routing}"
                );
            }
            if !served.contains(&Certificate) {
                assert!(tls.contains("install cert-manager"), "{tls}");
            }
        }

        // The optional children of the kinds served are there.
        if served.contains(&Sm) {
            eventually(
                Duration::from_secs(30),
                "the ServiceMonitor",
                || async { w.api::<ServiceMonitor>().get_opt("mail").await.ok() },
                Option::is_some,
            )
            .await;
        }
        if served.contains(&Pr) {
            eventually(
                Duration::from_secs(30),
                "the PrometheusRule",
                || async { w.api::<PrometheusRule>().get_opt("mail-alerts").await.ok() },
                Option::is_some,
            )
            .await;
        }
        if sample == Sample::Complete && served.contains(&Amc) {
            let routing = eventually(
                Duration::from_secs(30),
                "the AlertmanagerConfig",
                || async {
                    w.api::<AlertmanagerConfig>()
                        .get_opt("mail-alert-routing")
                        .await
                        .ok()
                        .flatten()
                },
                |_| true,
            )
            .await;
            // Accepted by the real CRD's schema, as the Prometheus Operator
            // reads it.
            assert_eq!(routing.spec.route.routes[0].receiver, "pagerduty");
            assert_eq!(
                routing.spec.receivers[2].slack_configs[0].api_url.key,
                "slack-webhook-url"
            );
        }
        if sample == Sample::Complete && served.contains(&Certificate) {
            eventually(
                Duration::from_secs(30),
                "the Certificate",
                || async {
                    w.api::<operator::api::cert_manager::Certificate>()
                        .get_opt("mail-tls")
                        .await
                        .ok()
                },
                Option::is_some,
            )
            .await;
        }
        self.never_failed();
    }

    /// No failed reconcile counted by the operator, and no unparsed 404 in
    /// its log.
    fn never_failed(&self) {
        let metrics = self.operator.metrics();
        let failures: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("securevault_reconcile_errors_total"))
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        assert!(
            failures.is_empty(),
            "{:?} sample: failed reconciles {failures:?}\n{}",
            self.sample,
            self.operator.process.output_lines().join("\n")
        );
        let log = self.operator.process.output_lines().join("\n");
        assert!(
            !log.contains("Failed to parse error data"),
            "an unparsed 404 reached the log:\n{log}"
        );
    }
}

/// Whether the SecureVault's conditions say what `served` implies for
/// `sample`: MonitoringReady True only with both monitoring kinds;
/// AlertRoutingReady and TLSReady only for the complete sample, which asks
/// for them, saying the CRD is missing when it is.
fn conditions_match(sv: &SecureVault, sample: Sample, served: &[OptionalKind]) -> bool {
    let Some(status) = sv.status.as_ref() else {
        return false;
    };
    if status.observed_generation != sv.metadata.generation {
        return false;
    }
    let is = |name: &str, state: &str, reason: &str| {
        status
            .condition(name)
            .is_some_and(|c| c.status == state && c.reason == reason)
    };
    let monitoring = if served.contains(&Sm) && served.contains(&Pr) {
        is("MonitoringReady", "True", "Applied")
    } else {
        is("MonitoringReady", "False", "PrometheusOperatorMissing")
    };
    let (routing, tls) = match sample {
        Sample::Minimal => (
            status.condition("AlertRoutingReady").is_none(),
            status.condition("TLSReady").is_none(),
        ),
        Sample::Complete => (
            if served.contains(&Amc) {
                is("AlertRoutingReady", "True", "Applied")
            } else {
                is("AlertRoutingReady", "False", "AlertmanagerConfigCrdMissing")
            },
            // Nobody issues the certificate here: cert-manager's CRD
            // without its controller.
            if served.contains(&Certificate) {
                is("TLSReady", "False", "AwaitingIssuance")
            } else {
                is("TLSReady", "False", "CertManagerMissing")
            },
        ),
    };
    is("Ready", "True", "AllReplicasReady") && monitoring && routing && tls
}

/// A combination: both samples on it, then the missing CRDs installed while
/// the operators run.
async fn combination(prefix: &str, served: &[OptionalKind]) {
    let _turn = TURN.lock().await;
    let crds = Crds::take();
    crds.only(served);
    let minimal = Run::start(&format!("{prefix}-min"), Sample::Minimal).await;
    let complete = Run::start(&format!("{prefix}-all"), Sample::Complete).await;
    minimal.expect(served).await;
    complete.expect(served).await;

    crds.only(&OptionalKind::ALL);
    minimal.expect(&OptionalKind::ALL).await;
    complete.expect(&OptionalKind::ALL).await;
}

#[tokio::test]
async fn no_optional_crd() {
    combination("crd-none", &[]).await;
}

#[tokio::test]
async fn service_monitor_and_prometheus_rule_only() {
    combination("crd-smpr", &[Sm, Pr]).await;
}

#[tokio::test]
async fn the_prometheus_operator_without_cert_manager() {
    combination("crd-prom", &[Sm, Pr, Amc]).await;
}

#[tokio::test]
async fn cert_manager_without_the_prometheus_operator() {
    combination("crd-cert", &[Certificate]).await;
}

#[tokio::test]
async fn every_optional_crd_then_some_removed_while_running() {
    let _turn = TURN.lock().await;
    let crds = Crds::take();
    crds.only(&OptionalKind::ALL);
    let complete = Run::start("crd-every", Sample::Complete).await;
    complete.expect(&OptionalKind::ALL).await;

    // The AlertmanagerConfig and Certificate CRDs go while it runs: the
    // conditions say so, and nothing fails.
    crds.only(&[Sm, Pr]);
    complete.expect(&[Sm, Pr]).await;
    // And the rest of the Prometheus Operator's.
    crds.only(&[]);
    complete.expect(&[]).await;
}

/// The leader-failover test on the cluster of the report: ServiceMonitor
/// and PrometheusRule only. The standby that takes over reconciles.
#[tokio::test]
async fn a_standby_takes_over_on_a_cluster_with_service_monitor_and_prometheus_rule_only() {
    let _turn = TURN.lock().await;
    let crds = Crds::take();
    crds.only(&[Sm, Pr]);
    let w = World::new("crd-leader").await;
    let mut first = w.operator("first");
    first.wait_leader();
    let second = w.operator("second");
    w.apply(&sample("minimal.yaml")).unwrap();
    wait_ready(&w, "mail").await;
    assert_eq!(first.stop().code(), Some(0));
    second.wait_leader();
    // The new leader follows a change of version.
    w.apply(&vault("mail", "  version: 0.3.0\n  replicas: 1\n"))
        .unwrap();
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(60),
        "version 0.3.0 running",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| sv.status.as_ref().and_then(|s| s.version.as_deref()) == Some("0.3.0"),
    )
    .await;
    let minimal = Run {
        world: w,
        sample: Sample::Minimal,
        operator: second,
    };
    minimal.expect(&[Sm, Pr]).await;
}
