//! The CRD reference: every field of a SecureVault as Markdown tables,
//! rendered from the CRD's OpenAPI v3 schema, so the doc comments on
//! [`crate::api`]'s types stay the one place the fields are described.
//!
//! `operator crd --reference` prints it, `make crds` writes it into
//! docs/operator.md (section "CRD reference"), and `operator/tests/crd_reference.rs`
//! fails when docs/operator.md's copy is stale.
//!
//! One row per field, with its dotted path (`spec.database.urlSecretRef.key`;
//! `[]` for an array's items), in the schema's order (alphabetical). A
//! `[default: …]` in a doc comment moves to the Default column; the CEL rules'
//! messages (`x-kubernetes-validations`) follow the description, since they
//! say what the API server refuses. Fields of Kubernetes' own types (see
//! [`KUBERNETES_TYPES`]) are one row each, pointing at `kubectl explain`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::SecureVault;

/// Why the reference could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("the CRD {0} has no version with an OpenAPI v3 schema")]
    NoSchema(String),
}

/// A field whose type is one of Kubernetes' own: shown as one row (its type
/// and first-level fields), not expanded, since Kubernetes documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesType {
    /// The field's dotted path, e.g. `spec.resources`.
    pub path: &'static str,
    /// The Kubernetes type, e.g. `ResourceRequirements`.
    pub name: &'static str,
    /// What to pass to `kubectl explain` for its documentation, if anything.
    pub explain: Option<&'static str>,
}

/// The SecureVault fields of Kubernetes types (a unit test checks that each
/// path exists).
pub const KUBERNETES_TYPES: &[KubernetesType] = &[
    KubernetesType {
        path: "spec.resources",
        name: "ResourceRequirements",
        explain: Some("pod.spec.containers.resources"),
    },
    KubernetesType {
        path: "spec.placement.affinity",
        name: "Affinity",
        explain: Some("pod.spec.affinity"),
    },
    KubernetesType {
        path: "spec.placement.tolerations",
        name: "Toleration",
        explain: Some("pod.spec.tolerations"),
    },
    KubernetesType {
        path: "status.conditions",
        name: "Condition",
        explain: None,
    },
];

/// The SecureVault CRD's reference, as docs/operator.md carries it.
pub fn markdown() -> Result<String, ReferenceError> {
    render(&SecureVault::crd(), KUBERNETES_TYPES)
}

/// The reference of `crd`'s storage version (or its first one): a section
/// for `spec` (type, default, required, description) and a shorter one for
/// `status` (type, description). `kubernetes_types` are not expanded.
pub fn render(
    crd: &CustomResourceDefinition,
    kubernetes_types: &[KubernetesType],
) -> Result<String, ReferenceError> {
    let versions = &crd.spec.versions;
    let schema = versions
        .iter()
        .find(|v| v.storage)
        .or(versions.first())
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| ReferenceError::NoSchema(crd.metadata.name.clone().unwrap_or_default()))?;
    let properties = schema.properties.as_ref();
    let mut out = String::new();
    if let Some(spec) = properties.and_then(|p| p.get("spec")) {
        section(&mut out, "spec", spec, Columns::Spec, kubernetes_types);
    }
    if let Some(status) = properties.and_then(|p| p.get("status")) {
        if !out.is_empty() {
            out.push('\n');
        }
        section(
            &mut out,
            "status",
            status,
            Columns::Status,
            kubernetes_types,
        );
    }
    Ok(out)
}

/// Which columns a section's table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Field, type, default, required, description.
    Spec,
    /// Field, type, description: the operator writes the status.
    Status,
}

/// One table row, before it is written.
struct Row {
    path: String,
    type_: String,
    default: String,
    required: bool,
    description: String,
}

