//! The reconcile pipeline, one step per line:
//!
//! `validate -> dereference -> build -> apply -> update_status`
//!
//! `validate` and `build` touch no client; `dereference` only reads (the
//! generated key, the referenced Secrets); `apply` is the one place that
//! writes children, with server-side apply under [`names::MANAGER`];
//! `update_status` writes the status only when it changed. An unchanged
//! SecureVault therefore causes no write at all; and before any of it, one
//! whose inputs, as the watch caches show them, are those its status says
//! it last settled on is not reconciled again: no request at all (see
//! [`crate::unchanged`]).

use std::{collections::BTreeMap, fmt::Debug, sync::Arc, time::Duration};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::{CronJob, Job},
        core::v1::{ConfigMap, Event as CoreEvent, PersistentVolumeClaim, Secret},
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    api::{SecureVault, StorageStatus, UpgradePhase},
    api::{
        cert_manager::Certificate,
        monitoring::{AlertmanagerConfig, PrometheusRule, ServiceMonitor},
    },
    build::{
        self, Resources, alertmanager_config, backup_cron_job, certificate, dashboard,
        prometheus_rule,
        secret::{Generated, generate_key},
    },
    cache::Lookup,
    controller::Context,
    discovery::{Kinds, Optional, OptionalKind},
    names,
    recent::Recent,
    status::{
        self, AlertRoutingState, BackupState, CertificateState, MonitoringState, Problem, TlsState,
    },
    storage, unchanged,
    upgrade::{self, JobState, Release},
    validate::{BackupDestination, ValidatedVault, validate},
};

/// How often an unchanged SecureVault is looked at again, as a safety net:
/// changes to the children already trigger a reconcile through watches.
const RESYNC: Duration = Duration::from_secs(600);

/// How often a SecureVault that waits for its certificate is looked at
/// again. (One that waits for a CRD needs no such retry: a change in what
/// the API server serves reconciles every SecureVault.)
pub(crate) const WAITING_RETRY: Duration = Duration::from_secs(20);

/// What can fail while reconciling; the `metric_label` is bounded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        /// `get`, `apply`, `delete` or `patch status`.
        verb: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// What the API server (or the connection) said.
        #[source]
        source: kube::Error,
    },
    /// The API server does not serve the kind asked for (its CRD is not
    /// installed): it answered with a plain `404 page not found`.
    #[error(
        "{verb} {kind} {name}: the API server does not serve {kind} ({api_version}); is its CRD installed?"
    )]
    NotServed {
        /// `get`, `apply`, `delete` or `patch status`.
        verb: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// `group/version` of the kind.
        api_version: String,
        /// The object's name.
        name: String,
    },
    /// A child's name is taken by an object this SecureVault does not own:
    /// nothing is written to it (server-side apply with force would take it
    /// over), and the SecureVault reports the conflict.
    #[error(
        "{kind} {namespace}/{name} already exists and is not this SecureVault's ({owner}): the operator leaves it untouched; delete or rename it, or give the SecureVault another name"
    )]
    NotOwned {
        /// The object's kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Who owns it, as far as its metadata says.
        owner: String,
    },
    /// The system's random source failed while generating a key.
    #[error("generating the secret key: {0}")]
    Random(#[from] getrandom::Error),
}

impl Error {
    /// A fixed label for the `reconcile_errors_total{reason}` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { verb: "get", .. } => "get_failed",
            Error::Kube { verb: "apply", .. } => "apply_failed",
            Error::Kube { verb: "delete", .. } => "delete_failed",
            Error::Kube { .. } => "status_failed",
            Error::NotServed { .. } => "kind_not_served",
            Error::NotOwned { .. } => "not_owned",
            Error::Random(_) => "random_failed",
        }
    }
}

fn kube_error<K: Resource<DynamicType = ()>>(
    verb: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_owned();
    move |source| {
        if crate::discovery::is_not_served(&source) {
            Error::NotServed {
                verb,
                kind: kind_of::<K>(),
                api_version: K::api_version(&()).into_owned(),
                name,
            }
        } else {
            Error::Kube {
                verb,
                kind: kind_of::<K>(),
                name,
                source,
            }
        }
    }
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // `K::kind(&())` is a Cow of a static str for every k8s-openapi type;
    // match the ones we handle to keep a `&'static str` for labels.
    match K::kind(&()).as_ref() {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        "ServiceAccount" => "ServiceAccount",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "ServiceMonitor" => "ServiceMonitor",
        "CronJob" => "CronJob",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler",
        "NetworkPolicy" => "NetworkPolicy",
        "PrometheusRule" => "PrometheusRule",
        "Job" => "Job",
        "Ingress" => "Ingress",
        "AlertmanagerConfig" => "AlertmanagerConfig",
        "Certificate" => "Certificate",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "Event" => "Event",
        "SecureVault" => "SecureVault",
        _ => "object",
    }
}

