//! Whether a Prometheus selects what we wrote.
//!
//! A ServiceMonitor that no Prometheus selects is scraped by nobody, and
//! nothing anywhere says so: the Prometheus Operator skips it silently. So
//! the operator keeps the selectors of every `Prometheus` in the cluster
//! (one watch, where the kind is served and it may list it; the chart
//! grants that read cluster-wide) and `MonitoringReady` says which of them
//! select a SecureVault's ServiceMonitor and PrometheusRule.
//!
//! Selection follows the Prometheus Operator's rules: a missing
//! `serviceMonitorSelector` (or `ruleSelector`) selects nothing and an
//! empty one everything; a missing namespace selector means the
//! Prometheus's own namespace and an empty one every namespace. A namespace
//! selector on other labels than `kubernetes.io/metadata.name` (which every
//! namespace carries, with its name) cannot be judged without reading the
//! namespace, which the operator does not do: such a Prometheus "may"
//! select, and the message says so.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use kube::{ResourceExt, runtime::watcher};

use crate::api::monitoring::{Prometheus, PrometheusSpec, Selector};

/// The label every namespace carries, with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether a selector takes an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// It does.
    Yes,
    /// It does not.
    No,
    /// It depends on labels the operator does not read.
    Maybe,
}

impl Takes {
    fn and(self, other: Takes) -> Takes {
        match (self, other) {
            (Takes::No, _) | (_, Takes::No) => Takes::No,
            (Takes::Yes, Takes::Yes) => Takes::Yes,
            _ => Takes::Maybe,
        }
    }
}

/// Whether `selector` takes an object with `labels`. Labels outside
/// `known` (when given) are not known: an expression on one makes the
/// answer [`Takes::Maybe`] unless another already says no.
fn takes(selector: &Selector, labels: &BTreeMap<String, String>, known: Option<&str>) -> Takes {
    let knowable = |key: &str| known.is_none_or(|k| k == key);
    let mut answer = Takes::Yes;
    for (key, value) in selector.match_labels.iter().flatten() {
        answer = answer.and(match labels.get(key) {
            _ if !knowable(key) => Takes::Maybe,
            Some(v) if v == value => Takes::Yes,
            _ => Takes::No,
        });
    }
    for e in selector.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let holds = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // The API server refuses any other operator.
            _ => false,
        };
        answer = answer.and(match holds {
            _ if !knowable(&e.key) => Takes::Maybe,
            true => Takes::Yes,
            false => Takes::No,
        });
    }
    answer
}

/// Whether a Prometheus in `home` with these selectors takes an object
/// labelled `labels` in `namespace`.
fn selects(
    selector: Option<&Selector>,
    namespace_selector: Option<&Selector>,
    home: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Takes {
    let Some(selector) = selector else {
        return Takes::No;
    };
    let in_namespace = match namespace_selector {
        None if home == namespace => Takes::Yes,
        None => Takes::No,
        Some(s) => {
            let ns = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())]);
            takes(s, &ns, Some(NAMESPACE_NAME_LABEL))
        }
    };
    in_namespace.and(takes(selector, labels, None))
}

/// What one Prometheus makes of a SecureVault's ServiceMonitor and
/// PrometheusRule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `namespace/name` of the Prometheus.
    pub prometheus: String,
    /// Whether it scrapes the ServiceMonitor.
    pub service_monitor: Takes,
    /// Whether it loads the PrometheusRule.
    pub rule: Takes,
}

/// The selectors of every Prometheus in the cluster, as the watch last
/// reported them; unknown until the first complete list, and whenever the
/// kind is not served.
#[derive(Debug, Clone, Default)]
pub struct Prometheuses {
    known: Arc<RwLock<State>>,
}

/// A Prometheus's namespace and name.
type Key = (String, String);

#[derive(Debug, Default)]
struct State {
    /// By namespace and name; `None` until a complete list arrived.
    listed: Option<BTreeMap<Key, PrometheusSpec>>,
    /// A relist under way: what it found so far.
    relisting: BTreeMap<Key, PrometheusSpec>,
}