fn section(
    out: &mut String,
    name: &str,
    schema: &JSONSchemaProps,
    columns: Columns,
    kubernetes_types: &[KubernetesType],
) {
    out.push_str(&format!("### `{name}`\n\n"));
    if let Some(description) = schema.description.as_deref() {
        let description = one_line(description);
        if !description.is_empty() {
            out.push_str(&format!("{description}\n\n"));
        }
    }
    let rules = rule_messages(schema);
    if !rules.is_empty() {
        out.push_str(&format!(
            "Rules across fields (the API server refuses a `{name}` that breaks one, with this message):\n\n"
        ));
        for rule in rules {
            out.push_str(&format!("- {rule}\n"));
        }
        out.push('\n');
    }
    let mut rows = Vec::new();
    children(&mut rows, name, schema, kubernetes_types);
    match columns {
        Columns::Spec => {
            out.push_str("| Field | Type | Default | Required | Description |\n");
            out.push_str("|---|---|---|---|---|\n");
        }
        Columns::Status => {
            out.push_str("| Field | Type | Description |\n");
            out.push_str("|---|---|---|\n");
        }
    }
    for row in rows {
        let path = cell(&format!("`{}`", row.path));
        let type_ = cell(&row.type_);
        let description = cell(&row.description);
        match columns {
            Columns::Spec => {
                let required = if row.required { "yes" } else { "no" };
                let default = cell(&row.default);
                out.push_str(&format!(
                    "| {path} | {type_} | {default} | {required} | {description} |\n"
                ));
            }
            Columns::Status => {
                out.push_str(&format!("| {path} | {type_} | {description} |\n"));
            }
        }
    }
}

/// The rows of `schema`'s properties (and of its items' or map values'
/// properties), each followed by its own children.
fn children(
    rows: &mut Vec<Row>,
    path: &str,
    schema: &JSONSchemaProps,
    kubernetes_types: &[KubernetesType],
) {
    if let Some(properties) = schema.properties.as_ref() {
        let required = schema.required.as_deref().unwrap_or_default();
        for (name, field) in properties {
            let field_path = format!("{path}.{name}");
            let kubernetes_type = kubernetes_types.iter().find(|k| k.path == field_path);
            rows.push(row(
                &field_path,
                field,
                required.contains(name),
                kubernetes_type,
            ));
            if kubernetes_type.is_none() {
                children(rows, &field_path, field, kubernetes_types);
            }
        }
    }
    if let Some(items) = item_schema(schema) {
        children(rows, &format!("{path}[]"), items, kubernetes_types);
    }
    if let Some(values) = map_values(schema) {
        children(rows, &format!("{path}.<key>"), values, kubernetes_types);
    }
}

fn row(
    path: &str,
    schema: &JSONSchemaProps,
    required: bool,
    kubernetes_type: Option<&KubernetesType>,
) -> Row {
    let (mut description, documented_default) =
        split_default(&one_line(schema.description.as_deref().unwrap_or_default()));
    let default = match (&schema.default, documented_default) {
        (Some(value), _) => format!("`{}`", value.0),
        // Doc comments quote strings themselves; a bare number or boolean
        // is a value too.
        (None, Some(text)) if is_literal(&text) => format!("`{text}`"),
        (None, Some(text)) => text,
        (None, None) => String::new(),
    };
    let type_ = match kubernetes_type {
        Some(k) => {
            let fields = kubernetes_fields(schema);
            if !fields.is_empty() {
                let see = k
                    .explain
                    .map(|e| format!(": see `kubectl explain {e}`"))
                    .unwrap_or_default();
                append(&mut description, &format!("Fields {fields}{see}."));
            }
            if item_schema(schema).is_some() {
                format!("array of Kubernetes `{}`", k.name)
            } else {
                format!("Kubernetes `{}`", k.name)
            }
        }
        None => with_limits(schema),
    };
    for rule in rule_messages(schema) {
        let stop = if rule.ends_with('.') { "" } else { "." };
        append(&mut description, &format!("Rule: {rule}{stop}"));
    }
    Row {
        path: path.to_owned(),
        type_,
        default,
        required,
        description,
    }
}

