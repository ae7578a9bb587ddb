//! What is wrong with a certificate and its key, in words a user can act on.
//!
//! The data plane reads `tls.crt` and `tls.key` to serve them and says in
//! `/api/health/detailed` why it could not; the operator reads the same
//! Secret and says it in the SecureVault's status. Both must agree on what
//! counts as broken, so the check lives here, once.
//!
//! Two kinds of problem are told apart:
//! - [`Unusable`]: the pair cannot be served at all (unreadable PEM, no
//!   certificate, no key, or a key that does not belong to the certificate).
//!   A TLS server must keep what it served before.
//! - [`Pair::validity`]: the pair can be served but clients will refuse it
//!   (expired, not valid yet). Serving it is still the least bad choice: it
//!   is what the user configured, and the alert says to renew it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

/// Why a certificate and key cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// The certificate file holds no PEM certificate.
    #[error("the certificate holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// The certificate does not parse.
    #[error("the certificate is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The key file holds no PEM private key.
    #[error("the key holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    /// The key is of a type or size rustls cannot sign with.
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// The key is not the certificate's.
    #[error(
        "the private key does not match the certificate (its public key is not the one the certificate names)"
    )]
    KeyMismatch,
}

/// A certificate that can be served but that clients will refuse now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Past its `notAfter`.
    #[error("the certificate expired on {not_after}")]
    Expired {
        /// When it expired, RFC 3339.
        not_after: String,
    },
    /// Before its `notBefore`.
    #[error("the certificate is not valid before {not_before}")]
    NotYetValid {
        /// When it becomes valid, RFC 3339.
        not_before: String,
    },
}

/// A certificate chain with the key that belongs to its first certificate.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Ready for a rustls server.
    pub key: Arc<CertifiedKey>,
    /// The leaf's subject, e.g. `CN=api.example.com`.
    pub subject: String,
    /// The leaf's DNS names (subjectAltName).
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Pair {
    /// Reads a PEM chain (leaf first) and a PEM private key, and checks that
    /// the key is the leaf's.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, Unusable> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Unusable::BadCertificate(e.to_string()))?;
        let leaf = chain.first().ok_or(Unusable::NoCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| Unusable::BadCertificate(e.to_string()))?;
        let subject = parsed.subject().to_string();
        let dns_names = match parsed.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let validity = parsed.validity();
        let not_before = unix(validity.not_before.timestamp());
        let not_after = unix(validity.not_after.timestamp());

        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| Unusable::NoKey)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| Unusable::BadKey(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signer);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(Unusable::KeyMismatch);
            }
            // Unknown: the signer cannot tell its public key; rustls will find
            // out at the first handshake. Every key type ring loads can tell.
            Err(rustls::Error::InconsistentKeys(_)) => {}
            Err(e) => return Err(Unusable::BadCertificate(e.to_string())),
        }
        Ok(Pair {
            key: Arc::new(certified),
            subject,
            dns_names,
            not_before,
            not_after,
        })
    }

    /// Whether clients accept the certificate's dates at `now`.
    pub fn validity(&self, now: SystemTime) -> Result<(), Invalid> {
        if now > self.not_after {
            return Err(Invalid::Expired {
                not_after: rfc3339(self.not_after),
            });
        }
        if now < self.not_before {
            return Err(Invalid::NotYetValid {
                not_before: rfc3339(self.not_before),
            });
        }
        Ok(())
    }

    /// `notAfter` as RFC 3339, for messages.
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }
}

fn unix(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn pair(from_year: i32, to_year: i32) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["api.example.com".to_owned()]).expect("valid names");
        params.not_before = rcgen::date_time_ymd(from_year, 1, 1);
        params.not_after = rcgen::date_time_ymd(to_year, 1, 1);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_reads_with_its_names_and_dates() {
        let (cert, key) = pair(2020, 2100);
        let pair = Pair::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable");
        assert_eq!(pair.dns_names, ["api.example.com"]);
        assert!(pair.validity(SystemTime::now()).is_ok());
        assert_eq!(pair.not_after_rfc3339(), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let (cert, _) = pair(2020, 2100);
        let (_, other_key) = pair(2020, 2100);
        let err = Pair::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert_eq!(err, Unusable::KeyMismatch);
        assert!(err.to_string().contains("does not match"));
    }

    #[test]
    fn dates_outside_validity_are_named() {
        let (cert, key) = pair(2020, 2021);
        let expired = Pair::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable");
        let err = expired.validity(SystemTime::now()).unwrap_err();
        assert!(matches!(err, Invalid::Expired { .. }));
        assert!(
            err.to_string().contains("expired on 2021-01-01T00:00:00Z"),
            "{err}"
        );

        let (cert, key) = pair(2099, 2100);
        let early = Pair::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable");
        assert!(matches!(
            early.validity(SystemTime::now()),
            Err(Invalid::NotYetValid { .. })
        ));
    }

    #[test]
    fn garbage_is_told_apart_from_a_missing_key() {
        let (cert, key) = pair(2020, 2100);
        assert_eq!(
            Pair::from_pem(b"hello", key.as_bytes()).unwrap_err(),
            Unusable::NoCertificate
        );
        assert_eq!(
            Pair::from_pem(cert.as_bytes(), b"").unwrap_err(),
            Unusable::NoKey
        );
        // A certificate where the key should be: PEM, but not a key.
        assert_eq!(
            Pair::from_pem(cert.as_bytes(), cert.as_bytes()).unwrap_err(),
            Unusable::NoKey
        );
    }
}