/// Reconciles one SecureVault.
#[tracing::instrument(skip_all, fields(securevault = %sv.name_any(), namespace = sv.namespace().unwrap_or_default()))]
pub async fn reconcile(sv: Arc<SecureVault>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    // Answered from the caches when nothing changed since it last settled
    // (see `unchanged`): no request at all.
    let cached = cached_inputs(&ctx, &sv).await;
    if let Some(cached) = &cached
        && sv.status.as_ref().and_then(|s| s.observed_inputs.as_ref()) == Some(&cached.digest)
        && !cached.due_by_time(&ctx, &sv)
    {
        ctx.metrics.count_unchanged();
        return Ok(Action::requeue(RESYNC));
    }
    let cached_version = sv.resource_version();
    tracing::debug!("inputs changed since the last settled reconcile, or time is up");
    if let Some(uid) = sv.uid() {
        ctx.written.full_reconcile(&uid, 2 * RESYNC);
    }
    // The watch cache may not show the status this operator wrote a moment
    // ago (a child's event can trigger the next reconcile first), and the
    // upgrade machine continues from that status: read it from the API
    // server. One GET per reconcile; no write depends on the cache.
    let name = sv.name_any();
    let api: Api<SecureVault> =
        Api::namespaced(ctx.client.clone(), &sv.namespace().unwrap_or_default());
    let Some(sv) = api
        .get_opt(&name)
        .await
        .map_err(kube_error::<SecureVault>("get", &name))?
    else {
        return Ok(Action::await_change());
    };
    let v = match validate(&sv) {
        Ok(v) => v
            .with_monitoring_labels(&ctx.platform.monitoring_labels)
            .with_image_repository(&ctx.platform.dataplane_image_repository),
        Err(e) => {
            // The user must change the SecureVault; retrying cannot help.
            ctx.publish(&sv, EventType::Warning, "InvalidSpec", &e.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };
    // What the platform team does not allow is refused whole, with a
    // condition that names it: nothing of this spec is written.
    let violations = ctx.platform.policy.violations(&v);
    if !violations.is_empty() {
        let message = violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ctx.publish(&sv, EventType::Warning, "NotAllowed", &message)
            .await;
        let status = status::degraded(&sv, "NotAllowed", &message, Timestamp::now());
        write_status(&ctx, &sv, &v, status).await?;
        return Ok(Action::await_change());
    }
    // What this reconcile reads, as the caches show it: recorded in the
    // status if it ends settled. Taken before anything is read, so that a
    // change meanwhile makes it stale (and the next reconcile a full one).
    let inputs = if sv.resource_version() == cached_version {
        cached.map(|c| c.digest)
    } else {
        cached_inputs(&ctx, &sv).await.map(|c| c.digest)
    };
    let result = pipeline(&ctx, &sv, &v, inputs).await;
    // What it wrote, said in one Event per verb rather than one per child:
    // the events recorder keeps each Event it published for six minutes,
    // and a fleet's creation would otherwise hold thousands in memory.
    for (verb, objects) in ctx.changes.take(sv.uid().as_deref().unwrap_or_default()) {
        ctx.publish(
            &sv,
            EventType::Normal,
            verb,
            &crate::changes::note(verb, &objects),
        )
        .await;
    }
    match result {
        Ok(next) => Ok(Action::requeue(next)),
        Err(e) => {
            ctx.publish(&sv, EventType::Warning, "ReconcileFailed", &e.to_string())
                .await;
            let status = status::failed(&sv, &e.to_string(), Timestamp::now());
            if let Err(status_error) = write_status(&ctx, &sv, &v, status).await {
                tracing::warn!(error = %status_error, "could not report the failure in the status");
            }
            Err(e)
        }
    }
}

/// The steps after validation; any error ends the reconcile and is retried.
/// Returns when to look again without news.
async fn pipeline(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    inputs: Option<String>,
) -> Result<Duration, Error> {
    let (generated, mut problems) = dereference(ctx, sv, v).await?;
    let (existing, observed) = observe(ctx, sv, v).await?;
    let mut target = Release {
        version: v.version.clone(),
        image: v.image.clone(),
    };
    if let Some((running, problem)) = refused_downgrade(sv, &target, observed.running.as_ref()) {
        problems.push(problem);
        target = running;
    }
    let previous = sv.status.as_ref().and_then(|s| s.upgrade.as_ref());
    let now = Timestamp::now();
    let decision = upgrade::decide(
        &v.name,
        &target,
        previous,
        &observed,
        &upgrade::Settings::of(v),
        now,
    );
    problems.extend(decision.problem.clone());
    for note in &decision.notes {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(sv, type_, note.reason, &note.message).await;
    }
    let mut deployed = with_release(v, &decision.deploy);
    // An older operator's emptyDir holds the store: it stays until the spec
    // asks for a claim (see `storage`).
    let left_on_empty_dir = storage::left_on_empty_dir(sv, existing.as_ref());
    if left_on_empty_dir {
        deployed.storage = None;
        // Scheduled backups would change the pod template, and a new pod
        // starts on a new, empty emptyDir: the store would be lost. Such a
        // vault moves with a backup by hand and `spec.restoreFrom`.
        deployed.backup = None;
    }
    if let Some(step) = &decision.step {
        run_step(ctx, sv, v, &deployed, step).await?;
    }
    let resources = build::build(&deployed, &generated);
    let Applied {
        claim,
        deployment,
        monitoring,
        alert_routing,
        tls,
        backup,
    } = apply(ctx, sv, &deployed, existing.as_ref(), resources).await?;
    let storage = match &claim {
        Some(claim) => Some(observe_claim(ctx, &v.namespace, claim).await?),
        None => left_on_empty_dir.then(storage::on_empty_dir),
    };
    let history = sv
        .status
        .as_ref()
        .map(|s| s.upgrade_history.as_slice())
        .unwrap_or_default();
    // Who selects the ServiceMonitor and PrometheusRule, from the watch of
    // the cluster's Prometheuses (no request here).
    let selection = (monitoring == MonitoringState::Applied
        && ctx.discovery.served().contains(OptionalKind::Prometheus))
    .then(|| {
        let labels = build::service_monitor::monitoring_labels(v);
        ctx.prometheuses.verdicts(&v.namespace, &labels)
    })
    .flatten();
    let observed_status = status::Observed {
        deployment: &deployment,
        problems: &problems,
        monitoring,
        selection: selection.as_deref(),
        alert_routing,
        tls: tls.as_ref(),
        backup: backup.as_ref(),
        storage: storage.clone(),
        upgrade: decision.upgrade.clone(),
        upgrade_history: upgrade::record(history, &decision.finished),
    };
    // Waiting for a certificate: look again soon rather than at the resync.
    let next = if tls
        .as_ref()
        .is_some_and(|t| !matches!(t, TlsState::Valid { .. }))
        // The claim is not watched (a retained one has no owner to map it
        // back): while it binds, look again soon.
        || storage.as_ref().is_some_and(|s| s.phase == "Pending")
    {
        WAITING_RETRY
    } else {
        RESYNC
    };
    // Nothing waits for a step, a deadline or a retry: the same inputs
    // would give the same status and no write (see `unchanged`).
    let settled = next == RESYNC
        && decision.step.is_none()
        && decision.wake.is_none()
        && decision
            .upgrade
            .as_ref()
            .is_none_or(|u| u.phase.is_finished());
    update_status(
        ctx,
        sv,
        &deployed,
        observed_status,
        inputs.filter(|_| settled),
    )
    .await?;
    // A deadline is checked a second after it passes.
    Ok(decision
        .wake
        .map_or(next, |wake| next.min(wake + Duration::from_secs(1))))
}

/// The digest of what a reconcile of `sv` reads, from the caches alone
/// (`None` until they are filled, or for a spec that does not validate).
struct CachedInputs {
    digest: String,
    time_dependent: bool,
}

async fn cached_inputs(ctx: &Context, sv: &SecureVault) -> Option<CachedInputs> {
    let v = validate(sv)
        .ok()?
        .with_monitoring_labels(&ctx.platform.monitoring_labels)
        .with_image_repository(&ctx.platform.dataplane_image_repository);
    let served = ctx.discovery.served();
    if !ctx.caches.filled(served).await {
        return None;
    }
    let selection = served
        .contains(OptionalKind::Prometheus)
        .then(|| {
            let labels = build::service_monitor::monitoring_labels(&v);
            ctx.prometheuses.verdicts(&v.namespace, &labels)
        })
        .flatten();
    let inputs = unchanged::Inputs {
        sv,
        vault: &v,
        platform: &ctx.platform,
        served,
        selection: selection.as_deref(),
    };
    Some(CachedInputs {
        digest: unchanged::digest(&inputs, &ctx.caches),
        time_dependent: unchanged::time_dependent(&v),
    })
}

impl CachedInputs {
    /// Whether a SecureVault whose status changes with time is due for a
    /// full look: the resync interval has passed since the last one in
    /// this process (or since it started).
    fn due_by_time(&self, ctx: &Context, sv: &SecureVault) -> bool {
        if !self.time_dependent {
            return false;
        }
        let last = sv
            .uid()
            .and_then(|uid| ctx.written.since_full_reconcile(&uid));
        last.unwrap_or_else(|| ctx.caches.age()) >= RESYNC
    }
}

/// `v` running `release` instead of the spec's.
fn with_release(v: &ValidatedVault, release: &Release) -> ValidatedVault {
    let mut v = v.clone();
    v.version = release.version.clone();
    v.image = release.image.clone();
    v
}

/// Reads the Deployment as it is, and what the upgrade machine needs: from
/// the Deployment and the status, the running release and the rollout; the
/// current step's Job.
async fn observe(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
) -> Result<(Option<Deployment>, upgrade::Observed), Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let name = names::workload(&v.name);
    let deployment = deployments
        .get_opt(&name)
        .await
        .map_err(kube_error::<Deployment>("get", &name))?;
    let status = sv.status.clone().unwrap_or_default();
    let active = status.upgrade.as_ref().filter(|u| !u.phase.is_finished());
    let rollout = deployment.as_ref().and_then(status::rollout);
    // The image of the version that last rolled out: the Deployment's,
    // unless an upgrade has changed it since.
    let running = match (&status.version, &rollout) {
        (Some(version), Some(r)) => Some(Release {
            version: version.clone(),
            image: match active {
                Some(u) if &u.from_version == version => u.from_image.clone(),
                Some(u) if &u.to_version == version => u.to_image.clone(),
                _ => r.image.clone(),
            },
        }),
        _ => None,
    };
    let job = match active.map(|u| (u.phase, u)) {
        Some((UpgradePhase::BackingUp, u)) => {
            job_state(ctx, v, &upgrade::job_name(&v.name, &u.id, "backup")).await?
        }
        Some((UpgradePhase::Migrating, u)) => {
            job_state(ctx, v, &upgrade::job_name(&v.name, &u.id, "migrate")).await?
        }
        _ => JobState::Missing,
    };
    Ok((
        deployment,
        upgrade::Observed {
            running,
            rollout,
            job,
        },
    ))
}

/// Where the Job `name` stands, from its final conditions.
async fn job_state(ctx: &Context, v: &ValidatedVault, name: &str) -> Result<JobState, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let Some(job) = jobs
        .get_opt(name)
        .await
        .map_err(kube_error::<Job>("get", name))?
    else {
        return Ok(JobState::Missing);
    };
    let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    Ok(if holds("Complete").is_some() {
        JobState::Succeeded
    } else if let Some(c) = holds("Failed") {
        JobState::Failed(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or("no message")
        ))
    } else {
        JobState::Running
    })
}

