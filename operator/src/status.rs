//! `update_status`: the status is computed from what was observed (the
//! applied Deployment and the problems found on the way), never from intent.
//! Pure, so it is unit-tested without a cluster.

use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::{
    api::{
        ALERT_ROUTING_READY, BACKUP_READY, DEGRADED, MONITORING_READY, PROGRESSING, READY,
        SecureVault, SecureVaultStatus, TLS_READY, Upgrade,
    },
    build::service,
    discovery::{Kinds, OptionalKind},
    names,
    prometheus_selection::{Verdict, describe},
    validate::{BackupDestination, ValidatedVault},
};

/// Something that needs the user's attention, for the `Degraded` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `PascalCase` reason, e.g. `SecretMissing`.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

/// What became of the monitoring objects in this reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitoringState {
    /// `spec.monitoring.enabled` is false.
    Disabled,
    /// ServiceMonitor and PrometheusRule applied.
    Applied,
    /// These Prometheus Operator kinds are not served (their CRDs are not
    /// installed): the kinds served were applied.
    CrdsMissing(Kinds),
}

/// What became of the alert routing, with `spec.monitoring.alertRouting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertRoutingState {
    /// The AlertmanagerConfig is applied.
    Applied,
    /// The AlertmanagerConfig CRD (monitoring.coreos.com/v1alpha1) is not installed.
    CrdMissing,
    /// `spec.monitoring.enabled` is false, which turns routing off too.
    MonitoringDisabled,
}

/// What became of cert-manager's Certificate, with `spec.tls.issuerRef`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateState {
    /// Applied; cert-manager issues the Secret.
    Applied,
    /// cert-manager's Certificate CRD (cert-manager.io/v1) is not installed.
    CrdMissing,
}

/// What the TLS Secret holds, judged as the pods judge it (`tls-check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsState {
    /// Usable and within its dates.
    Valid {
        /// `notAfter`, RFC 3339.
        not_after: String,
    },
    /// The Secret does not exist (yet: cert-manager may be issuing it).
    SecretMissing {
        /// Whether cert-manager is expected to write it.
        awaiting_issuer: bool,
    },
    /// cert-manager is asked for but not installed.
    CertManagerMissing,
    /// What is wrong with the certificate or key.
    Invalid(String),
}

/// Judges a TLS Secret: keys present, key matching the certificate, dates.
pub fn tls_state(
    secret: Option<&k8s_openapi::api::core::v1::Secret>,
    awaiting_issuer: bool,
    now: std::time::SystemTime,
) -> TlsState {
    let Some(secret) = secret else {
        return TlsState::SecretMissing { awaiting_issuer };
    };
    let data = secret.data.clone().unwrap_or_default();
    let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
        return TlsState::Invalid(
            "the Secret lacks tls.crt or tls.key (a kubernetes.io/tls Secret has both)".to_owned(),
        );
    };
    match tls_check::Pair::from_pem(&cert.0, &key.0) {
        Err(unusable) => TlsState::Invalid(unusable.to_string()),
        Ok(pair) => match pair.validity(now) {
            Err(invalid) => TlsState::Invalid(invalid.to_string()),
            Ok(()) => TlsState::Valid {
                not_after: pair.not_after_rfc3339(),
            },
        },
    }
}

/// What the operator sees of the backups: the CronJob's last success (a
/// PostgreSQL store onto a claim), or the newest backup in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupState {
    /// Since when backups are expected: the CronJob's creation, or the
    /// SecureVault's.
    pub created: Option<Timestamp>,
    /// When the last backup was taken.
    pub last_success: Option<Timestamp>,
    /// `Some(bucket)` when seen in a bucket (`s3://bucket/prefix`), `None`
    /// for the CronJob.
    pub bucket: Option<String>,
    /// Why the bucket could not be listed: a stable reason and a message
    /// that says what to fix.
    pub problem: Option<(&'static str, String)>,
}

