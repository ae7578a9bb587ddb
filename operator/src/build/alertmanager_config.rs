//! Who receives this instance's alerts: `critical` ones page someone through
//! PagerDuty, `warning` ones go to a Slack channel.
//!
//! One routing, two renderings:
//! - [`build`], an `AlertmanagerConfig` for an Alertmanager run by the
//!   Prometheus Operator, with the routing key and webhook URL read from the
//!   user's Secrets;
//! - [`alertmanager_yml`], the same routes and receivers as a plain
//!   `alertmanager.yml` (`operator alertmanager`), for users without the
//!   Prometheus Operator, with the secrets in files beside it.
//!
//! Notifications are grouped per alert and instance, so a pod failing and
//! the error rate climbing are two pages, but ten pods failing are one.

use serde_json::json;

use crate::{
    api::{
        AlertRoutingSpec,
        monitoring::{
            AlertmanagerConfig, AlertmanagerConfigSpec, AmMatcher, AmPagerDuty, AmReceiver,
            AmRoute, AmSlack, SecretKey,
        },
    },
    validate::ValidatedVault,
};

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_V2: &str = "https://events.pagerduty.com/v2/enqueue";

/// The labels one notification groups by: the alert and the instance.
const GROUP_BY: [&str; 3] = ["alertname", "namespace", "securevault"];

/// The incident's title in PagerDuty.
const PAGERDUTY_DESCRIPTION: &str =
    "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}";

/// The Slack message: what fired, where, and the runbook.
const SLACK_TITLE: &str = "{{ if eq .Status \"firing\" }}Firing{{ else }}Resolved{{ end }}: {{ .CommonLabels.alertname }} ({{ .CommonLabels.namespace }}/{{ .CommonLabels.securevault }})";
const SLACK_TEXT: &str = "{{ range .Alerts }}{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}";

/// The file names [`alertmanager_yml`] expects in its secrets directory.
pub const PAGERDUTY_KEY_FILE: &str = "pagerduty-routing-key";
/// See [`PAGERDUTY_KEY_FILE`].
pub const SLACK_URL_FILE: &str = "slack-api-url";

/// The AlertmanagerConfig's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-alert-routing", v.name)
}

/// The routing with its defaults filled in.
struct Routing<'a> {
    spec: &'a AlertRoutingSpec,
    group_wait: String,
    group_interval: String,
    critical_repeat: String,
    warning_repeat: String,
}

fn routing(v: &ValidatedVault) -> Option<Routing<'_>> {
    let spec = v.monitoring.alert_routing.as_ref()?;
    let or =
        |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
    Some(Routing {
        group_wait: or(&spec.group_wait, "30s"),
        group_interval: or(&spec.group_interval, "5m"),
        critical_repeat: or(&spec.critical_repeat_interval, "1h"),
        warning_repeat: or(&spec.warning_repeat_interval, "4h"),
        spec,
    })
}

impl Routing<'_> {
    /// `(severity, receiver suffix, repeat interval)` of each configured receiver.
    fn severities(&self) -> Vec<(&'static str, &'static str, &str)> {
        let mut out = Vec::new();
        if self.spec.pager_duty.is_some() {
            out.push(("critical", "pagerduty", self.critical_repeat.as_str()));
        }
        if self.spec.slack.is_some() {
            out.push(("warning", "slack", self.warning_repeat.as_str()));
        }
        out
    }

    fn pagerduty_url(&self) -> String {
        self.spec
            .pager_duty
            .as_ref()
            .and_then(|p| p.url.clone())
            .unwrap_or_else(|| PAGERDUTY_EVENTS_V2.to_owned())
    }
}

fn equals(name: &str, value: &str) -> AmMatcher {
    AmMatcher {
        name: name.to_owned(),
        value: value.to_owned(),
        match_type: "=".to_owned(),
    }
}

