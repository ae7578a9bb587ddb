//! What a notification says, and the two shapes it is sent in.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::WebhookFormat;

/// The kinds of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The SMTP server accepted an email.
    EmailSent,
    /// An email failed for good (a permanent SMTP error or too many attempts).
    EmailFailed,
    /// A dependency (SMTP, the cache) stopped answering.
    SystemError,
}

impl EventType {
    /// The name in the payload's `type` and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailSent => "email.sent",
            Self::EmailFailed => "email.failed",
            Self::SystemError => "system.error",
        }
    }
}

/// An event about to be queued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its kind.
    pub event_type: EventType,
    /// The payload's `data`: ids, statuses and errors, never a message body.
    pub data: Value,
}

impl NewEvent {
    /// `email.sent` or `email.failed` for one email. Recipients in `To:` are
    /// named so a receiver can act on them; `Bcc:` never is, and neither is
    /// the subject or the body.
    pub fn email(
        event_type: EventType,
        email_id: &str,
        to: &[String],
        attempts: i64,
        error: Option<&str>,
    ) -> Self {
        let mut data = json!({
            "email_id": email_id,
            "status": if event_type == EventType::EmailSent { "sent" } else { "failed" },
            "to": to,
            "attempts": attempts,
        });
        if let (Some(error), Some(map)) = (error, data.as_object_mut()) {
            map.insert("error".into(), error.into());
        }
        Self { event_type, data }
    }

    /// `system.error`: `component` (e.g. `smtp`) stopped answering.
    pub fn system_error(component: &str, error: &str) -> Self {
        Self {
            event_type: EventType::SystemError,
            data: json!({ "component": component, "error": error }),
        }
    }
}

/// The body sent for an event that was queued at `created_at_ms` (Unix ms).
pub fn render(format: WebhookFormat, event_type: &str, data: &Value, created_at_ms: i64) -> Value {
    match format {
        WebhookFormat::Standard => {
            let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(created_at_ms).unwrap_or(0));
            json!({
                "type": event_type,
                "timestamp": humantime::format_rfc3339_millis(at).to_string(),
                "data": data,
            })
        }
        WebhookFormat::Slack => json!({ "text": slack_text(event_type, data) }),
    }
}

/// One line a person reads in a Slack channel. Every value in it is escaped
/// ([`slack_escape`]): recipients and their display names come from whoever
/// sent the email, errors quote SMTP servers, and none of them may ping a
/// channel or show a link that says something else than where it goes.
fn slack_text(event_type: &str, data: &Value) -> String {
    let field = |name: &str| {
        slack_escape(&match &data[name] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
    };
    let to = data["to"]
        .as_array()
        .map(|to| {
            to.iter()
                .filter_map(Value::as_str)
                .map(slack_escape)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    match event_type {
        "email.sent" => format!(
            ":white_check_mark: SecureVault: email {} sent to {to} (attempt {}).",
            field("email_id"),
            field("attempts")
        ),
        "email.failed" => format!(
            ":x: SecureVault: email {} to {to} failed after {} attempt(s): {}",
            field("email_id"),
            field("attempts"),
            field("error")
        ),
        "system.error" => format!(
            ":rotating_light: SecureVault: {} is failing: {}",
            field("component"),
            field("error")
        ),
        other => format!(
            "SecureVault: {}: {}",
            slack_escape(other),
            slack_escape(&data.to_string())
        ),
    }
}

/// Text shown as typed in a Slack message: `&`, `<` and `>` are the only
/// characters Slack's markup gives meaning to (`<!channel>` pings everyone,
/// `<@U123>` mentions, `<https://a|b>` links to `a` showing `b`), and Slack
/// asks for exactly these three escapes. `&` goes first, so an escape already
/// in the text is shown as typed too.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_payload_has_type_timestamp_and_data() {
        let event = NewEvent::email(
            EventType::EmailFailed,
            "e1",
            &["a@example.com".into()],
            3,
            Some("550 no such user"),
        );
        let body = render(
            WebhookFormat::Standard,
            event.event_type.as_str(),
            &event.data,
            1_764_000_000_123,
        );
        assert_eq!(body["type"], "email.failed");
        assert_eq!(body["timestamp"], "2025-11-24T16:00:00.123Z");
        assert_eq!(body["data"]["email_id"], "e1");
        assert_eq!(body["data"]["status"], "failed");
        assert_eq!(body["data"]["error"], "550 no such user");
        assert_eq!(body["data"]["to"][0], "a@example.com");
    }

    #[test]
    fn slack_payload_is_one_readable_line() {
        let sent = NewEvent::email(
            EventType::EmailSent,
            "e2",
            &["a@x.io".into(), "b@x.io".into()],
            1,
            None,
        );
        assert_eq!(
            render(WebhookFormat::Slack, "email.sent", &sent.data, 0),
            json!({"text": ":white_check_mark: SecureVault: email e2 sent to a@x.io, b@x.io (attempt 1)."})
        );
        let down = NewEvent::system_error("smtp", "connection refused");
        assert_eq!(
            render(WebhookFormat::Slack, "system.error", &down.data, 0)["text"],
            ":rotating_light: SecureVault: smtp is failing: connection refused"
        );
    }

    #[test]
    fn slack_escaping_escapes_the_three_and_nothing_else() {
        assert_eq!(
            slack_escape("a < b && c > d"),
            "a &lt; b &amp;&amp; c &gt; d"
        );
        assert_eq!(slack_escape("&lt;"), "&amp;lt;", "shown as typed");
        assert_eq!(
            slack_escape("*bold* _it_ @here #c :x:"),
            "*bold* _it_ @here #c :x:"
        );
    }

    #[test]
    fn slack_text_from_outside_cannot_ping_mention_or_link() {
        let markup = "<!channel> <@U123> <http://x|y> & co";
        let escaped = "&lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp; co";
        let failed = NewEvent::email(
            EventType::EmailFailed,
            markup,
            &[format!("\"{markup}\" <a@x.io>")],
            2,
            Some(markup),
        );
        assert_eq!(
            render(WebhookFormat::Slack, "email.failed", &failed.data, 0)["text"],
            format!(
                ":x: SecureVault: email {escaped} to \"{escaped}\" &lt;a@x.io&gt; \
                 failed after 2 attempt(s): {escaped}"
            )
        );
        let down = NewEvent::system_error(markup, markup);
        assert_eq!(
            render(WebhookFormat::Slack, "system.error", &down.data, 0)["text"],
            format!(":rotating_light: SecureVault: {escaped} is failing: {escaped}")
        );
        // An event type this version does not know shows its data escaped too.
        let unknown = render(WebhookFormat::Slack, "<!here>", &json!({ "x": markup }), 0);
        let text = unknown["text"].as_str().unwrap_or_default();
        assert!(!text.contains(['<', '>']), "{text}");
    }
}
