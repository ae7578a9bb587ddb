//! DKIM signing (RFC 6376, and RFC 8463 for Ed25519) of the messages the
//! worker sends, with relaxed/relaxed canonicalization.
//!
//! Keys are PEM files in one directory (`DKIM_KEYS_DIR`, in a cluster a
//! mounted Secret), each named after the DNS record that publishes its
//! public half: `<selector>._domainkey.<domain>`. Every key of the sender's
//! domain signs every message, so a rotation needs no switch-over moment:
//! add the new selector's key (both sign), publish its record, and remove
//! the old key once the new record is visible. RSA and Ed25519 keys of one
//! domain sign side by side the same way, which RFC 8463 recommends while
//! receivers learn Ed25519.
//!
//! lettre has a DKIM signer, but it keeps one `DKIM-Signature` header per
//! message and signs RSA with the `rsa` crate (RUSTSEC-2023-0071, no fixed
//! release); the signatures here come from ring, which rustls already
//! brings, and are computed over the exact bytes handed to the SMTP server.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use ring::{
    rand::SystemRandom,
    signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

/// The infix of a key's file name, as of its DNS record.
const DOMAINKEY: &str = "._domainkey.";

/// Why the keys could not be loaded: each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The directory cannot be listed.
    #[error("DKIM_KEYS_DIR {dir}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file name that is not `<selector>._domainkey.<domain>`.
    #[error(
        "DKIM_KEYS_DIR: the file {0:?} must be named <selector>._domainkey.<domain>, \
         e.g. sv2026._domainkey.example.com"
    )]
    Name(String),
    /// A file that cannot be read or is not a usable private key.
    #[error("DKIM_KEYS_DIR: {file}: {why}")]
    Key {
        /// The file.
        file: PathBuf,
        /// Why.
        why: String,
    },
}

/// A signing algorithm, as the `a=` and `k=` tags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSA with SHA-256, PKCS#1 v1.5 (2048 to 4096 bits).
    Rsa,
    /// Ed25519 over the SHA-256 of the signed data (RFC 8463).
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-sha256", self.key_type())
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key: who it signs for, and its record.
pub struct DkimKey {
    /// The `d=` domain, lower case.
    pub domain: String,
    /// The `s=` selector.
    pub selector: String,
    signer: Signer,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

impl DkimKey {
    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.signer {
            Signer::Rsa(_) => Algorithm::Rsa,
            Signer::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The DNS name of its TXT record.
    pub fn record_name(&self) -> String {
        format!("{}{DOMAINKEY}{}", self.selector, self.domain)
    }

    /// The TXT record to publish: `v=DKIM1; k=…; p=…`. RSA keys are given
    /// as SubjectPublicKeyInfo (what `openssl rsa -pubout` writes and every
    /// verifier reads), Ed25519 keys as their 32 raw bytes (RFC 8463).
    pub fn record(&self) -> String {
        let public = match &self.signer {
            Signer::Rsa(key) => rsa_subject_public_key_info(key.public().as_ref()),
            Signer::Ed25519(key) => key.public_key().as_ref().to_vec(),
        };
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().key_type(),
            BASE64.encode(public)
        )
    }

    /// The `DKIM-Signature` header field (folded, with its CRLF) that
    /// signs `message` at time `t` (Unix seconds).
    fn signature_header(
        &self,
        message: &Message<'_>,
        t: u64,
    ) -> Result<String, ring::error::Unspecified> {
        let body_hash = BASE64.encode(Sha256::digest(relaxed_body(message.body)));
        let names = message.header_names();
        let tags = |b: &str| {
            [
                "v=1".to_owned(),
                format!("a={}", self.algorithm()),
                "c=relaxed/relaxed".to_owned(),
                format!("d={}", self.domain),
                format!("s={}", self.selector),
                format!("t={t}"),
                format!("h={}", names.join(":")),
                format!("bh={body_hash}"),
                format!("b={b}"),
            ]
            .join(";\r\n\t")
        };
        // What is signed: the chosen headers, then this header with an
        // empty b=, canonicalized and without its final CRLF.
        let mut signed = message.relaxed_headers(&names);
        let unsigned = relaxed_header("DKIM-Signature", &format!(" {}", tags("")));
        signed.extend_from_slice(unsigned.trim_end_matches("\r\n").as_bytes());
        let signature = match &self.signer {
            Signer::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    &signed,
                    &mut out,
                )?;
                out
            }
            Signer::Ed25519(key) => key.sign(&Sha256::digest(&signed)).as_ref().to_vec(),
        };
        // Folded every 72 characters: b='s whitespace is not signed.
        let b = BASE64.encode(signature);
        let folded = b
            .as_bytes()
            .chunks(72)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n\t ");
        Ok(format!("DKIM-Signature: {}\r\n", tags(&folded)))
    }
}

