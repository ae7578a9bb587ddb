//! The ServiceAccount the data-plane pods run as. The data plane never calls
//! the Kubernetes API, so no token is mounted.

use k8s_openapi::api::core::v1::ServiceAccount;

use crate::{names, validate::ValidatedVault};

/// The pods' ServiceAccount.
pub fn build(v: &ValidatedVault) -> ServiceAccount {
    ServiceAccount {
        metadata: super::metadata(v, names::workload(&v.name)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::test_support::minimal;

    #[test]
    fn mounts_no_api_token() {
        let sa = super::build(&minimal());
        assert_eq!(sa.metadata.name.as_deref(), Some("mail"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