/// Creates the Job of the current upgrade step unless it exists: a Job's pod
/// template cannot change, and one that ran must not run again.
async fn run_step(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    deployed: &ValidatedVault,
    step: &upgrade::Step,
) -> Result<(), Error> {
    let deadline = v.upgrade.job_deadline;
    let job = match step {
        // The backup runs the release that runs now, which knows the store.
        upgrade::Step::Backup { job } => backup_cron_job::one_off(deployed, job.clone(), deadline),
        // The migration runs the release to come: the spec's.
        upgrade::Step::Migrate { job } => {
            Some(build::migration_job::build(v, job.clone(), deadline))
        }
    };
    let Some(job) = job else {
        return Ok(());
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    if jobs
        .get_metadata_opt(&name)
        .await
        .map_err(kube_error::<Job>("get", &name))?
        .is_none()
    {
        apply_one(ctx, sv, &v.namespace, &job).await?;
    }
    Ok(())
}

/// A `spec.version` below the running one, without `allowDowngrade`: the
/// running release, and the problem to report. `None` when the change is
/// allowed.
fn refused_downgrade(
    sv: &SecureVault,
    target: &Release,
    running: Option<&Release>,
) -> Option<(Release, Problem)> {
    let running = running?;
    if sv.spec.allow_downgrade == Some(true)
        || !crate::version::is_downgrade(&running.version, &target.version)
    {
        return None;
    }
    let problem = Problem {
        reason: "DowngradeRefused",
        message: format!(
            "spec.version {} is below the running version {}: the store may already be migrated past what {} knows, so {} keeps running; set spec.allowDowngrade: true to roll back anyway",
            target.version, running.version, target.version, running.version
        ),
    };
    Some((running.clone(), problem))
}

/// Reads what the builders need from the cluster: the generated values
/// (each made once, then always read back), whether each referenced
/// Secret and key exists, and the names of the DKIM Secret's keys.
async fn dereference(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
) -> Result<(Generated, Vec<Problem>), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let mut existing = if v.generates_secrets() {
        let name = names::generated_secret(&v.name);
        secrets
            .get_opt(&name)
            .await
            .map_err(kube_error::<Secret>("get", &name))?
            // A Secret of that name that is not ours is someone else's key:
            // never used (and never written: the apply refuses it).
            .filter(|s| owned_by(&s.metadata, sv))
            .and_then(|s| s.data)
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    // A Secret made by an older operator lacks the newer keys: those are
    // generated now, the existing ones kept.
    let mut keep_or_generate = |wanted: bool, key: &str| -> Result<Option<String>, Error> {
        if !wanted {
            return Ok(None);
        }
        match existing
            .remove(key)
            .and_then(|b| String::from_utf8(b.0).ok())
        {
            Some(value) => Ok(Some(value)),
            None => Ok(Some(generate_key()?)),
        }
    };
    let generated = Generated {
        secret_key: keep_or_generate(v.generates_secret_key, names::SECRET_KEY_KEY)?,
        admin_password: keep_or_generate(v.generates_admin_password, names::ADMIN_PASSWORD_KEY)?,
    };

    let mut problems = Vec::new();
    let mut fetched: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    // The keys the pods take as variables, and the relay's CA, which they
    // mount as a file.
    let ca = v.smtp_ca.as_ref().map(|ca| crate::validate::SecretEnv {
        var: crate::env::SMTP_CA_FILE.to_owned(),
        secret: ca.name.clone(),
        key: ca.key.clone(),
    });
    for reference in v.secret_env.iter().chain(ca.as_ref()) {
        if v.generates_secrets() && reference.secret == names::generated_secret(&v.name) {
            continue;
        }
        if !fetched.contains_key(&reference.secret) {
            let secret = secrets
                .get_opt(&reference.secret)
                .await
                .map_err(kube_error::<Secret>("get", &reference.secret))?;
            fetched.insert(reference.secret.clone(), secret);
        }
        match fetched.get(&reference.secret).and_then(Option::as_ref) {
            None => problems.push(Problem {
                reason: "SecretMissing",
                message: format!(
                    "Secret {}/{} does not exist (it should hold {} under key {:?})",
                    v.namespace, reference.secret, reference.var, reference.key
                ),
            }),
            Some(secret) => {
                let has_key = secret
                    .data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&reference.key))
                    || secret
                        .string_data
                        .as_ref()
                        .is_some_and(|d| d.contains_key(&reference.key));
                if !has_key {
                    problems.push(Problem {
                        reason: "SecretKeyMissing",
                        message: format!(
                            "Secret {}/{} has no key {:?} (it should hold {})",
                            v.namespace, reference.secret, reference.key, reference.var
                        ),
                    });
                }
            }
        }
    }
    if let Some(dkim) = &v.dkim {
        if !fetched.contains_key(&dkim.secret_name) {
            let secret = secrets
                .get_opt(&dkim.secret_name)
                .await
                .map_err(kube_error::<Secret>("get", &dkim.secret_name))?;
            fetched.insert(dkim.secret_name.clone(), secret);
        }
        let secret = fetched.get(&dkim.secret_name).and_then(Option::as_ref);
        problems.extend(crate::dkim::problems(&v.namespace, dkim, secret));
    }
    Ok((generated, problems))
}

