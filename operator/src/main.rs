//! The SecureVault Kubernetes operator.
//!
//! It will reconcile `SecureVault` objects (`securevault.io/v1alpha1`) into the
//! data plane's Deployment, Service, Secrets and monitoring objects. Until the
//! reconciler lands, the binary only answers `--help` and `--version`, and
//! refuses to run rather than pretend to manage anything.

use std::process::ExitCode;

use clap::Parser;

/// SecureVault operator: runs the data plane for each SecureVault object.
#[derive(Debug, Parser)]
#[command(name = "operator", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("operator: reconciliation is not implemented yet; nothing to run");
    ExitCode::from(2)
}
