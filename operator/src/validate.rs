//! `validate`: the SecureVault as read from the API server -> a
//! [`ValidatedVault`], the only input of the builders. No client is needed.
//!
//! The API server already enforces the schema and its CEL rules; this step
//! derives what the builders need (image, rendered settings, secret
//! references) and refuses what the schema cannot express.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{LocalObjectReference, ResourceRequirements},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Resource, ResourceExt};

use crate::{
    api::{
        ClaimRetention, LogLevel, OnRedisFailure, Placement, SecureVault, SmtpTls, WebhookFormat,
    },
    env, names,
};

/// Why a SecureVault cannot be built; the user has to change it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    /// Read from the API server, it always has these; a bug otherwise.
    #[error("the SecureVault has no {0}")]
    MissingMetadata(&'static str),
    /// `spec.labels` may not change the labels that select the pods.
    #[error("spec.labels must not set {0}: the operator uses it to select the pods")]
    ReservedLabel(String),
    /// `spec.secretKeyPreviousRef` names the key `SECRET_KEY` comes from
    /// (the schema refuses the same reference twice; this is the generated
    /// key, which only the name of the SecureVault tells).
    #[error(
        "spec.secretKeyPreviousRef names Secret {secret}, key {key}: that is the current SECRET_KEY{generated}; during a rotation spec.secretKeyRef names the new key and spec.secretKeyPreviousRef the old one"
    )]
    PreviousKeyIsCurrent {
        /// The Secret named twice.
        secret: String,
        /// Its key.
        key: String,
        /// Says so when the operator generated that key.
        generated: &'static str,
    },
}

/// An environment variable taken from a Secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The variable, e.g. `DATABASE_URL`.
    pub var: String,
    /// The Secret's name.
    pub secret: String,
    /// The key in the Secret.
    pub key: String,
}

/// Backups as the spec asks for them, defaults filled in: every embedded
/// store has them; a PostgreSQL store with `spec.backup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Where they go.
    pub destination: BackupDestination,
    /// Cron schedule of the CronJob (PostgreSQL).
    pub schedule: String,
    /// Time between two backups the data plane takes (embedded store).
    pub interval: std::time::Duration,
    /// Backups kept.
    pub retain: u32,
    /// Oldest acceptable last success.
    pub max_age: std::time::Duration,
}

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupDestination {
    /// An S3-compatible bucket.
    Bucket(Bucket),
    /// A claim: the user's, or `<name>-backups`, which the operator
    /// creates like the store's own.
    Claim {
        /// The claim's name.
        name: String,
        /// How the operator creates it; `None` for the user's claim.
        created: Option<Storage>,
    },
}

/// A bucket as the spec names it, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// `http(s)://host:port`, or `None` for AWS S3.
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// The folder of the backups, ending in `/`.
    pub prefix: String,
    /// The access key id, from a Secret.
    pub access_key_id: Option<crate::api::SecretKeyRef>,
    /// The secret access key, from a Secret.
    pub secret_access_key: Option<crate::api::SecretKeyRef>,
}

impl Bucket {
    /// The bucket `s3` names; its folder is `<namespace>/<owner>/` unless
    /// `s3.prefix` names one.
    fn new(s3: &crate::api::S3Spec, namespace: &str, owner: &str) -> Self {
        let prefix = match s3.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => format!("{namespace}/{owner}/"),
        };
        Bucket {
            endpoint: s3
                .endpoint
                .as_ref()
                .map(|e| e.trim_end_matches('/').to_owned()),
            bucket: s3.bucket.clone(),
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
            prefix,
            access_key_id: s3.access_key_id_secret_ref.clone(),
            secret_access_key: s3.secret_access_key_secret_ref.clone(),
        }
    }

    /// `s3://bucket/prefix`, for status and messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// A restore before the first start, as `spec.restoreFrom` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The bucket and folder holding the backup.
    pub bucket: Bucket,
    /// `latest` or a backup's name.
    pub backup: String,
}

/// The embedded store's claim as the spec asks for it, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Requested size, a quantity.
    pub size: String,
    /// StorageClass; `None` for the cluster's default.
    pub storage_class_name: Option<String>,
    /// Whether the claim outlives the SecureVault.
    pub retain: bool,
}

/// DKIM signing as `spec.smtp.dkim` asks for it, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// The Secret of private keys, mounted at [`names::DKIM_DIR`].
    pub secret_name: String,
    /// Whether email may go out unsigned when no key is for `from_domain`.
    pub allow_unsigned: bool,
    /// The domain of `spec.smtp.from`, lower case: whose keys sign.
    pub from_domain: String,
}

/// Managed upgrades as the spec asks for them, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// How long the new pods have to become ready before a rollback.
    pub progress_deadline: std::time::Duration,
    /// How long they must then stay ready.
    pub verify: std::time::Duration,
    /// How long the backup and migration Jobs may run.
    pub job_deadline: std::time::Duration,
}

/// Monitoring as the spec asks for it, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// Whether the monitoring objects exist.
    pub enabled: bool,
    /// Labels for the ServiceMonitor and PrometheusRule.
    pub labels: BTreeMap<String, String>,
    /// Scrape interval.
    pub interval: String,
    /// Alert tuning, if any.
    pub alerts: Option<crate::api::AlertsSpec>,
    /// Who receives the alerts, if anyone.
    pub alert_routing: Option<crate::api::AlertRoutingSpec>,
}

/// The labels every SecureVault's ServiceMonitor and PrometheusRule carry
/// when the operator is given none (`MONITORING_LABELS`): what the Prometheus
/// of kube-prometheus-stack selects when installed under the name its docs
/// use. Without a label it selects, Prometheus silently scrapes nothing.
pub const DEFAULT_MONITORING_LABELS: &str = "release=kube-prometheus-stack";