/// The keys of `DKIM_KEYS_DIR`.
#[derive(Debug, Default)]
pub struct DkimKeys {
    keys: Vec<DkimKey>,
}

impl DkimKeys {
    /// Reads every key in `dir`; names starting with `.` are skipped (a
    /// Secret volume's `..data` links). Any other file that is not a key
    /// named after its record stops the start: a key that silently did not
    /// sign would only show as mail landing in spam.
    pub fn load(dir: &Path) -> Result<Self, DkimError> {
        let dir_error = |source| DkimError::Dir {
            dir: dir.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut keys = Vec::with_capacity(names.len());
        for name in names {
            let (selector, domain) =
                split_name(&name).ok_or_else(|| DkimError::Name(name.clone()))?;
            let file = dir.join(&name);
            let key_error = |why: String| DkimError::Key {
                file: file.clone(),
                why,
            };
            let pem = std::fs::read(&file).map_err(|e| key_error(e.to_string()))?;
            let signer = parse_key(&pem).map_err(key_error)?;
            keys.push(DkimKey {
                domain,
                selector,
                signer,
            });
        }
        Ok(Self { keys })
    }

    /// Every key, in file-name order.
    pub fn keys(&self) -> &[DkimKey] {
        &self.keys
    }

    /// Whether some key signs for `domain`.
    pub fn signs_for(&self, domain: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.domain.eq_ignore_ascii_case(domain))
    }

    /// `message` (a complete RFC 5322 message with CRLF line ends) with one
    /// `DKIM-Signature` header per key of `domain` in front; `None` if
    /// there is no such key.
    pub fn sign(
        &self,
        domain: &str,
        message: &[u8],
        now: SystemTime,
    ) -> Option<Result<Vec<u8>, String>> {
        let signers: Vec<&DkimKey> = self
            .keys
            .iter()
            .filter(|k| k.domain.eq_ignore_ascii_case(domain))
            .collect();
        if signers.is_empty() {
            return None;
        }
        let t = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let parsed = Message::parse(message);
        let mut out = Vec::with_capacity(message.len() + 1024 * signers.len());
        for key in signers {
            match key.signature_header(&parsed, t) {
                Ok(header) => out.extend_from_slice(header.as_bytes()),
                Err(_) => {
                    return Some(Err(format!(
                        "DKIM signing with {} failed",
                        key.record_name()
                    )));
                }
            }
        }
        out.extend_from_slice(message);
        Some(Ok(out))
    }
}

/// `<selector>._domainkey.<domain>`, checked as DNS labels.
fn split_name(name: &str) -> Option<(String, String)> {
    let (selector, domain) = name.split_once(DOMAINKEY)?;
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let labels_ok = |s: &str| s.split('.').all(label);
    (labels_ok(selector) && labels_ok(domain) && domain.contains('.'))
        .then(|| (selector.to_owned(), domain.to_ascii_lowercase()))
}

fn parse_key(pem: &[u8]) -> Result<Signer, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("not a PEM private key ({e}); expected `openssl genrsa 2048` or `openssl genpkey -algorithm ed25519` output")
    })?;
    match der {
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(Signer::Rsa)
            .map_err(|e| format!("not a usable RSA key ({e}); DKIM needs 2048 to 4096 bits")),
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            match RsaKeyPair::from_pkcs8(der) {
                Ok(key) => Ok(Signer::Rsa(key)),
                Err(rsa) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map(Signer::Ed25519)
                    .map_err(|_| {
                        format!("neither an Ed25519 key nor a usable RSA key ({rsa}); DKIM needs RSA of 2048 to 4096 bits or Ed25519")
                    }),
            }
        }
        _ => Err("an EC (SEC1) key: DKIM signs with RSA or Ed25519".to_owned()),
    }
}

/// A PKCS#1 RSAPublicKey wrapped as SubjectPublicKeyInfo (RFC 5280).
fn rsa_subject_public_key_info(rsa_public_key: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(rsa_public_key);
    let mut inner = ALGORITHM.to_vec();
    inner.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &inner)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A message split into its header fields (name, raw value with folding)
