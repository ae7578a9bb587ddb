//! `operator crd | rules | alertmanager | render | run`: prints the CRD, the
//! alerts as a rule file, their routing as an alertmanager.yml or the
//! children of a SecureVault, or runs the controller with
//! leader election, JSON logs and a metrics endpoint.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use operator::{controller, discovery, leader, metrics_auth, telemetry};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than the C library's allocator. A start (or a standby
/// taking over) lists every SecureVault and child at once, and a rollout
/// reconciles dozens at a time: the buffers of those moments are freed,
/// but glibc keeps most of them in its per-thread arenas, and the process
/// stayed at 58-66 MB resident for 500 SecureVaults. jemalloc's background
/// threads return freed pages a second after their last use (the decay is
/// set in `.cargo/config.toml`): 41-43 MB at rest, 17 of them the binary's
/// own pages (docs/benchmarks.md, "Operator at scale").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// SecureVault operator: runs the data plane for each SecureVault object.
#[derive(Debug, Parser)]
#[command(name = "operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the SecureVault CustomResourceDefinition as YAML.
    Crd {
        /// Print instead the Markdown reference of its fields (docs/operator.md's
        /// "CRD reference"), from the same doc comments.
        #[arg(long)]
        reference: bool,
    },
    /// Print the Grafana dashboard of every SecureVault as JSON (what the
    /// chart ships; variables pick the namespace and the SecureVault).
    Dashboard,
    /// GET a plain-HTTP URL (e.g. an operator's /readyz), asking again each
    /// second, and exit 0 on a 2xx answer, 1 if none came in time: the
    /// chart's `helm test` hook, which runs in this image (no shell, no curl).
    Probe {
        /// E.g. http://securevault-operator-metrics.securevault-system.svc:8081/readyz
        url: url::Url,
        /// Seconds to keep asking for a 2xx answer.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Reconcile SecureVaults in the watched namespaces (WATCH_NAMESPACE; uses
    /// KUBECONFIG or the in-cluster account).
    Run(Box<RunArgs>),
    /// Print, as a Prometheus rule file, the alerts the operator writes for
    /// the SecureVault in a manifest (for promtool, or a Prometheus without
    /// the Prometheus Operator).
    Rules {
        /// A YAML manifest holding a SecureVault.
        manifest: std::path::PathBuf,
    },
    /// Print, as a whole alertmanager.yml, where the alerts of the
    /// SecureVault in a manifest go (`spec.monitoring.alertRouting`:
    /// critical to PagerDuty, warning to Slack), for an Alertmanager without
    /// the Prometheus Operator. The secrets stay out of it: the file names
    /// `pagerduty-routing-key` and `slack-api-url` in `--secrets-dir`.
    Alertmanager {
        /// A YAML manifest holding a SecureVault.
        manifest: std::path::PathBuf,
        /// Where the Alertmanager finds the secret files.
        #[arg(long, default_value = "/etc/alertmanager/secrets")]
        secrets_dir: String,
    },
    /// Print, as a multi-document YAML stream, every object the operator
    /// writes for the SecureVault in a manifest, without a cluster (for
    /// review and manifest linters). Values the operator generates are
    /// generated afresh.
    Render {
        /// A YAML manifest holding a SecureVault.
        manifest: std::path::PathBuf,
        /// Also print the Jobs a managed upgrade runs (backup, migration),
        /// named with the upgrade id 000000.
        #[arg(long)]
        upgrade_jobs: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8081")]
    metrics_addr: SocketAddr,
    /// Whether /metrics needs a bearer token allowed to `get` the
    /// non-resource URL /metrics (a TokenReview and a SubjectAccessReview):
    /// `on` or `off` [default: on, off when METRICS_ADDR is loopback]. `off`
    /// is refused on any other address. /healthz and /readyz never need one.
    #[arg(long, env = "METRICS_AUTH")]
    metrics_auth: Option<metrics_auth::Setting>,
    /// Log level or tracing filter directive.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Watch only these namespaces, comma-separated [default: every
    /// namespace]. With a list, the operator needs only Roles in those
    /// namespaces, no ClusterRole (the Helm chart always sets one unless
    /// `clusterWide`).
    #[arg(long, env = "WATCH_NAMESPACE", value_delimiter = ',')]
    watch_namespace: Vec<String>,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "securevault-operator")]
    lease_name: String,
    /// This replica's identity in the Lease [default: host name and process id].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECS", default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds between renewals (and between a standby's tries).
    #[arg(long, env = "LEASE_RENEW_SECS", default_value_t = 5)]
    lease_renew_secs: u64,
    /// Ingress annotation keys a SecureVault may set, comma-separated: a key,
    /// a prefix ending in `*`, or `*` [default: *].
    #[arg(long, env = "POLICY_INGRESS_ANNOTATIONS")]
    policy_ingress_annotations: Option<String>,
    /// cert-manager issuers a SecureVault may name: `ClusterIssuer/<name>`,
    /// `Issuer/<name>` (a name may be `*`), or `*` [default: *].
    #[arg(long, env = "POLICY_ISSUERS")]
    policy_issuers: Option<String>,
    /// Host names a SecureVault may claim (Ingress host, certificate DNS
    /// names): a host, a suffix starting with `.`, or `*` [default: *].
    #[arg(long, env = "POLICY_HOST_SUFFIXES")]
    policy_host_suffixes: Option<String>,
    /// Images a SecureVault may run: a registry, or a registry and path,
    /// that `spec.image` starts with, or `*` [default: *].
    #[arg(long, env = "POLICY_IMAGE_REGISTRIES")]
    policy_image_registries: Option<String>,
    /// Labels every SecureVault's ServiceMonitor and PrometheusRule carry,
    /// `key=value` comma-separated, so that a Prometheus selects them; a
    /// SecureVault's `spec.monitoring.labels` add to them and win on a key.
    /// Empty: none.
    #[arg(long, env = "MONITORING_LABELS", default_value = operator::validate::DEFAULT_MONITORING_LABELS)]
    monitoring_labels: String,
    /// The image repository of SecureVaults that name no `spec.image` (the
    /// tag is their `spec.version`), e.g. a mirror in an air-gapped cluster.
    #[arg(long, env = "DATAPLANE_IMAGE_REPOSITORY", default_value = operator::names::DEFAULT_IMAGE_REPOSITORY)]
    dataplane_image_repository: String,
}

