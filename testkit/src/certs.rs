//! Certificates for TLS tests: a private CA and the server certificates it
//! issues (rcgen), as PEM, so a test can start a server with them and a
//! client that trusts that CA and nothing else.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

use crate::{Error, Result};

/// A certificate authority that exists only in this test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM: what the client trusts.
    pub pem: String,
}

/// A certificate with its private key, PEM, and the certificate's DER (what
/// a client sees in the handshake).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::InvalidArgument(format!("rcgen: {e}"))
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid
    /// from 2020 to 2100.
    pub fn issue(&self, names: &[&str]) -> Result<Issued> {
        self.issue_valid(names, 2020, 2100)
    }

    /// A server certificate that expired at the start of 2021.
    pub fn issue_expired(&self, names: &[&str]) -> Result<Issued> {
        self.issue_valid(names, 2020, 2021)
    }

    fn issue_valid(&self, names: &[&str], from_year: i32, to_year: i32) -> Result<Issued> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(rcgen_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = date_time_ymd(from_year, 1, 1);
        params.not_after = date_time_ymd(to_year, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}