/// Parses `key=value,key=value` (`MONITORING_LABELS`); an empty text is no
/// label. The error names the entry and what is wrong with it.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}` is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        let name = key.rsplit('/').next().unwrap_or(key);
        if !is_label_value(name) || name.is_empty() || key.len() > 316 {
            return Err(format!("`{key}` is not a label key"));
        }
        if !is_label_value(value) {
            return Err(format!(
                "`{value}` (of {key}) is not a label value: at most 63 letters, digits, `-`, `_` or `.`, \
                 starting and ending with a letter or digit"
            ));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

/// Checks `DATAPLANE_IMAGE_REPOSITORY`: an image repository such as
/// `registry.example.com/securevault/dataplane`, with neither tag nor
/// digest (each SecureVault's `spec.version` is the tag).
pub fn parse_image_repository(text: &str) -> Result<String, String> {
    let text = text.trim();
    let last = text.rsplit('/').next().unwrap_or(text);
    if text.is_empty() || text.len() > 255 {
        return Err("an image repository must have 1 to 255 characters".into());
    }
    if text.contains('@') || last.contains(':') {
        return Err(format!(
            "`{text}` has a tag or digest: give the repository alone (each SecureVault's spec.version is the tag)"
        ));
    }
    if !text.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | '/' | ':')
    }) {
        return Err(format!(
            "`{text}` is not an image repository: lower-case letters, digits, `.`, `-`, `_`, `/` and a registry's `:port`"
        ));
    }
    Ok(text.to_owned())
}

/// Kubernetes' label value syntax (empty allowed).
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

impl ValidatedVault {
    /// Runs the default image from `repository` (the operator's
    /// `DATAPLANE_IMAGE_REPOSITORY`, e.g. a mirror in an air-gapped
    /// cluster) instead of [`names::DEFAULT_IMAGE_REPOSITORY`]; an image the
    /// spec names stays as it is.
    pub fn with_image_repository(mut self, repository: &str) -> Self {
        if self.default_image {
            self.image = format!("{repository}:{}", self.version);
        }
        self
    }

    /// Puts the operator's monitoring labels under the spec's own: a
    /// SecureVault adds labels and overrides a value, key by key.
    pub fn with_monitoring_labels(mut self, defaults: &BTreeMap<String, String>) -> Self {
        let mut labels = defaults.clone();
        labels.append(&mut self.monitoring.labels);
        self.monitoring.labels = labels;
        self
    }
}

/// Everything the builders need, checked.
#[derive(Debug, Clone)]
pub struct ValidatedVault {
    /// The SecureVault's name; the children's names derive from it.
    pub name: String,
    /// Its namespace; every child lives there.
    pub namespace: String,
    /// Owner reference put on every child, so deleting the SecureVault
    /// deletes them.
    pub owner: OwnerReference,
    /// Data plane version.
    pub version: String,
    /// Image reference.
    pub image: String,
    /// Whether `image` is the default (`spec.image` unset), which the
    /// operator's `DATAPLANE_IMAGE_REPOSITORY` may move to another registry.
    pub default_image: bool,
    /// Image pull policy, if set.
    pub image_pull_policy: Option<String>,
    /// Pull secrets of the pods, if any.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Pods wanted.
    pub replicas: i32,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Non-secret settings, rendered into the ConfigMap.
    pub settings: BTreeMap<String, String>,
    /// Secret settings, as references.
    pub secret_env: Vec<SecretEnv>,
    /// DKIM signing, when asked for: its Secret is mounted, not referenced
    /// key by key (its keys are the selectors, which only the user knows).
    pub dkim: Option<Dkim>,
    /// The key of `spec.smtp.caSecretRef`, mounted as `SMTP_CA_FILE`.
    pub smtp_ca: Option<crate::api::SecretKeyRef>,
    /// Whether the operator generates `SECRET_KEY` (in its own Secret), or
    /// keeps the one it generated while `secretKeyPreviousRef` names it.
    pub generates_secret_key: bool,
    /// Whether the operator generates `ADMIN_PASSWORD` (in the same Secret).
    pub generates_admin_password: bool,
    /// Monitoring objects.
    pub monitoring: Monitoring,
    /// Scheduled backups: always for the embedded store, with
    /// `spec.backup` for PostgreSQL.
    pub backup: Option<Backup>,
    /// A restore before the first start, with `spec.restoreFrom`.
    pub restore: Option<Restore>,
    /// Whether the store is an external PostgreSQL (`spec.database`), which
    /// a Job can reach; otherwise SQLite inside the pod.
    pub external_database: bool,
    /// The claim holding the embedded store: `None` with an external
    /// database, or for a store an older operator left on an emptyDir
    /// (see `reconcile`), which stays there until the spec asks for a claim.
    pub storage: Option<Storage>,
    /// How version changes roll out.
    pub upgrade: Upgrade,
    /// Autoscaling, when asked for: the Deployment then leaves its replica
    /// count to the HorizontalPodAutoscaler.
    pub autoscaling: Option<crate::api::AutoscalingSpec>,
    /// The NetworkPolicy, when asked for.
    pub network_policy: Option<crate::api::NetworkPolicySpec>,
    /// Egress ports the dependencies need (database, Redis, SMTP, model
    /// server, webhooks), sorted.
    pub egress_ports: Vec<i32>,
    /// HTTPS, when asked for.
    pub tls: Option<crate::api::TlsSpec>,
    /// The Ingress, when asked for.
    pub ingress: Option<crate::api::IngressSpec>,
    /// Pod placement.
    pub placement: Placement,
    /// Labels for every child (user's plus the operator's).
    pub labels: BTreeMap<String, String>,
    /// Annotations for every child (the user's).
    pub annotations: BTreeMap<String, String>,
}