/// Writes a command's output to stdout. A reader that stops early (`| head`)
/// is not an error worth a panic: the exit is quiet.
fn print_document(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("operator: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd { reference } => {
            let document = if reference {
                operator::crd_reference::markdown().map_err(|e| e.to_string())
            } else {
                operator::crd::yaml().map_err(|e| e.to_string())
            };
            match document {
                Ok(text) => print_document(&text),
                Err(e) => {
                    eprintln!("operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dashboard => print_document(&operator::build::dashboard::file()),
        Command::Rules { manifest } => {
            let rendered = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("reading {}: {e}", manifest.display()))
                .and_then(|yaml| {
                    operator::build::prometheus_rule::rule_file_from_manifest(&yaml)
                        .map_err(|e| e.to_string())
                });
            match rendered {
                Ok(file) => print_document(&format!("{file}\n")),
                Err(e) => {
                    eprintln!("operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Alertmanager {
            manifest,
            secrets_dir,
        } => {
            let rendered = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("reading {}: {e}", manifest.display()))
                .and_then(|yaml| {
                    operator::build::alertmanager_config::alertmanager_yml_from_manifest(
                        &yaml,
                        &secrets_dir,
                    )
                    .map_err(|e| e.to_string())
                });
            match rendered {
                Ok(file) => print_document(&file),
                Err(e) => {
                    eprintln!("operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Render {
            manifest,
            upgrade_jobs,
        } => {
            let rendered = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("reading {}: {e}", manifest.display()))
                .and_then(|yaml| {
                    operator::render::render_manifest(&yaml, upgrade_jobs)
                        .map_err(|e| e.to_string())
                });
            match rendered {
                Ok(stream) => print_document(&stream),
                Err(e) => {
                    eprintln!("operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Probe { url, timeout_secs } => {
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(operator::probe::probe_within(
                        &url,
                        std::time::Duration::from_secs(timeout_secs),
                    ))
                    .map_err(|e| e.to_string())
                });
            match answer {
                Ok(status) => print_document(&format!("{url} answered {status}\n")),
                Err(e) => {
                    eprintln!("operator probe: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            if let Err(e) = telemetry::init_logging(&args.log_level) {
                eprintln!("operator: {e}");
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("operator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped on an error");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Before anything starts: a setting that would open the metrics stops it.
    let auth_required = metrics_auth::required(args.metrics_auth, args.metrics_addr)?;
    // Checked before anything connects: a wrong entry is a typo to fix now,
    // not a SecureVault refused (or allowed) later.
    let platform = Arc::new(controller::Platform {
        policy: operator::policy::Policy::parse(
            args.policy_ingress_annotations.as_deref(),
            args.policy_issuers.as_deref(),
            args.policy_host_suffixes.as_deref(),
            args.policy_image_registries.as_deref(),
        )?,
        monitoring_labels: operator::validate::parse_labels(&args.monitoring_labels)
            .map_err(|e| anyhow::anyhow!("MONITORING_LABELS: {e}"))?,
        dataplane_image_repository: operator::validate::parse_image_repository(
            &args.dataplane_image_repository,
        )
        .map_err(|e| anyhow::anyhow!("DATAPLANE_IMAGE_REPOSITORY: {e}"))?,
    });
    let watched = watched_namespaces(&args.watch_namespace)?;
    match &watched {
        Some(list) => tracing::info!(
            namespaces = list.join(","),
            "watching only these namespaces"
        ),
        None => tracing::info!("watching every namespace (this needs cluster-wide rights)"),
    }
    let metrics = Arc::new(telemetry::Metrics::new()?);
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    let client = operator::client::counted(config, metrics.api_requests.clone())
        .context("building the Kubernetes client")?;
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} (METRICS_ADDR)", args.metrics_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, metrics_auth = auth_required, "metrics listening on http://{addr}");
    let authorizer = auth_required.then(|| {
        Arc::new(metrics_auth::Authorizer::new(metrics_auth::ApiServer::new(
            client.clone(),
        )))
    });
    let serving = tokio::spawn(telemetry::serve(
        listener,
        metrics.clone(),
        authorizer,
        stop.clone().cancelled_owned(),
    ));

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let elector = Arc::new(leader::Elector::new(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        leader::Timing {
            lease_duration: Duration::from_secs(args.lease_duration_secs),
            renew_every: Duration::from_secs(args.lease_renew_secs),
        },
    ));

    tracing::info!(identity, "waiting to become the leader");
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            result = elector.try_acquire() => match result {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            },
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(elector.renew_every()) => {}
        }
    }
    metrics.leader.set(1);
    tracing::info!(identity, "became the leader; reconciling");

    let lost = CancellationToken::new();
    let renewing = tokio::spawn(keep_lease(
        elector.clone(),
        stop.clone(),
        lost.clone(),
        Duration::from_secs(args.lease_duration_secs),
    ));
    // Either ends every controller: a shutdown, or the lease lost.
    let done = CancellationToken::new();
    {
        let (stop, lost, done) = (stop.clone(), lost.clone(), done.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {},
                () = lost.cancelled() => {},
            }
            done.cancel();
        });
    }
    // What the cluster serves of the optional kinds, learned once for all
    // the controllers below; `None` when stopped before discovery answered.
    if let Some(discovery) =
        discovery::Discovery::start(client.clone(), metrics.clone(), done.clone()).await
    {
        // One controller per watched namespace (or one for all): a
        // namespaced watch needs only a Role there.
        let namespaces: Vec<Option<&str>> = match &watched {
            None => vec![None],
            Some(list) => list.iter().map(|ns| Some(ns.as_str())).collect(),
        };
        futures::future::join_all(namespaces.into_iter().map(|namespace| {
            controller::run(
                client.clone(),
                metrics.clone(),
                discovery.clone(),
                platform.clone(),
                &identity,
                namespace,
                done.clone().cancelled_owned(),
            )
        }))
        .await;
    }
    renewing.abort();
    metrics.leader.set(0);
    if lost.is_cancelled() {
        stop.cancel();
        let _ = serving.await;
        anyhow::bail!("lost the leader lease; stopping so that only one replica reconciles");
    }
    elector
        .release()
        .await
        .context("handing the leader lease back")?;
    tracing::info!("handed the leader lease back; stopped");
    let _ = serving.await;
    Ok(())
}

/// The namespaces of WATCH_NAMESPACE, in order and once each; `None`, every
/// namespace, when it is unset or empty. An empty entry in a list (`a,,b`)
/// is refused rather than guessed at: a typo must not widen the watch to
/// every namespace, nor aim it at a namespace without a name.
fn watched_namespaces(list: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    let entries: Vec<&str> = list.iter().map(|ns| ns.trim()).collect();
    if matches!(entries.as_slice(), [] | [""]) {
        return Ok(None);
    }
    if entries.contains(&"") {
        anyhow::bail!(
            "WATCH_NAMESPACE {:?} has an empty entry; unset it to watch every namespace",
            list.join(",")
        );
    }
    let mut unique: Vec<String> = Vec::with_capacity(entries.len());
    for ns in entries {
        if !unique.iter().any(|u| u == ns) {
            unique.push(ns.to_owned());
        }
    }
    Ok(Some(unique))
}

/// Renews the lease until `stop`; fires `lost` if another replica took it or
/// it could not be renewed for a whole lease duration.
async fn keep_lease(
    elector: Arc<leader::Elector>,
    stop: CancellationToken,
    lost: CancellationToken,
    lease: Duration,
) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(elector.renew_every()) => {}
        }
        match elector.try_acquire().await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!("another replica holds the leader lease");
                lost.cancel();
                return;
            }
            Err(e) if last_renewed.elapsed() >= lease => {
                tracing::error!(error = %e, "could not renew the leader lease in time");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed; retrying"),
        }
    }
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutdown requested");
    stop.cancel();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "operator".into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// WATCH_NAMESPACE as the operator reads it, through the same parser.
    fn watched(value: &str) -> anyhow::Result<Option<Vec<String>>> {
        let Command::Run(args) =
            Cli::try_parse_from(["operator", "run", "--watch-namespace", value])?.command
        else {
            panic!("`operator run` parsed as another command")
        };
        watched_namespaces(&args.watch_namespace)
    }

    #[test]
    fn an_empty_watch_namespace_means_every_namespace() {
        assert_eq!(watched("").unwrap(), None);
        assert_eq!(watched(" ").unwrap(), None);
        assert_eq!(watched_namespaces(&[]).unwrap(), None);
    }

    #[test]
    fn a_list_is_trimmed_and_each_namespace_watched_once() {
        assert_eq!(
            watched("team-a, team-b,team-a").unwrap(),
            Some(vec!["team-a".to_owned(), "team-b".to_owned()])
        );
    }

    #[test]
    fn an_empty_entry_in_a_list_is_refused_rather_than_widening_the_watch() {
        for value in ["team-a,", ",team-a", "team-a,,team-b", ","] {
            let error = watched(value).unwrap_err().to_string();
            assert!(error.contains("empty entry"), "{value:?}: {error}");
        }
    }
}
