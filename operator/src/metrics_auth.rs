//! Who may read the operator's `/metrics`, decided as kubebuilder's default
//! metrics filter does: the caller's bearer token is authenticated with a
//! TokenReview (authentication.k8s.io/v1), and the user it names is
//! authorized with a SubjectAccessReview (authorization.k8s.io/v1) for the
//! non-resource URL `/metrics`, verb `get`. No token, or one the API server
//! does not accept: 401; a user without that right: 403.
//!
//! The metrics tell how many SecureVaults there are, how often they fail and
//! what the cluster serves; the port is reachable from the pod network, so
//! they are not for anyone who can open a connection.
//!
//! Two API calls per scrape would be a steady load for nothing: each token's
//! decision is kept for [`CACHE_TTL`] under its SHA-256 digest (the token
//! itself is never kept, nor logged), at most [`CACHE_CAPACITY`] of them.
//! The price: a token revoked, or a binding removed, still reads the
//! metrics for up to [`CACHE_TTL`], and a binding added takes as long to be
//! seen.
//!
//! `/healthz` and `/readyz` stay anonymous ([`ANONYMOUS_PATHS`]): the
//! kubelet probes them without credentials. Every other path needs the
//! token, so a route added later is guarded unless it is listed there.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

/// How long a token's decision is kept: two 15 s scrapes per review.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// How many tokens' decisions are kept at most. A few scrapers use one
/// token each; the bound is for a caller sending a new token every time.
pub const CACHE_CAPACITY: usize = 1024;

/// The paths served without a token: the kubelet's probes.
pub const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/readyz"];

/// The non-resource URL and verb a caller needs, as in a ClusterRole's
/// `nonResourceURLs: [/metrics]`, `verbs: [get]`.
const PATH: &str = "/metrics";
const VERB: &str = "get";

/// `METRICS_AUTH`: whether `/metrics` needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// A TokenReview and a SubjectAccessReview for every new token.
    On,
    /// Anyone who reaches the address; refused unless it is loopback.
    Off,
}

/// A `METRICS_AUTH` value other than `on` or `off`.
#[derive(Debug, thiserror::Error)]
#[error("expected on or off, not {0:?}")]
pub struct BadSetting(String);

impl std::str::FromStr for Setting {
    type Err = BadSetting;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Setting::On),
            "off" => Ok(Setting::Off),
            other => Err(BadSetting(other.to_owned())),
        }
    }
}

/// `METRICS_AUTH=off` on an address other hosts reach.
#[derive(Debug, thiserror::Error)]
#[error(
    "METRICS_AUTH=off would serve /metrics to anyone who reaches METRICS_ADDR={0}: bind METRICS_ADDR to a loopback address (127.0.0.1) for a local run, or leave METRICS_AUTH unset"
)]
pub struct OpenMetrics(SocketAddr);

/// Whether `/metrics` on `addr` needs a token. Unset, it does unless `addr`
/// is loopback: a local run (tests, `make k8s-deploy`) is reached only from
/// its own host, while in a pod the address is the pod network's. `off` is
/// refused on any other address, so anonymous metrics never leave the host.
pub fn required(setting: Option<Setting>, addr: SocketAddr) -> Result<bool, OpenMetrics> {
    let loopback = addr.ip().is_loopback();
    match setting {
        Some(Setting::On) => Ok(true),
        Some(Setting::Off) if loopback => Ok(false),
        Some(Setting::Off) => Err(OpenMetrics(addr)),
        None => Ok(!loopback),
    }
}

/// What the API server said of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A user allowed `get` on `/metrics`.
    Allowed,
    /// A user, without that right.
    Forbidden,
    /// Not a token the API server accepts.
    Unauthenticated,
}

/// A review the API server did not answer; never cached.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Creating the TokenReview failed (e.g. the operator may not).
    #[error("creating a TokenReview: {0}")]
    TokenReview(#[source] kube::Error),
    /// Creating the SubjectAccessReview failed.
    #[error("creating a SubjectAccessReview: {0}")]
    SubjectAccessReview(#[source] kube::Error),
}

/// Asks whether a token may read the metrics: the API server, or a unit
/// test's stand-in.
pub trait Reviewer: Send + Sync + 'static {
    /// The decision for `token`.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Decision, ReviewError>>;
}

/// The API server's TokenReview and SubjectAccessReview. Both are
/// cluster-scoped: the operator needs a ClusterRole to create them even
/// when it watches a few namespaces only.
pub struct ApiServer {
    client: Client,
}