/// Applies every child; `existing` is the Deployment as read before. Returns
/// the Deployment as the API server has it, what became of monitoring, and
/// what the backup CronJob shows.
async fn apply(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    existing: Option<&Deployment>,
    r: Resources,
) -> Result<Applied, Error> {
    // Destructured without `..`: a new child does not compile until applied.
    let Resources {
        service_account,
        config_map,
        secret,
        claim,
        backup_claim,
        deployment,
        service,
        pdb,
        monitoring,
        backup,
        hpa,
        network_policy,
        ingress,
        certificate,
    } = r;
    apply_one(ctx, sv, &v.namespace, &service_account).await?;
    apply_one(ctx, sv, &v.namespace, &config_map).await?;
    if let Some(secret) = &secret {
        apply_one(ctx, sv, &v.namespace, secret).await?;
    }
    // Before the Deployment whose pod mounts it.
    let claim = match &claim {
        Some(claim) => {
            let applied = apply_checked(ctx, sv, &v.namespace, claim, claim_is_ours).await?;
            Some(applied_or_read(ctx, &v.namespace, claim, applied).await?)
        }
        None => None,
    };
    // A backup claim the spec no longer uses (a bucket now) is left as it
    // is: it holds backups, and only a person deletes those.
    if let Some(backup_claim) = &backup_claim {
        apply_checked(ctx, sv, &v.namespace, backup_claim, claim_is_ours).await?;
    }
    if let (None, Some(existing)) = (deployment.spec.replicas, existing) {
        hand_replicas_over(ctx, &v.namespace, existing).await?;
    }
    let deployment = match apply_one(ctx, sv, &v.namespace, &deployment).await? {
        Some(applied) => applied,
        // As read at the start of this reconcile, and as left since.
        None => match existing {
            Some(existing) => existing.clone(),
            None => applied_or_read(ctx, &v.namespace, &deployment, None).await?,
        },
    };
    apply_one(ctx, sv, &v.namespace, &service).await?;
    match &pdb {
        Some(pdb) => {
            apply_one(ctx, sv, &v.namespace, pdb).await?;
        }
        None => {
            delete_if_present::<PodDisruptionBudget>(
                ctx,
                sv,
                &v.namespace,
                &names::workload(&v.name),
            )
            .await?
        }
    }
    match &hpa {
        Some(hpa) => {
            apply_one(ctx, sv, &v.namespace, hpa).await?;
        }
        None => {
            delete_if_present::<HorizontalPodAutoscaler>(
                ctx,
                sv,
                &v.namespace,
                &names::workload(&v.name),
            )
            .await?
        }
    }
    match &network_policy {
        Some(np) => {
            apply_one(ctx, sv, &v.namespace, np).await?;
        }
        None => {
            delete_if_present::<NetworkPolicy>(ctx, sv, &v.namespace, &names::workload(&v.name))
                .await?
        }
    }
    match &ingress {
        Some(ingress) => {
            apply_one(ctx, sv, &v.namespace, ingress).await?;
        }
        None => {
            delete_if_present::<Ingress>(ctx, sv, &v.namespace, &names::workload(&v.name)).await?
        }
    }
    let certificate = match &certificate {
        Some(c) => Some(if apply_optional(ctx, sv, &v.namespace, c).await? {
            CertificateState::Applied
        } else {
            CertificateState::CrdMissing
        }),
        None => {
            // issuerRef removed: the Secret stays (the user's now); cert-manager
            // must stop renewing it.
            if let Some(name) = certificate::name(v) {
                delete_optional::<Certificate>(ctx, sv, &v.namespace, &name).await?;
            }
            None
        }
    };
    let tls = observe_tls(ctx, v, certificate).await?;
    let (monitoring, alert_routing) = apply_monitoring(ctx, sv, v, monitoring).await?;
    let backup = match &backup {
        Some(cron_job) => {
            let applied = apply_one(ctx, sv, &v.namespace, cron_job).await?;
            let applied = applied_or_read(ctx, &v.namespace, cron_job, applied).await?;
            Some(BackupState {
                created: applied.metadata.creation_timestamp.map(|t| t.0),
                last_success: applied
                    .status
                    .and_then(|s| s.last_successful_time)
                    .map(|t| t.0),
                bucket: None,
                problem: None,
            })
        }
        None => {
            delete_if_present::<CronJob>(ctx, sv, &v.namespace, &backup_cron_job::name(v)).await?;
            None
        }
    };
    // A bucket is seen directly: its newest backup, or what is wrong.
    let backup = match v.backup.as_ref().map(|b| &b.destination) {
        Some(BackupDestination::Bucket(bucket)) => Some(observe_bucket(ctx, sv, v, bucket).await?),
        _ => backup,
    };
    Ok(Applied {
        claim,
        deployment,
        monitoring,
        alert_routing,
        tls,
        backup,
    })
}

