//! Notifications to WEBHOOK_URL, received by a real HTTP receiver that checks
//! every signature with the reference Standard Webhooks library (Python's
//! `standardwebhooks`), not with our own code. Emails go through a real SMTP
//! server (mailpit), whose chaos triggers make it refuse on demand.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use testkit::{Mailpit, WebhookReceiver, mailpit::ChaosTrigger, webhook_receiver::Delivery};

const SECRET: &str = "whsec_c2VjdXJldmF1bHQtdGVzdC13ZWJob29rLWtleS0zMmI=";

fn smtp_env(mailpit: &Mailpit) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".into()),
        ("SMTP_PORT", mailpit.smtp_port().to_string()),
        ("SMTP_TLS", "none".into()),
        ("SMTP_FROM", "SecureVault <noreply@securevault.test>".into()),
    ]
}

/// The data plane sending email to `mailpit` and webhooks to `receiver`.
fn start_notifying(
    mailpit: &Mailpit,
    receiver: &WebhookReceiver,
    extra: &[(&'static str, &str)],
) -> DataPlane {
    let mut env = smtp_env(mailpit);
    env.push(("WEBHOOK_URL", receiver.url()));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start(&env)
}

async fn send(dp: &DataPlane, body: Value) -> String {
    let response = authed(dp)
        .await
        .post(dp.url("/api/send-email"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer = json(response).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Waits until the receiver holds deliveries matching `pick`, `count` of them.
async fn deliveries(
    receiver: &WebhookReceiver,
    count: usize,
    pick: impl Fn(&Delivery) -> bool,
) -> Vec<Delivery> {
    wait_for(
        &format!("{count} matching webhook deliveries"),
        Duration::from_secs(30),
        || async {
            let all = receiver.deliveries().map_err(|e| e.to_string())?;
            let picked: Vec<Delivery> = all.iter().filter(|d| pick(d)).cloned().collect();
            if picked.len() >= count {
                Ok(picked)
            } else {
                Err(format!("{all:#?}"))
            }
        },
    )
    .await
}

fn event_type(d: &Delivery) -> &str {
    d.body
        .as_ref()
        .and_then(|b| b["type"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn sent_and_failed_emails_are_announced_with_signatures_the_reference_library_accepts() {
    let mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(Some(SECRET)).unwrap();
    let dp = start_notifying(&mailpit, &receiver, &[("WEBHOOK_SECRET", SECRET)]);

    let sent = send(
        &dp,
        json!({"to": "ada@example.com", "bcc": ["hidden@example.com"], "subject": "Private subject", "text": "Private body"}),
    )
    .await;
    let announced = deliveries(&receiver, 1, |d| event_type(d) == "email.sent").await;
    let delivery = &announced[0];
    assert_eq!(delivery.verified, Some(true), "{delivery:#?}");
    assert_eq!(delivery.answered, 204);
    assert!(delivery.headers["webhook-id"].starts_with("msg_"));
    assert_eq!(delivery.headers["content-type"], "application/json");
    let body = delivery.body.as_ref().unwrap();
    assert_eq!(body["data"]["email_id"], sent);
    assert_eq!(body["data"]["status"], "sent");
    assert_eq!(body["data"]["to"], json!(["ada@example.com"]));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    // What the receiver must not learn: the subject, the body, blind copies.
    let text = body.to_string();
    for private in ["Private subject", "Private body", "hidden@example.com"] {
        assert!(!text.contains(private), "{private} leaked into {text}");
    }

    // A permanent refusal: the email fails and `email.failed` says why.
    mailpit
        .set_chaos(ChaosTrigger::Recipient, 550, 100)
        .unwrap();
    let failed = send(
        &dp,
        json!({"to": "bob@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    let announced = deliveries(&receiver, 1, |d| event_type(d) == "email.failed").await;
    let body = announced[0].body.as_ref().unwrap();
    assert_eq!(announced[0].verified, Some(true), "{:#?}", announced[0]);
    assert_eq!(body["data"]["email_id"], failed);
    assert_eq!(body["data"]["status"], "failed");
    assert!(
        body["data"]["error"].as_str().unwrap().contains("550"),
        "{body}"
    );

    // Exactly one announcement of each.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = receiver.deliveries().unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
}

#[tokio::test]
async fn a_refused_delivery_is_retried_under_the_same_id_and_a_rejected_one_is_not() {
    let mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(Some(SECRET)).unwrap();
    let dp = start_notifying(&mailpit, &receiver, &[("WEBHOOK_SECRET", SECRET)]);

    // 503 then 204: the same event again, with a fresh signature.
    receiver.answer_next(&[503]).unwrap();
    send(
        &dp,
        json!({"to": "a@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    let attempts = deliveries(&receiver, 2, |_| true).await;
    assert_eq!(attempts[0].answered, 503);
    assert_eq!(attempts[1].answered, 204);
    assert_eq!(
        attempts[0].headers["webhook-id"],
        attempts[1].headers["webhook-id"]
    );
    assert!(
        attempts.iter().all(|d| d.verified == Some(true)),
        "{attempts:#?}"
    );

    // 400: the receiver refuses this event for good; it is not sent again.
    receiver.answer_next(&[400]).unwrap();
    send(
        &dp,
        json!({"to": "b@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    deliveries(&receiver, 3, |_| true).await;
    let metrics = wait_for(
        "the failed delivery counted",
        Duration::from_secs(10),
        || async {
            let text = metrics_text(&dp).await;
            if text.contains(r#"webhook_deliveries_total{event="email.sent",result="failed"} 1"#) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(metrics.contains(r#"webhook_deliveries_total{event="email.sent",result="retry"} 1"#));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.deliveries().unwrap().len(), 3);
}

#[tokio::test]
async fn queued_events_survive_a_crash_and_arrive_after_restart() {
    let mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(Some(SECRET)).unwrap();
    let dir = TempDir::new("webhook-crash").unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let extra = [("WEBHOOK_SECRET", SECRET), ("DATA_DIR", data_dir)];

    // The receiver refuses the first attempt, so the event is still queued
    // (waiting out its backoff) when the process is killed.
    receiver.answer_next(&[503]).unwrap();
    let mut dp = start_notifying(&mailpit, &receiver, &extra);
    let id = send(
        &dp,
        json!({"to": "a@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    deliveries(&receiver, 1, |_| true).await;
    dp.process().signal("KILL").unwrap();
    dp.process().wait_exit(Duration::from_secs(10)).unwrap();

    let _dp = start_notifying(&mailpit, &receiver, &extra);
    let attempts = deliveries(&receiver, 2, |_| true).await;
    assert_eq!(attempts[1].answered, 204);
    assert_eq!(attempts[1].verified, Some(true));
    assert_eq!(
        attempts[0].headers["webhook-id"],
        attempts[1].headers["webhook-id"]
    );
    assert_eq!(attempts[1].body.as_ref().unwrap()["data"]["email_id"], id);
    assert_eq!(mailpit.message_count().unwrap(), 1);
}

#[tokio::test]
async fn slack_format_posts_a_readable_message() {
    let mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(None).unwrap();
    let dp = start_notifying(&mailpit, &receiver, &[("WEBHOOK_FORMAT", "slack")]);
    let id = send(
        &dp,
        json!({"to": "ada@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    let delivery = deliveries(&receiver, 1, |_| true).await.remove(0);
    assert_eq!(
        delivery.body.unwrap(),
        json!({"text": format!(":white_check_mark: SecureVault: email {id} sent to ada@example.com (attempt 1).")})
    );
    assert!(!delivery.headers.contains_key("webhook-signature"));
}

/// What a sender could put in a recipient's display name to make the
/// notification ping a whole channel, mention someone or show a disguised
/// link, if Slack read it as markup.
const SLACK_MARKUP: &str = "<!channel> <@U123> <http://x|y> & co";
/// The same, escaped as Slack's mrkdwn wants: shown as typed, inert.
const SLACK_ESCAPED: &str = "&lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp; co";

/// Whether `text` holds no Slack control sequence: no `<` or `>`, and every
/// `&` starts one of the three escapes.
fn slack_inert(text: &str) -> bool {
    !text.contains(['<', '>'])
        && text.match_indices('&').all(|(at, _)| {
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| text[at..].starts_with(e))
        })
}

#[tokio::test]
async fn slack_messages_show_user_text_as_typed_without_pinging_or_linking() {
    let mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(None).unwrap();
    let dp = start_notifying(&mailpit, &receiver, &[("WEBHOOK_FORMAT", "slack")]);
    let to = format!("\"{SLACK_MARKUP}\" <ada@example.com>");
    let sent = send(&dp, json!({"to": to, "subject": SLACK_MARKUP, "text": "t"})).await;
    let delivery = deliveries(&receiver, 1, |_| true).await.remove(0);
    let text = delivery.body.unwrap()["text"].as_str().unwrap().to_owned();
    assert_eq!(
        text,
        format!(
            ":white_check_mark: SecureVault: email {sent} sent to \
             \"{SLACK_ESCAPED}\" &lt;ada@example.com&gt; (attempt 1)."
        )
    );
    assert!(slack_inert(&text), "{text}");

    // A refusal names the recipient and the SMTP server's words: both are
    // text from outside.
    mailpit
        .set_chaos(ChaosTrigger::Recipient, 550, 100)
        .unwrap();
    send(&dp, json!({"to": to, "subject": "s", "text": "t"})).await;
    let failed = deliveries(&receiver, 2, |_| true).await.remove(1);
    let text = failed.body.unwrap()["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with(":x: SecureVault: email "), "{text}");
    assert!(text.contains(SLACK_ESCAPED), "{text}");
    assert!(slack_inert(&text), "{text}");
}

#[tokio::test]
async fn an_smtp_outage_is_announced_once_as_a_system_error() {
    let mut mailpit = Mailpit::start().unwrap();
    let receiver = WebhookReceiver::start(Some(SECRET)).unwrap();
    let _dp = start_notifying(&mailpit, &receiver, &[("WEBHOOK_SECRET", SECRET)]);
    // Let the monitor see SMTP answering once, then take it away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    mailpit.stop().unwrap();
    let announced = deliveries(&receiver, 1, |d| event_type(d) == "system.error").await;
    let body = announced[0].body.as_ref().unwrap();
    assert_eq!(announced[0].verified, Some(true));
    assert_eq!(body["data"]["component"], "smtp");
    assert!(!body["data"]["error"].as_str().unwrap().is_empty());
    // Still down at the next check: no second announcement.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let errors = receiver.deliveries().unwrap();
    assert_eq!(
        errors
            .iter()
            .filter(|d| event_type(d) == "system.error")
            .count(),
        1
    );
}
