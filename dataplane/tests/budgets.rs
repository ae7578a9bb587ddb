//! Token budgets per API key and per account, and the usage report, against
//! a real model server (llama.cpp's server running SmolLM2-135M), a real
//! Redis holding the budgets, and a real PostgreSQL shared by two replicas.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::SystemTime;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{LlamaServer, Postgres, Redis};

/// Every request of these tests: a short prompt, a few tokens.
fn ask() -> Value {
    json!({"prompt": "Say hi", "max_tokens": 8, "temperature": 0})
}

/// What SecureVault reserves for [`ask`] before it runs (ai::budget::ceiling:
/// the prompt's 6 bytes, 8 for its role markers, 64 for the chat template,
/// and max_tokens).
const CEILING: u64 = 6 + 8 + 64 + 8;

fn with_ai<'a>(llama_url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OPENAI_BASE_URL", llama_url),
        ("OPENAI_MODEL", testkit::llama::MODEL),
        ("RATE_LIMIT_AI", "100000/1m"),
        ("RATE_LIMIT_API", "100000/1m"),
    ];
    env.extend_from_slice(extra);
    env
}

/// Generates until a 429; returns the tokens charged for each success and
/// the refusal's body and `Retry-After`.
async fn spend_until_refused(
    client: &reqwest::Client,
    dp: &DataPlane,
) -> (Vec<u64>, Value, Option<String>) {
    let mut charged = Vec::new();
    loop {
        let r = client
            .post(dp.url("/api/generate-content"))
            .json(&ask())
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            return (charged, json(r).await, retry);
        }
        assert_eq!(r.status(), StatusCode::OK);
        let body = json(r).await;
        assert_eq!(body["usage"]["estimated"], false, "llama.cpp reports usage");
        let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap()
            + body["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(
            tokens <= CEILING,
            "a generation cost {tokens} tokens, more than its reservation of {CEILING}"
        );
        charged.push(tokens);
    }
}

/// Generates [`ask`] on `dp` as `client`; the answer's status.
async fn generate(client: &reqwest::Client, dp: &DataPlane) -> StatusCode {
    client
        .post(dp.url("/api/generate-content"))
        .json(&ask())
        .send()
        .await
        .unwrap()
        .status()
}

