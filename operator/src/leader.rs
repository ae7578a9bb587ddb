//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas exactly one reconciles.
//!
//! The holder renews the Lease every `renew_every`; a standby takes it over
//! once `renewTime + leaseDurationSeconds` has passed. Every write carries the
//! resourceVersion read just before, so two candidates racing for an expired
//! Lease cannot both win: the API server refuses the second with a conflict.
//! On an orderly stop the leader empties `holderIdentity`, and a standby
//! takes over at its next try instead of waiting for the expiry.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews, and a standby retries.
    pub renew_every: Duration,
}

/// One candidate for leadership.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl Elector {
    /// A candidate named `identity` for the Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
        }
    }

    /// How often to call [`Elector::try_acquire`].
    pub fn renew_every(&self) -> Duration {
        self.timing.renew_every
    }

    /// Takes or renews the Lease. `Ok(true)` while this candidate leads.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = self.lease(None, LeaseSpec::default(), now);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            renewed.0 + duration < now
        });
        if !(ours || holder.is_none() || expired) {
            return Ok(false);
        }
        let updated = self.lease(lease.metadata.resource_version.clone(), spec, now);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hands the Lease back if this candidate holds it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// The Lease as this candidate writes it, from the `previous` spec.
    fn lease(
        &self,
        resource_version: Option<String>,
        previous: LeaseSpec,
        now: Timestamp,
    ) -> Lease {
        let taking_over = previous.holder_identity.as_deref() != Some(self.identity.as_str());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease_duration.as_secs() as i32),
                acquire_time: if taking_over {
                    Some(MicroTime(now))
                } else {
                    previous.acquire_time
                },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(
                    previous.lease_transitions.unwrap_or(0)
                        + i32::from(taking_over && previous.holder_identity.is_some()),
                ),
                ..LeaseSpec::default()
            }),
        }
    }
}