/// Checks `sv` and derives what the builders need.
pub fn validate(sv: &SecureVault) -> Result<ValidatedVault, ValidationError> {
    let name = sv
        .metadata
        .name
        .clone()
        .ok_or(ValidationError::MissingMetadata("name"))?;
    let namespace = sv
        .namespace()
        .ok_or(ValidationError::MissingMetadata("namespace"))?;
    let owner = sv
        .controller_owner_ref(&())
        .ok_or(ValidationError::MissingMetadata("uid"))?;
    let spec = &sv.spec;

    let selector = names::selector_labels(&name);
    if let Some(key) = spec.labels.keys().find(|k| selector.contains_key(*k)) {
        return Err(ValidationError::ReservedLabel(key.clone()));
    }
    let version = spec.version.trim_start_matches('v').to_owned();
    let mut labels = spec.labels.clone();
    labels.extend(selector);
    labels.insert("app.kubernetes.io/managed-by".into(), names::MANAGER.into());

    let mut settings = BTreeMap::from([
        (env::SECUREVAULT_ENV.to_owned(), "production".to_owned()),
        (
            env::LISTEN_ADDR.to_owned(),
            format!("0.0.0.0:{}", names::HTTP_PORT),
        ),
        (
            env::METRICS_ADDR.to_owned(),
            format!("0.0.0.0:{}", names::METRICS_PORT),
        ),
        (env::DATA_DIR.to_owned(), names::DATA_DIR.to_owned()),
        (
            env::LOG_LEVEL.to_owned(),
            log_level(spec.log_level.unwrap_or(LogLevel::Info)).to_owned(),
        ),
    ]);
    if spec.tls.is_some() {
        settings.insert(
            env::TLS_CERT_FILE.to_owned(),
            format!("{}/tls.crt", names::TLS_DIR),
        );
        settings.insert(
            env::TLS_KEY_FILE.to_owned(),
            format!("{}/tls.key", names::TLS_DIR),
        );
    }
    let mut secret_env = Vec::new();
    let mut reference = |var: &str, secret: &str, key: &str| {
        secret_env.push(SecretEnv {
            var: var.to_owned(),
            secret: secret.to_owned(),
            key: key.to_owned(),
        })
    };

    let (secret, key) = match &spec.secret_key_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (
            names::generated_secret(&name),
            names::SECRET_KEY_KEY.to_owned(),
        ),
    };
    reference(env::SECRET_KEY, &secret, &key);
    if let Some(previous) = &spec.secret_key_previous_ref {
        if previous.name == secret && previous.key == key {
            return Err(ValidationError::PreviousKeyIsCurrent {
                secret,
                key,
                generated: match spec.secret_key_ref {
                    Some(_) => "",
                    None => " (generated by the operator, as spec.secretKeyRef is unset)",
                },
            });
        }
        reference(env::SECRET_KEY_PREVIOUS, &previous.name, &previous.key);
    }
    match &spec.admin_password_secret_ref {
        Some(r) => reference(env::ADMIN_PASSWORD, &r.name, &r.key),
        None => reference(
            env::ADMIN_PASSWORD,
            &names::generated_secret(&name),
            names::ADMIN_PASSWORD_KEY,
        ),
    }
    if let Some(db) = &spec.database {
        reference(
            env::DATABASE_URL,
            &db.url_secret_ref.name,
            &db.url_secret_ref.key,
        );
    }
    if let Some(redis) = &spec.redis {
        reference(
            env::REDIS_URL,
            &redis.url_secret_ref.name,
            &redis.url_secret_ref.key,
        );
    }
    let dkim = spec.smtp.as_ref().and_then(|smtp| {
        let d = smtp.dkim.as_ref()?;
        Some(Dkim {
            secret_name: d.secret_name.clone(),
            allow_unsigned: d.allow_unsigned.unwrap_or(false),
            from_domain: mail_domain(&smtp.from),
        })
    });
    if let Some(smtp) = &spec.smtp {
        settings.insert(env::SMTP_HOST.into(), smtp.host.clone());
        settings.insert(env::SMTP_PORT.into(), smtp.port.to_string());
        settings.insert(env::SMTP_TLS.into(), smtp_tls(smtp.tls).into());
        settings.insert(env::SMTP_FROM.into(), smtp.from.clone());
        if smtp.ca_secret_ref.is_some() {
            settings.insert(env::SMTP_CA_FILE.into(), names::SMTP_CA_FILE.into());
        }
        if let Some(d) = &dkim {
            settings.insert(env::DKIM_KEYS_DIR.into(), names::DKIM_DIR.into());
            settings.insert(
                env::DKIM_ALLOW_UNSIGNED.into(),
                d.allow_unsigned.to_string(),
            );
        }
        if let Some(c) = &smtp.credentials_secret_ref {
            reference(
                env::SMTP_USERNAME,
                &c.name,
                c.username_key.as_deref().unwrap_or("username"),
            );
            reference(
                env::SMTP_PASSWORD,
                &c.name,
                c.password_key.as_deref().unwrap_or("password"),
            );
        }
    }
    if let Some(ai) = &spec.ai {
        if let Some((default, others)) = ai.models.as_deref().and_then(<[String]>::split_first) {
            settings.insert(env::OPENAI_MODEL.into(), default.clone());
            if !others.is_empty() {
                settings.insert(env::AI_MODELS.into(), others.join(","));
            }
        }
        let fallbacks = ai.fallbacks.as_deref().unwrap_or_default();
        if fallbacks.is_empty() {
            settings.insert(env::OPENAI_BASE_URL.into(), ai.base_url.clone());
            if let Some(key) = &ai.api_key_secret_ref {
                reference(env::OPENAI_API_KEY, &key.name, &key.key);
            }
        } else {
            // The data plane's list form: `baseUrl` is the first server.
            let var = |name: &str, field: &str| {
                format!(
                    "{}{}_{field}",
                    env::AI_UPSTREAM_PREFIX,
                    name.to_ascii_uppercase().replace('-', "_")
                )
            };
            let mut names = vec![names::AI_PRIMARY_UPSTREAM.to_owned()];
            settings.insert(
                var(names::AI_PRIMARY_UPSTREAM, "BASE_URL"),
                ai.base_url.clone(),
            );
            if let Some(key) = &ai.api_key_secret_ref {
                reference(
                    &var(names::AI_PRIMARY_UPSTREAM, "API_KEY"),
                    &key.name,
                    &key.key,
                );
            }
            for f in fallbacks {
                names.push(f.name.clone());
                settings.insert(var(&f.name, "BASE_URL"), f.base_url.clone());
                if let Some(secs) = f.timeout_seconds {
                    settings.insert(var(&f.name, "TIMEOUT_SECS"), secs.to_string());
                }
                if let Some(models) = &f.models {
                    settings.insert(var(&f.name, "MODELS"), models.join(","));
                }
                if let Some(key) = &f.api_key_secret_ref {
                    reference(&var(&f.name, "API_KEY"), &key.name, &key.key);
                }
            }
            settings.insert(env::AI_UPSTREAMS.into(), names.join(","));
        }
        if let Some(b) = &ai.budgets {
            for (var, tokens) in [
                (env::AI_BUDGET_KEY_DAILY_TOKENS, b.key_daily_tokens),
                (env::AI_BUDGET_KEY_MONTHLY_TOKENS, b.key_monthly_tokens),
                (env::AI_BUDGET_ACCOUNT_DAILY_TOKENS, b.account_daily_tokens),
                (
                    env::AI_BUDGET_ACCOUNT_MONTHLY_TOKENS,
                    b.account_monthly_tokens,
                ),
            ] {
                if let Some(tokens) = tokens {
                    settings.insert(var.into(), tokens.to_string());
                }
            }
        }
    }
    if let Some(webhook) = &spec.webhook {
        reference(
            env::WEBHOOK_URL,
            &webhook.url_secret_ref.name,
            &webhook.url_secret_ref.key,
        );
        if let Some(secret) = &webhook.signing_secret_ref {
            reference(env::WEBHOOK_SECRET, &secret.name, &secret.key);
        }
        let format = match webhook.format.unwrap_or(WebhookFormat::Standard) {
            WebhookFormat::Standard => "standard",
            WebhookFormat::Slack => "slack",
        };
        settings.insert(env::WEBHOOK_FORMAT.into(), format.into());
    }

    if let Some(auth) = &spec.auth {
        let mut set = |var: &str, value: Option<String>| {
            if let Some(v) = value {
                settings.insert(var.to_owned(), v);
            }
        };
        set(
            env::SESSION_TTL_SECS,
            auth.session_ttl_seconds.map(|s| s.to_string()),
        );
        set(
            env::TRUSTED_PROXIES,
            (!auth.trusted_proxies.is_empty()).then(|| auth.trusted_proxies.join(",")),
        );
        if let Some(login) = &auth.login {
            set(
                env::LOGIN_MAX_FAILURES,
                login.max_failures.map(|n| n.to_string()),
            );
            set(
                env::LOGIN_WINDOW_SECS,
                login.window_seconds.map(|n| n.to_string()),
            );
            set(
                env::LOGIN_BLOCK_SECS,
                login.block_seconds.map(|n| n.to_string()),
            );
        }
    }
    if let Some(limits) = &spec.rate_limits {
        for (var, value) in [
            (env::RATE_LIMIT_API, &limits.api),
            (env::RATE_LIMIT_EMAIL, &limits.email),
            (env::RATE_LIMIT_AI, &limits.ai),
        ] {
            if let Some(v) = value {
                settings.insert(var.to_owned(), v.clone());
            }
        }
        if let Some(policy) = limits.on_redis_failure {
            let policy = match policy {
                OnRedisFailure::Local => "local",
                OnRedisFailure::Deny => "deny",
            };
            settings.insert(env::RATE_LIMIT_ON_REDIS_FAILURE.into(), policy.into());
        }
    }
    // A kind without an age is left unset: the data plane's default, `off`,
    // keeps it forever.
    if let Some(retention) = &spec.retention {
        for (var, days) in [
            (env::RETENTION_EMAILS_DAYS, retention.emails_days),
            (env::RETENTION_GENERATIONS_DAYS, retention.generations_days),
            (env::RETENTION_AUDIT_DAYS, retention.audit_days),
        ] {
            if let Some(days) = days {
                settings.insert(var.to_owned(), days.to_string());
            }
        }
    }

    Ok(ValidatedVault {
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| format!("{}:{version}", names::DEFAULT_IMAGE_REPOSITORY)),
        default_image: spec.image.is_none(),
        image_pull_policy: spec.image_pull_policy.map(|p| format!("{p:?}")),
        image_pull_secrets: (spec.image_pull_secrets.iter().flatten())
            .map(|s| LocalObjectReference {
                name: s.name.clone(),
            })
            .collect(),
        replicas: spec.replicas,
        resources: spec.resources.clone(),
        settings,
        secret_env,
        dkim,
        smtp_ca: spec.smtp.as_ref().and_then(|s| s.ca_secret_ref.clone()),
        // The generated key stays while a rotation away from it is under
        // way: the store's rows stay sealed with it until `reencrypt` runs,
        // and dropping it from the Secret would lose them.
        generates_secret_key: spec.secret_key_ref.is_none()
            || spec.secret_key_previous_ref.as_ref().is_some_and(|p| {
                p.name == names::generated_secret(&name) && p.key == names::SECRET_KEY_KEY
            }),
        generates_admin_password: spec.admin_password_secret_ref.is_none(),
        autoscaling: spec.autoscaling.clone(),
        network_policy: spec.network_policy.clone(),
        egress_ports: egress_ports(spec),
        backup: backup(spec, &namespace, &name),
        restore: spec.restore_from.as_ref().and_then(|r| {
            let owner = r.secure_vault.as_deref().unwrap_or(&name);
            let s3 =
                r.s3.as_ref()
                    .or(spec.backup.as_ref().and_then(|b| b.s3.as_ref()))?;
            Some(Restore {
                bucket: Bucket::new(s3, &namespace, owner),
                backup: r.backup.clone().unwrap_or_else(|| "latest".to_owned()),
            })
        }),
        external_database: spec.database.is_some(),
        storage: spec.database.is_none().then(|| storage(spec)),
        upgrade: {
            let u = spec.upgrade.clone();
            let seconds = |f: fn(&crate::api::UpgradeSpec) -> Option<u32>, default: u32| {
                std::time::Duration::from_secs(u64::from(u.as_ref().and_then(f).unwrap_or(default)))
            };
            Upgrade {
                progress_deadline: seconds(|u| u.progress_deadline_seconds, 300),
                verify: seconds(|u| u.verify_seconds, 30),
                job_deadline: seconds(|u| u.job_deadline_seconds, 600),
            }
        },
        monitoring: {
            let m = spec.monitoring.clone().unwrap_or_default();
            Monitoring {
                enabled: m.enabled.unwrap_or(true),
                labels: m.labels,
                interval: m.interval.unwrap_or_else(|| "30s".to_owned()),
                alerts: m.alerts,
                alert_routing: m.alert_routing,
            }
        },
        tls: spec.tls.clone(),
        ingress: spec.ingress.clone(),
        placement: spec.placement.clone().unwrap_or_default(),
        labels,
        annotations: spec.annotations.clone(),
        name,
        namespace,
        owner,
        version,
    })
}

