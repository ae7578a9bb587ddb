//! What the DKIM Secret (`spec.smtp.dkim.secretName`) holds, judged by the
//! names of its keys as the data plane will take them at start: each key is
//! a private key named after the TXT record of its public key,
//! `<selector>._domainkey.<domain>`, and the keys of the sender's domain
//! sign. A Secret the data plane would refuse is reported here first, in
//! `Degraded`, rather than found in a pod's log.
//!
//! Only the names are judged, by the data plane's rule (`split_name` in
//! `dataplane/src/email/dkim.rs`, which [`record_domain`] must follow): the
//! keys themselves are the data plane's to parse. Pure: `reconcile` reads
//! the Secret.

use k8s_openapi::api::core::v1::Secret;

use crate::{status::Problem, validate::Dkim};

/// What is wrong with the DKIM Secret, if anything, for the vault in
/// `namespace`; `secret` is `None` when it does not exist.
pub fn problems(namespace: &str, dkim: &Dkim, secret: Option<&Secret>) -> Vec<Problem> {
    let name = format!(
        "Secret {namespace}/{} (spec.smtp.dkim.secretName)",
        dkim.secret_name
    );
    let Some(secret) = secret else {
        return vec![Problem {
            reason: "SecretMissing",
            message: format!(
                "{name} does not exist: create it with one PEM private key per DKIM selector, each \
                 under a key named <selector>._domainkey.<domain>, e.g. \
                 sv2026._domainkey.{}; the pods wait for it",
                dkim.from_domain
            ),
        }];
    };
    // Names starting with `.` are not keys to the data plane (a mounted
    // Secret's `..data` links live beside the files).
    let keys: Vec<&String> = (secret.data.iter().flat_map(|d| d.keys()))
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .filter(|k| !k.starts_with('.'))
        .collect();
    let mut problems = Vec::new();
    let misnamed: Vec<String> = keys
        .iter()
        .filter(|k| record_domain(k).is_none())
        .map(|k| format!("{k:?}"))
        .collect();
    if !misnamed.is_empty() {
        problems.push(Problem {
            reason: "DkimKeyNameInvalid",
            message: format!(
                "{name} has keys not named <selector>._domainkey.<domain>, which stop the data \
                 plane's start: {}; name each key after the DNS TXT record of its public key, \
                 e.g. sv2026._domainkey.{}",
                misnamed.join(", "),
                dkim.from_domain
            ),
        });
    }
    let signs = keys
        .iter()
        .any(|k| record_domain(k).as_deref() == Some(dkim.from_domain.as_str()));
    if !signs && !dkim.allow_unsigned {
        problems.push(Problem {
            reason: "DkimKeyMissing",
            message: format!(
                "{name} holds no key for {domain}, the domain of spec.smtp.from, and the data plane \
                 refuses to start without one: add a key <selector>._domainkey.{domain} (e.g. \
                 sv2026._domainkey.{domain}), or set spec.smtp.dkim.allowUnsigned: true to send \
                 unsigned email",
                domain = dkim.from_domain
            ),
        });
    }
    problems
}

/// The domain of a key named `<selector>._domainkey.<domain>`, lower case
/// (DNS names know no case); `None` for any other name. The domain has at
/// least two labels; labels are 1 to 63 letters, digits, `-` or `_`.
pub fn record_domain(key: &str) -> Option<String> {
    let (selector, domain) = key.split_once("._domainkey.")?;
    (labels(selector) && labels(domain) && domain.contains('.'))
        .then(|| domain.to_ascii_lowercase())
}

/// Dot-separated labels of 1 to 63 letters, digits, `-` or `_`.
fn labels(name: &str) -> bool {
    name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn dkim(allow_unsigned: bool) -> Dkim {
        Dkim {
            secret_name: "mail-dkim".into(),
            allow_unsigned,
            from_domain: "example.com".into(),
        }
    }

    /// A Secret holding placeholder bytes under each of `keys`: these checks
    /// read key names only.
    fn secret(keys: &[&str]) -> Secret {
        let pem = ByteString(b"-----BEGIN PRIVATE KEY-----".to_vec());
        Secret {
            data: Some(
                keys.iter()
                    .map(|k| ((*k).to_owned(), pem.clone()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn reasons(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.reason).collect()
    }

    #[test]
    fn key_names_are_the_dns_names_of_their_records() {
        let domain = record_domain;
        assert_eq!(
            domain("sv2026._domainkey.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            domain("Sel.Sub._domainkey.Mail.Example.COM").as_deref(),
            Some("mail.example.com")
        );
        // The data plane's rule: `_` and `-` anywhere in a label.
        assert_eq!(
            domain("sv_2026._domainkey.mail-.example.com").as_deref(),
            Some("mail-.example.com")
        );
        for wrong in [
            "dkim.pem",
            "example.com",
            "_domainkey.example.com",
            "sv2026._domainkey.",
            "sv2026._domainkey.localhost",
            "sv2026._DOMAINKEY.example.com",
            "sv2026._domainkey.example..com",
            "sv2026..x._domainkey.example.com",
            "sv 2026._domainkey.example.com",
        ] {
            assert_eq!(domain(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn a_key_of_the_sender_s_domain_is_all_it_needs() {
        let s = secret(&[
            "sv2026._domainkey.example.com",
            "old._domainkey.example.com",
        ]);
        assert_eq!(problems("team-a", &dkim(false), Some(&s)), []);
        // Keys of other domains may sit beside it, and a Secret volume's
        // own entries are no keys.
        let s = secret(&[
            "sv2026._domainkey.example.com",
            "sv2026._domainkey.example.org",
            "..data",
        ]);
        assert_eq!(problems("team-a", &dkim(false), Some(&s)), []);
    }

    #[test]
    fn a_missing_secret_is_named_with_the_field_that_names_it() {
        let p = problems("team-a", &dkim(true), None);
        assert_eq!(reasons(&p), ["SecretMissing"]);
        assert!(
            p[0].message
                .starts_with("Secret team-a/mail-dkim (spec.smtp.dkim.secretName) does not exist"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn without_a_key_of_the_sender_s_domain_only_allow_unsigned_keeps_it_quiet() {
        let s = secret(&["sv2026._domainkey.example.org"]);
        let p = problems("team-a", &dkim(false), Some(&s));
        assert_eq!(reasons(&p), ["DkimKeyMissing"]);
        assert!(p[0].message.contains("no key for example.com"));
        assert!(p[0].message.contains("spec.smtp.dkim.allowUnsigned: true"));
        assert_eq!(problems("team-a", &dkim(true), Some(&s)), []);
        let empty = Secret::default();
        assert_eq!(
            reasons(&problems("team-a", &dkim(false), Some(&empty))),
            ["DkimKeyMissing"]
        );
    }

    #[test]
    fn misnamed_keys_are_listed_whatever_else_holds() {
        let s = secret(&["sv2026._domainkey.example.com", "dkim.pem", "private"]);
        let p = problems("team-a", &dkim(false), Some(&s));
        assert_eq!(reasons(&p), ["DkimKeyNameInvalid"]);
        assert!(
            p[0].message.contains(r#""dkim.pem", "private""#),
            "{}",
            p[0].message
        );
        let p = problems("team-a", &dkim(false), Some(&secret(&["dkim.pem"])));
        assert_eq!(reasons(&p), ["DkimKeyNameInvalid", "DkimKeyMissing"]);
    }
}