impl ApiServer {
    /// Reviews with the operator's own client.
    pub fn new(client: Client) -> Self {
        ApiServer { client }
    }

    async fn decide(&self, token: &str) -> Result<Decision, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                // The API server's own audiences, as `kubectl create token`
                // and projected ServiceAccount tokens have by default.
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let Some(user) = reviewed
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
        else {
            return Ok(Decision::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.to_owned()),
                    verb: Some(VERB.to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        if answered.status.is_some_and(|s| s.allowed) {
            Ok(Decision::Allowed)
        } else {
            tracing::debug!(
                user = user.username.as_deref().unwrap_or_default(),
                "refused /metrics: the user may not get it"
            );
            Ok(Decision::Forbidden)
        }
    }
}

impl Reviewer for ApiServer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Decision, ReviewError>> {
        Box::pin(self.decide(token))
    }
}

/// A token's SHA-256: what the cache keeps instead of the token.
type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Decisions by token digest, each until its expiry, at most `capacity`.
/// Pure: the caller says what time it is.
#[derive(Debug)]
pub struct DecisionCache {
    entries: HashMap<TokenDigest, (Decision, Instant)>,
    ttl: Duration,
    capacity: usize,
}

impl DecisionCache {
    /// An empty cache keeping each decision for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        DecisionCache {
            entries: HashMap::new(),
            ttl,
            capacity,
        }
    }

    /// The decision for `token` if one was made less than `ttl` before `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Decision> {
        self.entries
            .get(&digest(token))
            .filter(|(_, expires)| now < *expires)
            .map(|(decision, _)| *decision)
    }

    /// Keeps `decision` for `token` from `now`. When full, the expired
    /// entries go first, then the one closest to expiry: a flood of new
    /// tokens can push the scrapers' out (they are asked again), never
    /// grow the memory.
    pub fn insert(&mut self, token: &str, decision: Decision, now: Instant) {
        let key = digest(token);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        if self.capacity > 0 {
            self.entries.insert(key, (decision, now + self.ttl));
        }
    }

    /// How many decisions are kept (expired ones included until pushed out).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no decision is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The reviewer behind a [`DecisionCache`].
pub struct Authorizer {
    reviewer: Box<dyn Reviewer>,
    cache: Mutex<DecisionCache>,
}

impl Authorizer {
    /// Asks `reviewer`, caching for [`CACHE_TTL`] and [`CACHE_CAPACITY`].
    pub fn new(reviewer: impl Reviewer) -> Self {
        Authorizer {
            reviewer: Box::new(reviewer),
            cache: Mutex::new(DecisionCache::new(CACHE_TTL, CACHE_CAPACITY)),
        }
    }

    /// The decision for `token`, from the cache or the reviewer. A failed
    /// review is not cached: the next scrape asks again.
    pub async fn decide(&self, token: &str) -> Result<Decision, ReviewError> {
        if let Some(decision) = self.cache().get(token, Instant::now()) {
            return Ok(decision);
        }
        let decision = self.reviewer.review(token).await?;
        self.cache().insert(token, decision, Instant::now());
        Ok(decision)
    }

    // The lock is never held across an await or a panic point, so a
    // poisoned one holds a consistent map: use it.
    fn cache(&self) -> std::sync::MutexGuard<'_, DecisionCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bearer token of `Authorization: Bearer <token>` (the scheme in any
/// case); `None` without one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: lets [`ANONYMOUS_PATHS`] through, and anything else only for
/// a token the API server says may `get` `/metrics`.
pub async fn guard(State(auth): State<Arc<Authorizer>>, request: Request, next: Next) -> Response {
    if ANONYMOUS_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Some(token) = bearer_token(request.headers()) else {
        return unauthorized();
    };
    match auth.decide(token).await {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Forbidden) => (StatusCode::FORBIDDEN, "forbidden\n").into_response(),
        Ok(Decision::Unauthenticated) => unauthorized(),
        Err(e) => {
            // The error names the review and the API server's answer,
            // never the token.
            tracing::warn!(error = %e, "cannot check a /metrics caller's token");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the token now\n",
            )
                .into_response()
        }
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required\n",
    )
        .into_response()
}