impl ValidatedVault {
    /// Whether the operator keeps a Secret of generated values.
    pub fn generates_secrets(&self) -> bool {
        self.generates_secret_key || self.generates_admin_password
    }

    /// The name of the pods' and the Service's port: `https` with
    /// `spec.tls`, else `http`.
    pub fn port_name(&self) -> &'static str {
        if self.tls.is_some() {
            names::HTTPS_PORT_NAME
        } else {
            names::HTTP_PORT_NAME
        }
    }

    /// `HTTPS` with `spec.tls`, else `HTTP`: what probes and scrapers speak.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "HTTPS" } else { "HTTP" }
    }

    /// Every Secret the pods or the status depend on, sorted: a change to
    /// one of them is a reason to reconcile.
    pub fn referenced_secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secret_env
            .iter()
            .map(|s| s.secret.clone())
            .filter(|s| !(self.generates_secrets() && *s == names::generated_secret(&self.name)))
            .chain(self.tls.as_ref().map(|t| t.secret_name.clone()))
            .chain(self.dkim.as_ref().map(|d| d.secret_name.clone()))
            .chain(self.smtp_ca.as_ref().map(|c| c.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The embedded store's claim with defaults filled in; the operator's
/// backup claim is made alike.
fn storage(spec: &crate::api::SecureVaultSpec) -> Storage {
    let st = spec.storage.clone().unwrap_or_default();
    Storage {
        size: st.size.unwrap_or_else(|| "1Gi".to_owned()),
        storage_class_name: st.storage_class_name,
        retain: st.when_deleted != Some(ClaimRetention::Delete),
    }
}

/// Backups with defaults filled in: the embedded store always has them
/// (into `<name>-backups` unless the spec names a bucket or a claim); a
/// PostgreSQL store when `spec.backup` asks.
fn backup(spec: &crate::api::SecureVaultSpec, namespace: &str, name: &str) -> Option<Backup> {
    let embedded = spec.database.is_none();
    let b = match (&spec.backup, embedded) {
        (Some(b), _) => b.clone(),
        (None, true) => crate::api::BackupSpec::default(),
        (None, false) => return None,
    };
    let destination = match (&b.s3, &b.volume_claim_name) {
        (Some(s3), _) => BackupDestination::Bucket(Bucket::new(s3, namespace, name)),
        (None, Some(claim)) => BackupDestination::Claim {
            name: claim.clone(),
            created: None,
        },
        (None, None) => BackupDestination::Claim {
            name: names::backup_claim(name),
            created: Some(storage(spec)),
        },
    };
    let interval = std::time::Duration::from_secs(u64::from(b.interval_seconds.unwrap_or(3600)));
    // The embedded store's next backup is due an interval after the last:
    // it is late only once a second interval has passed.
    let default_max_age = if embedded {
        (2 * interval).max(std::time::Duration::from_secs(3600))
    } else {
        std::time::Duration::from_secs(3600)
    };
    Some(Backup {
        destination,
        schedule: b.schedule.clone().unwrap_or_else(|| "0 * * * *".to_owned()),
        interval,
        retain: b.retain.unwrap_or(24),
        max_age: b.max_age_seconds.map_or(default_max_age, |s| {
            std::time::Duration::from_secs(u64::from(s))
        }),
    })
}

/// The ports the pods connect to, from what the spec configures.
fn egress_ports(spec: &crate::api::SecureVaultSpec) -> Vec<i32> {
    let np = spec.network_policy.clone().unwrap_or_default();
    let mut ports = Vec::new();
    if spec.database.is_some() {
        ports.push(np.database_port.unwrap_or(5432));
    }
    if spec.redis.is_some() {
        ports.push(np.redis_port.unwrap_or(6379));
    }
    if let Some(smtp) = &spec.smtp {
        ports.push(smtp.port);
    }
    if let Some(ai) = &spec.ai {
        ports.push(url_port(&ai.base_url));
        for f in ai.fallbacks.iter().flatten() {
            ports.push(url_port(&f.base_url));
        }
    }
    if spec.webhook.is_some() {
        // The URL is in a Secret the operator does not read: HTTPS's port.
        ports.push(443);
    }
    // The buckets backups go to and come from (AWS S3 itself: HTTPS).
    let buckets = [
        spec.backup.as_ref().and_then(|b| b.s3.as_ref()),
        spec.restore_from.as_ref().and_then(|r| r.s3.as_ref()),
    ];
    for s3 in buckets.into_iter().flatten() {
        ports.push(s3.endpoint.as_deref().map_or(443, url_port));
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The port of an `http(s)://host[:port]/…` URL (CEL checked the scheme).
fn url_port(url: &str) -> i32 {
    let (default, rest) = match url.strip_prefix("https://") {
        Some(rest) => (443, rest),
        None => (80, url.strip_prefix("http://").unwrap_or(url)),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    // The port follows the last colon, unless that colon is inside an
    // IPv6 address's brackets.
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.is_empty() => {
            port.parse().unwrap_or(default)
        }
        _ => default,
    }
}

/// The domain of a sender address, `noreply@example.com` or `SecureVault
/// <noreply@example.com>` (the data plane takes either), in lower case.
fn mail_domain(from: &str) -> String {
    let address = match from.rsplit_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(rest),
        None => from,
    };
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    domain.trim().to_ascii_lowercase()
}

fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

fn smtp_tls(tls: SmtpTls) -> &'static str {
    match tls {
        SmtpTls::Starttls => "starttls",
        SmtpTls::Tls => "tls",
        SmtpTls::None => "none",
    }
}

#[cfg(test)]
pub mod test_support {
    //! A SecureVault from YAML, as a user would write it, through the real
    //! `validate`: the builders' tests start here.

    use super::*;

    /// Parses `yaml` as a SecureVault with a uid, as if read from the API.
    pub fn vault(yaml: &str) -> SecureVault {
        let mut sv: SecureVault = serde_saphyr::from_str(yaml).unwrap();
        sv.metadata.uid = Some("6f0c1f9e-0000-4000-8000-000000000001".into());
        sv.metadata.namespace.get_or_insert_with(|| "team-a".into());
        sv
    }

    /// The minimal sample, validated.
    pub fn minimal() -> ValidatedVault {
        validate(&vault(MINIMAL)).unwrap()
    }

    /// The minimal sample (generation 1) with more `spec` lines, as the
    /// user writes them (`  database: {…}`, one per line).
    pub fn with_spec(lines: &str) -> SecureVault {
        let mut sv = vault(&format!("{MINIMAL}{lines}"));
        sv.metadata.generation = Some(1);
        sv
    }

    /// [`with_spec`], validated.
    pub fn validated(lines: &str) -> ValidatedVault {
        validate(&with_spec(lines)).unwrap()
    }

    /// The smallest valid SecureVault.
    pub const MINIMAL: &str = "
apiVersion: securevault.io/v1alpha1
kind: SecureVault
metadata:
  name: mail
spec:
  version: 0.1.0
  replicas: 1
";

    /// Every field set.
    pub const COMPLETE: &str = "
apiVersion: securevault.io/v1alpha1
kind: SecureVault
metadata:
  name: mail
  namespace: team-a
spec:
  version: 0.2.0
  image: registry.example.com/securevault/dataplane:0.2.0
  imagePullPolicy: IfNotPresent
  replicas: 3
  logLevel: debug
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {memory: 256Mi}
  secretKeyRef: {name: mail-keys, key: secret-key}
  adminPasswordSecretRef: {name: mail-keys, key: admin-password}
  auth:
    sessionTtlSeconds: 1800
    trustedProxies: [10.0.0.0/8, 192.168.1.7]
    login: {maxFailures: 10, windowSeconds: 600, blockSeconds: 900}
  rateLimits: {api: 120/1m, email: 100/1h, ai: 10/30s, onRedisFailure: deny}
  retention: {emailsDays: 90, generationsDays: 30, auditDays: 365}
  database:
    urlSecretRef: {name: mail-db, key: url}
  redis:
    urlSecretRef: {name: mail-redis, key: url}
  smtp:
    host: smtp.example.com
    port: 587
    tls: starttls
    from: noreply@example.com
    credentialsSecretRef: {name: mail-smtp}
  ai:
    baseUrl: https://api.openai.com/v1
    apiKeySecretRef: {name: mail-ai, key: api-key}
  webhook:
    urlSecretRef: {name: mail-webhook, key: url}
    signingSecretRef: {name: mail-webhook, key: signing-secret}
  placement:
    nodeSelector: {disk: ssd}
    tolerations: [{key: dedicated, operator: Equal, value: mail, effect: NoSchedule}]
    priorityClassName: high
  labels: {team: a}
  annotations: {owner: team-a@example.com}
";
}

#[cfg(test)]
mod tests {
    use super::{test_support::*, *};

    #[test]
    fn the_operator_s_image_repository_moves_the_default_image_only() {
        let mirror = parse_image_repository("registry.corp:5000/mirror/dataplane").unwrap();
        assert_eq!(minimal().image, "securevault/dataplane:0.1.0");
        assert_eq!(
            minimal().with_image_repository(&mirror).image,
            "registry.corp:5000/mirror/dataplane:0.1.0"
        );
        let named = validated("  image: registry.example.com/sv/dataplane:0.1.0\n")
            .with_image_repository(&mirror);
        assert_eq!(named.image, "registry.example.com/sv/dataplane:0.1.0");
        for (wrong, says) in [
            ("registry.corp/dataplane:0.1.0", "tag or digest"),
            ("registry.corp/dataplane@sha256:00", "tag or digest"),
            ("Registry.corp/Dataplane", "not an image repository"),
            ("", "1 to 255"),
        ] {
            let e = parse_image_repository(wrong).unwrap_err();
            assert!(e.contains(says), "{wrong}: {e}");
        }
    }

    #[test]
    fn pull_secrets_are_kept_in_order() {
        let v = validated("  imagePullSecrets: [{name: mirror}, {name: backup-mirror}]\n");
        let names: Vec<_> = v
            .image_pull_secrets
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["mirror", "backup-mirror"]);
        assert!(minimal().image_pull_secrets.is_empty());
    }

    #[test]
    fn the_operator_s_monitoring_labels_go_under_the_spec_s_own() {
        let defaults = parse_labels(DEFAULT_MONITORING_LABELS).unwrap();
        assert_eq!(defaults["release"], "kube-prometheus-stack");
        assert_eq!(
            minimal()
                .with_monitoring_labels(&defaults)
                .monitoring
                .labels,
            defaults
        );
        let sv = with_spec("  monitoring: {labels: {release: prometheus, team: mail}}\n");
        let labels = validate(&sv)
            .unwrap()
            .with_monitoring_labels(&parse_labels("release=kube-prometheus-stack, tier=a").unwrap())
            .monitoring
            .labels;
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [
                ("release".to_owned(), "prometheus".to_owned()),
                ("team".to_owned(), "mail".to_owned()),
                ("tier".to_owned(), "a".to_owned())
            ]
        );
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("example.com/team=mail").is_ok());
        for (bad, says) in [
            ("release", "not key=value"),
            ("=x", "not a label key"),
            ("release=kube prometheus", "not a label value"),
            ("release=-x", "not a label value"),
        ] {
            let e = parse_labels(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn fallback_model_servers_become_the_data_planes_list() {
        let v = validated(
            "  ai:\n    baseUrl: http://llama.ai.svc:8090/v1\n    apiKeySecretRef: {name: ai, key: primary}\n    models: [llama-3.1-8b, gpt-4o-mini]\n    fallbacks:\n    - {name: open-ai, baseUrl: 'https://api.openai.com/v1', apiKeySecretRef: {name: ai, key: openai}, timeoutSeconds: 10, models: [gpt-4o-mini]}\n",
        );
        assert_eq!(v.settings["AI_UPSTREAMS"], "primary,open-ai");
        assert_eq!(v.settings["OPENAI_MODEL"], "llama-3.1-8b");
        assert_eq!(v.settings["AI_MODELS"], "gpt-4o-mini");
        assert_eq!(v.settings["AI_UPSTREAM_OPEN_AI_MODELS"], "gpt-4o-mini");
        assert_eq!(
            v.settings["AI_UPSTREAM_PRIMARY_BASE_URL"],
            "http://llama.ai.svc:8090/v1"
        );
        assert_eq!(
            v.settings["AI_UPSTREAM_OPEN_AI_BASE_URL"],
            "https://api.openai.com/v1"
        );
        assert_eq!(v.settings["AI_UPSTREAM_OPEN_AI_TIMEOUT_SECS"], "10");
        assert!(!v.settings.contains_key("OPENAI_BASE_URL"));
        let keys: Vec<(&str, &str)> = v
            .secret_env
            .iter()
            .filter(|e| e.var.starts_with("AI_UPSTREAM_"))
            .map(|e| (e.var.as_str(), e.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("AI_UPSTREAM_PRIMARY_API_KEY", "primary"),
                ("AI_UPSTREAM_OPEN_AI_API_KEY", "openai")
            ]
        );
        assert!(v.egress_ports.contains(&8090) && v.egress_ports.contains(&443));

        // Without fallbacks, the one server as before.
        let v = validated("  ai: {baseUrl: 'http://llama:8080/v1'}\n");
        assert_eq!(v.settings["OPENAI_BASE_URL"], "http://llama:8080/v1");
        assert!(!v.settings.contains_key("AI_UPSTREAMS"));
    }

    #[test]
    fn token_budgets_become_the_data_plane_s_settings() {
        let v = validated(
            "  ai:\n    baseUrl: http://llama:8080/v1\n    budgets: {keyDailyTokens: 100000, accountMonthlyTokens: 5000000}\n",
        );
        assert_eq!(v.settings["AI_BUDGET_KEY_DAILY_TOKENS"], "100000");
        assert_eq!(v.settings["AI_BUDGET_ACCOUNT_MONTHLY_TOKENS"], "5000000");
        assert!(!v.settings.contains_key("AI_BUDGET_KEY_MONTHLY_TOKENS"));
        assert!(!v.settings.contains_key("AI_BUDGET_ACCOUNT_DAILY_TOKENS"));
    }

    #[test]
    fn url_ports_come_from_the_url_or_its_scheme() {
        assert_eq!(url_port("https://api.openai.com/v1"), 443);
        assert_eq!(url_port("http://llama.ai.svc:8090/v1"), 8090);
        assert_eq!(url_port("http://[::1]/v1"), 80);
        assert_eq!(url_port("http://[::1]:8000/v1"), 8000);
    }

    #[test]
    fn a_minimal_vault_runs_production_mode_with_a_generated_key() {
        let v = minimal();
        assert_eq!(v.image, "securevault/dataplane:0.1.0");
        assert_eq!(v.settings["SECUREVAULT_ENV"], "production");
        assert_eq!(v.settings["LISTEN_ADDR"], "0.0.0.0:8080");
        assert!(v.generates_secret_key && v.generates_admin_password);
        assert_eq!(
            v.secret_env,
            [
                SecretEnv {
                    var: "SECRET_KEY".into(),
                    secret: "mail-secret-key".into(),
                    key: "secret-key".into()
                },
                SecretEnv {
                    var: "ADMIN_PASSWORD".into(),
                    secret: "mail-secret-key".into(),
                    key: "admin-password".into()
                }
            ]
        );
        assert!(v.referenced_secrets().is_empty());
        assert_eq!(v.owner.kind, "SecureVault");
        assert_eq!(v.owner.controller, Some(true));
    }

    #[test]
    fn credentials_are_references_and_settings_are_values() {
        let v = validate(&vault(COMPLETE)).unwrap();
        let vars: Vec<_> = v.secret_env.iter().map(|s| s.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "SECRET_KEY",
                "ADMIN_PASSWORD",
                "DATABASE_URL",
                "REDIS_URL",
                "SMTP_USERNAME",
                "SMTP_PASSWORD",
                "OPENAI_API_KEY",
                "WEBHOOK_URL",
                "WEBHOOK_SECRET"
            ]
        );
        assert_eq!(v.settings["WEBHOOK_FORMAT"], "standard");
        assert_eq!(
            v.referenced_secrets(),
            [
                "mail-ai",
                "mail-db",
                "mail-keys",
                "mail-redis",
                "mail-smtp",
                "mail-webhook"
            ]
        );
        assert_eq!(v.settings["SMTP_HOST"], "smtp.example.com");
        for (var, value) in [
            ("SESSION_TTL_SECS", "1800"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
            ("LOGIN_MAX_FAILURES", "10"),
            ("LOGIN_WINDOW_SECS", "600"),
            ("LOGIN_BLOCK_SECS", "900"),
            ("RATE_LIMIT_API", "120/1m"),
            ("RATE_LIMIT_EMAIL", "100/1h"),
            ("RATE_LIMIT_AI", "10/30s"),
            ("RATE_LIMIT_ON_REDIS_FAILURE", "deny"),
            ("RETENTION_EMAILS_DAYS", "90"),
            ("RETENTION_GENERATIONS_DAYS", "30"),
            ("RETENTION_AUDIT_DAYS", "365"),
        ] {
            assert_eq!(v.settings[var], value, "{var}");
        }
        assert_eq!(v.settings["LOG_LEVEL"], "debug");
        assert!(!v.settings.values().any(|s| s.contains("mail-db")));
        assert_eq!(v.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    /// `spec.smtp` of the minimal sample's vault, with `dkim` as given.
    fn with_dkim(from: &str, dkim: &str) -> ValidatedVault {
        validated(&format!(
            "  smtp: {{host: smtp.example.com, port: 587, tls: starttls, from: '{from}'{dkim}}}\n"
        ))
    }

    #[test]
    fn dkim_settings_point_at_the_mounted_keys_and_refuse_unsigned_mail_by_default() {
        let v = with_dkim("noreply@Example.COM", ", dkim: {secretName: mail-dkim}");
        assert_eq!(v.settings["DKIM_KEYS_DIR"], "/etc/securevault/dkim");
        assert_eq!(v.settings["DKIM_ALLOW_UNSIGNED"], "false");
        assert_eq!(
            v.dkim,
            Some(Dkim {
                secret_name: "mail-dkim".into(),
                allow_unsigned: false,
                from_domain: "example.com".into(),
            })
        );
        // A change of its keys reconciles the vault, which reports on them.
        assert_eq!(v.referenced_secrets(), ["mail-dkim"]);

        let v = with_dkim(
            "SecureVault <noreply@mail.example.org>",
            ", dkim: {secretName: mail-dkim, allowUnsigned: true}",
        );
        assert_eq!(v.settings["DKIM_ALLOW_UNSIGNED"], "true");
        assert_eq!(v.dkim.unwrap().from_domain, "mail.example.org");
    }

    #[test]
    fn without_dkim_no_dkim_setting_is_rendered() {
        for v in [minimal(), with_dkim("noreply@example.com", "")] {
            assert!(v.dkim.is_none());
            assert!(!v.settings.keys().any(|k| k.starts_with("DKIM_")));
            assert!(v.referenced_secrets().is_empty());
        }
    }

    #[test]
    fn retention_days_become_settings_and_a_kind_left_out_is_kept_forever() {
        let v = validated("  retention: {emailsDays: 30, auditDays: 36500}\n");
        assert_eq!(v.settings["RETENTION_EMAILS_DAYS"], "30");
        assert_eq!(v.settings["RETENTION_AUDIT_DAYS"], "36500");
        // Unset rather than `off`: the data plane's default keeps them.
        assert!(!v.settings.contains_key("RETENTION_GENERATIONS_DAYS"));

        for v in [minimal(), validated("  retention: {}\n")] {
            assert!(!v.settings.keys().any(|k| k.starts_with("RETENTION_")));
        }
    }

    #[test]
    fn spec_labels_cannot_take_over_the_pod_selector() {
        let mut sv = vault(MINIMAL);
        sv.spec
            .labels
            .insert("app.kubernetes.io/instance".into(), "other".into());
        assert_eq!(
            validate(&sv).unwrap_err(),
            ValidationError::ReservedLabel("app.kubernetes.io/instance".into())
        );
    }

    #[test]
    fn rotating_away_from_the_generated_key_keeps_it_as_the_previous_one() {
        let v = validated(
            "  secretKeyRef: {name: new-key, key: k}\n  secretKeyPreviousRef: {name: mail-secret-key, key: secret-key}\n",
        );
        // Still generated, so the Secret keeps it while rows are sealed with it.
        assert!(v.generates_secret_key);
        let previous = v.secret_env.iter().find(|e| e.var == "SECRET_KEY_PREVIOUS");
        assert_eq!(
            previous,
            Some(&SecretEnv {
                var: "SECRET_KEY_PREVIOUS".into(),
                secret: "mail-secret-key".into(),
                key: "secret-key".into()
            })
        );
        assert_eq!(v.referenced_secrets(), ["new-key"]);
        // Once the rotation is over, the new key alone is used.
        let after = validated("  secretKeyRef: {name: new-key, key: k}\n");
        assert!(!after.generates_secret_key);
        assert!(
            !after
                .secret_env
                .iter()
                .any(|e| e.var == "SECRET_KEY_PREVIOUS")
        );
    }

    #[test]
    fn the_previous_key_cannot_be_the_current_one() {
        let err = validate(&with_spec(
            "  secretKeyPreviousRef: {name: mail-secret-key, key: secret-key}\n",
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("generated by the operator"),
            "{err}"
        );
    }
}
