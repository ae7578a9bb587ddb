//! Encryption at rest: what people wrote (email subjects, bodies, headers
//! and recipients, prompts and answers) is stored sealed with AES-256-GCM,
//! under a key derived from `SECRET_KEY` with HKDF-SHA256.
//!
//! A sealed value is text, so the columns and both databases stay as they
//! were: `sv1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`. The key id
//! (derived from the key, so it tells nothing about it) names the key that
//! sealed the value; after `SECRET_KEY` changes, the previous one, given as
//! `SECRET_KEY_PREVIOUS`, still opens old values until `dataplane reencrypt`
//! has sealed them again. Each value is bound to its table, column and row
//! (the AEAD's associated data): a sealed subject copied into another row,
//! or into another column, does not open.
//!
//! A value without the prefix was written before encryption existed and is
//! read as it is; `dataplane reencrypt` seals those too.
//!
//! Search by recipient cannot read sealed recipients, so each email also
//! keeps a blind index: an HMAC of each address under a second key derived
//! from `SECRET_KEY`. Equal addresses give equal digests; the digests give
//! away neither the address nor (without the key) a way to test a guess.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD as BASE64};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hkdf, hmac,
    rand::{SecureRandom, SystemRandom},
};

/// The prefix of a sealed value, with its format's version.
const PREFIX: &str = "sv1:";
/// Fixed salt: the secret itself is the key material; the salt only
/// separates our derivations from anyone else's use of the same secret.
const SALT: &[u8] = b"securevault/at-rest/v1";

/// Why a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed under a key neither `SECRET_KEY` nor `SECRET_KEY_PREVIOUS` is.
    #[error("sealed with key {0}, which neither SECRET_KEY nor SECRET_KEY_PREVIOUS is")]
    UnknownKey(String),
    /// The right key, but the value was altered or moved to another row.
    #[error("a sealed value does not open: altered, or copied from another row")]
    Tampered,
    /// The system's random generator gave no nonce.
    #[error("no random nonce to seal with: the system's random generator failed")]
    NoNonce,
}

struct DataKey {
    id: String,
    aead: LessSafeKey,
    index: hmac::Key,
}

impl DataKey {
    fn derive(secret: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret.as_bytes());
        let expand = |info: &'static [u8], len: usize| -> Vec<u8> {
            let mut out = vec![0u8; len];
            // Lengths up to 255 × 32 bytes always expand.
            if let Ok(okm) = prk.expand(&[info], Len(len)) {
                let _ = okm.fill(&mut out);
            }
            out
        };
        let sealing = expand(b"sealing key", 32);
        let aead = UnboundKey::new(&AES_256_GCM, &sealing)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("AES-256 takes 32 bytes"));
        let id = expand(b"key id", 4)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let index = hmac::Key::new(hmac::HMAC_SHA256, &expand(b"blind index key", 32));
        Self { id, aead, index }
    }
}

/// HKDF output length for ring.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The keys of `SECRET_KEY` (which seals) and `SECRET_KEY_PREVIOUS` (which
/// only opens).
pub struct Keyring {
    current: DataKey,
    previous: Option<DataKey>,
    rng: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// The keys derived from `secret` and, during a rotation, `previous`.
    pub fn new(secret: &str, previous: Option<&str>) -> Self {
        Self {
            current: DataKey::derive(secret),
            previous: previous.map(DataKey::derive),
            rng: SystemRandom::new(),
        }
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The id of `SECRET_KEY_PREVIOUS`'s key, during a rotation.
    pub fn previous_id(&self) -> Option<&str> {
        self.previous.as_ref().map(|k| k.id.as_str())
    }

    /// Whether values sealed under `id` open.
    pub fn opens(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<&DataKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
    }

    /// `plaintext` sealed for `context` (`table.column:row id`).
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        // Random 96-bit nonces: far below GCM's limit of 2^32 values per
        // key for any store we serve.
        self.rng.fill(&mut nonce).map_err(|_| SealError::NoNonce)?;
        let mut data = plaintext.as_bytes().to_vec();
        let tag = self
            .current
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            // Only lengths beyond 64 GiB are refused.
            .map_err(|_| SealError::Tampered)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out.extend_from_slice(tag.as_ref());
        Ok(format!(
            "{PREFIX}{}:{}",
            self.current.id,
            BASE64.encode(out)
        ))
    }