/// and its body.
struct Message<'a> {
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl<'a> Message<'a> {
    fn parse(raw: &'a [u8]) -> Self {
        let (head, body) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => (&raw[..at + 2], &raw[at + 4..]),
            None => (raw, &raw[raw.len()..]),
        };
        // Headers are ASCII (lettre encodes anything else, RFC 2047).
        let head = std::str::from_utf8(head).unwrap_or_default();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let mut start = 0;
        let bytes = head.as_bytes();
        let mut i = 0;
        while i + 1 < bytes.len() {
            let ends_field = bytes[i] == b'\r'
                && bytes[i + 1] == b'\n'
                && !matches!(bytes.get(i + 2), Some(b' ' | b'\t'));
            if ends_field {
                if let Some((name, value)) = head[start..i].split_once(':') {
                    headers.push((name, value));
                }
                start = i + 2;
                i += 2;
            } else {
                i += 1;
            }
        }
        Self { headers, body }
    }

    /// Every field name, top to bottom, lower case, and `from` once more:
    /// a From added on the way then breaks the signature.
    fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .map(|(n, _)| n.trim().to_ascii_lowercase())
            .collect();
        names.push("from".to_owned());
        names
    }

    /// The fields `names` selects, as a verifier selects them (for each
    /// name, the bottom-most instance not used yet; none for a name with
    /// no instance left), canonicalized.
    fn relaxed_headers(&self, names: &[String]) -> Vec<u8> {
        let mut used = vec![false; self.headers.len()];
        let mut out = Vec::new();
        for name in names {
            let found = self
                .headers
                .iter()
                .enumerate()
                .rev()
                .find(|(i, (n, _))| !used[*i] && n.trim().eq_ignore_ascii_case(name));
            if let Some((i, (n, v))) = found {
                used[i] = true;
                out.extend_from_slice(relaxed_header(n, v).as_bytes());
            }
        }
        out
    }
}

/// RFC 6376 3.4.2: lower-case name, unfolded value with runs of blanks as
/// one space, no blanks at either end, `name:value\r\n`.
fn relaxed_header(name: &str, value: &str) -> String {
    let mut out = name.trim_end().to_ascii_lowercase();
    out.push(':');
    let unfolded = value.replace("\r\n", "");
    let collapsed = String::from_utf8_lossy(&collapse_blanks(unfolded.as_bytes())).into_owned();
    out.push_str(collapsed.trim_matches(' '));
    out.push_str("\r\n");
    out
}

