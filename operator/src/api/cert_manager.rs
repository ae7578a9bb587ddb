//! cert-manager's `Certificate` (`cert-manager.io/v1`), written by hand with
//! only the fields we set. Its CRD belongs to cert-manager: we never install
//! it, and when it is absent the operator says so in `TLSReady`.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A certificate cert-manager issues into a Secret and renews.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The `kubernetes.io/tls` Secret cert-manager writes.
    pub secret_name: String,
    /// The names the certificate is valid for.
    pub dns_names: Vec<String>,
    /// Who signs it.
    pub issuer_ref: CertificateIssuerRef,
    /// The key: a new one at each renewal.
    pub private_key: CertificatePrivateKey,
}

/// The issuer of a Certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CertificateIssuerRef {
    /// Its name.
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
    /// Its API group.
    pub group: String,
}

/// How the private key is made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePrivateKey {
    /// `ECDSA`, `RSA` or `Ed25519`.
    pub algorithm: String,
    /// Curve size (ECDSA) or bits (RSA).
    pub size: i32,
    /// `Always`: a renewal rotates the key too.
    pub rotation_policy: String,
}