/// How long listing the bucket may hold up a reconcile.
const BUCKET_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a look into a bucket stands for the same spec. A reconcile runs
/// on every event of every child (a rollout makes dozens); the bucket
/// changes once an interval, so they share one listing.
pub(crate) const BUCKET_VIEW_TTL: Duration = Duration::from_secs(60);

/// The last look into each SecureVault's bucket, by uid: for which
/// generation and bucket, and what it saw.
pub type BucketViews = Recent<(String, BackupState)>;

/// Lists the bucket the backups go to, with the pods' credentials, for the
/// newest backup's time, or what is wrong with the bucket, its credentials
/// or its endpoint (the data plane's own messages: one crate says both).
async fn observe_bucket(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    bucket: &crate::validate::Bucket,
) -> Result<BackupState, Error> {
    // A spec change (a new generation) or another bucket looks again at once.
    let uid = sv.metadata.uid.clone().unwrap_or_default();
    let spec_key = format!("{:?}/{bucket:?}", sv.metadata.generation);
    if let Some((key, seen)) = ctx.bucket_views.get(&uid)
        && key == spec_key
    {
        return Ok(seen);
    }
    let seen = list_bucket(ctx, sv, v, bucket).await?;
    ctx.bucket_views.put(uid, (spec_key, seen.clone()));
    Ok(seen)
}

