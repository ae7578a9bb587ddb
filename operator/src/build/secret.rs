//! The Secret of generated values, for SecureVaults that reference none of
//! their own: `SECRET_KEY` (key `secret-key`) and the first administrator's
//! password (key `admin-password`). Each is generated once (by the
//! reconciler, when the Secret lacks it) and then read back: never rotated.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};

use crate::{names, validate::ValidatedVault};

/// The generated values of one SecureVault; `None` for those the spec
/// references from a Secret of the user's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// `SECRET_KEY`.
    pub secret_key: Option<String>,
    /// `ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
}

/// The Secret holding `generated`; `None` when nothing is generated.
pub fn build(v: &ValidatedVault, generated: &Generated) -> Option<Secret> {
    // `data`, not `stringData`: the API server stores stringData as data,
    // so applying stringData again would differ from what it stored.
    let data: BTreeMap<String, ByteString> = [
        (names::SECRET_KEY_KEY, &generated.secret_key),
        (names::ADMIN_PASSWORD_KEY, &generated.admin_password),
    ]
    .into_iter()
    .filter_map(|(key, value)| {
        let value = value.as_ref()?;
        Some((key.to_owned(), ByteString(value.as_bytes().to_vec())))
    })
    .collect();
    (!data.is_empty()).then(|| Secret {
        metadata: super::metadata(v, names::generated_secret(&v.name)),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// A new random value: 32 bytes, hex encoded (64 characters).
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn carries_the_values_it_is_given() {
        let generated = Generated {
            secret_key: Some("abc".into()),
            admin_password: Some("pw".into()),
        };
        let s = build(&minimal(), &generated).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("mail-secret-key"));
        let data = s.data.unwrap();
        assert_eq!(data["secret-key"].0, b"abc");
        assert_eq!(data["admin-password"].0, b"pw");
    }

    #[test]
    fn holds_only_what_is_generated_and_is_absent_without_any() {
        let only_password = Generated {
            admin_password: Some("pw".into()),
            ..Generated::default()
        };
        let data = build(&minimal(), &only_password).unwrap().data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["admin-password"]);
        assert!(build(&minimal(), &Generated::default()).is_none());
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
