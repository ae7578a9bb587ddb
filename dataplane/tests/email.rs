//! Email through the durable outbox, delivered to a real SMTP server
//! (mailpit, whose HTTP API shows what arrived). mailpit's chaos triggers make
//! the real server answer 4xx or 5xx on demand.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::mailpit::{ChaosTrigger, Mailpit};

async fn send(dp: &DataPlane, body: Value) -> reqwest::Response {
    authed(dp)
        .await
        .post(dp.url("/api/send-email"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Polls the email until its status is `status`.
async fn wait_status(dp: &DataPlane, id: &str, status: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        last = json(get(dp, &format!("/api/emails/{id}")).await).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("email {id} did not become {status} within {limit:?}; last: {last}");
}

async fn wait_count(mailpit: &Mailpit, count: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = mailpit.message_count().unwrap();
        if n >= count {
            assert_eq!(n, count, "more messages arrived than were sent");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {count} messages arrived within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_sent_email_arrives_with_its_recipients_subject_and_bodies() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let response = send(
        &dp,
        json!({
            "to": ["Ada <ada@example.com>", "bob@example.com"],
            "cc": ["carol@example.com"],
            "bcc": ["dave@example.com"],
            "subject": "Your receipt",
            "text": "Thank you for your order.",
            "html": "<p>Thank you for your <b>order</b>.</p>",
            "reply_to": "support@example.com",
            "headers": {"X-Campaign": "receipts"}
        }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_security_headers(response.headers());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted = json(response).await;
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/emails/{id}"));

    let sent = wait_status(&dp, &id, "sent", Duration::from_secs(15)).await;
    assert_eq!(sent["attempts"], 1);
    assert!(sent["sent_at"].is_string());

    wait_count(&mailpit, 1, Duration::from_secs(5)).await;
    let summary = &mailpit.messages().unwrap()[0];
    let message = mailpit.message(&summary.id).unwrap();
    assert_eq!(message.subject, "Your receipt");
    assert_eq!(message.to, ["ada@example.com", "bob@example.com"]);
    assert_eq!(message.cc, ["carol@example.com"]);
    assert_eq!(message.bcc, ["dave@example.com"]);
    assert_eq!(message.reply_to, ["support@example.com"]);
    assert_eq!(message.text.trim(), "Thank you for your order.");
    assert!(message.html.contains("<b>order</b>"));
    assert!(
        message.message_id.contains(&id),
        "Message-ID {} should carry the id",
        message.message_id
    );

    // Metrics, stats and health follow the outbox.
    assert_eq!(metric(&dp, "emails_sent_total").await, Some(1.0));
    let stats = json(get(&dp, "/api/stats").await).await;
    assert_eq!(stats["emails"]["by_status"]["sent"]["all_time"], 1);
    let health = json(get(&dp, "/api/health/detailed").await).await;
    assert_eq!(health["checks"]["smtp"]["status"], "healthy", "{health}");

    // Bodies are never logged.
    let mut dp = dp;
    assert!(
        !dp.process()
            .output_lines()
            .iter()
            .any(|l| l.contains("Thank you for your"))
    );
}

#[tokio::test]
async fn waiting_for_the_outcome_answers_200_with_the_final_status() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let response = authed(&dp)
        .await
        .post(dp.url("/api/send-email?wait=10"))
        .json(&json!({"to": "a@example.com", "subject": "Now", "text": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["status"], "sent");
}

#[tokio::test]
async fn invalid_emails_are_refused_naming_the_field() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    for (body, field) in [
        (json!({"to": [], "subject": "s", "text": "t"}), "to"),
        (
            json!({"to": "not-an-address", "subject": "s", "text": "t"}),
            "to[0]",
        ),
        (
            json!({"to": "a@example.com", "subject": "s\r\nBcc: x@evil.test", "text": "t"}),
            "subject",
        ),
        (
            json!({"to": "a@example.com", "subject": "s", "text": "t", "headers": {"X-A": "v\nBcc: x@evil.test"}}),
            "headers.X-A",
        ),
        (json!({"to": "a@example.com", "subject": "s"}), "text"),
        (
            json!({"to": "a@example.com", "subject": 5, "text": "t"}),
            "subject",
        ),
    ] {
        let response = send(&dp, body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(json(response).await["error"]["field"], field, "{body}");
    }
    let malformed = authed(&dp)
        .await
        .post(dp.url("/api/send-email"))
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mailpit.message_count().unwrap(), 0);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_request_send_once() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let body = json!({"to": "a@example.com", "subject": "Once", "text": "t"});
    let c = authed(&dp).await;
    let post = |body: Value, key: &'static str| {
        c.post(dp.url("/api/send-email"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = json(post(body.clone(), "order-7").await.unwrap()).await;
    let again = post(body.clone(), "order-7").await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json(again).await["id"], first["id"]);

    let other = post(
        json!({"to": "a@example.com", "subject": "Other", "text": "t"}),
        "order-7",
    )
    .await
    .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(other).await["error"]["field"], "Idempotency-Key");

    wait_status(
        &dp,
        first["id"].as_str().unwrap(),
        "sent",
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mailpit.message_count().unwrap(), 1);
}

/// Accepted emails are written in groups (`store/group_commit.rs`): under
/// a burst every 202 is an email stored with its audit row, and requests
/// racing with one Idempotency-Key (a group that fails on the key is
/// written again one by one) still store one email, which every one of
/// them is answered with.
#[tokio::test]
async fn a_burst_of_sends_stores_each_email_with_its_audit_row_and_each_key_once() {
    let mailpit = Mailpit::start().unwrap();
    // SIGSTOP: the relay takes nothing, so only the accept path runs.
    mailpit.process().unwrap().signal("STOP").unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let c = authed(&dp).await;
    let requests = (0..200).map(|i| {
        let (key, subject) = if i % 4 == 0 {
            (Some(format!("burst-{}", i % 5)), format!("Keyed {}", i % 5))
        } else {
            (None, format!("Burst {i}"))
        };
        let mut request = c
            .post(dp.url("/api/send-email"))
            .json(&json!({"to": "a@example.com", "subject": subject, "text": "t"}));
        if let Some(key) = &key {
            request = request.header("idempotency-key", key);
        }
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            (key, json(response).await["id"].as_str().unwrap().to_owned())
        }
    });
    let answers = futures::future::join_all(requests).await;

    let mut by_key = std::collections::HashMap::<String, Vec<String>>::new();
    let mut ids = std::collections::HashSet::new();
    for (key, id) in answers {
        if let Some(key) = key {
            by_key.entry(key).or_default().push(id.clone());
        }
        ids.insert(id);
    }
    assert_eq!(by_key.len(), 5);
    for (key, answered) in &by_key {
        assert!(
            answered.iter().all(|id| *id == answered[0]),
            "{key}: {answered:?}"
        );
    }
    assert_eq!(ids.len(), 150 + 5);

    let pool = store_pool(&dp.sqlite_url()).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM emails")
        .fetch_all(&pool)
        .await
        .unwrap();
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT target FROM audit_log WHERE action = 'email.send'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), ids.len());
    assert_eq!(audited.len(), ids.len());
    for id in &ids {
        assert!(stored.contains(id) && audited.contains(id), "{id}");
    }
    mailpit.process().unwrap().signal("CONT").unwrap();
}

#[tokio::test]
async fn emails_accepted_while_smtp_is_down_arrive_exactly_once_when_it_returns() {
    let mut mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    mailpit.stop().unwrap();

    let mut ids = Vec::new();
    for i in 0..5 {
        let response = send(
            &dp,
            json!({"to": "a@example.com", "subject": format!("Outage {i}"), "text": "t"}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.push(json(response).await["id"].as_str().unwrap().to_owned());
    }
    // They wait for a retry, with the reason (between attempts; an attempt
    // in progress shows `sending`).
    let first = &ids[0];
    wait_for(
        "the first email queued again with its error",
        Duration::from_secs(10),
        || async {
            let e = json(get(&dp, &format!("/api/emails/{first}")).await).await;
            if e["status"] == "queued" && e["last_error"].is_string() {
                Ok(())
            } else {
                Err(e.to_string())
            }
        },
    )
    .await;
    // The next round of background checks sees it too.
    wait_for(
        "the detailed health to report SMTP down",
        Duration::from_secs(15),
        || async {
            let health = json(get(&dp, "/api/health/detailed").await).await;
            if health["status"] == "degraded" && health["checks"]["smtp"]["status"] == "unhealthy" {
                Ok(())
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;

    mailpit.restart().unwrap();
    for id in &ids {
        wait_status(&dp, id, "sent", Duration::from_secs(30)).await;
    }
    wait_count(&mailpit, 5, Duration::from_secs(5)).await;
    let mut subjects: Vec<String> = mailpit
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| m.subject)
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..5).map(|i| format!("Outage {i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn when_the_relay_returns_a_queued_email_goes_at_once_not_at_its_retry_time() {
    let mut mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    mailpit.stop().unwrap();
    let response = send(
        &dp,
        json!({"to": "a@example.com", "subject": "Back soon", "text": "t"}),
    )
    .await;
    let id = json(response).await["id"].as_str().unwrap().to_owned();
    // Four failures: the next retry is 8 s (±20 %) after the last.
    wait_for("four failed attempts", Duration::from_secs(30), || async {
        let e = json(get(&dp, &format!("/api/emails/{id}")).await).await;
        if e["status"] == "queued" && e["attempts"].as_i64() >= Some(4) {
            Ok(())
        } else {
            Err(e.to_string())
        }
    })
    .await;
    let pool = store_pool(&dp.sqlite_url()).await;
    let column = |name: &'static str| {
        let (pool, id) = (pool.clone(), id.clone());
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT {name} FROM emails WHERE id = $1"
            )))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let due = column("next_attempt_at").await;

    mailpit.restart().unwrap();
    wait_status(&dp, &id, "sent", Duration::from_secs(60)).await;
    let sent_at = column("sent_at").await;
    assert!(
        sent_at < due,
        "sent {} ms after its retry time: the relay's return did not make it due",
        sent_at - due
    );
    assert_eq!(mailpit.message_count().unwrap(), 1);
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_and_a_permanent_one_fails() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);

    mailpit
        .set_chaos(ChaosTrigger::Recipient, 451, 100)
        .unwrap();
    let id = json(
        send(
            &dp,
            json!({"to": "a@example.com", "subject": "Later", "text": "t"}),
        )
        .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let retried = loop {
        let e = json(get(&dp, &format!("/api/emails/{id}")).await).await;
        if e["attempts"].as_i64().unwrap() >= 1 && e["status"] == "queued" {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry scheduled: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        retried["last_error"].as_str().unwrap().contains("451"),
        "{retried}"
    );
    mailpit.clear_chaos().unwrap();
    let sent = wait_status(&dp, &id, "sent", Duration::from_secs(20)).await;
    assert!(sent["attempts"].as_i64().unwrap() >= 2);

    mailpit
        .set_chaos(ChaosTrigger::Recipient, 550, 100)
        .unwrap();
    let id = json(
        send(
            &dp,
            json!({"to": "a@example.com", "subject": "Never", "text": "t"}),
        )
        .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = wait_status(&dp, &id, "failed", Duration::from_secs(15)).await;
    assert_eq!(failed["attempts"], 1, "a permanent error is not retried");
    assert!(
        failed["last_error"].as_str().unwrap().contains("550"),
        "{failed}"
    );
    assert_eq!(metric(&dp, "emails_failed_total").await, Some(1.0));
    mailpit.clear_chaos().unwrap();
    assert_eq!(mailpit.message_count().unwrap(), 1);
}

#[tokio::test]
async fn two_replicas_on_one_postgres_outbox_deliver_each_email_once() {
    let mailpit = Mailpit::start().unwrap();
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("outbox").unwrap();
    let a = start_with_smtp(&mailpit, &[("DATABASE_URL", &url)]);
    let b = start_with_smtp(&mailpit, &[("DATABASE_URL", &url)]);

    let c = authed(&a).await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let dp = if i % 2 == 0 { &a } else { &b };
        let response = c
            .post(dp.url("/api/send-email"))
            .json(&json!({"to": "a@example.com", "subject": format!("Bulk {i:03}"), "text": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.push(json(response).await["id"].as_str().unwrap().to_owned());
    }
    wait_count(&mailpit, 200, Duration::from_secs(60)).await;
    let mut subjects: Vec<String> = mailpit
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| m.subject)
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 200, "every email exactly once");
    // Both replicas delivered some.
    let sent_a = metric(&a, "emails_sent_total").await.unwrap();
    let sent_b = metric(&b, "emails_sent_total").await.unwrap();
    assert_eq!(sent_a + sent_b, 200.0);
}

#[tokio::test]
async fn without_smtp_sending_is_refused_not_queued_forever() {
    let dp = start(&[]);
    let response = send(
        &dp,
        json!({"to": "a@example.com", "subject": "s", "text": "t"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        json(response).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SMTP_HOST")
    );
}

/// Ids of the emails in `status`, read from the SQLite outbox beside the
/// process (WAL lets a reader in while the data plane writes or is frozen).
async fn ids_in(pool: &sqlx::AnyPool, status: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM emails WHERE status = $1")
        .bind(status)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_killed_data_plane_delivers_queued_and_mid_send_emails_after_restart() {
    const EMAILS: usize = 1000;
    let mailpit = Mailpit::start().unwrap();
    let dir = TempDir::new("email-crash").unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // A short SMTP timeout makes the claims the killed process held expire
    // after 4 s instead of 60.
    let extra = [("DATA_DIR", data_dir), ("SMTP_TIMEOUT_SECS", "2")];
    let mut dp = start_with_smtp(&mailpit, &extra);

    // A backlog builds behind the worker while the relay is frozen
    // (SIGSTOP): delivery can outpace accepting one request at a time.
    let relay = mailpit.process().unwrap();
    relay.signal("STOP").unwrap();
    let c = authed(&dp).await;
    for i in 0..EMAILS {
        let response = c
            .post(dp.url("/api/send-email"))
            .json(&json!({"to": "a@example.com", "subject": format!("Crash {i:04}"), "text": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    relay.signal("CONT").unwrap();

    // Freeze the process (SIGSTOP) until we catch it with emails claimed and
    // in flight, some delivered and some still queued; then SIGKILL it there.
    let pool = store_pool(&format!("sqlite://{data_dir}/securevault.db")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mid_send = loop {
        dp.process().signal("STOP").unwrap();
        let sending = ids_in(&pool, "sending").await;
        let queued = ids_in(&pool, "queued").await.len();
        let arrived = mailpit.message_count().unwrap();
        if !sending.is_empty() && queued > 0 && arrived > 0 {
            dp.process().signal("KILL").unwrap();
            break sending;
        }
        assert!(
            tokio::time::Instant::now() < deadline && queued > 0,
            "never caught the worker mid-send ({} sending, {queued} queued, {arrived} arrived)",
            sending.len()
        );
        dp.process().signal("CONT").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    dp.process().wait_exit(Duration::from_secs(10)).unwrap();
    drop(dp);

    let _dp = start_with_smtp(&mailpit, &extra);
    wait_for("every email sent", Duration::from_secs(60), || async {
        let sent = ids_in(&pool, "sent").await.len();
        if sent == EMAILS {
            Ok(())
        } else {
            Err(format!("{sent} of {EMAILS} sent"))
        }
    })
    .await;

    // Each email arrived; the only repeats are emails that were mid-send at
    // the kill: SMTP had taken them, but `sent` was never written.
    let mut arrivals = std::collections::HashMap::<String, usize>::new();
    for m in mailpit.messages().unwrap() {
        let id = m.message_id.split('@').next().unwrap().to_owned();
        *arrivals.entry(id).or_default() += 1;
    }
    let all: Vec<String> = sqlx::query_scalar("SELECT id FROM emails")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(all.len(), EMAILS);
    for id in &all {
        let n = arrivals.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "email {id} never arrived");
        assert!(
            n == 1 || (n == 2 && mid_send.contains(id)),
            "email {id} arrived {n} times and was not mid-send at the kill"
        );
    }
    assert_eq!(arrivals.len(), EMAILS, "only our emails arrived");
    let repeats = arrivals.values().filter(|&&n| n > 1).count();
    println!(
        "{} emails mid-send at the kill, {repeats} of them delivered twice",
        mid_send.len()
    );
}