async fn list_bucket(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    bucket: &crate::validate::Bucket,
) -> Result<BackupState, Error> {
    let state = |last_success, problem| BackupState {
        created: sv.metadata.creation_timestamp.as_ref().map(|t| t.0),
        last_success,
        bucket: Some(bucket.describe()),
        problem,
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let mut credentials = Vec::new();
    for r in [&bucket.access_key_id, &bucket.secret_access_key]
        .into_iter()
        .flatten()
    {
        let secret = secrets
            .get_opt(&r.name)
            .await
            .map_err(kube_error::<Secret>("get", &r.name))?;
        let value = secret
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(&r.key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok());
        match value {
            Some(value) => credentials.push(value),
            None => {
                return Ok(state(
                    None,
                    Some((
                        "CredentialsMissing",
                        format!("Secret {} has no key {} (spec.backup.s3)", r.name, r.key),
                    )),
                ));
            }
        }
    }
    let config = backup_bucket::BucketConfig {
        endpoint: bucket
            .endpoint
            .as_deref()
            .and_then(|e| url::Url::parse(e).ok()),
        bucket: bucket.bucket.clone(),
        region: bucket.region.clone(),
        prefix: bucket.prefix.clone(),
        credentials: match credentials.as_slice() {
            [id, key] => Some(backup_bucket::Credentials {
                access_key_id: id.clone(),
                secret_access_key: key.clone(),
            }),
            _ => None,
        },
    };
    let listed = match backup_bucket::Bucket::new(&config) {
        Ok(b) => tokio::time::timeout(BUCKET_TIMEOUT, b.names()).await,
        Err(e) => Ok(Err(e)),
    };
    Ok(match listed {
        Ok(Ok(names)) => {
            let newest = names
                .iter()
                .filter_map(|n| backup_bucket::names::taken_at(n))
                .max()
                .and_then(|t| Timestamp::try_from(t).ok());
            state(newest, None)
        }
        // The endpoint is the namespace user's choice, and the operator
        // may reach what their pods cannot: what an endpoint that is no S3
        // server answered stays out of the status (the data plane logs it).
        Ok(Err(e @ backup_bucket::BucketError::Failed { .. })) => state(
            None,
            Some((
                e.reason(),
                format!(
                    "listing {} failed with an answer that is not an S3 error; the data plane's log has it",
                    bucket.describe()
                ),
            )),
        ),
        Ok(Err(e)) => state(None, Some((e.reason(), e.to_string()))),
        Err(_) => state(
            None,
            Some((
                "EndpointUnreachable",
                format!(
                    "listing {} took more than {} s",
                    bucket.describe(),
                    BUCKET_TIMEOUT.as_secs()
                ),
            )),
        ),
    })
}

/// Reads the TLS Secret and judges it as the pods will, with `spec.tls`.
async fn observe_tls(
    ctx: &Context,
    v: &ValidatedVault,
    certificate: Option<CertificateState>,
) -> Result<Option<TlsState>, Error> {
    let Some(tls) = &v.tls else {
        return Ok(None);
    };
    if certificate == Some(CertificateState::CrdMissing) {
        return Ok(Some(TlsState::CertManagerMissing));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let secret = secrets
        .get_opt(&tls.secret_name)
        .await
        .map_err(kube_error::<Secret>("get", &tls.secret_name))?;
    Ok(Some(status::tls_state(
        secret.as_ref(),
        tls.issuer_ref.is_some(),
        std::time::SystemTime::now(),
    )))
}

/// What [`apply`] found out: the objects as the API server has them now.
struct Applied {
    claim: Option<PersistentVolumeClaim>,
    deployment: Deployment,
    monitoring: MonitoringState,
    alert_routing: Option<AlertRoutingState>,
    tls: Option<TlsState>,
    backup: Option<BackupState>,
}

/// Before the operator stops applying the Deployment's `spec.replicas` (when
/// autoscaling is switched on), another field manager takes the field at its
/// current value. Otherwise server-side apply would remove a field its only
/// manager dropped, the API server would default it to 1, and a 5-replica
/// vault would shrink to one pod until the autoscaler's next sync.
async fn hand_replicas_over(
    ctx: &Context,
    namespace: &str,
    existing: &Deployment,
) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let name = existing.metadata.name.as_deref().unwrap_or_default();
    let ours = existing
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() == Some(names::MANAGER))
        .filter_map(|f| f.fields_v1.as_ref())
        .any(|f| f.0.pointer("/f:spec/f:replicas").is_some());
    let Some(replicas) = existing.spec.replicas.filter(|_| ours) else {
        return Ok(());
    };
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        name,
        &PatchParams::apply(names::REPLICAS_HANDOVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_error::<Deployment>("apply", name))?;
    Ok(())
}

/// Applies each Prometheus Operator object whose kind
/// the API server serves; deletes them all when monitoring is disabled. The
/// AlertmanagerConfig has a version of its own (v1alpha1), which a cluster
/// may not serve while it serves the others (v1).
async fn apply_monitoring(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    monitoring: Option<build::Monitoring>,
) -> Result<(MonitoringState, Option<AlertRoutingState>), Error> {
    let routing_wanted = v.monitoring.alert_routing.is_some();
    let alertmanager_config = monitoring
        .as_ref()
        .and_then(|m| m.alertmanager_config.as_ref());
    let alert_routing = match alertmanager_config {
        Some(config) => Some(if apply_optional(ctx, sv, &v.namespace, config).await? {
            AlertRoutingState::Applied
        } else {
            AlertRoutingState::CrdMissing
        }),
        None => {
            delete_optional::<AlertmanagerConfig>(
                ctx,
                sv,
                &v.namespace,
                &alertmanager_config::name(v),
            )
            .await?;
            routing_wanted.then_some(AlertRoutingState::MonitoringDisabled)
        }
    };
    let state = apply_monitoring_objects(ctx, sv, v, monitoring).await?;
    Ok((state, alert_routing))
}

async fn apply_monitoring_objects(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    monitoring: Option<build::Monitoring>,
) -> Result<MonitoringState, Error> {
    // Earlier versions wrote a dashboard per SecureVault; the chart now
    // ships one for all of them.
    delete_if_present::<ConfigMap>(ctx, sv, &v.namespace, &dashboard::legacy_name(v)).await?;
    let Some(m) = monitoring else {
        delete_optional::<ServiceMonitor>(ctx, sv, &v.namespace, &names::workload(&v.name)).await?;
        delete_optional::<PrometheusRule>(ctx, sv, &v.namespace, &prometheus_rule::name(v)).await?;
        return Ok(MonitoringState::Disabled);
    };
    let mut missing = Kinds::default();
    if !apply_optional(ctx, sv, &v.namespace, &m.service_monitor).await? {
        missing = missing.with(OptionalKind::ServiceMonitor);
    }
    if !apply_optional(ctx, sv, &v.namespace, &m.prometheus_rule).await? {
        missing = missing.with(OptionalKind::PrometheusRule);
    }
    Ok(if missing.is_empty() {
        MonitoringState::Applied
    } else {
        MonitoringState::CrdsMissing(missing)
    })
}