    /// The plaintext of `stored` (a value written before encryption is
    /// returned as it is).
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, data) = rest.split_once(':').ok_or(SealError::Tampered)?;
        let key = self
            .key(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let mut data = BASE64.decode(data).map_err(|_| SealError::Tampered)?;
        if data.len() < NONCE_LEN {
            return Err(SealError::Tampered);
        }
        let mut sealed = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| SealError::Tampered)?;
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Tampered)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Tampered)
    }

    /// Whether `stored` is sealed under the current key (nothing to redo).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }

    /// The blind index of an address under the current key: 32 hex digits.
    pub fn index(&self, address: &str) -> String {
        index_with(&self.current, address)
    }

    /// The address's blind index under every key (a search during a
    /// rotation finds rows indexed under either).
    pub fn indexes(&self, address: &str) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(|k| index_with(k, address))
            .collect()
    }
}

fn index_with(key: &DataKey, address: &str) -> String {
    let tag = hmac::sign(&key.index, address.trim().to_lowercase().as_bytes());
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "an old secret key of at least thirty-two characters";
    const NEW: &str = "a new secret key, also of at least thirty-two chars";

    #[test]
    fn a_value_opens_only_with_its_key_and_in_its_own_place() {
        let keys = Keyring::new(OLD, None);
        let sealed = keys.seal("emails.subject:e1", "Your receipt").unwrap();
        assert!(sealed.starts_with(&format!("sv1:{}:", keys.current_id())));
        assert!(!sealed.contains("receipt"));
        assert_ne!(
            sealed,
            keys.seal("emails.subject:e1", "Your receipt").unwrap(),
            "fresh nonce"
        );
        assert_eq!(
            keys.open("emails.subject:e1", &sealed).unwrap(),
            "Your receipt"
        );
        // Moved to another row or column: refused.
        assert_eq!(
            keys.open("emails.subject:e2", &sealed),
            Err(SealError::Tampered)
        );
        assert_eq!(
            keys.open("emails.body_text:e1", &sealed),
            Err(SealError::Tampered)
        );
        // One character changed: refused.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            keys.open("emails.subject:e1", &altered),
            Err(SealError::Tampered)
        );
        // Written before encryption: read as it is.
        assert_eq!(keys.open("emails.subject:e1", "plain").unwrap(), "plain");
    }

    #[test]
    fn after_a_rotation_the_previous_key_opens_and_only_the_new_one_seals() {
        let old = Keyring::new(OLD, None);
        let sealed = old.seal("generations.output:g1", "Hello").unwrap();
        let other = Keyring::new(NEW, None);
        assert_eq!(
            other.open("generations.output:g1", &sealed),
            Err(SealError::UnknownKey(old.current_id().to_owned()))
        );
        let rotating = Keyring::new(NEW, Some(OLD));
        assert_eq!(
            rotating.open("generations.output:g1", &sealed).unwrap(),
            "Hello"
        );
        assert!(!rotating.is_current(&sealed));
        let resealed = rotating.seal("generations.output:g1", "Hello").unwrap();
        assert!(rotating.is_current(&resealed));
        assert_eq!(
            other.open("generations.output:g1", &resealed).unwrap(),
            "Hello"
        );
        assert_ne!(old.current_id(), other.current_id());
    }

    #[test]
    fn the_blind_index_matches_an_address_in_any_case_and_nothing_else() {
        let keys = Keyring::new(OLD, None);
        assert_eq!(
            keys.index("Ada@Example.com"),
            keys.index("ada@example.com ")
        );
        assert_ne!(keys.index("ada@example.com"), keys.index("bob@example.com"));
        assert_eq!(keys.index("ada@example.com").len(), 32);
        assert_ne!(
            keys.index("ada@example.com"),
            Keyring::new(NEW, None).index("ada@example.com")
        );
        let rotating = Keyring::new(NEW, Some(OLD));
        assert!(
            rotating
                .indexes("ada@example.com")
                .contains(&keys.index("ada@example.com"))
        );
    }
}
