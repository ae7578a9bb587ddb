//! Bounces and the suppression list, against a real SMTP server (mailpit,
//! whose chaos makes it refuse a recipient or the sender for good) and, for
//! replicas sharing one list, a real PostgreSQL.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::mailpit::{ChaosTrigger, Mailpit};

async fn send(client: &reqwest::Client, dp: &DataPlane, body: Value) -> reqwest::Response {
    client
        .post(dp.url("/api/send-email"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn wait_status(dp: &DataPlane, id: &str, status: &str) -> Value {
    wait_for(
        &format!("email {id} {status}"),
        Duration::from_secs(30),
        || async {
            let e = json(get(dp, &format!("/api/emails/{id}")).await).await;
            if e["status"] == status {
                Ok(e)
            } else {
                Err(e.to_string())
            }
        },
    )
    .await
}

async fn suppressions(dp: &DataPlane, query: &str) -> Value {
    let r = get(dp, &format!("/api/suppressions{query}")).await;
    assert_eq!(r.status(), 200);
    json(r).await
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_until_an_administrator_lifts_it() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let admin = authed(&dp).await;

    // The relay refuses the recipient for good: the address is suppressed.
    mailpit
        .set_chaos(ChaosTrigger::Recipient, 550, 100)
        .unwrap();
    let r = send(
        &admin,
        &dp,
        json!({"to": "Bob <bob@example.com>", "subject": "One", "text": "x"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let bounced = json(r).await["id"].as_str().unwrap().to_owned();
    let id = bounced.clone();
    wait_status(&dp, &id, "failed").await;
    let list = suppressions(&dp, "").await;
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["address"], "bob@example.com");
    assert_eq!(entries[0]["reason"], "bounce");
    assert_eq!(entries[0]["email_id"], id.as_str());
    assert_eq!(entries[0]["created_by"], "system");
    assert!(
        entries[0]["detail"].as_str().unwrap().contains("550"),
        "{list}"
    );
    assert_eq!(
        metric(&dp, "email_suppressions_total{reason=\"bounce\"}").await,
        Some(1.0)
    );

    // The relay refusing our sender is not the recipient's fault.
    mailpit.set_chaos(ChaosTrigger::Sender, 550, 100).unwrap();
    let r = send(
        &admin,
        &dp,
        json!({"to": "dave@example.com", "subject": "Two", "text": "x"}),
    )
    .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    wait_status(&dp, &id, "failed").await;
    assert_eq!(suppressions(&dp, "?q=dave").await["entries"], json!([]));
    mailpit.clear_chaos().unwrap();

    // Sending to it now: 422 naming the field, and nothing queued or sent,
    // whatever the case and wherever the address is.
    let before = mailpit.message_count().unwrap();
    let stats_before = json(get(&dp, "/api/stats").await).await;
    for (body, field) in [
        (
            json!({"to": "BOB@example.com", "subject": "Three", "text": "x"}),
            "to[0]",
        ),
        (
            json!({"to": "ada@example.com", "cc": ["carol@example.com", "Bob <Bob@Example.com>"], "subject": "Four", "text": "x"}),
            "cc[1]",
        ),
        (
            json!({"to": "ada@example.com", "bcc": ["bob@example.com"], "subject": "Five", "text": "x"}),
            "bcc[0]",
        ),
    ] {
        let r = send(&admin, &dp, body).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error = json(r).await["error"].clone();
        assert_eq!(error["code"], "recipient_suppressed");
        assert_eq!(error["field"], field);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("bob@example.com is suppressed (bounce on ")
                && message.contains("DELETE /api/suppressions/bob@example.com"),
            "{message}"
        );
    }
    // Retrying the bounced email would only bounce again: refused the same way.
    let r = admin
        .post(dp.url(&format!("/api/emails/{bounced}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = json(r).await["error"].clone();
    assert_eq!(error["code"], "recipient_suppressed", "{error}");
    assert_eq!(error["field"], "to[0]", "{error}");
    assert_eq!(
        json(get(&dp, &format!("/api/emails/{bounced}")).await).await["status"],
        "failed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mailpit.message_count().unwrap(), before);
    assert_eq!(
        json(get(&dp, "/api/stats").await).await["emails"],
        stats_before["emails"]
    );

    // A member may record an unsubscribe, but neither read the list nor lift.
    let ops = member(&dp, "ops").await;
    let add = |client: &reqwest::Client, address: &str, reason: &str| {
        client
            .post(dp.url("/api/suppressions"))
            .json(&json!({"address": address, "reason": reason, "detail": "clicked the link"}))
            .send()
    };
    let r = add(&ops, "Erin <Erin@Example.com>", "unsubscribe")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(json(r).await["address"], "erin@example.com");
    let again = add(&ops, "erin@example.com", "complaint").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        json(again).await["reason"],
        "unsubscribe",
        "the first reason stays"
    );
    let bad = add(&ops, "erin@example.com", "bounce").await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(bad).await["error"]["field"], "reason");
    let bad = add(&ops, "not an address", "manual").await.unwrap();
    assert_eq!(json(bad).await["error"]["field"], "address");
    for r in [
        ops.get(dp.url("/api/suppressions")).send().await.unwrap(),
        ops.delete(dp.url("/api/suppressions/erin@example.com"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    // Search is case-insensitive and takes % and _ literally; pages go on.
    let found = suppressions(&dp, "?q=ERIN").await;
    assert_eq!(
        found["entries"][0]["address"], "erin@example.com",
        "{found}"
    );
    assert_eq!(suppressions(&dp, "?q=%25").await["entries"], json!([]));
    assert_eq!(suppressions(&dp, "?q=_").await["entries"], json!([]));
    let first = suppressions(&dp, "?limit=1").await;
    assert_eq!(first["entries"][0]["address"], "bob@example.com");
    let next = first["next"].as_str().unwrap();
    let second = suppressions(&dp, &format!("?limit=1&after={next}")).await;
    assert_eq!(second["entries"][0]["address"], "erin@example.com");

    // Lifted by an administrator, audited: mail flows again.
    let r = admin
        .delete(dp.url("/api/suppressions/Bob@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = admin
        .delete(dp.url("/api/suppressions/bob@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let trail = json(get(&dp, "/api/audit?action=suppression.lift").await).await;
    assert_eq!(trail["entries"][0]["target"], "bob@example.com", "{trail}");
    let trail = json(get(&dp, "/api/audit?action=suppression.add").await).await;
    assert_eq!(trail["entries"].as_array().unwrap().len(), 2, "{trail}");
    let r = send(
        &admin,
        &dp,
        json!({"to": "bob@example.com", "subject": "Six", "text": "x"}),
    )
    .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    wait_status(&dp, &id, "sent").await;
    // And the bounced one may be retried now.
    let r = admin
        .post(dp.url(&format!("/api/emails/{bounced}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    wait_status(&dp, &bounced, "sent").await;
}

#[tokio::test]
async fn mail_queued_before_its_recipient_was_suppressed_is_not_sent() {
    let mailpit = Mailpit::start().unwrap();
    let dp = start_with_smtp(&mailpit, &[]);
    let admin = authed(&dp).await;
    // Refused for now (4xx): the email waits in the outbox for a retry.
    mailpit
        .set_chaos(ChaosTrigger::Recipient, 451, 100)
        .unwrap();
    let r = send(
        &admin,
        &dp,
        json!({"to": "carol@example.com", "subject": "Later", "text": "x"}),
    )
    .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    wait_for(
        "a first failed attempt",
        Duration::from_secs(30),
        || async {
            let e = json(get(&dp, &format!("/api/emails/{id}")).await).await;
            if e["attempts"].as_i64() >= Some(1) {
                Ok(())
            } else {
                Err(e.to_string())
            }
        },
    )
    .await;
    let r = admin
        .post(dp.url("/api/suppressions"))
        .json(&json!({"address": "carol@example.com", "reason": "complaint"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    mailpit.clear_chaos().unwrap();
    let failed = wait_status(&dp, &id, "failed").await;
    assert_eq!(
        failed["last_error"],
        "not sent: carol@example.com is suppressed (complaint)"
    );
    assert_eq!(mailpit.message_count().unwrap(), 0);
}

#[tokio::test]
async fn replicas_on_one_database_share_the_list() {
    let mailpit = Mailpit::start().unwrap();
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("suppression").unwrap();
    let first = start_with_smtp(&mailpit, &[("DATABASE_URL", &url)]);
    let second = start_with_smtp(&mailpit, &[("DATABASE_URL", &url)]);
    let r = authed(&first)
        .await
        .post(first.url("/api/suppressions"))
        .json(&json!({"address": "frank@example.com", "reason": "manual"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(
        &authed(&second).await,
        &second,
        json!({"to": "frank@example.com", "subject": "x", "text": "x"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["code"], "recipient_suppressed");
}