/// Applies an object of an optional kind if the API server serves the kind:
/// `true` when applied, `false` when the kind is not served (then nothing
/// was read or written, or the API server has just said it does not serve
/// it, and discovery is told).
async fn apply_optional<K>(
    ctx: &Context,
    sv: &SecureVault,
    namespace: &str,
    obj: &K,
) -> Result<bool, Error>
where
    K: Optional + Child,
{
    if !ctx.discovery.served().contains(K::KIND) {
        return Ok(false);
    }
    match apply_one(ctx, sv, namespace, obj).await {
        Ok(_) => Ok(true),
        Err(Error::NotServed { .. }) => {
            ctx.discovery.not_served(K::KIND);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// [`delete_if_present`] for an optional kind: a kind the API server does
/// not serve has nothing to clean up.
async fn delete_optional<K>(
    ctx: &Context,
    sv: &SecureVault,
    namespace: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Optional + Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
{
    if !ctx.discovery.served().contains(K::KIND) {
        return Ok(());
    }
    match delete_if_present::<K>(ctx, sv, namespace, name).await {
        Err(Error::NotServed { .. }) => {
            ctx.discovery.not_served(K::KIND);
            Ok(())
        }
        other => other,
    }
}

/// A kind of child: namespaced, written with server-side apply.
trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
{
}

/// Server-side applies `obj`, forcing ownership of the fields we set (and
/// only those: fields other managers set are left alone). Notes in
/// `ctx.changes` an object it created or changed (the reconcile publishes
/// them in one Event when it ends). Returns the object as the API
/// server has it now, or `None` when it was already as this process last
/// applied it (see [`crate::written`]): then nothing was sent.
async fn apply_one<K>(
    ctx: &Context,
    sv: &SecureVault,
    namespace: &str,
    obj: &K,
) -> Result<Option<K>, Error>
where
    K: Child,
{
    apply_checked(ctx, sv, namespace, obj, owned_by).await
}

/// [`apply_one`], with `is_ours` deciding whether an existing object of that
/// name is this SecureVault's to write.
async fn apply_checked<K>(
    ctx: &Context,
    sv: &SecureVault,
    namespace: &str,
    obj: &K,
    is_ours: fn(&ObjectMeta, &SecureVault) -> bool,
) -> Result<Option<K>, Error>
where
    K: Child,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    let vault = sv.metadata.uid.as_deref().unwrap_or_default();
    let intent = crate::written::intent(obj);
    // The watch cache answers for an object of ours as this process left
    // it. Anything else (absent from the cache, someone else's there, or
    // no cache yet) is asked of the API server before it is written.
    let before = match ctx.caches.lookup(&kind, namespace, &name) {
        Lookup::Present(seen) if is_ours(&seen, sv) => {
            if ctx.written.is_current(vault, &kind, &seen, intent) {
                return Ok(None);
            }
            Some(*seen)
        }
        _ => api
            .get_metadata_opt(&name)
            .await
            .map_err(kube_error::<K>("get", &name))?
            .map(|m| m.metadata),
    };
    // Force takes every field we set from whoever held it: only ever on an
    // object this SecureVault owns (or creates now).
    if let Some(existing) = &before
        && !is_ours(existing, sv)
    {
        return Err(Error::NotOwned {
            kind: kind_of::<K>(),
            namespace: namespace.to_owned(),
            name,
            owner: owner_of(existing),
        });
    }
    let params = PatchParams::apply(names::MANAGER).force();
    let after = api
        .patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(kube_error::<K>("apply", &name))?;
    let changed = before.as_ref().is_none_or(|b| {
        // The cache may show a version older than this process's own last
        // write: unchanged since that write is unchanged.
        b.resource_version != after.meta().resource_version
            && !ctx.written.is_version(vault, &kind, after.meta())
    });
    ctx.written.record(vault, &kind, after.meta(), intent);
    if !changed {
        return Ok(Some(after));
    }
    let kind = kind_of::<K>();
    ctx.metrics.count_write(kind);
    ctx.changes
        .note(vault, before.is_none(), format!("{kind} {name}"));
    Ok(Some(after))
}

/// `applied` when the apply sent something (the API server's answer), else
/// the object read now.
async fn applied_or_read<K: Child>(
    ctx: &Context,
    namespace: &str,
    obj: &K,
    applied: Option<K>,
) -> Result<K, Error> {
    if let Some(applied) = applied {
        return Ok(applied);
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get(&name)
        .await
        .map_err(kube_error::<K>("get", &name))
}

/// Deletes a child the spec no longer asks for (e.g. the PDB after scaling
/// down to one replica), if it exists and is ours.
async fn delete_if_present<K>(
    ctx: &Context,
    sv: &SecureVault,
    namespace: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    // Every object this operator makes carries its label, and the caches
    // hold every object with that label: none there, none to delete. (One
    // created a moment ago and not yet in the cache reconciles this
    // SecureVault again when its watch event arrives.)
    if let Lookup::Absent = ctx.caches.lookup(&K::kind(&()), namespace, name) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(existing) = api
        .get_metadata_opt(name)
        .await
        .map_err(kube_error::<K>("get", name))?
    else {
        return Ok(());
    };
    if owned_by(&existing.metadata, sv) {
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(kube_error::<K>("delete", name))?;
        let kind = kind_of::<K>();
        ctx.publish(
            sv,
            EventType::Normal,
            "Deleted",
            &format!("Deleted {kind} {name}: no longer needed"),
        )
        .await;
    }
    Ok(())
}

/// Whether `meta` names `sv` among its owners.
fn owned_by(meta: &ObjectMeta, sv: &SecureVault) -> bool {
    sv.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| &o.uid == uid)
    })
}

/// Whether a claim is this SecureVault's: owned by it, or retained for a
/// SecureVault of its name (`whenDeleted: Retain`, no owner reference).
/// Whoever may create claims in the namespace could forge the annotation,
/// but such a user can already mount the claim in a pod of their own.
fn claim_is_ours(meta: &ObjectMeta, sv: &SecureVault) -> bool {
    owned_by(meta, sv)
        || meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::RETAINED_FOR_ANNOTATION))
            .is_some_and(|name| Some(name) == sv.metadata.name.as_ref())
}