impl Prometheuses {
    /// Applies one event of the watch; `true` when what is known changed
    /// (a Prometheus's status, which its operator rewrites often, is not).
    pub fn apply(&self, event: watcher::Event<Prometheus>) -> bool {
        let key = |p: &Prometheus| (p.namespace().unwrap_or_default(), p.name_any());
        let mut state = self.known.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => {
                state.relisting.clear();
                false
            }
            watcher::Event::InitApply(p) => {
                state.relisting.insert(key(&p), p.spec);
                false
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut state.relisting);
                let changed = state.listed.as_ref() != Some(&listed);
                state.listed = Some(listed);
                changed
            }
            watcher::Event::Apply(p) => {
                let (key, spec) = (key(&p), p.spec);
                let listed = state.listed.get_or_insert_with(BTreeMap::new);
                listed.insert(key, spec.clone()) != Some(spec)
            }
            watcher::Event::Delete(p) => state
                .listed
                .get_or_insert_with(BTreeMap::new)
                .remove(&key(&p))
                .is_some(),
        }
    }

    /// Known selectors (by namespace and name), as a complete list.
    pub fn known(list: impl IntoIterator<Item = (Key, PrometheusSpec)>) -> Prometheuses {
        let p = Prometheuses::default();
        p.known.write().unwrap_or_else(|e| e.into_inner()).listed =
            Some(list.into_iter().collect());
        p
    }

    /// What each Prometheus makes of objects labelled `labels` in
    /// `namespace`, in `namespace/name` order; `None` when the operator
    /// does not know the cluster's Prometheuses.
    pub fn verdicts(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Vec<Verdict>> {
        let state = self.known.read().unwrap_or_else(|e| e.into_inner());
        let listed = state.listed.as_ref()?;
        Some(
            listed
                .iter()
                .map(|((home, name), spec)| Verdict {
                    prometheus: format!("{home}/{name}"),
                    service_monitor: selects(
                        spec.service_monitor_selector.as_ref(),
                        spec.service_monitor_namespace_selector.as_ref(),
                        home,
                        namespace,
                        labels,
                    ),
                    rule: selects(
                        spec.rule_selector.as_ref(),
                        spec.rule_namespace_selector.as_ref(),
                        home,
                        namespace,
                        labels,
                    ),
                })
                .collect(),
        )
    }
}