/// The AlertmanagerConfig of `v`, with `spec.monitoring.alertRouting`.
pub fn build(v: &ValidatedVault) -> Option<AlertmanagerConfig> {
    let r = routing(v)?;
    let routes = r
        .severities()
        .into_iter()
        .map(|(severity, receiver, repeat)| AmRoute {
            receiver: receiver.to_owned(),
            repeat_interval: Some(repeat.to_owned()),
            matchers: vec![equals("severity", severity)],
            ..AmRoute::default()
        })
        .collect();
    let mut receivers = vec![AmReceiver {
        // What matches no severity route (there is none today) goes nowhere.
        name: "null".to_owned(),
        ..AmReceiver::default()
    }];
    if let Some(pd) = &r.spec.pager_duty {
        receivers.push(AmReceiver {
            name: "pagerduty".to_owned(),
            pagerduty_configs: vec![AmPagerDuty {
                routing_key: SecretKey {
                    name: pd.routing_key_secret_ref.name.clone(),
                    key: pd.routing_key_secret_ref.key.clone(),
                },
                url: r.pagerduty_url(),
                severity: "critical".to_owned(),
                description: PAGERDUTY_DESCRIPTION.to_owned(),
                send_resolved: true,
            }],
            ..AmReceiver::default()
        });
    }
    if let Some(slack) = &r.spec.slack {
        receivers.push(AmReceiver {
            name: "slack".to_owned(),
            slack_configs: vec![AmSlack {
                api_url: SecretKey {
                    name: slack.api_url_secret_ref.name.clone(),
                    key: slack.api_url_secret_ref.key.clone(),
                },
                channel: slack.channel.clone(),
                title: SLACK_TITLE.to_owned(),
                text: SLACK_TEXT.to_owned(),
                send_resolved: true,
            }],
            ..AmReceiver::default()
        });
    }
    Some(AlertmanagerConfig {
        metadata: super::service_monitor::monitoring_metadata(v, name(v)),
        spec: AlertmanagerConfigSpec {
            route: AmRoute {
                receiver: "null".to_owned(),
                group_by: GROUP_BY.map(str::to_owned).to_vec(),
                group_wait: Some(r.group_wait.clone()),
                group_interval: Some(r.group_interval.clone()),
                // The Prometheus Operator adds `namespace`; the instance is ours to add.
                matchers: vec![equals("securevault", &v.name)],
                routes,
                ..AmRoute::default()
            },
            receivers,
        },
    })
}

/// The same routing as a whole `alertmanager.yml`, reading the PagerDuty
/// routing key and the Slack URL from files in `secrets_dir`
/// ([`PAGERDUTY_KEY_FILE`], [`SLACK_URL_FILE`]) so that no secret is in
/// the file itself. `None` without `spec.monitoring.alertRouting`.
pub fn alertmanager_yml(
    v: &ValidatedVault,
    secrets_dir: &str,
) -> Option<Result<String, serde_saphyr::ser::Error>> {
    let r = routing(v)?;
    let prefix = format!("{}-{}", v.namespace, v.name);
    let severity_routes: Vec<_> = r
        .severities()
        .into_iter()
        .map(|(severity, receiver, repeat)| {
            json!({
                "receiver": format!("{prefix}-{receiver}"),
                "matchers": [format!("severity=\"{severity}\"")],
                "repeat_interval": repeat,
            })
        })
        .collect();
    let mut receivers = vec![json!({"name": "null"})];
    if r.spec.pager_duty.is_some() {
        receivers.push(json!({
            "name": format!("{prefix}-pagerduty"),
            "pagerduty_configs": [{
                "routing_key_file": format!("{secrets_dir}/{PAGERDUTY_KEY_FILE}"),
                "url": r.pagerduty_url(),
                "severity": "critical",
                "description": PAGERDUTY_DESCRIPTION,
                "send_resolved": true,
            }],
        }));
    }
    if let Some(slack) = &r.spec.slack {
        let mut config = json!({
            "api_url_file": format!("{secrets_dir}/{SLACK_URL_FILE}"),
            "title": SLACK_TITLE,
            "text": SLACK_TEXT,
            "send_resolved": true,
        });
        if let Some(channel) = &slack.channel {
            config["channel"] = json!(channel);
        }
        receivers.push(json!({
            "name": format!("{prefix}-slack"),
            "slack_configs": [config],
        }));
    }
    let file = json!({
        "route": {
            "receiver": "null",
            "group_by": GROUP_BY,
            "routes": [{
                "receiver": "null",
                "matchers": [
                    format!("namespace=\"{}\"", v.namespace),
                    format!("securevault=\"{}\"", v.name),
                ],
                "group_by": GROUP_BY,
                "group_wait": r.group_wait,
                "group_interval": r.group_interval,
                "routes": severity_routes,
            }],
        },
        "receivers": receivers,
    });
    Some(serde_saphyr::to_string(&file))
}