/// The details of `dp`'s audit entries for `action`, sorted.
async fn audit_details(admin: &reqwest::Client, dp: &DataPlane, action: &str) -> Vec<String> {
    let audit = json(
        admin
            .get(dp.url(&format!("/api/audit?action={action}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut details: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    details.sort_unstable();
    details
}

/// The next UTC midnight, as `resets_at` gives it.
fn next_midnight() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let midnight =
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((now / 86_400 + 1) * 86_400);
    humantime::format_rfc3339_millis(midnight).to_string()
}

#[tokio::test]
async fn two_replicas_on_one_redis_let_exactly_the_key_s_daily_budget_pass() {
    let llama = LlamaServer::start().unwrap();
    let redis = Redis::start().unwrap();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("budgets").unwrap();
    let base = llama.base_url();
    let redis_url = redis.url();
    const BUDGET: u64 = 1_000;
    let budget = BUDGET.to_string();
    let env = with_ai(
        &base,
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &redis_url),
            ("AI_BUDGET_KEY_DAILY_TOKENS", &budget),
        ],
    );
    let a = start(&env);
    let b = start(&env);
    let admin = authed(&a).await;
    let (key_id, key) = create_key(&a, "team-a", &["ai"]).await;
    let machine = bearer(&key);

    // Six clients, three on each replica, spend the one budget at once.
    let runs = futures::future::join_all((0..6).map(|i| {
        let (machine, dp) = (machine.clone(), if i % 2 == 0 { &a } else { &b });
        async move { spend_until_refused(&machine, dp).await }
    }))
    .await;
    // A refusal while others held reservations may have left room: spend
    // it alone, so what is left is less than one request's reservation.
    let (rest, refusal, retry_after) = spend_until_refused(&machine, &b).await;
    let charged: u64 = runs.iter().flat_map(|r| &r.0).chain(&rest).sum();
    let successes = runs.iter().map(|r| r.0.len()).sum::<usize>() + rest.len();
    assert!(
        successes >= 2,
        "both replicas generated ({successes} successes)"
    );
    assert!(
        charged <= BUDGET,
        "the replicas together spent {charged} tokens of a {BUDGET}-token budget"
    );
    assert!(
        BUDGET - charged < CEILING,
        "{} tokens were left unspent, room for another request of {CEILING}",
        BUDGET - charged
    );

    // The refusal names the budget, what is left and when it resets.
    assert_eq!(refusal["error"]["code"], "token_budget_exceeded");
    assert_eq!(refusal["error"]["budget"], "key_daily");
    assert_eq!(refusal["error"]["resets_at"], next_midnight().as_str());
    let message = refusal["error"]["message"].as_str().unwrap();
    let left = format!("{} of {BUDGET} tokens are left", BUDGET - charged);
    assert!(message.contains(&left), "{message}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);

    // Both replicas agree on what was spent (the budget's counter in Redis)
    // and on what the history holds (PostgreSQL).
    for dp in [&a, &b] {
        let usage = json(machine.get(dp.url("/api/usage")).send().await.unwrap()).await;
        assert_eq!(usage["budgets"][0]["budget"], "key_daily");
        assert_eq!(usage["budgets"][0]["used"], charged);
        assert_eq!(usage["budgets"][0]["remaining"], BUDGET - charged);
        // One entry a day (two if the run crossed midnight UTC).
        let entries = usage["entries"].as_array().unwrap();
        for e in entries {
            assert_eq!(e["credential"], format!("key:{key_id}").as_str(), "{usage}");
            assert_eq!(e["key_name"], "team-a");
        }
        let total = |field: &str| {
            entries
                .iter()
                .map(|e| e[field].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(total("requests"), successes as u64);
        assert_eq!(total("total_tokens"), charged);
    }

    // Another key has a budget of its own; the administrator's session has
    // no key budget at all.
    let (_, other) = create_key(&a, "team-b", &["ai"]).await;
    assert_eq!(generate(&bearer(&other), &b).await, StatusCode::OK);
    assert_eq!(generate(&admin, &a).await, StatusCode::OK);
}

#[tokio::test]
async fn an_account_s_budget_covers_its_sessions_and_keys_and_usage_is_its_own() {
    let llama = LlamaServer::start().unwrap();
    let base = llama.base_url();
    // Room for about four requests a month per account.
    let dp = start(&with_ai(
        &base,
        &[("AI_BUDGET_ACCOUNT_MONTHLY_TOKENS", "400")],
    ));
    let admin = authed(&dp).await;
    let alice = member(&dp, "alice").await;
    // A key acts for the account of the administrator who made it.
    let (_, key) = create_key(&dp, "admin-script", &["ai"]).await;
    let admin_key = bearer(&key);

    // The administrator's session and key draw on one budget.
    assert_eq!(generate(&admin, &dp).await, StatusCode::OK);
    let (by_key, refusal, _) = spend_until_refused(&admin_key, &dp).await;
    assert!(!by_key.is_empty());
    assert_eq!(refusal["error"]["budget"], "account_monthly");
    assert_eq!(generate(&admin, &dp).await, StatusCode::TOO_MANY_REQUESTS);
    // Alice's account is untouched.
    assert_eq!(generate(&alice, &dp).await, StatusCode::OK);

    // Alice sees her usage; the key its own; the administrator everyone's.
    let credentials = |usage: &Value| -> Vec<String> {
        let mut c: Vec<String> = usage["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["credential"].as_str().unwrap().to_owned())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let usage = |client: &reqwest::Client, query: &str| {
        let request = client.get(dp.url(&format!("/api/usage{query}")));
        async move { request.send().await.unwrap() }
    };
    let hers = json(usage(&alice, "").await).await;
    assert_eq!(credentials(&hers).len(), 1, "{hers}");
    assert!(credentials(&hers)[0].starts_with("user:"));
    assert_eq!(hers["budgets"][0]["budget"], "account_monthly");
    let alice_id = hers["entries"][0]["account"].as_str().unwrap().to_owned();
    let keys_own = json(usage(&admin_key, "").await).await;
    assert_eq!(credentials(&keys_own).len(), 1, "{keys_own}");
    assert!(credentials(&keys_own)[0].starts_with("key:"));
    assert!(keys_own["budgets"][0]["remaining"].as_u64().unwrap() < CEILING);
    let everyone = json(usage(&admin, "").await).await;
    assert_eq!(credentials(&everyone).len(), 3, "{everyone}");
    let filtered = json(usage(&admin, &format!("?account={alice_id}")).await).await;
    assert_eq!(credentials(&filtered), credentials(&hers));
    // Another account's usage is the administrators' to see.
    let other = everyone["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["account"].as_str().filter(|a| *a != alice_id))
        .unwrap()
        .to_owned();
    let r = usage(&alice, &format!("?account={other}")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Days are checked, and the field named.
    let r = usage(&alice, "?from=2026-12-40").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["field"], "from");
    let r = usage(&alice, "?from=2026-12-07&to=2026-12-01").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = usage(&alice, "?from=2024-01-01&to=2026-01-01").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_key_s_own_budget_replaces_the_default_and_an_administrator_changes_it() {
    let llama = LlamaServer::start().unwrap();
    let base = llama.base_url();
    // The default leaves room for about a hundred requests a day.
    let dp = start(&with_ai(&base, &[("AI_BUDGET_KEY_DAILY_TOKENS", "10000")]));
    let admin = authed(&dp).await;
    let created = admin
        .post(dp.url("/api/keys"))
        .json(&json!({"name": "trial", "scopes": ["ai"], "budget": {"daily_tokens": 200}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    assert_eq!(
        created["budget"],
        json!({"daily_tokens": 200, "monthly_tokens": null})
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let trial = bearer(created["key"].as_str().unwrap());

    // The key's own 200 tokens hold, not the default's 10,000.
    let (charged, refusal, _) = spend_until_refused(&trial, &dp).await;
    assert!(!charged.is_empty());
    assert!(charged.iter().sum::<u64>() <= 200);
    assert_eq!(refusal["error"]["budget"], "key_daily");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("of 200 tokens are left today"),
        "{message}"
    );
    let usage = json(trial.get(dp.url("/api/usage")).send().await.unwrap()).await;
    assert_eq!(usage["budgets"][0]["limit"], 200, "{usage}");
    // A key without a budget of its own has the default.
    let (_, other) = create_key(&dp, "batch", &["ai"]).await;
    let usage = json(
        bearer(&other)
            .get(dp.url("/api/usage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage["budgets"][0]["limit"], 10_000, "{usage}");

    // Raised, it lets the key go on at once; what it spent still counts.
    let budget = |body: Value| {
        admin
            .put(dp.url(&format!("/api/keys/{id}/budget")))
            .json(&body)
            .send()
    };
    let r = budget(json!({"daily_tokens": 400})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["budget"]["daily_tokens"], 400);
    let (more, refusal, _) = spend_until_refused(&trial, &dp).await;
    assert!(!more.is_empty());
    assert!(charged.iter().chain(&more).sum::<u64>() <= 400);
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of 400 tokens")
    );
    // Cleared, the default holds again.
    let r = budget(json!({})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(generate(&trial, &dp).await, StatusCode::OK);
    // The list shows it, and the audit log says who changed it.
    let keys = json(admin.get(dp.url("/api/keys")).send().await.unwrap()).await;
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        listed["budget"],
        json!({"daily_tokens": null, "monthly_tokens": null})
    );
    assert_eq!(
        audit_details(&admin, &dp, "api_key.budget").await,
        ["\"trial\": 400 tokens/day", "\"trial\": the defaults"]
    );

    // Bad figures are refused, naming the field; a key needs to exist; and
    // only administrators set budgets.
    let r = budget(json!({"daily_tokens": 0})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["field"], "daily_tokens");
    let r = admin
        .post(dp.url("/api/keys"))
        .json(&json!({"name": "x", "scopes": ["ai"], "budget": {"monthly_tokens": 2_000_000_000_000_u64}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["field"], "budget.monthly_tokens");
    let r = admin
        .put(dp.url("/api/keys/no-such-key/budget"))
        .json(&json!({"daily_tokens": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = trial
        .put(dp.url(&format!("/api/keys/{id}/budget")))
        .json(&json!({"daily_tokens": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_account_s_own_budget_replaces_the_default_for_its_sessions_and_keys() {
    let llama = LlamaServer::start().unwrap();
    let base = llama.base_url();
    let dp = start(&with_ai(
        &base,
        &[("AI_BUDGET_ACCOUNT_MONTHLY_TOKENS", "10000")],
    ));
    let admin = authed(&dp).await;
    let alice = member(&dp, "alice").await;
    let users = json(admin.get(dp.url("/api/users")).send().await.unwrap()).await;
    let alice_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |client: &reqwest::Client, body: Value| {
        client
            .patch(dp.url(&format!("/api/users/{alice_id}")))
            .json(&body)
            .send()
    };

    // Her account gets 200 tokens a day of its own, beside the default month.
    let r = patch(&admin, json!({"budget": {"daily_tokens": 200}}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json(r).await["budget"],
        json!({"daily_tokens": 200, "monthly_tokens": null})
    );
    let (charged, refusal, _) = spend_until_refused(&alice, &dp).await;
    assert!(!charged.is_empty());
    assert!(charged.iter().sum::<u64>() <= 200);
    assert_eq!(refusal["error"]["budget"], "account_daily");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("of 200 tokens are left today"),
        "{message}"
    );
    let usage = json(alice.get(dp.url("/api/usage")).send().await.unwrap()).await;
    let limits: Vec<(String, u64)> = usage["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["budget"].as_str().unwrap().to_owned(),
                b["limit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        limits,
        [
            ("account_daily".to_owned(), 200),
            ("account_monthly".to_owned(), 10_000)
        ],
        "{usage}"
    );
    // The administrator's account keeps the defaults: no daily budget.
    assert_eq!(generate(&admin, &dp).await, StatusCode::OK);

    // A member cannot raise her own; bad figures name the field.
    let r = patch(&alice, json!({"budget": {"daily_tokens": 1_000_000}}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = patch(&admin, json!({"budget": {"daily_tokens": -1}}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = patch(&admin, json!({"budget": {"monthly_tokens": 0}}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["field"], "budget.monthly_tokens");

    // Cleared, the defaults hold again and she goes on at once.
    let r = patch(&admin, json!({"budget": {}})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(generate(&alice, &dp).await, StatusCode::OK);
    assert_eq!(
        audit_details(&admin, &dp, "user.budget").await,
        ["200 tokens/day", "the defaults"]
    );

    // A key draws on its owner's account budget: the administrator's here.
    let admin_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .patch(dp.url(&format!("/api/users/{admin_id}")))
        .json(&json!({"budget": {"daily_tokens": 5000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, key) = create_key(&dp, "script", &["ai"]).await;
    let usage = json(bearer(&key).get(dp.url("/api/usage")).send().await.unwrap()).await;
    assert_eq!(usage["budgets"][0]["budget"], "account_daily", "{usage}");
    assert_eq!(usage["budgets"][0]["limit"], 5000, "{usage}");
}