/// The first-level fields of a Kubernetes type (or of its items), as
/// `` `a`, `b` ``.
fn kubernetes_fields(schema: &JSONSchemaProps) -> String {
    let object = item_schema(schema).unwrap_or(schema);
    object
        .properties
        .iter()
        .flat_map(|p| p.keys())
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type without its limits: `string`, `integer (int32)`, `array of
/// string (up to 49 characters)`, `map of string to string`.
fn type_of(schema: &JSONSchemaProps) -> String {
    let mut words = match schema.type_.as_deref() {
        Some("array") => match item_schema(schema) {
            Some(items) => {
                let item = type_of(items);
                let limits = limits(items);
                if limits.is_empty() {
                    format!("array of {item}")
                } else {
                    format!("array of {item} ({})", limits.join(", "))
                }
            }
            None => "array".to_owned(),
        },
        Some("object") => match map_values(schema) {
            Some(values) => format!("map of string to {}", with_limits(values)),
            None => "object".to_owned(),
        },
        Some(other) => other.to_owned(),
        None if schema.x_kubernetes_int_or_string == Some(true) => "integer or string".to_owned(),
        None => "any".to_owned(),
    };
    if let Some(format) = schema.format.as_deref() {
        words.push_str(&format!(" ({format})"));
    }
    words
}

/// The type followed by its limits and allowed values, e.g. `string, 1 to
/// 253 characters`, `integer (int32), 0 to 100`, `string, one of `a`, `b``.
fn with_limits(schema: &JSONSchemaProps) -> String {
    let mut parts = vec![type_of(schema)];
    parts.extend(limits(schema));
    parts.join(", ")
}

/// Ranges, lengths, counts, pattern and allowed values.
fn limits(schema: &JSONSchemaProps) -> Vec<String> {
    let mut limits = Vec::new();
    let number = |n: f64| format!("{n}");
    match (schema.minimum, schema.maximum) {
        (Some(min), Some(max))
            if schema.exclusive_minimum != Some(true) && schema.exclusive_maximum != Some(true) =>
        {
            limits.push(format!("{} to {}", number(min), number(max)));
        }
        (min, max) => {
            if let Some(min) = min {
                let word = if schema.exclusive_minimum == Some(true) {
                    "above"
                } else {
                    "at least"
                };
                limits.push(format!("{word} {}", number(min)));
            }
            if let Some(max) = max {
                let word = if schema.exclusive_maximum == Some(true) {
                    "below"
                } else {
                    "at most"
                };
                limits.push(format!("{word} {}", number(max)));
            }
        }
    }
    if let Some(range) = count(schema.min_length, schema.max_length, "characters") {
        limits.push(range);
    }
    if let Some(range) = count(schema.min_items, schema.max_items, "items") {
        limits.push(range);
    }
    if let Some(pattern) = schema.pattern.as_deref() {
        limits.push(format!("matching `{pattern}`"));
    }
    let values: Vec<String> = schema
        .enum_
        .iter()
        .flatten()
        .filter(|v| !v.0.is_null())
        .map(|v| match v.0.as_str() {
            Some(s) => format!("`{s}`"),
            None => format!("`{}`", v.0),
        })
        .collect();
    if !values.is_empty() {
        limits.push(format!("one of {}", values.join(", ")));
    }
    limits
}

/// `1 to 253 characters`, `up to 64 items`, `at least 1 items`…
fn count(min: Option<i64>, max: Option<i64>, unit: &str) -> Option<String> {
    match (min, max) {
        (Some(min), Some(max)) if min == max => Some(format!("exactly {min} {unit}")),
        (Some(min), Some(max)) => Some(format!("{min} to {max} {unit}")),
        (None, Some(max)) => Some(format!("up to {max} {unit}")),
        (Some(min), None) if min > 0 => Some(format!("at least {min} {unit}")),
        _ => None,
    }
}

fn item_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(items) => Some(items),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    }
}

fn map_values(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(values) => Some(values),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

/// The messages of `schema`'s CEL rules (the rule itself where it has none).
fn rule_messages(schema: &JSONSchemaProps) -> Vec<String> {
    schema
        .x_kubernetes_validations
        .iter()
        .flatten()
        .map(|v| match v.message.as_deref() {
            Some(message) => one_line(message),
            None => format!("`{}`", one_line(&v.rule)),
        })
        .collect()
}

/// Whitespace (newlines included) collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A description without its `[default: …]`, and what that said.
fn split_default(description: &str) -> (String, Option<String>) {
    const OPEN: &str = "[default:";
    let Some(start) = description.find(OPEN) else {
        return (description.to_owned(), None);
    };
    let rest = &description[start + OPEN.len()..];
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => {
                end = Some(i);
                break;
            }
            ']' => depth -= 1,
            _ => {}
        }
    }
    let Some(end) = end else {
        return (description.to_owned(), None);
    };
    let default = rest[..end].trim().to_owned();
    let before = description[..start].trim_end();
    let after = rest[end + 1..].trim_start();
    let joined = if after.is_empty() || before.is_empty() || after.starts_with(['.', ',', ';', ')'])
    {
        format!("{before}{after}")
    } else {
        format!("{before} {after}")
    };
    (joined.trim().to_owned(), Some(default))
}

