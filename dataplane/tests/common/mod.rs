//! What the data plane's integration tests share. The servers themselves
//! (PostgreSQL, Redis, the data plane process) come from `testkit`.

#![allow(dead_code, unused_imports)]
// each test file uses a different part
// Test support: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::Path, process::Stdio, time::Duration};

use reqwest::{Response, header::HeaderMap};
use sqlx::AnyPool;
pub use testkit::{DataPlane, Mailpit, Postgres, Redis, TempDir};

/// The binary under test, built by cargo for this test run.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dataplane"))
}

/// Starts the data plane with `env` (SQLite in its data dir unless `env` says otherwise).
pub fn start(env: &[(&str, &str)]) -> DataPlane {
    DataPlane::start(binary(), env).expect("data plane starts")
}

/// The data plane sending through `mailpit` (plain SMTP, from
/// `noreply@securevault.test`), with `extra` settings.
pub fn start_with_smtp(mailpit: &Mailpit, extra: &[(&str, &str)]) -> DataPlane {
    let port = mailpit.smtp_port().to_string();
    let mut env = vec![
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "SecureVault <noreply@securevault.test>"),
    ];
    env.extend_from_slice(extra);
    start(&env)
}

/// The console page at `path`, as the browser of the session `token` gets it.
pub async fn console_page(dp: &DataPlane, token: &str, path: &str) -> String {
    client()
        .get(dp.url(path))
        .header("cookie", format!("__Host-sv_session={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Creates the member `username` (as `admin`) and returns a client signed
/// in as them.
pub async fn member(dp: &DataPlane, username: &str) -> reqwest::Client {
    let password = "a long member password";
    let created = authed(dp)
        .await
        .post(dp.url("/api/users"))
        .json(&serde_json::json!({ "username": username, "password": password, "role": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    bearer(&login(dp, username, password).await)
}

/// A client that never reuses a connection across tests' server restarts.
pub fn client() -> reqwest::Client {
    client_with(HeaderMap::new())
}

/// A client sending `headers` with every request.
fn client_with(headers: HeaderMap) -> reqwest::Client {
    // reqwest is built without a default TLS provider (the data plane picks
    // ring); every process that makes a client installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A session token of the test administrator (testkit starts every data
/// plane with [`testkit::ADMIN_PASSWORD`]); one login per data plane.
pub async fn token(dp: &DataPlane) -> String {
    static TOKENS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, String>>,
    > = std::sync::LazyLock::new(Default::default);
    let key = dp.data_dir().to_path_buf();
    if let Some(token) = TOKENS.lock().unwrap().get(&key) {
        return token.clone();
    }
    let token = login(dp, testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD).await;
    TOKENS.lock().unwrap().insert(key, token.clone());
    token
}

/// Signs in and returns the session token.
pub async fn login(dp: &DataPlane, username: &str, password: &str) -> String {
    let r = client()
        .post(dp.url("/api/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "login as {username}: {}",
        r.text().await.unwrap()
    );
    json(r).await["token"].as_str().unwrap().to_owned()
}

/// A client that sends `token` as its bearer credentials.
pub fn bearer(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    client_with(headers)
}

/// Creates an API key `name` with `scopes` as the test administrator;
/// returns its id and the key.
pub async fn create_key(dp: &DataPlane, name: &str, scopes: &[&str]) -> (String, String) {
    let r = authed(dp)
        .await
        .post(dp.url("/api/keys"))
        .json(&serde_json::json!({ "name": name, "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let body = json(r).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// A client signed in as the test administrator of `dp`.
pub async fn authed(dp: &DataPlane) -> reqwest::Client {
    bearer(&token(dp).await)
}

/// `GET path` as the test administrator.
pub async fn get(dp: &DataPlane, path: &str) -> Response {
    authed(dp).await.get(dp.url(path)).send().await.unwrap()
}

/// The names of every API key of `dp`, as the administrator lists them.
pub async fn key_names(dp: &DataPlane) -> Vec<String> {
    json(get(dp, "/api/keys").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn json(response: Response) -> serde_json::Value {
    response.json().await.unwrap()
}

/// The seed's four security headers, with their exact values.
pub fn assert_security_headers(headers: &HeaderMap) {
    for (name, value) in [
        ("content-security-policy", "default-src 'self'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "header {name}"
        );
    }
    assert!(headers.contains_key("x-request-id"), "x-request-id missing");
}

/// A connection of our own to the data plane's store, for arranging rows.
pub async fn store_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url).await.unwrap()
}

/// Milliseconds since the epoch, `ago` in the past.
pub fn millis_ago(ago: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now - ago).as_millis() as i64
}

pub async fn insert_email(pool: &AnyPool, id: &str, status: &str, ago: Duration) {
    sqlx::query("INSERT INTO emails (id, status, created_at, updated_at) VALUES ($1, $2, $3, $3)")
        .bind(id)
        .bind(status)
        .bind(millis_ago(ago))
        .execute(pool)
        .await
        .unwrap();
}

pub async fn insert_generation(pool: &AnyPool, id: &str, status: &str, ago: Duration) {
    sqlx::query("INSERT INTO generations (id, status, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(status)
        .bind(millis_ago(ago))
        .execute(pool)
        .await
        .unwrap();
}

/// `(last_hour, last_day, all_time)` of one `PeriodCounts` object of `/api/stats`.
pub fn counts(v: &serde_json::Value) -> (i64, i64, i64) {
    (
        v["last_hour"].as_i64().unwrap(),
        v["last_day"].as_i64().unwrap(),
        v["all_time"].as_i64().unwrap(),
    )
}

/// Every metric of `dp`, from its metrics listener.
pub async fn metrics_text(dp: &DataPlane) -> String {
    let r = client()
        .get(dp.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET /metrics on the metrics listener");
    r.text().await.unwrap()
}

/// The value of one metric sample, e.g. `cache_hit_rate` or
/// `http_requests_total{method="GET",route="/api/stats",status="200"}`.
pub async fn metric(dp: &DataPlane, sample: &str) -> Option<f64> {
    let text = metrics_text(dp).await;
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, limit, || {
        let holds = check();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("false".to_owned())
            }
        }
    })
    .await
}

/// Runs the binary with `args` and `env` to its exit (killed after 10 s).
pub fn run(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = TempDir::new("cli").unwrap();
    let mut cmd = DataPlane::command(binary(), dir.path());
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A value that is accepted would start the server; a bounded wait turns
    // that into a clear failure instead of a hung test.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Polls `check` every 100 ms until it returns `Ok`, and returns that value;
/// fails naming `what` (and the last `Err`, what `check` saw) after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The migration that gave API keys an owner account (and an expiry and a
/// last use); stores older than it hold keys without one.
pub const KEY_OWNERS_MIGRATION: i64 = 20261206000001;

/// An API key as a store older than [`KEY_OWNERS_MIGRATION`] held it.
pub struct LegacyKey {
    /// Its id.
    pub id: &'static str,
    /// The key itself.
    pub token: String,
    /// The account it acts for once migrated (a user id).
    pub owner: &'static str,
    /// Whether that account exists, so the key works.
    pub works: bool,
}

/// The user every working [`LegacyKey`] belongs to.
pub const LEGACY_OWNER: &str = "u-old";

/// Makes the store at `url` (SQLite file created if need be) as every
/// migration before [`KEY_OWNERS_MIGRATION`] left it, holding keys made by
/// a user, by that user's key, by that key's key, and by a user who no
/// longer exists.
pub async fn legacy_key_store(url: &str) -> Vec<LegacyKey> {
    let older = TempDir::new("old-migrations").unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version < KEY_OWNERS_MIGRATION {
            std::fs::copy(&path, older.path().join(&name)).unwrap();
        }
    }
    let url = if url.starts_with("sqlite:") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    let pool = store_pool(&url).await;
    sqlx::migrate::Migrator::new(older.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) \
         VALUES ($1, 'oldadmin', 'not-a-hash', 'admin', 1, 1)",
    )
    .bind(LEGACY_OWNER)
    .execute(&pool)
    .await
    .unwrap();
    let keys = [
        ("l1", "user:u-old", 'a', LEGACY_OWNER, true),
        ("l2", "key:l1", 'b', LEGACY_OWNER, true),
        ("l3", "key:l2", 'c', LEGACY_OWNER, true),
        ("l4", "user:u-gone", 'd', "u-gone", false),
    ];
    let mut legacy = Vec::new();
    for (id, created_by, fill, owner, works) in keys {
        let token = format!("svk_{}", fill.to_string().repeat(43));
        let digest: String = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sqlx::query(
            "INSERT INTO api_keys (id, name, token_hash, prefix, scopes, created_by, created_at) \
             VALUES ($1, $1, $2, 'svk_', 'admin,email', $3, 1)",
        )
        .bind(id)
        .bind(digest)
        .bind(created_by)
        .execute(&pool)
        .await
        .unwrap();
        legacy.push(LegacyKey {
            id,
            token,
            owner,
            works,
        });
    }
    pool.close().await;
    legacy
}

/// Checks each of `legacy`'s keys works, or not, on `dp`, and is listed
/// with its owner.
pub async fn check_legacy_keys(dp: &DataPlane, legacy: &[LegacyKey]) {
    let listed = json(get(dp, "/api/keys").await).await;
    for key in legacy {
        let status = bearer(&key.token)
            .get(dp.url("/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status();
        let expected = if key.works { 200 } else { 401 };
        assert_eq!(status.as_u16(), expected, "key {}", key.id);
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key.id)
            .unwrap();
        assert_eq!(row["owner_id"], key.owner, "key {}", key.id);
    }
}
