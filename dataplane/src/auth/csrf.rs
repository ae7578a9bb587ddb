//! The CSRF token of a session: `SHA-256("sv-console-csrf:" ‖ digest of the
//! session token)`, in lower-case hex. The console's forms carry it, and the
//! API takes it in `X-CSRF-Token` from a cookie-authenticated call without an
//! `Origin` (`middleware::csrf`). Another site cannot read it (it never sees
//! our pages, and the cookie is `HttpOnly`). Nothing is stored: any replica
//! derives the same token from the same session, and it dies with the
//! session.

use sha2::{Digest, Sha256};

use super::{Credential, tokens::hex};

/// The CSRF token of a session (empty for an API key, which has no session
/// to protect and never matches).
pub fn token(credential: &Credential) -> String {
    if let Credential::Session { token_hash, .. } = credential {
        hex(&Sha256::digest(format!("sv-console-csrf:{token_hash}")))
    } else {
        String::new()
    }
}

/// Whether two tokens are equal, in time that does not depend on where they
/// differ. An empty token never matches.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(hash: &str) -> Credential {
        Credential::Session {
            token_hash: hash.into(),
            expires_at: 0,
        }
    }

    #[test]
    fn each_session_has_its_own_token() {
        let a = token(&session("aaa"));
        assert_eq!(a.len(), 64);
        assert_eq!(a, token(&session("aaa")));
        assert_ne!(a, token(&session("aab")));
        assert!(!a.contains("aaa"), "the token must not reveal the session");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""), "an empty token never matches");
    }
}
