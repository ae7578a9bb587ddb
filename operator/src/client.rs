//! The API client the operator uses, which counts every request it sends
//! by verb and resource (`securevault_api_requests_total`).
//!
//! The count is what an idle fleet costs the API server: a SecureVault that
//! has not changed is answered from the watch caches, so once the watches
//! run, only a change (or a Lease renewal) adds to it. The labels follow the
//! API server's own `apiserver_request_total` (lower-case verbs, plural
//! resources), so the two can be compared.

use axum::http::{Method, Request};
use kube::{Client, client::ClientBuilder};
use prometheus::IntCounterVec;
use tower::util::MapRequestLayer;

/// A client for `config` whose every request is counted in `requests`
/// (labels `verb` and `resource`, see [`labels`]).
pub fn counted(config: kube::Config, requests: IntCounterVec) -> Result<Client, kube::Error> {
    let count = MapRequestLayer::new(move |request: Request<kube::client::Body>| {
        let (verb, resource) = labels(request.method(), request.uri());
        requests.with_label_values(&[verb, &resource]).inc();
        request
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&count).build())
}

/// The `verb` and `resource` a request is counted under:
///
/// - verb: `watch` (a GET with `watch=true`), `get` (of one object), `list`,
///   `create`, `patch`, `update`, `delete`, or the method in lower case;
/// - resource: the plural resource, with its subresource after a slash
///   (`securevaults/status`); `discovery` for the API's own listings
///   (`/api`, `/apis/monitoring.coreos.com/v1`); `other` for any other path.
///
/// Both are bounded: the operator sends requests for a fixed set of kinds.
pub fn labels(method: &Method, uri: &axum::http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // After `/api/v1` or `/apis/GROUP/VERSION`: the resource's own segments.
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => Some(rest),
        ["apis", _group, _version, rest @ ..] => Some(rest),
        ["api"] | ["apis"] | ["apis", _] => Some(&[][..]),
        _ => None,
    };
    let Some(rest) = rest else {
        return (verb(method, false, uri), "other".to_owned());
    };
    // `namespaces/NS/RESOURCE/...`, except the namespace object itself.
    let rest = match rest {
        ["namespaces", _namespace, inner @ ..] if !inner.is_empty() => inner,
        other => other,
    };
    let (resource, named) = match rest {
        [] => return (verb(method, false, uri), "discovery".to_owned()),
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    (verb(method, named, uri), resource)
}

fn verb(method: &Method, named: bool, uri: &axum::http::Uri) -> &'static str {
    let watching = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn of(method: Method, uri: &str) -> (&'static str, String) {
        labels(&method, &uri.parse().unwrap())
    }

    #[test]
    fn namespaced_objects_are_counted_by_plural_resource() {
        assert_eq!(
            of(
                Method::GET,
                "/apis/apps/v1/namespaces/shop/deployments/mail"
            ),
            ("get", "deployments".to_owned())
        );
        assert_eq!(
            of(
                Method::GET,
                "/api/v1/namespaces/shop/secrets?labelSelector=a%3Db&limit=500"
            ),
            ("list", "secrets".to_owned())
        );
        assert_eq!(
            of(
                Method::GET,
                "/api/v1/namespaces/shop/secrets?watch=true&resourceVersion=12"
            ),
            ("watch", "secrets".to_owned())
        );
        assert_eq!(
            of(
                Method::PATCH,
                "/apis/securevault.io/v1alpha1/namespaces/shop/securevaults/mail/status?fieldManager=x"
            ),
            ("patch", "securevaults/status".to_owned())
        );
        assert_eq!(
            of(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events"
            ),
            ("create", "events".to_owned())
        );
        assert_eq!(
            of(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/shop/leases/op"
            ),
            ("update", "leases".to_owned())
        );
    }

    #[test]
    fn cluster_wide_lists_namespaces_and_discovery_are_told_apart() {
        assert_eq!(
            of(
                Method::GET,
                "/apis/monitoring.coreos.com/v1/prometheuses?watch=1"
            ),
            ("watch", "prometheuses".to_owned())
        );
        assert_eq!(
            of(Method::GET, "/api/v1/namespaces/shop"),
            ("get", "namespaces".to_owned())
        );
        assert_eq!(
            of(Method::GET, "/apis/monitoring.coreos.com/v1"),
            ("list", "discovery".to_owned())
        );
        assert_eq!(of(Method::GET, "/apis"), ("list", "discovery".to_owned()));
        assert_eq!(of(Method::GET, "/version"), ("list", "other".to_owned()));
    }
}
