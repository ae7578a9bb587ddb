//! Accounts, sessions, API keys, scopes, brute-force protection and the
//! audit trail, against the real binary (SQLite, or PostgreSQL where two
//! processes share accounts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn try_login(
    dp: &DataPlane,
    username: &str,
    password: &str,
    from: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(dp.url("/api/auth/login"))
        .json(&json!({ "username": username, "password": password }));
    if let Some(ip) = from {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

async fn audit(dp: &DataPlane, query: &str) -> Vec<Value> {
    let page = json(get(dp, &format!("/api/audit?{query}")).await).await;
    page["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn anonymous_callers_reach_liveness_readiness_and_login_only() {
    let dp = start(&[]);
    // The document itself is for signed-in callers.
    let r = client()
        .get(dp.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let doc = json(get(&dp, "/api/openapi.json").await).await;
    let mut guarded = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let r = client()
                .request(
                    method.to_uppercase().parse().unwrap(),
                    dp.url(&path.replace("{id}", "x")),
                )
                .send()
                .await
                .unwrap();
            let public =
                ["/api/health", "/api/health/ready", "/api/auth/login"].contains(&path.as_str());
            // The document says which operations need credentials; the
            // server must agree, and these must be the only ones without.
            assert_eq!(
                op.get("security").is_none(),
                public,
                "{method} {path} in the document"
            );
            if public {
                assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
                continue;
            }
            guarded += 1;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                r.headers()["www-authenticate"],
                "Bearer realm=\"securevault\""
            );
            assert_eq!(json(r).await["error"]["code"], "unauthorized");
        }
    }
    assert!(guarded >= 14, "only {guarded} guarded operations");
    // A made-up token is no better than none.
    let forged = bearer(&format!("svk_{}", "A".repeat(43)));
    let r = forged.get(dp.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Metrics are not on the API's port at all, signed in or not...
    for path in ["/api/metrics", "/metrics"] {
        let r = get(&dp, path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} on the API port");
    }
    // ...but on the metrics listener, which serves nothing else.
    let r = client()
        .get(dp.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("http_requests_total"));
    let r = client()
        .get(dp.metrics_url("/api/health/detailed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_detailed_health_needs_the_metrics_scope() {
    let dp = start(&[]);
    let url = dp.url("/api/health/detailed");
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, monitoring) = create_key(&dp, "prometheus", &["metrics"]).await;
    let r = bearer(&monitoring).get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["checks"]["database"]["status"], "healthy");
    // Only that: a metrics key is nobody's administrator.
    let r = bearer(&monitoring)
        .get(dp.url("/api/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, mailer) = create_key(&dp, "mailer", &["email"]).await;
    let r = bearer(&mailer).get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Administrators have every scope.
    assert_eq!(
        get(&dp, "/api/health/detailed").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_session_works_as_cookie_and_bearer_until_logout_or_expiry() {
    let dp = start(&[("SESSION_TTL_SECS", "3")]);
    let wrong = try_login(&dp, "admin", "not the password", None).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(wrong).await["error"]["message"],
        "wrong user name or password"
    );

    let r = try_login(&dp, "ADMIN", testkit::ADMIN_PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Max-Age=3",
        "Path=/",
    ] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    let body = json(r).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("__Host-sv_session={token};")));
    assert_eq!(body["user"]["name"], "admin");
    assert_eq!(
        body["user"]["scopes"],
        json!(["email", "ai", "admin", "metrics"])
    );

    // The cookie alone, as a browser sends it.
    let me = client()
        .get(dp.url("/api/auth/me"))
        .header("cookie", format!("theme=dark; __Host-sv_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(json(me).await["authenticated_by"], "session");

    // Logout ends it for every replica: the stored session is gone.
    let other = login(&dp, "admin", testkit::ADMIN_PASSWORD).await;
    let out = bearer(&other)
        .post(dp.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = bearer(&other)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The first session is untouched by the other's logout, until it expires.
    let still = bearer(&token)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), "the session to expire", || async {
        bearer(&token)
            .get(dp.url("/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_shown_once_scoped_and_revocable() {
    let dp = start(&[]);
    let (id, key) = create_key(&dp, "billing-service", &["email"]).await;
    assert!(key.starts_with("svk_"));
    let listed = json(get(&dp, "/api/keys").await).await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["scopes"], json!(["email"]));
    assert!(
        !listed.to_string().contains(&key),
        "a listing must never show the key"
    );

    let machine = bearer(&key);
    let me = json(machine.get(dp.url("/api/auth/me")).send().await.unwrap()).await;
    assert_eq!(
        (me["id"].as_str(), me["authenticated_by"].as_str()),
        (Some(format!("key:{id}").as_str()), Some("api_key"))
    );
    // In scope: the guard lets it through (no such email, so 404).
    let email = machine
        .get(dp.url("/api/emails/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(email.status(), StatusCode::NOT_FOUND);
    // Out of scope: 403 naming the scope.
    for path in [
        "/api/generations/nope",
        "/api/audit",
        "/api/keys",
        "/api/users",
    ] {
        let r = machine.get(dp.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let message = json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("scope"), "{message}");
    }
    // An API key has no session to log out of.
    let out = machine
        .post(dp.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::BAD_REQUEST);

    let revoked = authed(&dp)
        .await
        .delete(dp.url(&format!("/api/keys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert!(json(revoked).await["revoked_at"].is_string());
    let r = machine.get(dp.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Bad requests name the field.
    let bad = authed(&dp)
        .await
        .post(dp.url("/api/keys"))
        .json(&json!({ "name": "x", "scopes": ["email", "root"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(bad).await["error"]["field"], "scopes[1]");
}

#[tokio::test]
async fn members_get_email_and_ai_but_not_admin() {
    let dp = start(&[]);
    let member = member(&dp, "ops").await;
    let r = member.get(dp.url("/api/emails/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = member.get(dp.url("/api/audit")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let short = authed(&dp)
        .await
        .post(dp.url("/api/users"))
        .json(&json!({ "username": "x", "password": "short", "role": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json(short).await["error"]["field"], "password");
}

#[tokio::test]
async fn five_failures_block_the_address_even_for_the_right_password_until_the_block_ends() {
    let dp = start(&[("LOGIN_BLOCK_SECS", "2")]);
    // Each failure names another (unknown) account, so only the address's
    // count can be what blocks.
    for i in 0..5 {
        let r = try_login(&dp, &format!("nobody{i}"), "guess", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let blocked = try_login(&dp, "admin", testkit::ADMIN_PASSWORD, None).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(json(blocked).await["error"]["code"], "rate_limited");
    // Without a trusted proxy configured, a forged X-Forwarded-For changes
    // nothing: the socket address is still the one blocked.
    let forged = try_login(&dp, "admin", testkit::ADMIN_PASSWORD, Some("198.51.100.77")).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);

    tokio::time::sleep(Duration::from_secs(retry)).await;
    eventually(Duration::from_secs(5), "the block to end", || async {
        try_login(&dp, "admin", testkit::ADMIN_PASSWORD, None)
            .await
            .status()
            == StatusCode::OK
    })
    .await;
    assert_eq!(
        metric(&dp, r#"auth_logins_total{outcome="blocked"}"#).await,
        Some(2.0)
    );
}

#[tokio::test]
async fn one_account_is_throttled_across_addresses_behind_a_trusted_proxy() {
    // The test client is the proxy (127.0.0.1): its X-Forwarded-For is believed.
    let dp = start(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32, ::1"),
        ("LOGIN_BLOCK_SECS", "60"),
    ]);
    let created = authed(&dp)
        .await
        .post(dp.url("/api/users"))
        .json(
            &json!({ "username": "alice", "password": "alice's real password", "role": "member" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    for (i, ip) in [
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.3",
    ]
    .iter()
    .enumerate()
    {
        let r = try_login(&dp, "alice", "guess", Some(ip)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // alice is blocked from a fresh address...
    let r = try_login(&dp, "alice", "alice's real password", Some("203.0.113.9")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...while that address, and the addresses that failed fewer than five
    // times, may still sign in to other accounts.
    let r = try_login(&dp, "admin", testkit::ADMIN_PASSWORD, Some("192.0.2.1")).await;
    assert_eq!(r.status(), StatusCode::OK);

    // The audit trail names the real client address, not the proxy's; a
    // forged left-most entry is ignored.
    let r = try_login(&dp, "nobody", "guess", Some("6.6.6.6, 198.51.100.23")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let failures = audit(&dp, "action=login&limit=50").await;
    let last = failures.iter().find(|e| e["target"] == "nobody").unwrap();
    assert_eq!(last["ip"], "198.51.100.23");
    assert_eq!(last["outcome"], "failure");
    let blocks = audit(&dp, "action=login.block").await;
    assert!(blocks.iter().any(|e| e["target"] == "alice"), "{blocks:?}");
}

#[tokio::test]
async fn the_audit_trail_records_each_action_and_only_admins_read_it() {
    let mailpit = Mailpit::start().unwrap();
    let smtp_port = mailpit.smtp_port().to_string();
    let mut dp = start(&[
        ("LOG_LEVEL", "debug"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &smtp_port),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "vault@example.com"),
    ]);
    let failed = try_login(&dp, "admin", "wrong password", None).await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    let session = login(&dp, "admin", testkit::ADMIN_PASSWORD).await;
    let admin = bearer(&session);
    let (key_id, key) = create_key(&dp, "mailer", &["email"]).await;
    let sent = bearer(&key)
        .post(dp.url("/api/send-email"))
        .json(&json!({"to": "a@example.com", "subject": "Audited", "text": "secret body text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let email_id = json(sent).await["id"].as_str().unwrap().to_owned();
    let forbidden = bearer(&key).get(dp.url("/api/audit")).send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    admin
        .delete(dp.url(&format!("/api/keys/{key_id}")))
        .send()
        .await
        .unwrap();
    let out = admin.post(dp.url("/api/auth/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);

    let entries = audit(&dp, "limit=100").await;
    let find = |action: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action}/{outcome} entry in {entries:#?}"))
            .clone()
    };
    let config = find("config.change", "success");
    assert_eq!(config["actor"], "system");
    assert!(
        config["detail"]
            .as_str()
            .unwrap()
            .contains("RATE_LIMIT_API")
    );
    assert_eq!(find("user.create", "success")["target"], "admin");
    let failure = find("login", "failure");
    assert_eq!(
        (failure["actor"].as_str(), failure["ip"].as_str()),
        (Some("anonymous"), Some("127.0.0.1"))
    );
    let success = find("login", "success");
    assert!(success["actor"].as_str().unwrap().starts_with("user:"));
    assert!(success["request_id"].is_string());
    assert_eq!(find("api_key.create", "success")["target"], key_id.as_str());
    let send = find("email.send", "success");
    assert_eq!(
        (send["target"].as_str(), send["actor"].as_str()),
        (
            Some(email_id.as_str()),
            Some(format!("key:{key_id}").as_str())
        )
    );
    assert_eq!(find("api_key.revoke", "success")["target"], key_id.as_str());
    assert_eq!(find("logout", "success")["actor"], success["actor"]);
    assert!(
        !entries
            .iter()
            .any(|e| e.to_string().contains("secret body text"))
    );

    // Filters and pages: newest first, the cursor continues where a page ended.
    let logins = audit(&dp, "action=login").await;
    assert!(logins.iter().all(|e| e["action"] == "login") && logins.len() >= 3);
    let page = json(get(&dp, "/api/audit?limit=2").await).await;
    let next = page["next"].as_str().unwrap();
    let rest = audit(&dp, &format!("limit=100&before={next}")).await;
    assert_eq!(rest.len() + 2, audit(&dp, "limit=100").await.len());
    let actor = success["actor"].as_str().unwrap();
    let mine = audit(&dp, &format!("actor={actor}&limit=100")).await;
    assert!(mine.iter().all(|e| e["actor"] == actor) && !mine.is_empty());
    let future = audit(&dp, "since=2100-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    let bad = get(&dp, "/api/audit?since=yesterday").await;
    assert_eq!(json(bad).await["error"]["field"], "since");
    // No route changes the trail.
    for method in ["DELETE", "PUT", "PATCH", "POST"] {
        let r = admin_client(&dp)
            .await
            .request(method.parse().unwrap(), dp.url("/api/audit"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }

    // The logs carry who acted, and none of the secrets this run used.
    let lines = dp.process().output_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("\"user_id\":\"key:{key_id}\""))),
        "no log line names the API key's principal"
    );
    for secret in [
        testkit::ADMIN_PASSWORD,
        &session,
        &key,
        "wrong password",
        "secret body text",
    ] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "a log line contains a secret ({} chars)",
            secret.len()
        );
    }
}

/// A fresh administrator session (the cached one may have been logged out).
async fn admin_client(dp: &DataPlane) -> reqwest::Client {
    bearer(&login(dp, "admin", testkit::ADMIN_PASSWORD).await)
}

#[tokio::test]
async fn the_first_administrator_comes_from_configuration_never_a_default() {
    // Production without ADMIN_PASSWORD and no administrator: refuses to start.
    let out = run(
        &[
            ("SECUREVAULT_ENV", "production"),
            ("SECRET_KEY", &"k".repeat(40)),
        ],
        &["serve"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ADMIN_PASSWORD"), "{stderr}");

    // Too short a password is refused at start-up, naming the variable.
    let out = run(&[("ADMIN_PASSWORD", "short")], &["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ADMIN_PASSWORD") && !stderr.contains("short\""),
        "{stderr}"
    );

    // Development without ADMIN_PASSWORD: a generated password, written to a
    // private file, never logged.
    let mut dp = DataPlane::start(binary(), &[("ADMIN_PASSWORD", "")]).unwrap();
    let file = dp.data_dir().join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(password.len() >= 20);
    login(&dp, "admin", &password).await;
    assert!(
        !dp.process()
            .output_lines()
            .iter()
            .any(|l| l.contains(&password))
    );
}

/// Creates an administrator `name` and signs in: their session token and id.
async fn add_admin(dp: &DataPlane, name: &str) -> (String, String) {
    let r = authed(dp)
        .await
        .post(dp.url("/api/users"))
        .json(&json!({ "username": name, "password": "an admin's long password", "role": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    (login(dp, name, "an admin's long password").await, id)
}

/// Creates a key as `creator` (a session or a key): its id and the key.
async fn create_key_as(creator: &str, dp: &DataPlane, body: Value) -> (String, String) {
    let r = bearer(creator)
        .post(dp.url("/api/keys"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = json(r).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// The key `id` as `GET /api/keys` lists it.
async fn listed_key(dp: &DataPlane, id: &str) -> Value {
    let keys = json(get(dp, "/api/keys").await).await;
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("key {id} not listed: {keys}"))
        .clone()
}

async fn set_disabled(dp: &DataPlane, user_id: &str, disabled: bool) -> reqwest::Response {
    admin_client(dp)
        .await
        .patch(dp.url(&format!("/api/users/{user_id}")))
        .json(&json!({ "disabled": disabled }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_disabled_accounts_keys_are_refused_at_once_on_every_route() {
    let dp = start(&[]);
    let (bea, bea_id) = add_admin(&dp, "bea").await;
    // bea's key, and a key that key made: both act for bea.
    let (k1_id, k1) = create_key_as(
        &bea,
        &dp,
        json!({"name": "bea-ops", "scopes": ["admin", "email", "ai"]}),
    )
    .await;
    let (k2_id, k2) =
        create_key_as(&k1, &dp, json!({"name": "bea-sub", "scopes": ["admin"]})).await;
    for key in [&k1, &k2] {
        // Used once, so the process remembers them (auth/cache.rs).
        let r = bearer(key).get(dp.url("/api/users")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    let r = set_disabled(&dp, &bea_id, true).await;
    assert_eq!(r.status(), StatusCode::OK);

    // The very next request, on every guarded route, is refused: nothing
    // waits for the credential cache to forget them.
    let doc = json(get(&dp, "/api/openapi.json").await).await;
    for (name, key) in [("bea's key", &k1), ("the key bea's key made", &k2)] {
        let caller = bearer(key);
        let r = caller
            .patch(dp.url(&format!("/api/users/{bea_id}")))
            .json(&json!({ "disabled": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{name} re-enabling bea: {}",
            r.text().await.unwrap()
        );
        let r = caller.get(dp.url("/api/users")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} lists users");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op.get("security").is_none() {
                    continue;
                }
                let r = caller
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        dp.url(&path.replace("{id}", &bea_id)),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::UNAUTHORIZED,
                    "{name}: {method} {path}"
                );
            }
        }
    }
    let users = json(get(&dp, "/api/users").await).await;
    let bea_now = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == bea_id.as_str())
        .unwrap();
    assert!(bea_now["disabled_at"].is_string(), "bea is still disabled");

    // Both keys belong to bea's account, as the listing says.
    for id in [&k1_id, &k2_id] {
        assert_eq!(
            listed_key(&dp, id).await["owner_id"],
            bea_id.as_str(),
            "{id}"
        );
    }
    // Disabling suspends: another administrator enabling bea brings her
    // keys back (revoking a key is what ends it for good).
    assert_eq!(
        set_disabled(&dp, &bea_id, false).await.status(),
        StatusCode::OK
    );
    let r = bearer(&k2).get(dp.url("/api/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_account_never_enables_itself_nor_do_its_keys() {
    let dp = start(&[]);
    let (bea, bea_id) = add_admin(&dp, "bea").await;
    let (_, key) = create_key_as(&bea, &dp, json!({"name": "bea-ops", "scopes": ["admin"]})).await;
    let path = dp.url(&format!("/api/users/{bea_id}"));
    for (who, credential) in [("bea's session", &bea), ("bea's key", &key)] {
        let r = bearer(credential)
            .patch(&path)
            .json(&json!({ "disabled": false, "password": "a brand new password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who}");
        let error = json(r).await["error"].clone();
        assert_eq!(error["code"], "forbidden");
        assert_eq!(
            error["message"], "an account cannot enable itself: another administrator must do it",
            "{who}"
        );
    }
    // Refused as a whole: the password in the same request was not set.
    login(&dp, "bea", "an admin's long password").await;
    // Another administrator may.
    assert_eq!(
        set_disabled(&dp, &bea_id, false).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_key_with_an_expiry_is_refused_from_that_moment_and_the_expiry_is_checked() {
    let dp = start(&[]);
    let admin = authed(&dp).await;
    for (value, why) in [
        (json!("next tuesday"), "not a time"),
        (json!("2020-01-01T00:00:00Z"), "in the past"),
        (json!(1_900_000_000), "not a string"),
    ] {
        let r = admin
            .post(dp.url("/api/keys"))
            .json(&json!({"name": "k", "scopes": ["email"], "expires_at": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_eq!(json(r).await["error"]["field"], "expires_at", "{why}");
    }
    assert!(key_names(&dp).await.is_empty(), "no key was made");
    // Any RFC 3339 offset; shown back in UTC.
    let (far_id, _) = create_key_as(
        &token(&dp).await,
        &dp,
        json!({"name": "far", "scopes": ["email"], "expires_at": "2099-01-01T02:00:00+02:00"}),
    )
    .await;
    assert_eq!(
        listed_key(&dp, &far_id).await["expires_at"],
        "2099-01-01T00:00:00.000Z"
    );

    let ends = std::time::SystemTime::now() + Duration::from_secs(3);
    let stamp = humantime::format_rfc3339_millis(ends).to_string();
    let (id, key) = create_key_as(
        &token(&dp).await,
        &dp,
        json!({"name": "soon", "scopes": ["email"], "expires_at": stamp}),
    )
    .await;
    assert_eq!(listed_key(&dp, &id).await["expires_at"], stamp.as_str());
    let machine = bearer(&key);
    let me = |c: reqwest::Client| {
        let url = dp.url("/api/auth/me");
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(me(machine.clone()).await, StatusCode::OK);
    // Used just before the end, so the process remembers it past the end...
    sleep_until(ends - Duration::from_millis(500)).await;
    assert_eq!(me(machine.clone()).await, StatusCode::OK);
    // ...and still refuses it from the end on.
    sleep_until(ends + Duration::from_millis(50)).await;
    assert_eq!(me(machine.clone()).await, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(me(machine).await, StatusCode::UNAUTHORIZED);
}

async fn sleep_until(t: std::time::SystemTime) {
    if let Ok(wait) = t.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

async fn key_names(dp: &DataPlane) -> Vec<String> {
    json(get(dp, "/api/keys").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_keys_last_use_is_recorded_without_a_write_per_request() {
    let dp = start(&[]);
    let (id, key) = create_key(&dp, "reporter", &["email"]).await;
    assert!(listed_key(&dp, &id).await["last_used_at"].is_null());
    let machine = bearer(&key);
    let r = machine.get(dp.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = listed_key(&dp, &id).await["last_used_at"].clone();
    let at = humantime::parse_rfc3339(first.as_str().expect("last_used_at after a use")).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(10), "{first}");
    // Past the credential cache's second, the key is looked up in the store
    // again; its last use, minutes fresh, is not written again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        let r = machine.get(dp.url("/api/auth/me")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(listed_key(&dp, &id).await["last_used_at"], first);
}