/// Why `operator alertmanager` could not render a manifest's routing.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerYmlError {
    /// The manifest holds no valid SecureVault.
    #[error(transparent)]
    Manifest(#[from] crate::render::ManifestError),
    /// Its SecureVault has no `spec.monitoring.alertRouting`.
    #[error("the SecureVault has no spec.monitoring.alertRouting: nothing to route")]
    NoRouting,
    /// Rendering failed (a bug).
    #[error("rendering alertmanager.yml: {0}")]
    Render(#[from] serde_saphyr::ser::Error),
}

/// The `alertmanager.yml` of the (first) SecureVault in a YAML manifest.
pub fn alertmanager_yml_from_manifest(
    manifest: &str,
    secrets_dir: &str,
) -> Result<String, AlertmanagerYmlError> {
    let v = crate::render::vault_from_manifest(manifest)?;
    Ok(alertmanager_yml(&v, secrets_dir).ok_or(AlertmanagerYmlError::NoRouting)??)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    const BOTH: &str = "  monitoring:
    alertRouting:
      pagerDuty: {routingKeySecretRef: {name: oncall, key: routing-key}}
      slack: {apiUrlSecretRef: {name: oncall, key: slack-url}, channel: '#mail-alerts'}
      criticalRepeatInterval: 30m
";

    #[test]
    fn critical_pages_and_warnings_post_grouped_by_alert_and_instance() {
        let am = build(&validated(BOTH)).unwrap();
        assert_eq!(am.metadata.name.as_deref(), Some("mail-alert-routing"));
        assert_eq!(am.metadata.owner_references.as_ref().unwrap().len(), 1);
        let route = &am.spec.route;
        assert_eq!(route.group_by, GROUP_BY);
        assert_eq!(route.matchers, [equals("securevault", "mail")]);
        assert_eq!(route.routes.len(), 2);
        assert_eq!(route.routes[0].receiver, "pagerduty");
        assert_eq!(route.routes[0].matchers, [equals("severity", "critical")]);
        assert_eq!(route.routes[0].repeat_interval.as_deref(), Some("30m"));
        assert_eq!(route.routes[1].receiver, "slack");
        assert_eq!(route.routes[1].matchers, [equals("severity", "warning")]);
        assert_eq!(route.routes[1].repeat_interval.as_deref(), Some("4h"));
        let pd = &am.spec.receivers[1].pagerduty_configs[0];
        assert_eq!(pd.routing_key.name, "oncall");
        assert_eq!(pd.url, PAGERDUTY_EVENTS_V2);
        let slack = &am.spec.receivers[2].slack_configs[0];
        assert_eq!(slack.api_url.key, "slack-url");
        assert_eq!(slack.channel.as_deref(), Some("#mail-alerts"));
        let json = serde_json::to_value(&am).unwrap();
        assert!(json["spec"]["receivers"][2]["slackConfigs"][0]["apiURL"].is_object());
    }

    #[test]
    fn without_a_receiver_for_a_severity_it_has_no_route() {
        let only_slack = "  monitoring:
    alertRouting:
      slack: {apiUrlSecretRef: {name: s, key: url}}
";
        let am = build(&validated(only_slack)).unwrap();
        assert_eq!(am.spec.route.routes.len(), 1);
        assert_eq!(am.spec.route.routes[0].receiver, "slack");
        assert!(build(&validated("")).is_none());
    }

    #[test]
    fn the_plain_file_routes_the_same_way_with_secrets_in_files() {
        let v = validated(BOTH);
        let yml = alertmanager_yml(&v, "/etc/alertmanager/secrets")
            .unwrap()
            .unwrap();
        let file: serde_json::Value = serde_saphyr::from_str(&yml).unwrap();
        let instance = &file["route"]["routes"][0];
        assert_eq!(
            instance["matchers"],
            json!(["namespace=\"team-a\"", "securevault=\"mail\""])
        );
        assert_eq!(instance["routes"][0]["receiver"], "team-a-mail-pagerduty");
        assert_eq!(
            instance["routes"][0]["matchers"],
            json!(["severity=\"critical\""])
        );
        assert_eq!(instance["routes"][1]["receiver"], "team-a-mail-slack");
        assert_eq!(
            file["receivers"][1]["pagerduty_configs"][0]["routing_key_file"],
            "/etc/alertmanager/secrets/pagerduty-routing-key"
        );
        assert_eq!(
            file["receivers"][2]["slack_configs"][0]["api_url_file"],
            "/etc/alertmanager/secrets/slack-api-url"
        );
    }
}
