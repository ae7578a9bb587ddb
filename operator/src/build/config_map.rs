//! The ConfigMap of non-secret settings, read by the pods as environment
//! variables (`envFrom`).

use k8s_openapi::api::core::v1::ConfigMap;

use crate::{names, validate::ValidatedVault};

/// The settings ConfigMap.
pub fn build(v: &ValidatedVault) -> ConfigMap {
    ConfigMap {
        metadata: super::metadata(v, names::config_map(&v.name)),
        data: Some(v.settings.clone()),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::{test_support::*, validate};

    #[test]
    fn holds_settings_and_no_credentials() {
        let v = validate(&vault(COMPLETE)).unwrap();
        let cm = super::build(&v);
        let data = cm.data.unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("mail-config"));
        assert_eq!(data["SMTP_PORT"], "587");
        assert_eq!(data["RETENTION_EMAILS_DAYS"], "90");
        for secret_var in [
            "SECRET_KEY",
            "DATABASE_URL",
            "REDIS_URL",
            "SMTP_PASSWORD",
            "OPENAI_API_KEY",
            "WEBHOOK_URL",
            "WEBHOOK_SECRET",
        ] {
            assert!(
                !data.contains_key(secret_var),
                "{secret_var} must come from a Secret"
            );
        }
    }

    #[test]
    fn without_spec_retention_no_retention_setting_reaches_the_pods() {
        let data = super::build(&minimal()).data.unwrap();
        assert!(
            !data.keys().any(|k| k.starts_with("RETENTION_")),
            "{data:?}"
        );
    }
}