/// A number or a boolean.
fn is_literal(text: &str) -> bool {
    text == "true" || text == "false" || text.parse::<f64>().is_ok()
}

/// `text` after `description`, a space between.
fn append(description: &mut String, text: &str) {
    if !description.is_empty() {
        description.push(' ');
    }
    description.push_str(text);
}

/// A table cell: a pipe would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRD whose version's schema is `schema` (JSON).
    fn crd(schema: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Thing", "plural": "things"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": schema},
                }],
            },
        }))
        .unwrap()
    }

    fn rendered(spec: serde_json::Value) -> String {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"spec": spec},
        });
        render(&crd(schema), &[]).unwrap()
    }

    /// The row of the field at `path`.
    fn row_of<'a>(markdown: &'a str, path: &str) -> &'a str {
        let start = format!("| `{path}` |");
        markdown
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no row for {path} in\n{markdown}"))
    }

    #[test]
    fn a_nested_field_appears_with_its_dotted_path_after_its_parent() {
        let markdown = markdown().unwrap();
        let lines: Vec<&str> = markdown.lines().collect();
        let position = |path: &str| {
            let row = row_of(&markdown, path);
            lines.iter().position(|l| *l == row).unwrap()
        };
        assert!(position("spec.database") < position("spec.database.urlSecretRef"));
        assert!(
            position("spec.database.urlSecretRef") < position("spec.database.urlSecretRef.key")
        );
        assert_eq!(
            row_of(&markdown, "spec.database.urlSecretRef.key"),
            "| `spec.database.urlSecretRef.key` | string, 1 to 253 characters |  | yes | The key inside the Secret. |"
        );
        // Array items: `[]`.
        assert!(row_of(&markdown, "status.upgradeHistory[].phase").contains("`RollingOut`"));
    }

    #[test]
    fn the_order_is_the_schema_s_and_the_output_is_stable() {
        let markdown = rendered(serde_json::json!({
            "type": "object",
            "properties": {
                "zeta": {"type": "string"},
                "alpha": {"type": "string"},
            },
        }));
        assert!(markdown.find("spec.alpha").unwrap() < markdown.find("spec.zeta").unwrap());
        assert_eq!(self::markdown().unwrap(), self::markdown().unwrap());
    }

    #[test]
    fn a_default_is_shown_from_the_schema_or_from_the_doc_comment() {
        let markdown = rendered(serde_json::json!({
            "type": "object",
            "properties": {
                "count": {"type": "integer", "default": 3, "description": "How many."},
                "ttl": {
                    "type": "integer",
                    "description": "How long a session lasts, in seconds [default: 3600].\nAfter that, log in again.",
                },
                "schedule": {
                    "type": "string",
                    "description": "When [default: `0 * * * *`, hourly].",
                },
                "monitoring": {
                    "type": "object",
                    "description": "Monitoring [default: enabled].",
                },
            },
        }));
        assert_eq!(
            row_of(&markdown, "spec.count"),
            "| `spec.count` | integer | `3` | no | How many. |"
        );
        assert_eq!(
            row_of(&markdown, "spec.ttl"),
            "| `spec.ttl` | integer | `3600` | no | How long a session lasts, in seconds. After that, log in again. |"
        );
        assert_eq!(
            row_of(&markdown, "spec.schedule"),
            "| `spec.schedule` | string | `0 * * * *`, hourly | no | When. |"
        );
        // Words stay words: only numbers and booleans are quoted.
        assert_eq!(
            row_of(&markdown, "spec.monitoring"),
            "| `spec.monitoring` | object | enabled | no | Monitoring. |"
        );
        // And on the real CRD.
        let real = self::markdown().unwrap();
        assert!(
            row_of(&real, "spec.auth.sessionTtlSeconds")
                .contains("| `3600` | no | How long a session lasts after login, in seconds. |"),
            "{}",
            row_of(&real, "spec.auth.sessionTtlSeconds")
        );
    }

    #[test]
    fn an_optional_enum_field_is_described_by_its_own_doc_comment() {
        // Not by its enum's, which kube would copy over it (see
        // `crate::api::described_by_its_field`).
        let real = markdown().unwrap();
        assert!(
            row_of(&real, "spec.webhook.format")
                .contains("| `standard` | no | Body format: `standard` (Standard Webhooks JSON"),
            "{}",
            row_of(&real, "spec.webhook.format")
        );
        assert!(
            row_of(&real, "spec.rateLimits.onRedisFailure")
                .contains("| `local` | no | While Redis does not answer: "),
            "{}",
            row_of(&real, "spec.rateLimits.onRedisFailure")
        );
        assert!(
            row_of(&real, "spec.logLevel").contains("| no | Log level of the data plane"),
            "{}",
            row_of(&real, "spec.logLevel")
        );
    }

    #[test]
    fn a_pipe_in_a_description_is_escaped_and_newlines_collapse() {
        let markdown = rendered(serde_json::json!({
            "type": "object",
            "properties": {
                "mode": {
                    "type": "string",
                    "description": "Either `a|b`\nor c | d.",
                    "enum": ["x|y", "z"],
                },
            },
        }));
        assert_eq!(
            row_of(&markdown, "spec.mode"),
            r"| `spec.mode` | string, one of `x\|y`, `z` |  | no | Either `a\|b` or c \| d. |"
        );
    }

    #[test]
    fn types_show_formats_ranges_enums_arrays_and_maps() {
        let markdown = markdown().unwrap();
        assert!(row_of(&markdown, "spec.replicas").contains("| integer (int32), 0 to 100 |"));
        assert!(
            row_of(&markdown, "spec.logLevel")
                .contains("| string, one of `error`, `warn`, `info`, `debug`, `trace` |")
        );
        assert!(
            row_of(&markdown, "spec.auth.trustedProxies")
                .contains("| array of string (up to 49 characters), up to 64 items |")
        );
        assert!(row_of(&markdown, "spec.labels").contains("| map of string to string |"));
        assert!(
            row_of(&markdown, "spec.monitoring.alerts.highErrorRate.threshold")
                .contains("| number (double), 0 to 1000000 |")
        );
    }

    #[test]
    fn required_fields_say_so() {
        let markdown = markdown().unwrap();
        assert!(row_of(&markdown, "spec.version").contains("| yes |"));
        assert!(row_of(&markdown, "spec.image").contains("| no |"));
    }

    #[test]
    fn cel_rules_show_their_messages() {
        let markdown = markdown().unwrap();
        assert!(
            row_of(&markdown, "spec.ai.baseUrl")
                .contains("Rule: spec.ai.baseUrl must start with http:// or https://.")
        );
        assert!(
            row_of(&markdown, "spec.autoscaling")
                .contains("Rule: spec.autoscaling.minReplicas must not exceed maxReplicas.")
        );
        // The rules on the whole spec come before its table.
        let rules = markdown.find("Rules across fields").unwrap();
        assert!(rules < markdown.find("| Field |").unwrap());
        assert!(markdown.contains("\n- spec.backup on PostgreSQL needs spec.backup.s3"));
    }

    #[test]
    fn kubernetes_types_are_one_row_each_and_exist() {
        let markdown = markdown().unwrap();
        for k in KUBERNETES_TYPES {
            let row = row_of(&markdown, k.path);
            assert!(row.contains(&format!("Kubernetes `{}`", k.name)), "{row}");
            assert!(
                !markdown.contains(&format!("| `{}.", k.path))
                    && !markdown.contains(&format!("| `{}[]", k.path)),
                "{} is expanded",
                k.path
            );
        }
        assert!(
            row_of(&markdown, "spec.placement.tolerations")
                .contains("| array of Kubernetes `Toleration` |")
        );
        assert!(row_of(&markdown, "spec.placement.affinity")
            .contains("Fields `nodeAffinity`, `podAffinity`, `podAntiAffinity`: see `kubectl explain pod.spec.affinity`."));
    }

    #[test]
    fn the_status_section_is_shorter() {
        let markdown = markdown().unwrap();
        let status = &markdown[markdown.find("### `status`").unwrap()..];
        assert!(status.contains("| Field | Type | Description |\n"));
        assert_eq!(
            row_of(status, "status.version"),
            "| `status.version` | string | The version every pod runs, once the rollout is complete. |"
        );
    }

    #[test]
    fn a_crd_without_a_schema_is_an_error() {
        let mut crd = crd(serde_json::json!({"type": "object"}));
        crd.spec.versions[0].schema = None;
        assert!(render(&crd, &[]).is_err());
    }
}
