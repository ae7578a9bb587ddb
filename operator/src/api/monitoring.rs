//! The Prometheus Operator kinds the operator writes, `ServiceMonitor` and
//! `PrometheusRule` (`monitoring.coreos.com/v1`) and `AlertmanagerConfig`,
//! written by hand with only the fields we set, and the one it reads,
//! `Prometheus`, with only the fields it reads. Their CRDs belong to the
//! Prometheus Operator: we never install them, and their schema is not
//! generated from these types.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Where Prometheus finds a Service's metrics.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "ServiceMonitor",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// The Services to scrape, by label.
    pub selector: LabelSelector,
    /// The ports to scrape on them.
    pub endpoints: Vec<Endpoint>,
}

/// Labels an object must carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Each label and its value.
    pub match_labels: BTreeMap<String, String>,
}

/// One scraped port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The Service port's name.
    pub port: String,
    /// The metrics path.
    pub path: String,
    /// How often, e.g. `30s`.
    pub interval: String,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// How to verify the pods' certificate, with `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<EndpointTls>,
}

/// TLS settings of a scrape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointTls {
    /// The CA to verify against.
    pub ca: CaSource,
    /// The name the certificate must carry.
    pub server_name: String,
}

/// Where the CA comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CaSource {
    /// A Secret key holding the CA certificate (PEM).
    pub secret: SecretKey,
}

/// Alerting rules Prometheus loads.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PrometheusRule",
    namespaced,
    schema = "disabled"
)]
pub struct PrometheusRuleSpec {
    /// Rule groups, as in a Prometheus rule file.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RuleGroup {
    /// Its name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<AlertRule>,
}

/// One alerting rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AlertRule {
    /// The alert's name.
    pub alert: String,
    /// The PromQL condition.
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: String,
    /// Labels (`severity`).
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`, `runbook_url`).
    pub annotations: BTreeMap<String, String>,
}

/// Where an Alertmanager run by the Prometheus Operator sends the alerts of
/// one namespace (`monitoring.coreos.com/v1alpha1`). Only the fields we set.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1alpha1",
    kind = "AlertmanagerConfig",
    namespaced,
    schema = "disabled"
)]
pub struct AlertmanagerConfigSpec {
    /// The route tree; the Prometheus Operator adds a `namespace` matcher.
    pub route: AmRoute,
    /// The receivers the routes name.
    pub receivers: Vec<AmReceiver>,
}

/// One node of the route tree.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmRoute {
    /// Receiver of what matches here and in no child.
    pub receiver: String,
    /// Labels that make one notification group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Wait for more alerts of a new group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// Wait before notifying a changed group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    /// Wait before notifying an unchanged group again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Which alerts this node takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<AmMatcher>,
    /// Child routes, tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<AmRoute>,
}

/// `name matchType value`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmMatcher {
    /// The label.
    pub name: String,
    /// Its value.
    pub value: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub match_type: String,
}

/// A receiver: where notifications go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmReceiver {
    /// Its name, as routes name it.
    pub name: String,
    /// PagerDuty Events API v2 integrations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pagerduty_configs: Vec<AmPagerDuty>,
    /// Slack incoming webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_configs: Vec<AmSlack>,
}

/// A key of a Secret in the AlertmanagerConfig's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretKey {
    /// The Secret.
    pub name: String,
    /// The key.
    pub key: String,
}

/// One PagerDuty integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmPagerDuty {
    /// The Events API v2 routing key.
    pub routing_key: SecretKey,
    /// The endpoint.
    pub url: String,
    /// PagerDuty's severity of the event.
    pub severity: String,
    /// The incident's title.
    pub description: String,
    /// Resolve the incident when the alert ends.
    pub send_resolved: bool,
}

/// One Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmSlack {
    /// The webhook URL.
    #[serde(rename = "apiURL")]
    pub api_url: SecretKey,
    /// Channel override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The message's title.
    pub title: String,
    /// The message's text.
    pub text: String,
    /// Post again when the alert ends.
    pub send_resolved: bool,
}

/// A Prometheus the Prometheus Operator runs; read (never written) to tell
/// whether it selects our ServiceMonitor and PrometheusRule. Only the
/// selectors are kept: the rest of a large spec is skipped when parsed.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "Prometheus",
    plural = "prometheuses",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// The ServiceMonitors it scrapes, by label; none selects none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_selector: Option<Selector>,
    /// The namespaces they may be in; none means its own only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_namespace_selector: Option<Selector>,
    /// The PrometheusRules it loads, by label; none selects none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_selector: Option<Selector>,
    /// The namespaces they may be in; none means its own only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_namespace_selector: Option<Selector>,
}

/// A Kubernetes label selector: every `matchLabels` pair and every
/// expression must hold; an empty one selects everything.
pub type Selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
