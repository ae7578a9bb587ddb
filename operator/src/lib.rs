//! The SecureVault operator: reconciles each `SecureVault` into the objects
//! that run its data plane, and reports what it sees in the status.
//!
//! Data flows one way through the modules:
//!
//! - [`api`]: the custom resource's types, i.e. the CRD (a leaf module);
//! - [`validate`]: the SecureVault -> a checked [`validate::ValidatedVault`];
//! - [`names`]: object names and labels shared by builders and reconciler;
//! - [`build`]: one pure function per child object, from the validated
//!   SecureVault to the object; no client, unit-tested beside each;
//! - [`upgrade`]: the managed-upgrade state machine (pure), deciding which
//!   release the Deployment runs and which Job comes next;
//! - [`reconcile`]: the pipeline `validate -> observe -> decide -> build ->
//!   apply -> update_status`, the only place that writes;
//! - [`status`]: the status computed from what was observed;
//! - [`cache`]: the metadata of children and Secrets the watches keep;
//!   [`unchanged`]: from those alone, whether a SecureVault changed since
//!   its last settled reconcile (then no request is sent); [`written`]:
//!   what this process last applied to each child (then that child is not
//!   sent again); [`recent`]: answers that stand for a short while;
//! - [`dkim`]: what the DKIM Secret's key names mean, for `Degraded`;
//! - [`controller`]: watches and wiring; [`leader`]: Lease-based election;
//! - [`client`]: the API client, which counts every request it sends;
//! - [`telemetry`]: logs, metrics, health endpoints; [`metrics_auth`]: who
//!   may read the metrics (TokenReview and SubjectAccessReview);
//! - [`crd`]: the CRD YAML that `operator crd` prints; [`render`]: the
//!   children, as YAML, that `operator render` prints (no cluster).
//! - [`crd_reference`]: the Markdown reference of the CRD's fields that
//!   `operator crd --reference` prints (docs/operator.md's "CRD reference").

pub mod alerts;
pub mod api;
pub mod build;
pub mod cache;
pub mod changes;
pub mod client;
pub mod controller;
pub mod crd;
pub mod crd_reference;
pub mod discovery;
pub mod dkim;
pub mod env;
pub mod leader;
pub mod metrics_auth;
pub mod names;
pub mod policy;
pub mod probe;
pub mod prometheus_selection;
pub mod recent;
pub mod reconcile;
pub mod render;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod unchanged;
pub mod upgrade;
pub mod validate;
pub mod version;
pub mod written;
