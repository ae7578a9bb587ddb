//! The web console's rules, page by page, against the real binary: who may
//! open each page and run each action, the CSRF check on every form, the
//! sign-in page's brute-force block, session expiry, the assets' names and
//! cache headers, and the CSP (no inline script or style in any page).
//! The browser test (`console_browser.rs`) clicks through the same pages in
//! Chromium; these tests pin the server's answers without one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use reqwest::{StatusCode, redirect::Policy};
use serde_json::json;

/// A browser without a browser: keeps cookies, never follows redirects.
struct Visitor<'a> {
    dp: &'a DataPlane,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// The value of the first hidden CSRF field.
    fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        self.html[at..at + 64].to_owned()
    }
}

impl<'a> Visitor<'a> {
    fn new(dp: &'a DataPlane) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            dp,
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let res = req.header("cookie", cookie).send().await.unwrap();
        for set in res.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: res.status(),
            location: res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            headers: res.headers().clone(),
            html: res.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(self.dp.url(path));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = self
            .http
            .post(self.dp.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// Signs in through the form; the page it lands on.
    async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/console/login").await;
        let csrf = form.csrf();
        self.post(
            "/console/login",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
                ("next", ""),
            ],
        )
        .await
    }

    /// A CSRF token of the current session.
    async fn csrf(&mut self) -> String {
        self.get("/console").await.csrf()
    }
}

const MEMBER_PASSWORD: &str = "member-password-1234";

