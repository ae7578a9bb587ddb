//! `dataplane [serve|migrate|backup|restore|healthcheck]`: reads the
//! settings, validates them, sets up logging and runs. A wrong setting exits
//! with status 2 and a message naming its environment variable; a failure
//! while running exits with status 1. `healthcheck` exits 1 on any failure,
//! a wrong setting included: Docker reserves status 2 of a health probe.

use std::process::ExitCode;

use clap::Parser;
use dataplane::{
    cli::{Cli, Command},
    config::Config,
    server,
    telemetry::logging,
};

mod healthcheck;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.settings.ai_upstream_vars = std::env::vars()
        .filter(|(name, _)| name.starts_with(dataplane::config::UPSTREAM_PREFIX))
        .collect();
    let probing = matches!(cli.command, Some(Command::Healthcheck));
    let config = match Config::from_settings(&cli.settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dataplane: {e}");
            return ExitCode::from(if probing { 1 } else { 2 });
        }
    };
    // Before logging is set up: a probe runs every few seconds, and Docker
    // keeps its output; one line on failure is all it should say.
    if probing {
        return match healthcheck::probe(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dataplane healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = logging::init(&config.log_filter) {
        eprintln!("dataplane: {e}");
        return ExitCode::from(2);
    }
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    if config.secret_key_generated {
        tracing::warn!(
            "SECRET_KEY is not set: using the development key kept in DATA_DIR/secret-key \
             (made on first use); set SECRET_KEY (required when SECUREVAULT_ENV=production)"
        );
    }

    match run(cli.command.unwrap_or(Command::Serve), config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "dataplane stopped on an error");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::Serve => server::run(config).await?,
            Command::Migrate => server::migrate(config).await?,
            Command::Backup { output, retain } => server::backup(config, output, retain).await?,
            Command::Restore { source, if_empty } => {
                server::restore(config, &source, if_empty).await?
            }
            Command::Reencrypt => server::reencrypt(config).await?,
            // Answered in `main`, before logging and this runtime.
            Command::Healthcheck => {}
        }
        Ok(())
    })
}
