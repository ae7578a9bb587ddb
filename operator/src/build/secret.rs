//! The Secret holding a generated `SECRET_KEY`, for SecureVaults that
//! reference none. The key is generated once (by the reconciler, when the
//! Secret does not exist yet) and then read back: never rotated.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};

use crate::{names, validate::ValidatedVault};

/// The generated-key Secret with `key` as its value.
pub fn build(v: &ValidatedVault, key: &str) -> Secret {
    Secret {
        metadata: super::metadata(v, names::generated_secret(&v.name)),
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: the API server stores stringData as data,
        // so applying stringData again would differ from what it stored.
        data: Some(BTreeMap::from([(
            names::SECRET_KEY_KEY.to_owned(),
            ByteString(key.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A new random key: 32 bytes, hex encoded (64 characters).
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
    fn carries_the_key_it_is_given() {
        let s = build(&minimal(), "abc");
        assert_eq!(s.metadata.name.as_deref(), Some("mail-secret-key"));
        assert_eq!(s.data.unwrap()["secret-key"].0, b"abc");
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
