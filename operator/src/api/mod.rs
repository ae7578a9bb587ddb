//! The `SecureVault` custom resource (`securevault.io/v1alpha1`): the types
//! are the CRD. `operator crd` prints the schema derived from them, and the
//! copy checked in under `crds/` is compared with it by a test.
//!
//! This module is a leaf: it imports nothing from the controller, so the
//! builders and the reconciler depend on it and never the other way round.

pub mod cert_manager;
pub mod monitoring;
mod spec;
mod status;

pub use spec::*;
pub use status::*;

/// Drops an enum's own doc comment from its schema, so that the doc comment
/// of the field using it (with its `[default: …]`) is the description in
/// the CRD. Without it an `Option<Enum>` field shows the enum's doc instead:
/// kube flattens the field's `anyOf: [enum, null]` by copying the enum's
/// schema over the field's, description included. Every enum of the API
/// uses it (`#[schemars(transform = described_by_its_field)]`); the enum's
/// doc stays for Rust readers.
fn described_by_its_field(schema: &mut schemars::Schema) {
    schema.remove("description");
}
