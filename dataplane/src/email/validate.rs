//! What `POST /api/send-email` accepts, checked field by field; each error
//! names the field to fix.

use std::collections::BTreeMap;

use lettre::message::Mailbox;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    error::{Invalid, invalid},
    store::{NewEmail, Recipients},
};

/// Most recipients (to + cc + bcc) in one email.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest subject, in characters (RFC 5322's line limit).
pub const MAX_SUBJECT: usize = 998;
/// Largest text or HTML body, in bytes.
pub const MAX_BODY: usize = 512 * 1024;
/// Most extra headers.
pub const MAX_HEADERS: usize = 20;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Headers the data plane writes itself; a client may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "reply-to",
    "sender",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "return-path",
];

/// `to`, `cc` and `bcc` may each be one address or a list.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single address.
    One(String),
    /// Several addresses.
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl OneOrMany {
    /// The addresses as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a],
            Self::Many(list) => list,
        }
    }
}

/// The body of `POST /api/send-email`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmailRequest {
    /// Recipient address(es), `a@example.com` or `Name <a@example.com>`.
    pub to: OneOrMany,
    /// Copy recipients.
    #[serde(default)]
    pub cc: OneOrMany,
    /// Blind-copy recipients (never shown in headers).
    #[serde(default)]
    pub bcc: OneOrMany,
    /// Subject line, 1 to 998 characters, no line breaks.
    pub subject: String,
    /// Plain-text body; `text`, `html` or both.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body.
    #[serde(default)]
    pub html: Option<String>,
    /// Address replies go to.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Extra headers, e.g. `{"X-Campaign": "welcome"}`; no line breaks.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Checks `req` and the optional `Idempotency-Key`, returning the email to store.
pub fn validate(
    req: SendEmailRequest,
    idempotency_key: Option<String>,
) -> Result<NewEmail, Invalid> {
    let (to, cc, bcc) = (req.to.into_vec(), req.cc.into_vec(), req.bcc.into_vec());
    if to.is_empty() {
        return Err(invalid("to", "`to` must hold at least one address"));
    }
    let total = to.len() + cc.len() + bcc.len();
    if total > MAX_RECIPIENTS {
        return Err(invalid(
            "to",
            format!("at most {MAX_RECIPIENTS} recipients in to, cc and bcc together (got {total})"),
        ));
    }
    for (field, list) in [("to", &to), ("cc", &cc), ("bcc", &bcc)] {
        for (i, address) in list.iter().enumerate() {
            check_mailbox(&format!("{field}[{i}]"), address)?;
        }
    }
    if let Some(reply_to) = &req.reply_to {
        check_mailbox("reply_to", reply_to)?;
    }

    if req.subject.trim().is_empty() {
        return Err(invalid("subject", "`subject` must not be empty"));
    }
    if req.subject.chars().count() > MAX_SUBJECT {
        return Err(invalid(
            "subject",
            format!("`subject` is longer than {MAX_SUBJECT} characters"),
        ));
    }
    if req.subject.contains(['\r', '\n']) {
        return Err(invalid("subject", "`subject` must not contain line breaks"));
    }

    if req.text.is_none() && req.html.is_none() {
        return Err(invalid("text", "give a `text` or an `html` body (or both)"));
    }
    for (field, body) in [("text", &req.text), ("html", &req.html)] {
        if body.as_ref().is_some_and(|b| b.len() > MAX_BODY) {
            return Err(invalid(
                field,
                format!("`{field}` is larger than {MAX_BODY} bytes"),
            ));
        }
    }

    if req.headers.len() > MAX_HEADERS {
        return Err(invalid(
            "headers",
            format!("at most {MAX_HEADERS} extra headers"),
        ));
    }
    for (name, value) in &req.headers {
        let field = format!("headers.{name}");
        let valid_name = !name.is_empty()
            && name.len() <= 76
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name {
            return Err(invalid(
                field,
                "a header name is printable ASCII without spaces or `:`",
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                field,
                format!("`{name}` is set by SecureVault; use the matching field instead"),
            ));
        }
        if value.contains(['\r', '\n']) {
            return Err(invalid(
                field,
                "header values must not contain line breaks (header injection)",
            ));
        }
        if value.len() > MAX_SUBJECT || !value.chars().all(|c| !c.is_control() || c == '\t') {
            return Err(invalid(
                field,
                "header values are at most 998 printable characters",
            ));
        }
    }

    if let Some(key) = &idempotency_key
        && (key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(
            "Idempotency-Key",
            format!(
                "the Idempotency-Key header is 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            ),
        ));
    }

    let recipients = Recipients { to, cc, bcc };
    let request_hash = request_hash(
        &recipients,
        &req.subject,
        &req.text,
        &req.html,
        &req.reply_to,
        &req.headers,
    );
    Ok(NewEmail {
        recipients,
        subject: req.subject,
        text: req.text,
        html: req.html,
        reply_to: req.reply_to,
        headers: req.headers,
        idempotency_key,
        request_hash,
    })
}