/// RFC 6376 3.4.4: blanks at line ends removed, other runs of blanks as one
/// space, no empty lines at the end, and a final CRLF unless empty.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = split_crlf(body)
        .map(|line| {
            let mut l = collapse_blanks(line);
            while l.last() == Some(&b' ') {
                l.pop();
            }
            l
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Each run of spaces and tabs as one space.
fn collapse_blanks(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut blank = false;
    for &b in line {
        if b == b' ' || b == b'\t' {
            blank = true;
        } else {
            if blank {
                out.push(b' ');
            }
            blank = false;
            out.push(b);
        }
    }
    if blank {
        out.push(b' ');
    }
    out
}

fn split_crlf(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                rest = Some(&current[at + 2..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    /// RFC 6376 3.4.5's example, header and body.
    #[test]
    fn relaxed_canonicalization_is_the_rfc_example() {
        let raw = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        let message = Message::parse(raw);
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(message.relaxed_headers(&names), b"a:X\r\nb:Y Z\r\n");
        assert_eq!(relaxed_body(message.body), b" C\r\nD E\r\n");
        // An empty body stays empty; a last line without CRLF gets one.
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"x  "), b"x\r\n");
    }

    #[test]
    fn headers_are_selected_from_the_bottom_and_missing_ones_add_nothing() {
        let raw = b"X-Tag: one\r\nFrom: a@example.com\r\nX-Tag: two\r\n\r\nbody\r\n";
        let message = Message::parse(raw);
        assert_eq!(
            message.header_names(),
            ["x-tag", "from", "x-tag", "from"].map(String::from)
        );
        let names = ["x-tag", "x-tag", "from", "from"].map(String::from);
        assert_eq!(
            message.relaxed_headers(&names),
            b"x-tag:two\r\nx-tag:one\r\nfrom:a@example.com\r\n"
        );
    }

    fn ed25519_pem() -> (String, Vec<u8>) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            BASE64.encode(pkcs8.as_ref())
        );
        (pem, public)
    }

    fn dir_with(files: &[(&str, &str)]) -> testkit::dirs::TempDir {
        let dir = testkit::dirs::TempDir::new("dkim-keys").unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    #[test]
    fn every_key_of_the_domain_signs_and_the_signature_verifies() {
        let (first, first_public) = ed25519_pem();
        let (second, second_public) = ed25519_pem();
        let (other, _) = ed25519_pem();
        let dir = dir_with(&[
            ("a._domainkey.example.com", &first),
            ("b._domainkey.Example.com", &second),
            ("a._domainkey.example.org", &other),
            ("..data", "a Secret volume's link: skipped"),
        ]);
        let keys = DkimKeys::load(dir.path()).unwrap();
        assert_eq!(keys.keys().len(), 3);
        assert!(keys.signs_for("EXAMPLE.com") && !keys.signs_for("example.net"));
        let record = keys.keys()[0].record();
        assert_eq!(
            record,
            format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(&first_public))
        );
        assert_eq!(keys.keys()[0].record_name(), "a._domainkey.example.com");

        let message =
            b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello  world\r\n";
        assert!(
            keys.sign("example.net", message, SystemTime::now())
                .is_none()
        );
        let signed = keys
            .sign("example.com", message, SystemTime::UNIX_EPOCH)
            .unwrap()
            .unwrap();
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(text.ends_with(std::str::from_utf8(message).unwrap()));
        assert_eq!(text.matches("DKIM-Signature: ").count(), 2, "{text}");

        // Verify each signature as a receiver would, from the parsed
        // message: the b= value taken out of its own header.
        let parsed = Message::parse(&signed);
        let mut verified = 0;
        for (i, (name, value)) in parsed.headers.iter().enumerate() {
            if !name.eq_ignore_ascii_case("DKIM-Signature") {
                continue;
            }
            let tag = |t: &str| {
                value
                    .split(';')
                    .map(|x| x.trim())
                    .find_map(|x| x.strip_prefix(&format!("{t}=")))
                    .unwrap()
                    .split_whitespace()
                    .collect::<String>()
            };
            assert_eq!(tag("a"), "ed25519-sha256");
            assert_eq!(tag("t"), "0");
            assert_eq!(tag("h"), "from:to:subject:from");
            let public = if tag("s") == "a" {
                &first_public
            } else {
                &second_public
            };
            let names: Vec<String> = tag("h").split(':').map(String::from).collect();
            let rest = Message {
                headers: parsed.headers[..i]
                    .iter()
                    .chain(&parsed.headers[i + 1..])
                    .copied()
                    .collect(),
                body: parsed.body,
            };
            assert_eq!(
                tag("bh"),
                BASE64.encode(Sha256::digest(relaxed_body(rest.body)))
            );
            // b= is the last tag; its value is what is left out.
            let last = value.rfind(';').unwrap();
            let b_at = last + value[last..].find("b=").unwrap();
            let without_b = &value[..b_at + 2];
            let mut data = rest.relaxed_headers(&names);
            data.extend_from_slice(
                relaxed_header(name, without_b)
                    .trim_end_matches("\r\n")
                    .as_bytes(),
            );
            let signature = BASE64.decode(tag("b")).unwrap();
            UnparsedPublicKey::new(&ED25519, public)
                .verify(&Sha256::digest(&data), &signature)
                .unwrap();
            verified += 1;
        }
        assert_eq!(verified, 2);
    }

    #[test]
    fn a_file_that_is_not_a_named_key_stops_the_start() {
        let (key, _) = ed25519_pem();
        let e = DkimKeys::load(dir_with(&[("dkim.pem", &key)]).path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"dkim.pem\" must be named <selector>._domainkey.<domain>"),
            "{e}"
        );
        let e = DkimKeys::load(dir_with(&[("s._domainkey.localhost", &key)]).path()).unwrap_err();
        assert!(matches!(e, DkimError::Name(_)), "{e}");
        let e = DkimKeys::load(dir_with(&[("s._domainkey.example.com", "hello")]).path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s._domainkey.example.com: not a PEM private key"),
            "{e}"
        );
        // An ECDSA key: PKCS#8, but neither RSA nor Ed25519.
        let ecdsa = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let e = DkimKeys::load(dir_with(&[("s._domainkey.example.com", &ecdsa)]).path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neither an Ed25519 key nor a usable RSA key"),
            "{e}"
        );
        // The reason follows once, as the error's source (`{:#}` at start).
        let e = anyhow::Error::from(DkimKeys::load(Path::new("/nonexistent/dkim")).unwrap_err());
        assert_eq!(
            format!("{e:#}"),
            "DKIM_KEYS_DIR /nonexistent/dkim: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127() {
        assert_eq!(der_tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = der_tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der_tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }
}