/// The part of `MonitoringReady`'s message that says who selects the
/// objects, from [`Prometheuses::verdicts`].
pub fn describe(verdicts: &[Verdict]) -> String {
    // "Prometheus a/b selects" or "Prometheuses a/b, c/d select".
    let who = |pick: &dyn Fn(&Verdict) -> bool| {
        let all: Vec<&str> = verdicts
            .iter()
            .filter(|v| pick(v))
            .map(|v| v.prometheus.as_str())
            .collect();
        match all.as_slice() {
            [] => None,
            [one] => Some((format!("Prometheus {one}"), "selects")),
            many => Some((format!("Prometheuses {}", many.join(", ")), "select")),
        }
    };
    if let Some((both, _)) = who(&|v| v.service_monitor == Takes::Yes && v.rule == Takes::Yes) {
        return format!("selected by {both}");
    }
    if let Some((maybe, verb)) = who(&|v| v.service_monitor != Takes::No && v.rule != Takes::No) {
        return format!(
            "{maybe} {verb} their labels, if its namespace selectors take this namespace \
             (whose labels are not read)"
        );
    }
    let mut partly = Vec::new();
    if let Some((some, verb)) = who(&|v| v.service_monitor != Takes::No) {
        partly.push(format!(
            "{some} {verb} the ServiceMonitor but not the PrometheusRule"
        ));
    }
    if let Some((some, verb)) = who(&|v| v.rule != Takes::No) {
        partly.push(format!(
            "{some} {verb} the PrometheusRule but not the ServiceMonitor"
        ));
    }
    // Only the Prometheuses that take part are named, so that one added or
    // changed elsewhere leaves every other SecureVault's status as it is.
    if partly.is_empty() {
        "no Prometheus selects them".to_owned()
    } else {
        partly.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matching(pairs: &[(&str, &str)]) -> Selector {
        Selector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        }
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> Selector {
        Selector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        }
    }

    /// What kube-prometheus-stack renders for a release named `release`.
    fn kube_prometheus_stack(release: &str) -> PrometheusSpec {
        PrometheusSpec {
            service_monitor_selector: Some(matching(&[("release", release)])),
            service_monitor_namespace_selector: Some(Selector::default()),
            rule_selector: Some(matching(&[("release", release)])),
            rule_namespace_selector: Some(Selector::default()),
        }
    }

    fn one(name: &str, spec: PrometheusSpec) -> Prometheuses {
        let (namespace, name) = name.split_once('/').unwrap();
        Prometheuses::known([((namespace.to_owned(), name.to_owned()), spec)])
    }

    const OURS: &[(&str, &str)] = &[
        ("app.kubernetes.io/name", "securevault"),
        ("release", "kube-prometheus-stack"),
    ];

    #[test]
    fn kube_prometheus_stack_selects_the_default_labels_in_any_namespace() {
        let p = one(
            "monitoring/kps",
            kube_prometheus_stack("kube-prometheus-stack"),
        );
        let v = p.verdicts("team-a", &labels(OURS)).unwrap();
        assert_eq!((v[0].service_monitor, v[0].rule), (Takes::Yes, Takes::Yes));
        assert_eq!(describe(&v), "selected by Prometheus monitoring/kps");
    }

    #[test]
    fn a_release_under_another_name_selects_nothing_of_ours() {
        let p = one("monitoring/prom", kube_prometheus_stack("prom"));
        let v = p.verdicts("team-a", &labels(OURS)).unwrap();
        assert_eq!(describe(&v), "no Prometheus selects them");
    }

    #[test]
    fn missing_selectors_select_nothing_and_missing_namespace_selectors_only_home() {
        let nothing = PrometheusSpec::default();
        assert_eq!(
            one("team-a/p", nothing)
                .verdicts("team-a", &labels(OURS))
                .unwrap()[0]
                .service_monitor,
            Takes::No
        );
        let home_only = PrometheusSpec {
            service_monitor_selector: Some(Selector::default()),
            rule_selector: None,
            ..PrometheusSpec::default()
        };
        let p = one("team-a/p", home_only);
        let here = p.verdicts("team-a", &labels(OURS)).unwrap();
        assert_eq!(
            (here[0].service_monitor, here[0].rule),
            (Takes::Yes, Takes::No)
        );
        assert_eq!(
            describe(&here),
            "Prometheus team-a/p selects the ServiceMonitor but not the PrometheusRule"
        );
        let elsewhere = p.verdicts("team-b", &labels(OURS)).unwrap();
        assert_eq!(elsewhere[0].service_monitor, Takes::No);
    }

    #[test]
    fn expressions_and_namespace_selectors_by_name_are_judged_others_are_maybe() {
        let sel = labels(OURS);
        assert_eq!(
            takes(
                &expression("release", "In", &["a", "kube-prometheus-stack"]),
                &sel,
                None
            ),
            Takes::Yes
        );
        assert_eq!(
            takes(
                &expression("release", "NotIn", &["kube-prometheus-stack"]),
                &sel,
                None
            ),
            Takes::No
        );
        assert_eq!(
            takes(&expression("team", "Exists", &[]), &sel, None),
            Takes::No
        );
        assert_eq!(
            takes(&expression("team", "DoesNotExist", &[]), &sel, None),
            Takes::Yes
        );

        let by_name = PrometheusSpec {
            service_monitor_namespace_selector: Some(matching(&[(NAMESPACE_NAME_LABEL, "team-a")])),
            rule_namespace_selector: Some(matching(&[("monitored", "true")])),
            ..kube_prometheus_stack("kube-prometheus-stack")
        };
        let p = one("monitoring/kps", by_name);
        let v = p.verdicts("team-a", &sel).unwrap();
        assert_eq!(
            (v[0].service_monitor, v[0].rule),
            (Takes::Yes, Takes::Maybe)
        );
        assert!(describe(&v).starts_with("Prometheus monitoring/kps selects their labels, if"));
        let v = p.verdicts("team-b", &sel).unwrap();
        assert_eq!(v[0].service_monitor, Takes::No);
    }

    #[test]
    fn the_watch_keeps_the_selectors_and_ignores_status_only_changes() {
        let p = Prometheuses::default();
        assert_eq!(p.verdicts("team-a", &labels(OURS)), None);
        let prometheus = |name: &str, release: &str| {
            let mut p = Prometheus::new(name, kube_prometheus_stack(release));
            p.metadata.namespace = Some("monitoring".to_owned());
            p
        };
        assert!(!p.apply(watcher::Event::Init));
        assert!(!p.apply(watcher::Event::InitApply(prometheus(
            "kps",
            "kube-prometheus-stack"
        ))));
        assert_eq!(
            p.verdicts("team-a", &labels(OURS)),
            None,
            "not before the list ends"
        );
        assert!(p.apply(watcher::Event::InitDone));
        assert_eq!(p.verdicts("team-a", &labels(OURS)).unwrap().len(), 1);
        // Its operator rewriting its status: the same selectors.
        assert!(!p.apply(watcher::Event::Apply(prometheus(
            "kps",
            "kube-prometheus-stack"
        ))));
        assert!(p.apply(watcher::Event::Apply(prometheus("kps", "prom"))));
        assert!(p.apply(watcher::Event::Apply(prometheus("other", "prom"))));
        assert!(p.apply(watcher::Event::Delete(prometheus("other", "prom"))));
        // A relist that finds the same is no change.
        p.apply(watcher::Event::Init);
        p.apply(watcher::Event::InitApply(prometheus("kps", "prom")));
        assert!(!p.apply(watcher::Event::InitDone));
    }
}