/// What a reconcile observed and decided, from which the status follows.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The Deployment as the API server returned it after the apply.
    pub deployment: &'a Deployment,
    /// What needs the user's attention, most important first.
    pub problems: &'a [Problem],
    /// What became of monitoring.
    pub monitoring: MonitoringState,
    /// What each Prometheus in the cluster makes of the ServiceMonitor and
    /// PrometheusRule, where the operator knows the cluster's Prometheuses.
    pub selection: Option<&'a [Verdict]>,
    /// What became of the alert routing, when the spec asks for it.
    pub alert_routing: Option<AlertRoutingState>,
    /// What the TLS Secret holds, with `spec.tls`.
    pub tls: Option<&'a TlsState>,
    /// What the backup CronJob shows, with `spec.backup`.
    pub backup: Option<&'a BackupState>,
    /// Where the embedded store lives, without `spec.database`.
    pub storage: Option<crate::api::StorageStatus>,
    /// The upgrade under way, or the last one.
    pub upgrade: Option<Upgrade>,
    /// Finished upgrades, newest first.
    pub upgrade_history: Vec<Upgrade>,
}

/// `MonitoringReady`'s message when all is applied: with the labels a
/// Prometheus must select, since one that selects none scrapes nothing and
/// says nothing, and, where the operator knows the cluster's Prometheuses,
/// which select them.
fn monitoring_applied(v: &ValidatedVault, selection: Option<&[Verdict]>) -> String {
    let applied = monitoring_labels_applied(v);
    match selection {
        Some(verdicts) => format!("{applied}; {}", describe(verdicts)),
        None => applied,
    }
}

fn monitoring_labels_applied(v: &ValidatedVault) -> String {
    let labels = &v.monitoring.labels;
    if labels.is_empty() {
        "ServiceMonitor and PrometheusRule applied without labels (only a Prometheus that \
         selects every one finds them)"
            .to_owned()
    } else {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "ServiceMonitor and PrometheusRule applied with labels {} (what a Prometheus must \
             select)",
            labels.join(",")
        )
    }
}

