//! Nobody reads what is not theirs: an email or a generation is seen, and an
//! email retried, by the principal that created it (a user's session, or an
//! API key, which is a principal of its own) and by administrators; anyone
//! else gets the answer a missing id gets, so a foreign id does not even
//! reveal that it exists. Rows written before authors were recorded are
//! administrators' only. Checked on the API and on the console's pages,
//! against the real binary, a real SMTP server (mailpit, refusing every
//! recipient so that emails fail and can be retried) and a model server
//! address where nothing listens (a failed generation is kept like any other,
//! so no model is needed to own one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};
use testkit::mailpit::ChaosTrigger;

const PASSWORD: &str = "a long member password";
/// An id nobody has: what every foreign id must look like.
const MISSING: &str = "00000000-0000-0000-0000-000000000000";

/// A non-administrator and what it created.
struct Owner {
    label: &'static str,
    token: String,
    email: String,
    generation: String,
}

impl Owner {
    fn api(&self) -> reqwest::Client {
        bearer(&self.token)
    }
}

/// Sends an email and asks for a generation as `token`; their ids.
async fn create_objects(dp: &DataPlane, token: &str, label: &str) -> (String, String) {
    let caller = bearer(token);
    let sent = caller
        .post(dp.url("/api/send-email"))
        .json(&json!({"to": "x@example.com", "subject": format!("mail of {label}"), "text": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{label} sends");
    let email = json(sent).await["id"].as_str().unwrap().to_owned();
    // Nothing listens at the model server's address: the generation fails
    // upstream and is kept, under its author, like any finished one.
    let generated = caller
        .post(dp.url("/api/generate-content"))
        .json(&json!({"prompt": format!("prompt of {label}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        generated.status(),
        StatusCode::BAD_GATEWAY,
        "{label} generates"
    );
    let me = json(caller.get(dp.url("/api/auth/me")).send().await.unwrap()).await;
    let actor = me["id"].as_str().unwrap();
    let trail = json(get(dp, &format!("/api/audit?action=ai.generate&actor={actor}")).await).await;
    let generation = trail["entries"][0]["target"].as_str().unwrap().to_owned();
    (email, generation)
}

async fn add_member(dp: &DataPlane, name: &str) -> String {
    let r = authed(dp)
        .await
        .post(dp.url("/api/users"))
        .json(&json!({ "username": name, "password": PASSWORD, "role": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    login(dp, name, PASSWORD).await
}

/// `(status, body with the id written as <id>)`: two answers that differ only
/// in the id the caller sent are the same answer.
async fn answer(
    caller: &reqwest::Client,
    dp: &DataPlane,
    method: &str,
    path: &str,
    id: &str,
) -> (StatusCode, String) {
    let r = caller
        .request(method.parse().unwrap(), dp.url(&path.replace("{id}", id)))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap().replace(id, "<id>"))
}

const ROUTES: [(&str, &str, bool); 3] = [
    ("GET", "/api/emails/{id}", true),
    ("POST", "/api/emails/{id}/retry", true),
    ("GET", "/api/generations/{id}", false),
];

/// Every route answers `id` to `caller` exactly as it answers a missing id.
async fn looks_missing(
    caller: &reqwest::Client,
    dp: &DataPlane,
    who: &str,
    email: &str,
    generation: &str,
) {
    for (method, path, is_email) in ROUTES {
        let id = if is_email { email } else { generation };
        let foreign = answer(caller, dp, method, path, id).await;
        let missing = answer(caller, dp, method, path, MISSING).await;
        assert_eq!(
            missing.0,
            StatusCode::NOT_FOUND,
            "{method} {path} of a missing id"
        );
        assert_eq!(
            foreign, missing,
            "{who}: {method} {path} of someone else's {id}"
        );
    }
}

/// A console visitor: the session cookie, redirects not followed.
struct Console<'a> {
    dp: &'a DataPlane,
    http: reqwest::Client,
    token: String,
}

impl<'a> Console<'a> {
    fn new(dp: &'a DataPlane, token: &str) -> Self {
        Self {
            dp,
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token: token.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(self.dp.url(path))
            .header("cookie", format!("sv_session={}", self.token))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> (StatusCode, String) {
        let (_, page) = self.get("/console").await;
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &page[at..at + 64];
        let r = self
            .http
            .post(self.dp.url(path))
            .header("cookie", format!("sv_session={}", self.token))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }
}

async fn email_state(dp: &DataPlane, id: &str) -> (String, i64) {
    let e = json(get(dp, &format!("/api/emails/{id}")).await).await;
    (
        e["status"].as_str().unwrap().to_owned(),
        e["attempts"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn nobody_but_the_author_and_administrators_reads_or_retries_an_email_or_a_generation() {
    let mailpit = Mailpit::start().unwrap();
    // The relay refuses our sender for good: every email fails, and may be
    // retried (a refused recipient would be suppressed, and its retry 422).
    mailpit.set_chaos(ChaosTrigger::Sender, 550, 100).unwrap();
    let smtp_port = mailpit.smtp_port().to_string();
    let nowhere = format!("http://127.0.0.1:{}/v1", testkit::free_port());
    let dp = start(&[
        ("SESSION_COOKIE_SECURE", "false"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &smtp_port),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "vault@example.com"),
        ("OPENAI_BASE_URL", &nowhere),
        ("OPENAI_MODEL", "absent-model"),
    ]);
    let admin = authed(&dp).await;

    // Two members, and an API key without `admin`: a principal of its own,
    // whatever its creator may see.
    let mut owners = Vec::new();
    for label in ["alice", "bob"] {
        let token = add_member(&dp, label).await;
        owners.push(Owner {
            label,
            token,
            email: String::new(),
            generation: String::new(),
        });
    }
    let key = admin
        .post(dp.url("/api/keys"))
        .json(&json!({"name": "robot", "scopes": ["email", "ai"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::CREATED);
    let key = json(key).await["key"].as_str().unwrap().to_owned();
    owners.push(Owner {
        label: "robot",
        token: key,
        email: String::new(),
        generation: String::new(),
    });
    for o in &mut owners {
        (o.email, o.generation) = create_objects(&dp, &o.token, o.label).await;
    }
    for o in &owners {
        wait_for("the email to fail", Duration::from_secs(15), || async {
            match email_state(&dp, &o.email).await {
                (s, _) if s == "failed" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    // Rows from before authors were recorded: administrators' only.
    let pool = store_pool(&dp.sqlite_url()).await;
    insert_email(&pool, "legacy-email", "failed", Duration::from_secs(60)).await;
    insert_generation(
        &pool,
        "legacy-generation",
        "failed",
        Duration::from_secs(60),
    )
    .await;
    pool.close().await;

    // Each one tries everyone else's ids, and the old rows: a 404 like a
    // missing id's, and nothing retried.
    for o in &owners {
        for other in owners.iter().filter(|x| x.label != o.label) {
            let who = format!("{} on {}'s", o.label, other.label);
            looks_missing(&o.api(), &dp, &who, &other.email, &other.generation).await;
        }
        let who = format!("{} on old rows", o.label);
        looks_missing(&o.api(), &dp, &who, "legacy-email", "legacy-generation").await;
    }
    for o in &owners {
        assert_eq!(
            email_state(&dp, &o.email).await,
            ("failed".into(), 1),
            "{}",
            o.label
        );
    }
    assert_eq!(email_state(&dp, "legacy-email").await.0, "failed");

    // The author reads and retries its own; an administrator everyone's.
    for o in &owners {
        let api = o.api();
        let r = api
            .get(dp.url(&format!("/api/emails/{}", o.email)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{} reads its email", o.label);
        let r = api
            .get(dp.url(&format!("/api/generations/{}", o.generation)))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{} reads its generation",
            o.label
        );
        let g: Value = json(r).await;
        assert_eq!(g["status"], "failed");
        for path in [
            format!("/api/emails/{}", o.email),
            format!("/api/generations/{}", o.generation),
        ] {
            assert_eq!(
                admin.get(dp.url(&path)).send().await.unwrap().status(),
                StatusCode::OK,
                "admin {path}"
            );
        }
    }
    for path in [
        "/api/emails/legacy-email",
        "/api/generations/legacy-generation",
    ] {
        assert_eq!(
            admin.get(dp.url(path)).send().await.unwrap().status(),
            StatusCode::OK,
            "admin {path}"
        );
    }
    let retry = |caller: reqwest::Client, id: String| {
        let url = dp.url(&format!("/api/emails/{id}/retry"));
        async move { caller.post(url).send().await.unwrap().status() }
    };
    assert_eq!(
        retry(owners[0].api(), owners[0].email.clone()).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        retry(owners[2].api(), owners[2].email.clone()).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        retry(admin.clone(), owners[1].email.clone()).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        retry(admin.clone(), "legacy-email".into()).await,
        StatusCode::ACCEPTED
    );

    // The console, through the same rule: alice and bob in their browsers.
    let alice = Console::new(&dp, &owners[0].token);
    let bob_email = &owners[1].email;
    wait_for(
        "bob's email to fail again",
        Duration::from_secs(15),
        || async {
            match email_state(&dp, bob_email).await {
                (s, _) if s == "failed" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let missing_page = alice.get(&format!("/console/emails/{MISSING}")).await;
    assert_eq!(missing_page.0, StatusCode::NOT_FOUND);
    for id in [bob_email.as_str(), owners[2].email.as_str(), "legacy-email"] {
        assert_eq!(
            alice.get(&format!("/console/emails/{id}")).await,
            missing_page,
            "alice opens {id}"
        );
    }
    let missing_retry = alice
        .post(&format!("/console/emails/{MISSING}/retry"))
        .await;
    assert_eq!(missing_retry.0, StatusCode::NOT_FOUND);
    assert_eq!(
        alice
            .post(&format!("/console/emails/{bob_email}/retry"))
            .await,
        missing_retry
    );
    assert_eq!(
        email_state(&dp, bob_email).await.0,
        "failed",
        "alice's form retried nothing"
    );
    assert_eq!(
        alice
            .get(&format!("/console/emails/{}", owners[0].email))
            .await
            .0,
        StatusCode::OK
    );
    let (status, history) = alice.get("/console/generations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(history.contains("prompt of alice"), "{history}");
    assert!(
        !history.contains("prompt of bob") && !history.contains("prompt of robot"),
        "{history}"
    );

    let admin_console = Console::new(&dp, &token(&dp).await);
    assert_eq!(
        admin_console
            .get(&format!("/console/emails/{bob_email}"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        admin_console.get("/console/emails/legacy-email").await.0,
        StatusCode::OK
    );
    let (status, _) = admin_console
        .post(&format!("/console/emails/{bob_email}/retry"))
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "an administrator retries anyone's"
    );
    let (_, history) = admin_console.get("/console/generations").await;
    for label in ["alice", "bob", "robot"] {
        assert!(
            history.contains(&format!("prompt of {label}")),
            "admin sees {label}'s: {history}"
        );
    }
}