/// The claim's status; when it is not bound, why, from the latest event
/// about it.
async fn observe_claim(
    ctx: &Context,
    namespace: &str,
    claim: &PersistentVolumeClaim,
) -> Result<StorageStatus, Error> {
    let bound = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Bound");
    if bound {
        return Ok(storage::of_claim(claim, &[]));
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    // Listing events by a field the API server does not index reads every
    // event of the namespace, and a pending claim's SecureVault is
    // reconciled on each event of its other children: one listing per
    // claim stands for a while (the reconcile looks again after as long).
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    if let Some(events) = ctx.claim_events.get(&uid) {
        return Ok(storage::of_claim(claim, &events));
    }
    let api: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), namespace);
    let about = ListParams::default().fields(&format!(
        "involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name}"
    ));
    let events = api
        .list(&about)
        .await
        .map_err(kube_error::<CoreEvent>("list", &name))?
        .items;
    let status = storage::of_claim(claim, &events);
    ctx.claim_events.put(uid, events);
    Ok(status)
}

/// The last listing of the events about each pending claim, by uid (see
/// `observe_claim`).
pub type ClaimEvents = Recent<Vec<CoreEvent>>;

/// Who owns an object, as its metadata tells: its controller, else its
/// other owners, else the field manager that created it.
fn owner_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let controller = owners.iter().find(|o| o.controller == Some(true));
    if let Some(o) = controller.or(owners.first()) {
        return format!("owned by {} {}", o.kind, o.name);
    }
    match meta
        .managed_fields
        .iter()
        .flatten()
        .find(|f| {
            f.operation.as_deref() == Some("Apply") || f.operation.as_deref() == Some("Update")
        })
        .and_then(|f| f.manager.as_deref())
    {
        Some(manager) => format!("no owner; created by {manager}"),
        None => "no owner".to_owned(),
    }
}

/// Writes the status computed from what was observed, only if it changed.
async fn update_status(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    observed: status::Observed<'_>,
    settled_inputs: Option<String>,
) -> Result<(), Error> {
    let mut status = status::compute(sv, v, &observed, Timestamp::now());
    // Recorded only once nothing rolls out: each step of a rollout moves
    // the Deployment's resourceVersion, and would otherwise cost a status
    // write of its own.
    let progressing = status
        .condition(crate::api::PROGRESSING)
        .is_some_and(|c| c.status == "True");
    status.observed_inputs = settled_inputs.filter(|_| !progressing);
    if sv.status.as_ref() == Some(&status) {
        return Ok(());
    }
    if let Some(p) = observed.problems.first()
        && sv
            .status
            .as_ref()
            .and_then(|s| s.condition(crate::api::DEGRADED))
            .map(|c| c.message.as_str())
            != status
                .condition(crate::api::DEGRADED)
                .map(|c| c.message.as_str())
    {
        ctx.publish(sv, EventType::Warning, p.reason, &p.message)
            .await;
    }
    write_status(ctx, sv, v, status).await
}

/// Patches the status subresource with `status` unless it is already that.
async fn write_status(
    ctx: &Context,
    sv: &SecureVault,
    v: &ValidatedVault,
    status: crate::api::SecureVaultStatus,
) -> Result<(), Error> {
    if sv.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<SecureVault> = Api::namespaced(ctx.client.clone(), &v.namespace);
    let apply = |status: &crate::api::SecureVaultStatus| {
        let patch = serde_json::json!({
            "apiVersion": SecureVault::api_version(&()),
            "kind": SecureVault::kind(&()),
            "status": status,
        });
        let api = api.clone();
        async move {
            api.patch_status(
                &v.name,
                &PatchParams::apply(names::MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        }
    };
    match apply(&status).await {
        // A CRD older than this operator (not yet upgraded with it) does
        // not declare status.observedInputs, and server-side apply refuses
        // a field its schema does not declare: the status goes without it,
        // and the SecureVault is reconciled in full each time, as before.
        Err(kube::Error::Api(e))
            if status.observed_inputs.is_some() && e.message.contains("observedInputs") =>
        {
            tracing::warn!(
                error = %e.message,
                "the SecureVault CRD predates this operator (no status.observedInputs); upgrade the CRD"
            );
            let status = crate::api::SecureVaultStatus {
                observed_inputs: None,
                ..status
            };
            if sv.status.as_ref() == Some(&status) {
                return Ok(());
            }
            apply(&status).await
        }
        other => other,
    }
    .map_err(kube_error::<SecureVault>("patch status", &v.name))?;
    ctx.metrics.count_write("SecureVaultStatus");
    Ok(())
}

/// After a failed reconcile: count it, and retry with a delay (the
/// controller's queue also backs off on repeated failures of one object).
pub fn error_policy(sv: Arc<SecureVault>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(securevault = %sv.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_failure(error.metric_label());
    Action::requeue(Duration::from_secs(15))
}

impl Context {
    /// Publishes an Event on the SecureVault; failing to do so is logged,
    /// never fatal.
    pub async fn publish(&self, sv: &SecureVault, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &sv.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }
}