/// A stand-in for the API server's reviews, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use futures::future::BoxFuture;

    use super::{Decision, ReviewError, Reviewer};

    /// Counts the reviews it is asked for; the answer comes from the token:
    /// `reader` may read, `nobody` may not, `down` finds the API server
    /// unreachable, any other is not a token the API server knows.
    pub(crate) struct Counting(pub(crate) Arc<AtomicUsize>);

    impl Reviewer for Counting {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Decision, ReviewError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "reader" => Ok(Decision::Allowed),
                    "nobody" => Ok(Decision::Forbidden),
                    "down" => Err(ReviewError::TokenReview(kube::Error::Service(
                        "the API server is unreachable".into(),
                    ))),
                    _ => Ok(Decision::Unauthenticated),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metrics_auth::testing::Counting;

    #[test]
    fn unset_needs_a_token_except_on_loopback_and_off_stays_on_loopback() {
        let open: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let pod: SocketAddr = "10.0.0.7:8081".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let local6: SocketAddr = "[::1]:8081".parse().unwrap();
        assert!(required(None, open).unwrap());
        assert!(required(None, pod).unwrap());
        assert!(!required(None, local).unwrap());
        assert!(!required(None, local6).unwrap());
        assert!(required(Some(Setting::On), local).unwrap());
        assert!(!required(Some(Setting::Off), local).unwrap());
        let refused = required(Some(Setting::Off), open).unwrap_err().to_string();
        assert!(
            refused.contains("METRICS_AUTH=off") && refused.contains("METRICS_ADDR=0.0.0.0:8081"),
            "{refused}"
        );
        assert_eq!("on".parse::<Setting>().unwrap(), Setting::On);
        assert!("yes".parse::<Setting>().is_err());
        assert!("ON".parse::<Setting>().is_err(), "one spelling only");
    }

    #[test]
    fn only_a_bearer_token_counts() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            bearer_token(&headers).map(str::to_owned)
        };
        assert_eq!(with("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(with("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(with("Basic YTpi"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cache_answers_a_token_for_its_ttl_then_forgets_it() {
        let start = Instant::now();
        let mut cache = DecisionCache::new(Duration::from_secs(30), 8);
        assert_eq!(cache.get("a", start), None);
        cache.insert("a", Decision::Allowed, start);
        cache.insert("b", Decision::Forbidden, start);
        let later = |secs| start + Duration::from_secs(secs);
        assert_eq!(cache.get("a", later(29)), Some(Decision::Allowed));
        assert_eq!(cache.get("b", later(29)), Some(Decision::Forbidden));
        assert_eq!(cache.get("c", later(29)), None);
        assert_eq!(cache.get("a", later(30)), None, "expired");
        // Keyed by digest: the token itself is nowhere in the cache.
        assert!(!format!("{cache:?}").contains("\"a\""));
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let start = Instant::now();
        let mut cache = DecisionCache::new(Duration::from_secs(30), 3);
        for (i, token) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(
                token,
                Decision::Allowed,
                start + Duration::from_secs(i as u64),
            );
        }
        // Full, none expired: the one closest to expiry goes.
        cache.insert("d", Decision::Allowed, start + Duration::from_secs(3));
        assert_eq!(cache.len(), 3);
        let now = start + Duration::from_secs(3);
        assert_eq!(cache.get("a", now), None);
        assert_eq!(cache.get("d", now), Some(Decision::Allowed));
        // Full with expired entries: they go, all of them.
        let now = start + Duration::from_secs(32);
        cache.insert("e", Decision::Unauthenticated, now);
        assert_eq!(cache.len(), 2, "b and c expired; d and e stay");
        // A token already kept is refreshed in place.
        cache.insert("e", Decision::Allowed, now);
        assert_eq!(cache.get("e", now), Some(Decision::Allowed));
        assert_eq!(cache.len(), 2);
        for i in 0..1000 {
            cache.insert(&format!("flood-{i}"), Decision::Unauthenticated, now);
        }
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_every_15_seconds_costs_one_review_per_30_seconds() {
        let calls = Arc::new(AtomicUsize::new(0));
        let auth = Authorizer::new(Counting(calls.clone()));
        for _ in 0..8 {
            assert_eq!(auth.decide("reader").await.unwrap(), Decision::Allowed);
            tokio::time::advance(Duration::from_secs(15)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "2 minutes: 4 reviews");
        // Refusals are cached alike: a bad token repeated costs nothing more.
        for _ in 0..5 {
            assert_eq!(auth.decide("nobody").await.unwrap(), Decision::Forbidden);
            assert_eq!(
                auth.decide("junk").await.unwrap(),
                Decision::Unauthenticated
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_review_is_asked_again_next_time() {
        let calls = Arc::new(AtomicUsize::new(0));
        let auth = Authorizer::new(Counting(calls.clone()));
        assert!(auth.decide("down").await.is_err());
        assert!(auth.decide("down").await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
