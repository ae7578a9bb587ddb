//! Random credentials and their digests.
//!
//! A token is a kind prefix and 32 random bytes in URL-safe base64:
//! `svs_…` for sessions, `svk_…` for API keys. The prefix tells which table
//! to look in (and lets secret scanners recognise a leaked key). 256 random
//! bits cannot be guessed, so a plain SHA-256 digest is a safe thing to
//! store and look up by; a slow password hash would only cost CPU per request.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The prefix of session tokens.
pub const SESSION_PREFIX: &str = "svs_";
/// The prefix of API keys.
pub const API_KEY_PREFIX: &str = "svk_";

/// Which kind of credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A session token.
    Session,
    /// An API key.
    ApiKey,
}

/// A new random token of `kind`.
pub fn generate(kind: Kind) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let prefix = match kind {
        Kind::Session => SESSION_PREFIX,
        Kind::ApiKey => API_KEY_PREFIX,
    };
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The kind of `token`, judged by its prefix and length; `None` for
/// anything we never issued.
pub fn kind(token: &str) -> Option<Kind> {
    // 4 prefix characters + 43 of base64 for 32 bytes.
    if token.len() != 47 {
        return None;
    }
    if token.starts_with(SESSION_PREFIX) {
        Some(Kind::Session)
    } else if token.starts_with(API_KEY_PREFIX) {
        Some(Kind::ApiKey)
    } else {
        None
    }
}

/// The hex SHA-256 digest under which a token is stored.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_typed_and_recognised() {
        let a = generate(Kind::Session).unwrap();
        let b = generate(Kind::Session).unwrap();
        assert_ne!(a, b);
        assert_eq!(kind(&a), Some(Kind::Session));
        assert_eq!(kind(&generate(Kind::ApiKey).unwrap()), Some(Kind::ApiKey));
        assert_eq!(kind("svk_short"), None);
        assert_eq!(kind(&format!("xyz_{}", &a[4..])), None);
    }

    #[test]
    fn the_digest_is_stable_hex_and_hides_the_token() {
        let token = generate(Kind::ApiKey).unwrap();
        assert_eq!(digest(&token), digest(&token));
        assert_eq!(digest(&token).len(), 64);
        assert!(!digest(&token).contains(&token[4..12]));
    }
}