/// `address` is one mailbox (`a@b` or `Name <a@b>`), without line breaks.
pub fn check_mailbox(field: &str, address: &str) -> Result<(), Invalid> {
    if address.contains(['\r', '\n']) {
        return Err(invalid(field, "addresses must not contain line breaks"));
    }
    address.parse::<Mailbox>().map(drop).map_err(|e| {
        invalid(
            field,
            format!("{address:?} is not a valid email address: {e}"),
        )
    })
}

/// A digest of what is sent, so a reused Idempotency-Key with another email
/// is refused rather than silently answered with the first one.
fn request_hash(
    recipients: &Recipients,
    subject: &str,
    text: &Option<String>,
    html: &Option<String>,
    reply_to: &Option<String>,
    headers: &BTreeMap<String, String>,
) -> String {
    let canonical = serde_json::json!([
        recipients.to,
        recipients.cc,
        recipients.bcc,
        subject,
        text,
        html,
        reply_to,
        headers
    ]);
    Sha256::digest(canonical.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> SendEmailRequest {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(json: serde_json::Value) -> String {
        validate(request(json), None).unwrap_err().field
    }

    #[test]
    fn a_plain_email_is_accepted() {
        let email = validate(
            request(serde_json::json!({"to": "Ada <ada@example.com>", "subject": "Hi", "text": "Hello"})),
            Some("order-42".into()),
        )
        .unwrap();
        assert_eq!(email.recipients.to, ["Ada <ada@example.com>"]);
        assert_eq!(email.idempotency_key.as_deref(), Some("order-42"));
        assert_eq!(email.request_hash.len(), 64);
    }

    #[test]
    fn each_rule_names_its_field() {
        use serde_json::json;
        assert_eq!(
            field_of(json!({"to": [], "subject": "s", "text": "t"})),
            "to"
        );
        assert_eq!(
            field_of(json!({"to": ["a@b.c", "not an address"], "subject": "s", "text": "t"})),
            "to[1]"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "cc": ["x"], "subject": "s", "text": "t"})),
            "cc[0]"
        );
        assert_eq!(
            field_of(
                json!({"to": "a@b.c", "bcc": ["a@b.c\r\nBcc: evil@x.y"], "subject": "s", "text": "t"})
            ),
            "bcc[0]"
        );
        let many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
        assert_eq!(
            field_of(json!({"to": many, "subject": "s", "text": "t"})),
            "to"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": " ", "text": "t"})),
            "subject"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": "x".repeat(999), "text": "t"})),
            "subject"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": "Hi\r\nBcc: evil@x.y", "text": "t"})),
            "subject"
        );
        assert_eq!(field_of(json!({"to": "a@b.c", "subject": "s"})), "text");
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": "s", "html": "x".repeat(MAX_BODY + 1)})),
            "html"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": "s", "text": "t", "reply_to": "nope"})),
            "reply_to"
        );
        assert_eq!(
            field_of(
                json!({"to": "a@b.c", "subject": "s", "text": "t", "headers": {"X-A": "1\r\nBcc: e@x.y"}})
            ),
            "headers.X-A"
        );
        assert_eq!(
            field_of(
                json!({"to": "a@b.c", "subject": "s", "text": "t", "headers": {"Bcc": "e@x.y"}})
            ),
            "headers.Bcc"
        );
        assert_eq!(
            field_of(json!({"to": "a@b.c", "subject": "s", "text": "t", "headers": {"X A": "1"}})),
            "headers.X A"
        );
    }

    #[test]
    fn a_bad_idempotency_key_is_refused() {
        let req = request(serde_json::json!({"to": "a@b.c", "subject": "s", "text": "t"}));
        assert_eq!(
            validate(req, Some("with space".into())).unwrap_err().field,
            "Idempotency-Key"
        );
    }

    #[test]
    fn the_same_email_hashes_the_same() {
        let json = serde_json::json!({"to": "a@b.c", "subject": "s", "text": "t"});
        let a = validate(request(json.clone()), None).unwrap();
        let b = validate(request(json), None).unwrap();
        assert_eq!(a.request_hash, b.request_hash);
        let c = validate(
            request(serde_json::json!({"to": "a@b.c", "subject": "s", "text": "u"})),
            None,
        )
        .unwrap();
        assert_ne!(a.request_hash, c.request_hash);
    }
}