async fn add_member(dp: &DataPlane, name: &str) -> String {
    let r = authed(dp)
        .await
        .post(dp.url("/api/users"))
        .json(&json!({ "username": name, "password": MEMBER_PASSWORD, "role": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    json(r).await["id"].as_str().unwrap().to_owned()
}

const PAGES: [&str; 10] = [
    "/console",
    "/console/emails",
    "/console/emails/test",
    "/console/emails/00000000-0000-0000-0000-000000000000",
    "/console/generations",
    "/console/usage",
    "/console/keys",
    "/console/users",
    "/console/audit",
    "/console/suppressions",
];

#[tokio::test]
async fn a_signed_out_visitor_is_sent_to_the_sign_in_page_and_back() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    for page in PAGES {
        let p = v.get(page).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{page}");
        let expected = format!("/console/login?next={}", page.replace('/', "%2F"));
        assert_eq!(p.location.as_deref(), Some(expected.as_str()), "{page}");
    }
    // A form posted without a session goes to the sign-in page too, and
    // does nothing.
    for action in [
        "/console/keys",
        "/console/users",
        "/console/logout",
        "/console/emails/x/retry",
    ] {
        let p = v.post(action, &[("csrf", "x"), ("name", "sneaky")]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{action}");
        assert_eq!(p.location.as_deref(), Some("/console/login"), "{action}");
    }
    assert!(key_names(&dp).await.is_empty());
    // An API key is for programs: it does not open the console.
    let r = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .get(dp.url("/console"))
        .header("authorization", format!("Bearer {}", token(&dp).await))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Signing in lands on the page first asked for.
    let form = v.get("/console/login?next=%2Fconsole%2Faudit").await;
    assert!(form.html.contains("name=\"next\" value=\"/console/audit\""));
    let csrf = form.csrf();
    let p = v
        .post(
            "/console/login",
            &[
                ("csrf", &csrf),
                ("username", testkit::ADMIN_USERNAME),
                ("password", testkit::ADMIN_PASSWORD),
                ("next", "/console/audit"),
            ],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/console/audit"));
    assert_eq!(v.get("/console/audit").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_member_gets_403_for_administrator_pages_and_their_actions() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let member = add_member(&dp, "mia").await;
    let mut v = Visitor::new(&dp);
    assert_eq!(
        v.sign_in("mia", MEMBER_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    for page in [
        "/console",
        "/console/emails",
        "/console/emails/test",
        "/console/generations",
        "/console/usage",
    ] {
        assert_eq!(v.get(page).await.status, StatusCode::OK, "{page}");
    }
    let overview = v.get("/console").await;
    for admin_link in [
        "/console/keys",
        "/console/users",
        "/console/audit",
        "/console/suppressions",
    ] {
        assert!(
            !overview.html.contains(&format!("href=\"{admin_link}\"")),
            "a member's menu has no {admin_link}"
        );
        let p = v.get(admin_link).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{admin_link}");
        assert!(p.html.contains("needs the `admin` scope"), "{}", p.html);
    }
    let csrf = v.csrf().await;
    let user_path = format!("/console/users/{member}");
    let actions: [(&str, Vec<(&str, &str)>); 6] = [
        (
            "/console/suppressions",
            vec![("address", "x@example.com"), ("reason", "manual")],
        ),
        (
            "/console/suppressions/lift",
            vec![("address", "x@example.com")],
        ),
        ("/console/keys", vec![("name", "mine"), ("email", "on")]),
        ("/console/keys/some-id/revoke", vec![]),
        (
            "/console/users",
            vec![
                ("username", "eve"),
                ("password", "eve-password-1234"),
                ("role", "admin"),
            ],
        ),
        (
            &user_path,
            vec![("action", "password"), ("password", "new-password-1234")],
        ),
    ];
    for (path, fields) in actions {
        let mut form = fields.clone();
        form.push(("csrf", &csrf));
        let p = v.post(path, &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing happened: no key, no user, and the member's password is unchanged.
    assert!(key_names(&dp).await.is_empty());
    let users = json(get(&dp, "/api/users").await).await;
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");
    login(&dp, "mia", MEMBER_PASSWORD).await;
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut admin = Visitor::new(&dp);
    admin
        .sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    // Another session's token is as bad as none.
    let mut other = Visitor::new(&dp);
    other
        .sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let foreign = other.csrf().await;
    for csrf in ["", "0000", foreign.as_str()] {
        let p = admin
            .post(
                "/console/keys",
                &[("csrf", csrf), ("name", "forged"), ("email", "on")],
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "token {csrf:?}");
        assert!(p.html.contains("did not come from your current session"));
    }
    assert!(key_names(&dp).await.is_empty());

    // With the right token the key is created and shown once.
    let csrf = admin.csrf().await;
    let p = admin
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("name", "ci"),
                ("email", "on"),
                ("ai", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.html);
    assert_eq!(p.headers["cache-control"], "no-store");
    let at = p.html.find("<code id=\"new-key\">").unwrap() + 19;
    let key = &p.html[at..p.html[at..].find('<').unwrap() + at];
    assert!(key.starts_with("svk_"), "{key}");
    let me = bearer(key)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    let mut scopes: Vec<String> = serde_json::from_value(json(me).await["scopes"].clone()).unwrap();
    scopes.sort();
    assert_eq!(scopes, ["ai", "email"]);
    let listing = admin.get("/console/keys").await;
    assert!(
        listing.html.contains(">ci<") && !listing.html.contains(key),
        "the key is never shown again"
    );

    // The sign-in form has its own token, in a cookie of its own.
    let mut fresh = Visitor::new(&dp);
    fresh.get("/console/login").await;
    let p = fresh
        .post(
            "/console/login",
            &[
                ("csrf", "forged"),
                ("username", testkit::ADMIN_USERNAME),
                ("password", testkit::ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("sv_session"));
}

#[tokio::test]
async fn the_sign_in_page_counts_toward_the_brute_force_block() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    let p = v.sign_in(testkit::ADMIN_USERNAME, "wrong-password").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(
        p.html
            .contains("role=\"alert\">Wrong user name or password."),
        "{}",
        p.html
    );
    assert!(
        !p.html.contains("wrong-password"),
        "a password is never sent back"
    );
    for _ in 0..4 {
        v.sign_in(testkit::ADMIN_USERNAME, "wrong-password").await;
    }
    // Blocked now, even with the right password, here and in the API.
    let p = v
        .sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(p.html.contains("Too many failed sign-ins"), "{}", p.html);
    let api = client()
        .post(dp.url("/api/auth/login"))
        .json(&json!({ "username": testkit::ADMIN_USERNAME, "password": testkit::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_ended_session_goes_back_to_the_sign_in_page_and_sign_out_ends_it() {
    let dp = start(&[
        ("SESSION_COOKIE_SECURE", "false"),
        ("SESSION_TTL_SECS", "1"),
    ]);
    let mut v = Visitor::new(&dp);
    v.sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    assert_eq!(v.get("/console").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let p = v.get("/console/emails").await;
    assert_eq!(
        p.location.as_deref(),
        Some("/console/login?next=%2Fconsole%2Femails&expired=1")
    );
    let login = v.get("/console/login?expired=1").await;
    assert!(login.html.contains("Your session has ended"));

    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    v.sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let token = v.cookies["sv_session"].clone();
    let csrf = v.csrf().await;
    let p = v.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.location.as_deref(), Some("/console/login?signed_out=1"));
    let after = bearer(&token)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the session itself ended"
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_their_sign_in() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let member = add_member(&dp, "max").await;
    let mut max = Visitor::new(&dp);
    max.sign_in("max", MEMBER_PASSWORD).await;
    assert_eq!(max.get("/console").await.status, StatusCode::OK);

    let mut admin = Visitor::new(&dp);
    admin
        .sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let csrf = admin.csrf().await;
    let p = admin
        .post(
            &format!("/console/users/{member}"),
            &[("csrf", &csrf), ("action", "disable")],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/console/users"));
    assert!(
        admin
            .get("/console/users")
            .await
            .html
            .contains("badge disabled")
    );

    // Within the credential cache's second, the session is gone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(max.get("/console").await.status, StatusCode::SEE_OTHER);
    let p = max.sign_in("max", MEMBER_PASSWORD).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.html.contains("this account is disabled"), "{}", p.html);

    // An administrator cannot lock themselves out.
    let me = json(get(&dp, "/api/users").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = admin
        .post(
            &format!("/console/users/{me}"),
            &[("csrf", &csrf), ("action", "disable")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.html
            .contains("Disabled: you cannot disable your own account"),
        "{}",
        p.html
    );

    // Enabled again, a new password works and the old one does not.
    admin
        .post(
            &format!("/console/users/{member}"),
            &[("csrf", &csrf), ("action", "enable")],
        )
        .await;
    let p = admin
        .post(
            &format!("/console/users/{member}"),
            &[
                ("csrf", &csrf),
                ("action", "password"),
                ("password", "brand-new-password-1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert_eq!(
        max.sign_in("max", MEMBER_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        max.sign_in("max", "brand-new-password-1").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn pages_follow_the_csp_and_assets_are_cached_by_content() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    let login = v.get("/console/login").await;
    v.sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let mut pages = vec![login];
    for page in PAGES {
        pages.push(v.get(page).await);
    }
    let mut assets = std::collections::BTreeSet::new();
    for p in &pages {
        assert_security_headers(&p.headers);
        assert_eq!(p.headers["cache-control"], "no-store");
        assert!(!p.html.contains("style="), "no inline style: {}", p.html);
        assert!(!p.html.contains("<style"), "no inline style");
        for (i, _) in p.html.match_indices("<script") {
            assert!(
                p.html[i..].starts_with("<script src=\"/console/assets/"),
                "only our own script files"
            );
        }
        assert!(
            !p.html.contains("http://") && !p.html.contains("https://"),
            "nothing from another host"
        );
        for (i, _) in p.html.match_indices("/console/assets/") {
            let end = p.html[i..].find('"').unwrap();
            assets.insert(p.html[i..i + end].to_owned());
        }
    }
    assert_eq!(assets.len(), 3, "{assets:?}");
    for asset in &assets {
        let name = asset.rsplit('/').next().unwrap();
        let hash = name.split('.').nth(1).unwrap();
        assert_eq!(hash.len(), 16, "{name}");
        let r = client()
            .get(dp.url(asset))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()["content-encoding"], "gzip");
    }
    // An old or made-up name is not served.
    let r = client()
        .get(dp.url("/console/assets/console.0000000000000000.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn filters_that_cannot_be_read_name_the_field() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    v.sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let p = v.get("/console/emails?status=lost").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.html
            .contains("Status: &quot;lost&quot; is not one of queued, sending, sent, failed"),
        "{}",
        p.html
    );
    let p = v.get("/console/audit?since=yesterday").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.html
            .contains("Since: &quot;yesterday&quot; is not a date and time"),
        "{}",
        p.html
    );
    // The audit trail shows the console's own sign-in.
    let p = v.get("/console/audit?action=login&actor=admin").await;
    assert!(p.html.contains("<code>login</code>"), "{}", p.html);
}

#[tokio::test]
async fn the_key_list_shows_each_keys_expiry_and_last_use() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut admin = Visitor::new(&dp);
    admin
        .sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let form = admin.get("/console/keys").await;
    assert!(
        form.html
            .contains("name=\"expires_at\" type=\"datetime-local\""),
        "{}",
        form.html
    );
    let csrf = form.csrf();
    let p = admin
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("name", "stale"),
                ("email", "on"),
                ("expires_at", "2001-02-03T04:05"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.html.contains("Expires at: "), "{}", p.html);
    assert!(key_names(&dp).await.is_empty());

    let p = admin
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("name", "nightly"),
                ("email", "on"),
                ("expires_at", "2099-01-02T03:04"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.html);
    let at = p.html.find("<code id=\"new-key\">").unwrap() + 19;
    let key = p.html[at..p.html[at..].find('<').unwrap() + at].to_owned();
    let row = |html: &str| {
        let start = html.find(">nightly<").expect("the key's row");
        html[start..start + html[start..].find("</tr>").unwrap()].to_owned()
    };
    let before = row(&admin.get("/console/keys").await.html);
    assert!(before.contains("2099-01-02 03:04:00 UTC"), "{before}");
    assert!(before.contains("never used"), "{before}");

    let r = bearer(&key)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let used = json(get(&dp, "/api/keys").await).await[0]["last_used_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = row(&admin.get("/console/keys").await.html);
    assert!(
        after.contains(&format!("<time datetime=\"{used}\">")),
        "{after}"
    );
    assert!(!after.contains("never used"), "{after}");
}

#[tokio::test]
async fn an_administrator_suppresses_searches_and_lifts_addresses_in_the_console() {
    let dp = start(&[("SESSION_COOKIE_SECURE", "false")]);
    let mut v = Visitor::new(&dp);
    v.sign_in(testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD)
        .await;
    let csrf = v.csrf().await;
    for address in ["Grace <grace@example.com>", "heidi@example.org"] {
        let p = v
            .post(
                "/console/suppressions",
                &[
                    ("csrf", &csrf),
                    ("address", address),
                    ("reason", "unsubscribe"),
                    ("detail", "asked by phone"),
                ],
            )
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    }
    // A bad address comes back with the API's own message.
    let p = v
        .post(
            "/console/suppressions",
            &[("csrf", &csrf), ("address", "nobody"), ("reason", "manual")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.html.contains("is not a valid email address"),
        "{}",
        p.html
    );

    let all = v.get("/console/suppressions").await;
    assert!(all.html.contains("grace@example.com") && all.html.contains("heidi@example.org"));
    assert!(all.html.contains("asked by phone"));
    let found = v.get("/console/suppressions?q=GRACE").await;
    assert!(found.html.contains("grace@example.com") && !found.html.contains("heidi@example.org"));

    let p = v
        .post(
            "/console/suppressions/lift",
            &[("csrf", &csrf), ("address", "grace@example.com")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let after = v.get("/console/suppressions").await;
    assert!(!after.html.contains("grace@example.com") && after.html.contains("heidi@example.org"));
    // Both actions are in the trail, by the administrator who did them.
    let trail = json(get(&dp, "/api/audit?action=suppression.lift").await).await;
    assert_eq!(trail["entries"][0]["target"], "grace@example.com");
    assert_eq!(trail["entries"][0]["actor_name"], testkit::ADMIN_USERNAME);
}
