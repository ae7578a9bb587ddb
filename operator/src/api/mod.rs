//! The `SecureVault` custom resource (`securevault.io/v1alpha1`): the types
//! are the CRD. `operator crd` prints the schema derived from them, and the
//! copy checked in under `crds/` is compared with it by a test.
//!
//! This module is a leaf: it imports nothing from the controller, so the
//! builders and the reconciler depend on it and never the other way round.

pub mod monitoring;
mod spec;
mod status;

pub use spec::*;
pub use status::*;
