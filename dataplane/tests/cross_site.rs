//! The session cookie is not a cross-site handle: an API call that changes
//! something (POST, PUT, PATCH, DELETE) and authenticates by the cookie must
//! prove it comes from the data plane's own pages, by a same-origin `Origin`
//! or, when a browser sends none, by the session's CSRF token in
//! `X-CSRF-Token`. A bearer token needs neither: a browser never attaches one
//! to a cross-site request by itself. Against the real binary, each forged
//! request is checked for what it did not do, not only for its status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// Plain HTTP on loopback, as `make run` and the browser test serve: the
/// cookie keeps its plain name there, so these tests are about the origin
/// check alone.
const PLAIN_HTTP: (&str, &str) = ("SESSION_COOKIE_SECURE", "false");

/// A signed-in browser's cookie header for `dp`: `name=token`, the name as
/// the server set it.
async fn session_cookie(dp: &DataPlane) -> String {
    let r = client()
        .post(dp.url("/api/auth/login"))
        .json(&json!({ "username": testkit::ADMIN_USERNAME, "password": testkit::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token the console's pages carry for the session in `cookie`.
async fn console_csrf(dp: &DataPlane, cookie: &str) -> String {
    let page = client()
        .get(dp.url("/console"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// The origin the test client reaches `dp` at, as a browser would name it.
fn own_origin(dp: &DataPlane) -> String {
    dp.url("")
}

fn create_key(dp: &DataPlane, cookie: &str, name: &str) -> RequestBuilder {
    client()
        .post(dp.url("/api/keys"))
        .header("cookie", cookie)
        .json(&json!({ "name": name, "scopes": ["email"] }))
}

async fn user_names(dp: &DataPlane) -> Vec<String> {
    json(get(dp, "/api/users").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

/// A 403 naming `field` as what is missing or wrong.
async fn assert_refused(r: reqwest::Response, field: &str, what: &str) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(body["error"]["code"], "csrf_refused", "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
}

/// The key was created: the request was let through.
async fn assert_created(r: reqwest::Response) {
    let status = r.status();
    assert_eq!(status, StatusCode::CREATED, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_cross_site_request_with_the_session_cookie_is_refused_and_changes_nothing() {
    let dp = start(&[PLAIN_HTTP]);
    let cookie = session_cookie(&dp).await;

    // Another site's page posting to the API: the browser attaches the
    // cookie (SameSite does not stop a sibling subdomain) and says where the
    // page came from.
    for origin in [
        "https://evil.example",
        "null",
        // Same host, another port or scheme: another origin.
        &dp.url("").replace("http://", "https://"),
        "http://127.0.0.1:1",
    ] {
        let r = create_key(&dp, &cookie, "forged-key")
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_refused(r, "origin", origin).await;
    }
    let r = client()
        .post(dp.url("/api/users"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(
            &json!({ "username": "mallory", "password": "mallory-password-1234", "role": "admin" }),
        )
        .send()
        .await
        .unwrap();
    assert_refused(r, "origin", "a forged new administrator").await;

    // No Origin at all (an old browser, a privacy extension stripping it)
    // and no CSRF token: nothing proves the request is ours.
    let r = create_key(&dp, &cookie, "forged-key").send().await.unwrap();
    assert_refused(r, "x-csrf-token", "no Origin, no token").await;
    let r = create_key(&dp, &cookie, "forged-key")
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_refused(r, "x-csrf-token", "no Origin, a wrong token").await;

    // A key that exists is not revoked by a forged DELETE either.
    let kept = authed(&dp)
        .await
        .post(dp.url("/api/keys"))
        .json(&json!({ "name": "kept", "scopes": ["email"] }))
        .send()
        .await
        .unwrap();
    let kept_id = json(kept).await["id"].as_str().unwrap().to_owned();
    let r = client()
        .delete(dp.url(&format!("/api/keys/{kept_id}")))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_refused(r, "origin", "a forged revocation").await;

    assert_eq!(key_names(&dp).await, ["kept"], "no forged key exists");
    let listed = json(get(&dp, "/api/keys").await).await;
    assert!(listed[0]["revoked_at"].is_null(), "{listed}");
    assert!(!user_names(&dp).await.contains(&"mallory".to_owned()));

    // Reading stays as it was: a GET changes nothing, and CORS keeps its
    // answer from the other site.
    let me = client()
        .get(dp.url("/api/auth/me"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_consoles_own_calls_with_the_cookie_work() {
    let dp = start(&[PLAIN_HTTP]);
    let cookie = session_cookie(&dp).await;

    // What a browser sends from the console's own page: its origin.
    let r = create_key(&dp, &cookie, "same-origin")
        .header("origin", own_origin(&dp))
        .send()
        .await
        .unwrap();
    assert_created(r).await;

    // No Origin, but the session's CSRF token, as the console's script
    // sends it beside the Origin.
    let csrf = console_csrf(&dp, &cookie).await;
    let r = create_key(&dp, &cookie, "with-token")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_created(r).await;
    // The token does not make a foreign origin acceptable.
    let r = create_key(&dp, &cookie, "foreign-with-token")
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_refused(r, "origin", "a foreign origin with the token").await;

    // The console's streaming call (no model server here, so 503): it
    // passes the guard.
    let r = client()
        .post(dp.url("/api/generate-content"))
        .header("cookie", &cookie)
        .header("origin", own_origin(&dp))
        .header("x-csrf-token", &csrf)
        .json(&json!({ "prompt": "hello", "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Signing out by the cookie from the console's origin ends the session.
    let r = client()
        .post(dp.url("/api/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", own_origin(&dp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let mut names = key_names(&dp).await;
    names.sort();
    assert_eq!(names, ["same-origin", "with-token"]);
}

#[tokio::test]
async fn programs_with_a_bearer_token_need_no_origin_or_token() {
    let dp = start(&[PLAIN_HTTP]);
    let admin = authed(&dp).await;
    let r = admin
        .post(dp.url("/api/keys"))
        .json(&json!({ "name": "program", "scopes": ["email"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    let r = admin
        .delete(dp.url(&format!("/api/keys/{id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // A bearer token wins over a cookie sent beside it, and the check
    // follows the credential actually used.
    let cookie = session_cookie(&dp).await;
    let r = admin
        .post(dp.url("/api/keys"))
        .header("cookie", &cookie)
        .json(&json!({ "name": "program-2", "scopes": ["email"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_host_and_scheme_are_the_origin() {
    // The ingress terminates TLS for vault.example.com and forwards plain
    // HTTP from loopback.
    let dp = start(&[PLAIN_HTTP, ("TRUSTED_PROXIES", "127.0.0.1/32")]);
    let cookie = session_cookie(&dp).await;
    let proxied = |name: &str| {
        create_key(&dp, &cookie, name)
            .header("origin", "https://vault.example.com")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "vault.example.com")
    };
    let r = proxied("through-the-proxy").send().await.unwrap();
    assert_created(r).await;
    // The proxy's own view wins: another host named by the page is refused.
    let r = create_key(&dp, &cookie, "other-host")
        .header("origin", "https://evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "vault.example.com")
        .send()
        .await
        .unwrap();
    assert_refused(r, "origin", "another host behind the proxy").await;

    // From a peer that is not a trusted proxy, the same headers are the
    // client's own words and are ignored.
    let direct = start(&[PLAIN_HTTP]);
    let cookie = session_cookie(&direct).await;
    let r = create_key(&direct, &cookie, "forwarded-by-nobody")
        .header("origin", "https://vault.example.com")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "vault.example.com")
        .send()
        .await
        .unwrap();
    assert_refused(r, "origin", "forwarded headers from an untrusted peer").await;
    assert!(key_names(&direct).await.is_empty());
}

#[tokio::test]
async fn a_secure_session_cookie_is_host_prefixed_and_only_that_name_signs_in() {
    // The default: the cookie is Secure, so it takes the `__Host-` prefix,
    // which the browser only accepts from HTTPS with Path=/ and no Domain:
    // a sibling subdomain cannot plant one.
    let dp = start(&[]);
    let r = client()
        .post(dp.url("/api/auth/login"))
        .json(&json!({ "username": testkit::ADMIN_USERNAME, "password": testkit::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let token = json(r).await["token"].as_str().unwrap().to_owned();
    assert!(
        set.starts_with(&format!("__Host-sv_session={token};")),
        "{set}"
    );
    for attribute in ["; Path=/;", "; Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    assert!(!set.to_lowercase().contains("domain="), "{set}");

    let me = |cookie: String| {
        let dp = &dp;
        async move {
            client()
                .get(dp.url("/api/auth/me"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        me(format!("theme=dark; __Host-sv_session={token}")).await,
        StatusCode::OK
    );
    // The unprefixed name could have been set by any subdomain.
    assert_eq!(
        me(format!("sv_session={token}")).await,
        StatusCode::UNAUTHORIZED
    );
    let console = client()
        .get(dp.url("/console"))
        .header("cookie", format!("__Host-sv_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), StatusCode::OK);
    assert!(console.url().path() == "/console", "{}", console.url());

    // Signing out clears the cookie by the same name.
    let out = client()
        .post(dp.url("/api/auth/logout"))
        .header("cookie", format!("__Host-sv_session={token}"))
        .header("origin", own_origin(&dp))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-sv_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // Over plain HTTP the cookie cannot be Secure, so it keeps its name.
    let local = start(&[PLAIN_HTTP]);
    let cookie = session_cookie(&local).await;
    assert!(cookie.starts_with("sv_session=svs_"), "{cookie}");
}
