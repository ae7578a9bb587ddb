//! Start-up and shutdown: open the store, migrate, bind, serve until SIGTERM,
//! then drain requests in flight (bounded) and close the pool. How each
//! connection is served is [`crate::connections`]'s business.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio::{net::TcpListener, signal::unix::SignalKind, sync::Notify};

use crate::{
    ai::{self, generate::Generator},
    app::{AppState, Services, app},
    audit,
    auth::{self, Auth, AuthError, passwords::Passwords},
    backup::{Destination, DestinationError, Plan, schedule},
    cache::{Cache, CacheError},
    config::{Config, ConnectionLimits},
    connections::{self, LimitedListener},
    email::{
        smtp::{Mailer, MailerError},
        worker::Worker,
    },
    health::{self, HealthMonitor},
    ratelimit::Limiter,
    routes,
    shutdown::{Shutdown, ShutdownTrigger},
    store::sealed::Keyring,
    store::{Store, StoreError},
    telemetry::{Metrics, system},
    tls::{self, Certificates, TlsError, TlsListener},
    webhooks::{self, monitor::Monitor},
};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The metrics registry refused a metric (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SMTP settings do not make a mailer.
    #[error(transparent)]
    Mailer(#[from] MailerError),
    /// The model server's HTTP client could not be created.
    #[error(transparent)]
    Ai(#[from] ai::client::ClientError),
    /// The webhook HTTP client could not be created.
    #[error(transparent)]
    Webhooks(#[from] webhooks::worker::ClientError),
    /// The cache client could not be created.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// Password hashing could not start.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The first administrator could not be set up.
    #[error(transparent)]
    Bootstrap(#[from] auth::bootstrap::BootstrapError),
    /// A backup or restore failed.
    #[error(transparent)]
    Backup(#[from] crate::store::backup::BackupError),
    /// The backup destination failed.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// A restore has nothing to restore from.
    #[error("{0}")]
    NoBackup(String),
    /// The certificate files cannot be read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        /// `LISTEN_ADDR` or `METRICS_ADDR`.
        var: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Installing the signal handlers or serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the data plane until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new()?);
    // First: its DKIM keys are read here, and a missing or unusable key
    // stops the start before anything is written.
    let mailer = config
        .smtp
        .as_ref()
        .map(|smtp| Mailer::new(smtp, &metrics))
        .transpose()?;
    // Created or tightened before anything is written into it.
    crate::private_files::private_dir(&config.data_dir).map_err(|source| StoreError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = Store::connect(&config.database, keyring(&config)?).await?;
    store.migrate().await?;
    // Before anything is served: a store sealed under another key would
    // answer errors row by row.
    store.check_keys().await?;
    let cache = match &config.redis_url {
        Some(url) => Cache::redis(url.expose(), metrics.clone())?,
        None => Cache::local(metrics.clone()),
    };
    let limiter = match &config.redis_url {
        Some(url) => Limiter::redis(
            url.expose(),
            config.rate_limits.on_redis_failure,
            metrics.clone(),
        )
        .map_err(CacheError::from)?,
        None => Limiter::local(metrics.clone()),
    };
    tracing::info!(
        database = config.database.kind.as_str(),
        cache = cache.backend_name(),
        rate_limits = limiter.backend_name(),
        mode = config.mode.as_str(),
        "store ready and migrated"
    );
    // Hashing is CPU-bound: one at a time per core keeps logins from
    // starving the other requests.
    let passwords =
        Passwords::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
            .await?;
    auth::bootstrap::first_admin(&store, &passwords, &config).await?;
    audit::record_configuration(&store, &config).await;
    let auth = Auth {
        store: store.clone(),
        config: Arc::new(config.auth.clone()),
        limiter: limiter.clone(),
        passwords,
        cache: Default::default(),
    };

    let (trigger, shutdown) = Shutdown::new();
    let mut workers = Vec::new();
    match &config.backup {
        Some(backup) => {
            let plan = Plan {
                destination: Destination::new(&backup.destination, &config.data_dir)?,
                interval: backup.interval,
                retain: backup.retain,
            };
            workers.push(tokio::spawn(schedule::run(
                plan,
                store.clone(),
                metrics.clone(),
                shutdown.clone(),
            )));
        }
        None => tracing::info!("BACKUP_S3_BUCKET and BACKUP_DIR are not set: no scheduled backups"),
    }
    if config.retention.enabled() {
        workers.push(tokio::spawn(crate::retention::run(
            config.retention.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    } else {
        tracing::info!(
            "RETENTION_*_DAYS are off: emails, generations and audit entries are kept forever"
        );
    }
    tokio::spawn(system::run_sampler(
        metrics.clone(),
        system::SAMPLE_INTERVAL,
        shutdown.clone(),
        config.data_dir.clone(),
    ));

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| ServeError::Bind {
            var: "LISTEN_ADDR",
            addr: config.listen_addr,
            source,
        })?;
    let metrics_listener = TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| ServeError::Bind {
            var: "METRICS_ADDR",
            addr: config.metrics_addr,
            source,
        })?;
    // A wrong path stops the process here, with a message naming the
    // variable; a pair that cannot be served does not (see `tls`).
    let certificates = match &config.tls {
        Some(tls) => {
            let certificates = Certificates::load(&tls.cert_file, &tls.key_file)?;
            tokio::spawn(
                certificates
                    .clone()
                    .watch(tls.reload_interval, shutdown.clone()),
            );
            Some(certificates)
        }
        None => None,
    };

    let worker_id = format!("{}-{}", hostname(), uuid::Uuid::new_v4());
    // Created first: the email worker wakes the webhook worker when it queues
    // `email.sent` or `email.failed`.
    let webhook_wake = config.webhook.as_ref().map(|_| Arc::new(Notify::new()));
    let (mailer, email_wake) = match (&config.smtp, mailer) {
        (Some(smtp), Some(mailer)) => {
            let mailer = Arc::new(mailer);
            let wake = Arc::new(Notify::new());
            let worker = Worker {
                store: store.clone(),
                mailer: mailer.clone(),
                metrics: metrics.clone(),
                wake: wake.clone(),
                id: worker_id.clone(),
                notify: webhook_wake.clone(),
            };
            workers.push(tokio::spawn(worker.run(shutdown.clone())));
            tracing::info!(host = %smtp.host, port = smtp.port, "email delivery worker started");
            (Some(mailer), Some(wake))
        }
        _ => {
            tracing::info!("SMTP_HOST is not set: email sending is disabled");
            (None, None)
        }
    };

    let grace = config.shutdown_timeout;
    let generator = if config.openai.configured {
        let ai = &config.openai;
        for upstream in &ai.upstreams {
            tracing::info!(upstream = %upstream.name, base_url = %upstream.base_url, "model server");
        }
        tracing::info!(model = %ai.models[0], "text generation enabled");
        Some(Generator::new(ai, metrics.clone())?)
    } else {
        tracing::info!(
            "OPENAI_BASE_URL and OPENAI_API_KEY are not set: text generation is disabled"
        );
        None
    };
    // The dependency checks run in the background; the detailed health
    // report and the webhook monitor read their last round.
    let health = HealthMonitor::spawn(
        health::Dependencies {
            store: store.clone(),
            cache: cache.clone(),
            limiter: limiter.clone(),
            mailer: mailer.clone(),
            generator: generator.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    );

    if let Some(wake) = &email_wake {
        tokio::spawn(crate::email::relay_return::run(
            health.clone(),
            store.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
    }

    if let (Some(webhook), Some(wake)) = (&config.webhook, webhook_wake) {
        let worker = webhooks::worker::Worker {
            store: store.clone(),
            config: webhook.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            id: worker_id.clone(),
            client: webhooks::worker::client()?,
        };
        workers.push(tokio::spawn(worker.run(shutdown.clone())));
        let monitor = Monitor {
            store: store.clone(),
            health: health.clone(),
            cache: cache.clone(),
            wake,
        };
        tokio::spawn(monitor.run(shutdown.clone()));
        tracing::info!(format = ?webhook.format, signed = webhook.secret.is_some(), "webhook delivery worker started");
    }

    let budgets = crate::ai::budget::Budgets::new(limiter.clone(), config.openai.budgets);
    let state = AppState::new(Services {
        config: Arc::new(config),
        store: store.clone(),
        cache,
        metrics,
        started,
        mailer,
        email_wake,
        generator,
        auth,
        budgets,
        limiter,
        tls: certificates.clone(),
        health,
    });
    let signals = tokio::spawn(wait_for_signal(trigger));
    let limits = state.config.connections;
    let metrics = state.metrics.clone();
    let metrics_router = routes::metrics::router(metrics.clone());
    // Both are bound already; the metrics are announced first, so that once
    // the API says it listens, both do.
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    let (addr, metrics_addr) = (listener.local_addr()?, metrics_listener.local_addr()?);
    tracing::info!(addr = %metrics_addr, "metrics on {scheme}://{metrics_addr} (GET /metrics)");
    let metrics_serving = tokio::spawn(listen(
        metrics_listener,
        metrics_router,
        certificates.clone(),
        limits,
        metrics.clone(),
        shutdown.clone(),
        grace,
    ));
    tracing::info!(%addr, "listening on {scheme}://{addr}");
    listen(
        listener,
        app(state),
        certificates,
        limits,
        metrics,
        shutdown,
        grace,
    )
    .await?;
    if let Ok(Err(e)) = metrics_serving.await {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
    signals.abort();
    // Sends in flight finish (bounded by the SMTP timeout) before the pool closes.
    for worker in workers {
        let _ = tokio::time::timeout(grace, worker).await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `router` on `listener`, over TLS with `certificates`, until
/// `shutdown`, within `limits` (connections held, header and idle timeouts:
/// see [`crate::connections`]).
async fn listen(
    listener: TcpListener,
    router: axum::Router,
    certificates: Option<Arc<Certificates>>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    grace: std::time::Duration,
) -> Result<(), ServeError> {
    let listener = LimitedListener::new(listener, limits.max_connections, metrics.clone());
    match certificates {
        Some(certificates) => {
            let config = tls::server_config(certificates)?;
            let listener = TlsListener::new(
                listener,
                config,
                limits.header_read_timeout,
                shutdown.clone(),
            )?;
            connections::serve(listener, router, limits, metrics, shutdown, grace).await;
        }
        None => connections::serve(listener, router, limits, metrics, shutdown, grace).await,
    }
    Ok(())
}

/// Fires the shutdown on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn wait_for_signal(trigger: ShutdownTrigger) -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
    trigger.trigger();
    Ok(())
}

/// The keys that seal and open the store: from `SECRET_KEY` (and
/// `SECRET_KEY_PREVIOUS`), or in development without one, from the key kept
/// in `DATA_DIR/secret-key`, made on first use: a generated key that did
/// not outlive the process would leave every sealed row unreadable.
fn keyring(config: &Config) -> Result<Keyring, ServeError> {
    let previous = config
        .secret_key_previous
        .as_ref()
        .map(|k| k.expose().as_str());
    if !config.secret_key_generated {
        return Ok(Keyring::new(config.secret_key.expose(), previous));
    }
    let path = config.data_dir.join("secret-key");
    let file_error = |source| StoreError::DataDir {
        path: path.display().to_string(),
        source,
    };
    let key = match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => key.trim().to_owned(),
        _ => {
            crate::private_files::private_dir(&config.data_dir).map_err(file_error)?;
            let mut file = crate::private_files::create_private(&path).map_err(file_error)?;
            std::io::Write::write_all(&mut file, config.secret_key.expose().as_bytes())
                .map_err(file_error)?;
            config.secret_key.expose().to_owned()
        }
    };
    Ok(Keyring::new(&key, previous))
}

/// Seals every email and generation again under `SECRET_KEY` (`dataplane
/// reencrypt`).
pub async fn reencrypt(config: Config) -> Result<(), ServeError> {
    let store = Store::connect(&config.database, keyring(&config)?).await?;
    store.migrate().await?;
    let done = store.reencrypt().await;
    store.close().await;
    let done = done?;
    tracing::info!(
        emails = done.emails,
        generations = done.generations,
        retired_keys = ?done.retired,
        "re-encrypted under SECRET_KEY"
    );
    Ok(())
}

/// Applies pending migrations and returns (`dataplane migrate`).
pub async fn migrate(config: Config) -> Result<(), ServeError> {
    let store = Store::connect(&config.database, keyring(&config)?).await?;
    store.migrate().await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

/// Writes a backup and prunes old ones (`dataplane backup`): to `output`
/// when given, else to the configured destination, else to
/// `DATA_DIR/backups`.
pub async fn backup(
    config: Config,
    output: Option<std::path::PathBuf>,
    retain: Option<usize>,
) -> Result<(), ServeError> {
    let destination = match (output, &config.backup) {
        (Some(dir), _) => Destination::Directory(dir),
        (None, Some(backup)) => Destination::new(&backup.destination, &config.data_dir)?,
        (None, None) => Destination::Directory(config.data_dir.join("backups")),
    };
    let retain = retain
        .or(config.backup.as_ref().map(|b| b.retain))
        .unwrap_or(24);
    let store = Store::connect(&config.database, keyring(&config)?).await?;
    let taken = destination.take(&store, retain).await;
    store.close().await;
    let taken = taken?;
    tracing::info!(
        destination = %destination.describe(),
        name = %taken.name,
        bytes = taken.bytes,
        pruned = taken.pruned,
        "backup written"
    );
    Ok(())
}

/// Restores a backup (`dataplane restore`): `source` is a file, or a
/// backup's name (or `latest`) in the configured destination. With
/// `if_empty`, a store that holds rows is left as it is.
pub async fn restore(config: Config, source: &str, if_empty: bool) -> Result<(), ServeError> {
    let store = Store::connect(&config.database, keyring(&config)?).await?;
    let restored = restore_into(&store, &config, source, if_empty).await;
    store.close().await;
    restored
}

async fn restore_into(
    store: &Store,
    config: &Config,
    source: &str,
    if_empty: bool,
) -> Result<(), ServeError> {
    if if_empty {
        store.migrate().await?;
        if store.holds_rows().await? {
            tracing::info!(source, "the store already holds rows: nothing restored");
            return Ok(());
        }
    }
    let file = std::path::Path::new(source);
    let (path, downloaded) = if file.is_file() {
        (file.to_owned(), false)
    } else {
        let Some(backup) = &config.backup else {
            return Err(ServeError::NoBackup(format!(
                "{source} is not a file, and no backup destination is set (BACKUP_S3_BUCKET or BACKUP_DIR) to find it in"
            )));
        };
        let destination = Destination::new(&backup.destination, &config.data_dir)?;
        let (path, downloaded) = destination.fetch(source).await?;
        tracing::info!(destination = %destination.describe(), file = %path.display(), "backup fetched");
        (path, downloaded)
    };
    let restored = store.restore(&path).await;
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    let restored = restored?;
    let rows: u64 = restored.rows.iter().map(|(_, n)| n).sum();
    tracing::info!(source, rows, tables = ?restored.rows, "backup restored");
    Ok(())
}

/// This host's name, to tell workers of different pods apart in claims.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "dataplane".into())
}
