//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): an
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, sent as
//! `webhook-signature: v1,<base64>`. Receivers verify it with the same secret
//! using any Standard Webhooks library, and reject old timestamps to stop
//! replays.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix Standard Webhooks libraries expect on a secret.
const PREFIX: &str = "whsec_";
/// Shortest and longest key accepted, in bytes: Standard Webhooks asks for
/// 24 to 64 bytes of randomness.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Decodes a `whsec_…` secret into its key bytes, or says what is wrong with
/// it (without repeating it).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("expected `{PREFIX}` followed by base64"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| format!("the part after `{PREFIX}` is not base64: {e}"))?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes; expected {} to {} (generate one with `echo {PREFIX}$(openssl rand -base64 32)`)",
            key.len(),
            KEY_BYTES.start(),
            KEY_BYTES.end()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` header value for one delivery attempt.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; the fallback only
    // keeps the type honest.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference
    /// libraries, so our signature matches every receiver's.
    #[test]
    fn signs_the_specification_example() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_bad_secret_is_explained_without_being_repeated() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            let reason = decode_secret(bad).unwrap_err();
            assert!(!reason.contains(bad), "{reason}");
        }
        assert!(
            decode_secret("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("5 bytes")
        );
    }
}