/// `MonitoringReady`'s message when some of the Prometheus Operator's kinds
/// are not served: which, and what was applied without them.
fn monitoring_crds_missing(missing: Kinds) -> String {
    let kinds = [OptionalKind::ServiceMonitor, OptionalKind::PrometheusRule];
    let list = |kinds: Vec<OptionalKind>| {
        kinds
            .into_iter()
            .map(|k| format!("{} ({})", k.name(), k.api_version()))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let absent: Vec<OptionalKind> = kinds.into_iter().filter(|k| missing.contains(*k)).collect();
    let applied: Vec<&str> = kinds
        .into_iter()
        .filter(|k| !missing.contains(*k))
        .map(OptionalKind::name)
        .collect();
    let (crds, them) = if absent.len() == 1 {
        ("CRD is", "it is")
    } else {
        ("CRDs are", "they are")
    };
    format!(
        "the Prometheus Operator's {} {crds} not installed: {}; the rest follows once {them}",
        list(absent),
        match applied.as_slice() {
            [] => "nothing is applied".to_owned(),
            [one] => format!("only the {one} is applied"),
            many => format!("only the {} are applied", many.join(" and ")),
        },
    )
}

/// How far `deployment` has rolled out its current pod template.
pub fn rollout(deployment: &Deployment) -> Option<crate::upgrade::Rollout> {
    let image = deployment
        .spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()?;
    let observed = deployment.status.clone().unwrap_or_default();
    let desired = deployment.spec.replicas.unwrap_or(1);
    let ready = observed.ready_replicas.unwrap_or(0);
    let updated = observed.updated_replicas.unwrap_or(0);
    let replicas = observed.replicas.unwrap_or(0);
    // A status older than the spec describes the previous template.
    let caught_up = observed.observed_generation >= deployment.metadata.generation;
    Some(crate::upgrade::Rollout {
        image,
        complete: caught_up
            && updated >= desired
            && replicas == desired
            && ready >= desired
            && observed.available_replicas.unwrap_or(0) >= desired,
        // The Deployment counts ready pods of every template; the older
        // ones stay ready through a rollout with maxUnavailable 0.
        ready: if caught_up {
            (ready - (replicas - updated)).clamp(0, updated)
        } else {
            0
        },
        desired,
    })
}

/// The status describing `sv` given what was `observed`.
pub fn compute(
    sv: &SecureVault,
    v: &ValidatedVault,
    observed: &Observed<'_>,
    now: Timestamp,
) -> SecureVaultStatus {
    let Observed {
        deployment,
        problems,
        monitoring,
        selection,
        alert_routing,
        tls,
        backup,
        ..
    } = *observed;
    let previous = sv.status.clone().unwrap_or_default();
    let generation = sv.metadata.generation;
    let deployment_status = deployment.status.clone().unwrap_or_default();
    // With autoscaling the wanted count is the autoscaler's, on the Deployment.
    let desired = match &v.autoscaling {
        Some(_) => deployment.spec.replicas.unwrap_or(1),
        None => v.replicas,
    };
    let ready = deployment_status.ready_replicas.unwrap_or(0);
    let updated = deployment_status.updated_replicas.unwrap_or(0);
    let existing = deployment_status.replicas.unwrap_or(0);
    let deployment_caught_up =
        deployment_status.observed_generation >= deployment.metadata.generation;
    let rolled_out =
        deployment_caught_up && updated >= desired && existing == desired && ready >= desired;
    let upgrading = observed.upgrade.as_ref().filter(|u| !u.phase.is_finished());

    let degraded = problems.first();
    let conditions = vec![
        condition(
            &previous,
            READY,
            rolled_out && degraded.is_none(),
            if degraded.is_some() {
                ("NotReady", "see the Degraded condition".to_owned())
            } else if rolled_out {
                (
                    "AllReplicasReady",
                    format!("{ready}/{desired} pods ready, running {}", v.version),
                )
            } else {
                ("ReplicasNotReady", format!("{ready}/{desired} pods ready"))
            },
            generation,
            now,
        ),
        condition(
            &previous,
            PROGRESSING,
            !rolled_out || upgrading.is_some(),
            if let Some(u) = upgrading {
                (
                    "Upgrading",
                    format!(
                        "upgrade {} -> {}, phase {:?}: {}",
                        u.from_version, u.to_version, u.phase, u.message
                    ),
                )
            } else if rolled_out {
                (
                    "RolloutComplete",
                    format!("every pod runs version {}", v.version),
                )
            } else {
                (
                    "RollingOut",
                    format!("{updated}/{desired} pods updated to version {}", v.version),
                )
            },
            generation,
            now,
        ),
        condition(
            &previous,
            DEGRADED,
            degraded.is_some(),
            match degraded {
                Some(p) => (
                    p.reason,
                    problems
                        .iter()
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                None => ("AsExpected", "no problem found".to_owned()),
            },
            generation,
            now,
        ),
        condition(
            &previous,
            MONITORING_READY,
            monitoring == MonitoringState::Applied,
            match monitoring {
                MonitoringState::Applied => ("Applied", monitoring_applied(v, selection)),
                MonitoringState::CrdsMissing(missing) => (
                    "PrometheusOperatorMissing",
                    monitoring_crds_missing(missing),
                ),
                MonitoringState::Disabled => {
                    ("Disabled", "spec.monitoring.enabled is false".to_owned())
                }
            },
            generation,
            now,
        ),
    ];
    let mut conditions = conditions;
    if let (Some(b), Some(wanted)) = (backup, v.backup.as_ref()) {
        let max_age = wanted.max_age.as_secs();
        let age = |t: Timestamp| (now - t).get_seconds().max(0).unsigned_abs();
        let (seen_in, since) = match &b.bucket {
            Some(bucket) => (
                format!("the data plane's log says why (the bucket is {bucket})"),
                "the SecureVault was created".to_owned(),
            ),
            None => {
                let cron_job = crate::build::backup_cron_job::name(v);
                (
                    format!("see the Jobs of CronJob {cron_job}"),
                    format!("the CronJob {cron_job} was created"),
                )
            }
        };
        let (ok, reason, message) = match (&b.problem, b.last_success) {
            (Some((reason, problem)), _) => (
                false,
                *reason,
                format!("the backups cannot be listed: {problem}"),
            ),
            (None, Some(t)) if age(t) <= max_age => {
                (true, "Recent", format!("the last backup succeeded at {t}"))
            }
            (None, Some(t)) => (
                false,
                "BackupTooOld",
                format!(
                    "the last successful backup ({t}) is older than {max_age} s (spec.backup.maxAgeSeconds): {seen_in}"
                ),
            ),
            (None, None) if b.created.is_some_and(|c| age(c) > max_age) => (
                false,
                "BackupTooOld",
                format!("no backup has succeeded in the {max_age} s since {since}: {seen_in}"),
            ),
            (None, None) if b.bucket.is_some() => (
                true,
                "Scheduled",
                format!(
                    "the first backup is due within {} s",
                    wanted.interval.as_secs()
                ),
            ),
            (None, None) => (
                true,
                "Scheduled",
                format!("the first backup runs on schedule `{}`", wanted.schedule),
            ),
        };
        conditions.push(condition(
            &previous,
            BACKUP_READY,
            ok,
            (reason, message),
            generation,
            now,
        ));
    }

    if let Some(state) = alert_routing {
        let (ok, reason, message) = match state {
            AlertRoutingState::Applied => (
                true,
                "Applied",
                format!(
                    "AlertmanagerConfig {} routes critical alerts to PagerDuty and warnings to Slack (those configured)",
                    crate::build::alertmanager_config::name(v)
                ),
            ),
            AlertRoutingState::CrdMissing => (
                false,
                "AlertmanagerConfigCrdMissing",
                "the Prometheus Operator's AlertmanagerConfig CRD (monitoring.coreos.com/v1alpha1) is not installed: nobody receives this instance's alerts; install it, or load `operator alertmanager` output into a plain Alertmanager".to_owned(),
            ),
            AlertRoutingState::MonitoringDisabled => (
                false,
                "MonitoringDisabled",
                "spec.monitoring.enabled is false: there are no alerts to route".to_owned(),
            ),
        };
        conditions.push(condition(
            &previous,
            ALERT_ROUTING_READY,
            ok,
            (reason, message),
            generation,
            now,
        ));
    }

    if let (Some(state), Some(spec)) = (tls, v.tls.as_ref()) {
        let secret = &spec.secret_name;
        let (ok, reason, message) = match state {
            TlsState::Valid { not_after } => (
                true,
                "Valid",
                format!("Secret {secret} holds a certificate valid until {not_after} with its key"),
            ),
            TlsState::SecretMissing {
                awaiting_issuer: true,
            } => (
                false,
                "AwaitingIssuance",
                format!(
                    "Secret {secret} does not exist yet: cert-manager issues it for Certificate {secret}; the pods start once it does"
                ),
            ),
            TlsState::SecretMissing {
                awaiting_issuer: false,
            } => (
                false,
                "SecretMissing",
                format!(
                    "Secret {secret} does not exist: create a kubernetes.io/tls Secret (tls.crt, tls.key), or set spec.tls.issuerRef for cert-manager to issue it; the pods wait for it"
                ),
            ),
            TlsState::CertManagerMissing => (
                false,
                "CertManagerMissing",
                "cert-manager's Certificate CRD (cert-manager.io/v1) is not installed: install cert-manager, or remove spec.tls.issuerRef and provide the Secret yourself".to_owned(),
            ),
            TlsState::Invalid(problem) => (
                false,
                "CertificateInvalid",
                format!("Secret {secret}: {problem}"),
            ),
        };
        conditions.push(condition(
            &previous,
            TLS_READY,
            ok,
            (reason, message),
            generation,
            now,
        ));
    }

    SecureVaultStatus {
        observed_generation: generation,
        conditions,
        replicas: existing,
        ready_replicas: ready,
        desired_replicas: desired,
        replicas_summary: Some(format!("{ready}/{desired}")),
        version: if rolled_out {
            Some(v.version.clone())
        } else {
            previous.version.clone()
        },
        selector: Some(names::selector_string(&v.name)),
        storage: observed.storage.clone(),
        last_backup_time: backup
            .and_then(|b| b.last_success)
            .map(|t| t.to_string())
            .or(previous.last_backup_time.clone()),
        backup_destination: v.backup.as_ref().map(|b| match &b.destination {
            BackupDestination::Bucket(bucket) => bucket.describe(),
            BackupDestination::Claim { name, .. } => format!("claim {name}"),
        }),
        service: Some(service::address(v)),
        upgrade: observed.upgrade.clone(),
        upgrade_history: observed.upgrade_history.clone(),
        // Set by the reconcile that computed this status, when it settled.
        observed_inputs: None,
    }
}

/// The previous status with `Degraded` set to a failed reconcile's message;
/// everything else stays as last observed.
pub fn failed(sv: &SecureVault, message: &str, now: Timestamp) -> SecureVaultStatus {
    degraded(sv, "ReconcileFailed", message, now)
}

/// The status of `sv` with `Degraded` set for `reason` (e.g. `NotAllowed`:
/// the spec asks for what the operator's policy refuses), the rest kept.
pub fn degraded(
    sv: &SecureVault,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> SecureVaultStatus {
    let mut status = sv.status.clone().unwrap_or_default();
    // Whatever went wrong must be looked at again, not skipped as unchanged.
    status.observed_inputs = None;
    let degraded = condition(
        &status,
        DEGRADED,
        true,
        (reason, message.to_owned()),
        sv.metadata.generation,
        now,
    );
    status.conditions.retain(|c| c.type_ != DEGRADED);
    status.conditions.push(degraded);
    status
}

/// A condition in the standard shape. `lastTransitionTime` moves only when
/// the status flips, so an unchanged world yields an identical status (and
/// no write).
fn condition(
    previous: &SecureVaultStatus,
    type_: &str,
    status: bool,
    (reason, message): (&str, String),
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .condition(type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    use super::*;
    use crate::validate::{test_support::*, validate};

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        ready: i32,
    ) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(generation);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            ..DeploymentStatus::default()
        });
        d
    }

    /// [`compute`] without an upgrade.
    fn compute_for(
        sv: &SecureVault,
        v: &ValidatedVault,
        deployment: &Deployment,
        problems: &[Problem],
        monitoring: MonitoringState,
        backup: Option<&BackupState>,
        now: Timestamp,
    ) -> SecureVaultStatus {
        let observed = Observed {
            deployment,
            problems,
            monitoring,
            selection: None,
            alert_routing: None,
            tls: None,
            backup,
            storage: None,
            upgrade: None,
            upgrade_history: Vec::new(),
        };
        compute(sv, v, &observed, now)
    }

    #[test]
    fn an_upgrade_under_way_is_progressing_even_when_the_pods_are_ready() {
        let sv = vault(MINIMAL);
        let v = validate(&sv).unwrap();
        let upgrade = Upgrade {
            id: "a1b2c3".into(),
            from_version: "0.1.0".into(),
            from_image: "securevault/dataplane:0.1.0".into(),
            to_version: "0.2.0".into(),
            to_image: "securevault/dataplane:0.2.0".into(),
            phase: crate::api::UpgradePhase::Migrating,
            start_time: "2026-11-30T12:00:00Z".into(),
            phase_time: "2026-11-30T12:00:00Z".into(),
            completion_time: None,
            message: "pre-upgrade backup Job mail-upgrade-a1b2c3-backup succeeded".into(),
        };
        let d = deployment(1, 1, 1, 1, 1);
        let observed = Observed {
            deployment: &d,
            problems: &[],
            monitoring: MonitoringState::Applied,
            selection: None,
            alert_routing: None,
            tls: None,
            backup: None,
            storage: None,
            upgrade: Some(upgrade.clone()),
            upgrade_history: Vec::new(),
        };
        let s = compute(&sv, &v, &observed, Timestamp::now());
        assert_eq!(cond(&s, READY).status, "True", "the old version serves");
        let progressing = cond(&s, PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "Upgrading")
        );
        assert!(
            progressing
                .message
                .contains("0.1.0 -> 0.2.0, phase Migrating")
        );
        assert_eq!(s.upgrade, Some(upgrade));
    }

    #[test]
    fn the_rollout_of_a_deployment_counts_only_its_current_template() {
        let mut d = deployment(2, 2, 2, 2, 2);
        d.spec.replicas = Some(2);
        d.spec.template.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                image: Some("securevault/dataplane:0.2.0".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let complete = |d: &Deployment| rollout(d).unwrap().complete;
        assert!(!complete(&d), "nothing available yet");
        d.status.as_mut().unwrap().available_replicas = Some(2);
        assert!(complete(&d));
        assert_eq!(rollout(&d).unwrap().image, "securevault/dataplane:0.2.0");
        d.metadata.generation = Some(3);
        assert!(!complete(&d), "the status describes the previous template");
        d.metadata.generation = Some(2);
        d.status.as_mut().unwrap().replicas = Some(3);
        assert!(!complete(&d), "an old pod is still there");
        // One new pod, not ready; two old ones, ready.
        d.status.as_mut().unwrap().updated_replicas = Some(1);
        assert_eq!(rollout(&d).unwrap().ready, 0);
    }

    fn cond<'a>(s: &'a SecureVaultStatus, t: &str) -> &'a Condition {
        s.condition(t).unwrap()
    }

    #[test]
    fn ready_once_every_pod_runs_the_new_template() {
        let mut sv = vault(MINIMAL);
        sv.metadata.generation = Some(1);
        let v = validate(&sv).unwrap();
        let now = Timestamp::now();

        let rolling = compute_for(
            &sv,
            &v,
            &deployment(1, 1, 1, 1, 0),
            &[],
            MonitoringState::Applied,
            None,
            now,
        );
        assert_eq!(cond(&rolling, READY).status, "False");
        assert_eq!(cond(&rolling, PROGRESSING).status, "True");
        assert_eq!(rolling.version, None);

        let done = compute_for(
            &sv,
            &v,
            &deployment(1, 1, 1, 1, 1),
            &[],
            MonitoringState::Applied,
            None,
            now,
        );
        assert_eq!(cond(&done, READY).status, "True");
        assert_eq!(cond(&done, PROGRESSING).reason, "RolloutComplete");
        assert_eq!(cond(&done, DEGRADED).status, "False");
        assert_eq!(done.version.as_deref(), Some("0.1.0"));
        assert_eq!(done.replicas_summary.as_deref(), Some("1/1"));
        assert_eq!(done.observed_generation, Some(1));
        assert_eq!(done.service.as_deref(), Some("http://mail.team-a.svc:8080"));
    }

    #[test]
    fn a_deployment_that_has_not_seen_its_new_spec_is_not_rolled_out() {
        let mut sv = vault(MINIMAL);
        sv.metadata.generation = Some(2);
        let v = validate(&sv).unwrap();
        let s = compute_for(
            &sv,
            &v,
            &deployment(3, 2, 1, 1, 1),
            &[],
            MonitoringState::Applied,
            None,
            Timestamp::now(),
        );
        assert_eq!(cond(&s, READY).status, "False");
    }

    #[test]
    fn problems_make_it_degraded_with_their_message() {
        let sv = vault(MINIMAL);
        let v = validate(&sv).unwrap();
        let problem = Problem {
            reason: "SecretMissing",
            message: "Secret team-a/mail-db (spec.database.urlSecretRef) does not exist".into(),
        };
        let s = compute_for(
            &sv,
            &v,
            &deployment(1, 1, 1, 1, 1),
            &[problem],
            MonitoringState::Applied,
            None,
            Timestamp::now(),
        );
        assert_eq!(cond(&s, DEGRADED).status, "True");
        assert_eq!(cond(&s, DEGRADED).reason, "SecretMissing");
        assert!(cond(&s, DEGRADED).message.contains("mail-db"));
        assert_eq!(cond(&s, READY).status, "False");
    }

    #[test]
    fn monitoring_names_the_kinds_that_are_missing_and_what_was_applied() {
        let sv = vault(MINIMAL);
        let v = validate(&sv).unwrap();
        let message = |missing: &[OptionalKind]| {
            let s = compute_for(
                &sv,
                &v,
                &deployment(1, 1, 1, 1, 1),
                &[],
                MonitoringState::CrdsMissing(missing.iter().copied().collect()),
                None,
                Timestamp::now(),
            );
            let c = cond(&s, MONITORING_READY);
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "PrometheusOperatorMissing")
            );
            c.message.clone()
        };
        assert_eq!(
            message(&[OptionalKind::ServiceMonitor, OptionalKind::PrometheusRule]),
            "the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) and PrometheusRule (monitoring.coreos.com/v1) CRDs are not installed: nothing is applied; the rest follows once they are"
        );
        assert_eq!(
            message(&[OptionalKind::PrometheusRule]),
            "the Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1) CRD is not installed: only the ServiceMonitor is applied; the rest follows once it is"
        );
    }

    #[test]
    fn a_failed_reconcile_sets_degraded_and_keeps_the_rest() {
        let mut sv = vault(MINIMAL);
        let v = validate(&sv).unwrap();
        sv.status = Some(compute_for(
            &sv,
            &v,
            &deployment(1, 1, 1, 1, 1),
            &[],
            MonitoringState::CrdsMissing(Kinds::all()),
            None,
            Timestamp::now(),
        ));
        let s = failed(&sv, "apply Deployment mail: forbidden", Timestamp::now());
        assert_eq!(cond(&s, DEGRADED).reason, "ReconcileFailed");
        assert_eq!(
            cond(&s, DEGRADED).message,
            "apply Deployment mail: forbidden"
        );
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.conditions.len(), 4);
        let monitoring = cond(&s, MONITORING_READY);
        assert_eq!(monitoring.status, "False");
        assert_eq!(monitoring.reason, "PrometheusOperatorMissing");
    }

    #[test]
    fn an_unchanged_world_gives_an_identical_status() {
        let mut sv = vault(MINIMAL);
        let v = validate(&sv).unwrap();
        let d = deployment(1, 1, 1, 1, 1);
        let first = compute_for(
            &sv,
            &v,
            &d,
            &[],
            MonitoringState::Applied,
            None,
            Timestamp::now(),
        );
        sv.status = Some(first.clone());
        let later = Timestamp::now() + std::time::Duration::from_secs(60);
        assert_eq!(
            compute_for(&sv, &v, &d, &[], MonitoringState::Applied, None, later),
            first
        );
    }

    #[test]
    fn backup_ready_follows_the_age_of_the_last_success() {
        let sv = with_spec(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {volumeClaimName: backups, maxAgeSeconds: 3600}
",
        );
        let v = validate(&sv).unwrap();
        let now = Timestamp::now();
        let d = deployment(1, 1, 1, 1, 1);
        let status = |created: i64, success: Option<i64>| {
            let state = BackupState {
                created: Some(now - k8s_openapi::jiff::SignedDuration::from_secs(created)),
                last_success: success
                    .map(|s| now - k8s_openapi::jiff::SignedDuration::from_secs(s)),
                bucket: None,
                problem: None,
            };
            compute_for(
                &sv,
                &v,
                &d,
                &[],
                MonitoringState::Applied,
                Some(&state),
                now,
            )
        };
        let fresh = status(10, None);
        assert_eq!(cond(&fresh, BACKUP_READY).reason, "Scheduled");
        assert_eq!(cond(&fresh, BACKUP_READY).status, "True");
        let recent = status(7200, Some(600));
        assert_eq!(cond(&recent, BACKUP_READY).reason, "Recent");
        assert!(recent.last_backup_time.is_some());
        let old = status(90_000, Some(7200));
        assert_eq!(cond(&old, BACKUP_READY).status, "False");
        assert_eq!(cond(&old, BACKUP_READY).reason, "BackupTooOld");
        let never = status(7200, None);
        assert_eq!(cond(&never, BACKUP_READY).status, "False");
        // Without spec.backup there is no such condition.
        let plain = compute_for(
            &sv,
            &minimal(),
            &d,
            &[],
            MonitoringState::Applied,
            None,
            now,
        );
        assert!(plain.condition(BACKUP_READY).is_none());
    }

    fn tls_secret(cert: &str, key: &str) -> k8s_openapi::api::core::v1::Secret {
        use k8s_openapi::ByteString;
        k8s_openapi::api::core::v1::Secret {
            data: Some(std::collections::BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(cert.as_bytes().to_vec())),
                ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn the_tls_secret_is_judged_as_the_data_plane_judges_it() {
        let ca = testkit::certs::TestCa::new("status test").unwrap();
        let good = ca.issue(&["mail.team-a.svc"]).unwrap();
        let other = ca.issue(&["mail.team-a.svc"]).unwrap();
        let expired = ca.issue_expired(&["mail.team-a.svc"]).unwrap();
        let now = std::time::SystemTime::now();
        assert_eq!(
            tls_state(Some(&tls_secret(&good.cert_pem, &good.key_pem)), false, now),
            TlsState::Valid {
                not_after: "2100-01-01T00:00:00Z".into()
            }
        );
        let TlsState::Invalid(mismatch) = tls_state(
            Some(&tls_secret(&good.cert_pem, &other.key_pem)),
            false,
            now,
        ) else {
            panic!("a foreign key must be invalid")
        };
        assert!(mismatch.contains("does not match"), "{mismatch}");
        let TlsState::Invalid(old) = tls_state(
            Some(&tls_secret(&expired.cert_pem, &expired.key_pem)),
            false,
            now,
        ) else {
            panic!("an expired certificate must be invalid")
        };
        assert!(old.contains("expired on 2021-01-01"), "{old}");
        assert_eq!(
            tls_state(None, true, now),
            TlsState::SecretMissing {
                awaiting_issuer: true
            }
        );
        let empty = k8s_openapi::api::core::v1::Secret::default();
        assert!(matches!(
            tls_state(Some(&empty), false, now),
            TlsState::Invalid(m) if m.contains("lacks tls.crt or tls.key")
        ));
    }

    #[test]
    fn tls_ready_and_alert_routing_ready_only_when_asked_for() {
        let sv = vault(MINIMAL);
        let v = crate::validate::test_support::validated(
            "  tls: {secretName: mail-tls}\n  monitoring:\n    alertRouting:\n      slack: {apiUrlSecretRef: {name: s, key: u}}\n",
        );
        let d = deployment(1, 1, 1, 1, 1);
        let invalid = TlsState::Invalid("the certificate expired on 2021-01-01T00:00:00Z".into());
        let observed = Observed {
            deployment: &d,
            problems: &[],
            monitoring: MonitoringState::Applied,
            selection: None,
            alert_routing: Some(AlertRoutingState::CrdMissing),
            tls: Some(&invalid),
            backup: None,
            storage: None,
            upgrade: None,
            upgrade_history: Vec::new(),
        };
        let s = compute(&sv, &v, &observed, Timestamp::now());
        let tls = cond(&s, TLS_READY);
        assert_eq!(
            (tls.status.as_str(), tls.reason.as_str()),
            ("False", "CertificateInvalid")
        );
        assert!(
            tls.message
                .starts_with("Secret mail-tls: the certificate expired")
        );
        let routing = cond(&s, ALERT_ROUTING_READY);
        assert_eq!(routing.reason, "AlertmanagerConfigCrdMissing");
        let plain = compute_for(
            &sv,
            &minimal(),
            &d,
            &[],
            MonitoringState::Applied,
            None,
            Timestamp::now(),
        );
        assert!(plain.condition(TLS_READY).is_none());
        assert!(plain.condition(ALERT_ROUTING_READY).is_none());
    }
}
