//! `GET /api/dkim`: the DNS records that publish the DKIM keys, so that an
//! administrator can copy them into the zone of the sending domain.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{app::AppState, email::dkim::DkimKey, error::ErrorBody};

/// What signs outgoing mail, and what to publish.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DkimReport {
    /// The domain of the sender address (SMTP_FROM); absent when email is
    /// not configured.
    pub domain: Option<String>,
    /// Whether messages leave signed: some key is for `domain`.
    pub signed: bool,
    /// One TXT record per key in DKIM_KEYS_DIR.
    pub records: Vec<DkimRecord>,
}

/// One key's TXT record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DkimRecord {
    /// The record's name, e.g. `sv2026._domainkey.example.com`.
    pub name: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// The TXT value: `v=DKIM1; k=…; p=…`.
    pub value: String,
    /// The record as a zone-file line, the value cut into the 255-byte
    /// strings a TXT record is made of.
    pub zone: String,
    /// Whether this key signs: its domain is the sender's.
    pub signs: bool,
}

impl DkimRecord {
    fn of(key: &DkimKey, sender: Option<&str>) -> Self {
        let value = key.record();
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ");
        let name = key.record_name();
        Self {
            zone: format!("{name}. IN TXT ( {strings} )"),
            name,
            algorithm: key.algorithm().to_string(),
            value,
            signs: sender.is_some_and(|d| d.eq_ignore_ascii_case(&key.domain)),
        }
    }
}

/// The DKIM keys' DNS records. Only public keys are shown.
#[utoipa::path(
    get,
    path = "/api/dkim",
    tag = "email",
    responses(
        (status = 200, description = "The records to publish", body = DkimReport),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    )
)]
pub async fn records(State(state): State<AppState>) -> Json<DkimReport> {
    Json(match &state.mailer {
        Some(mailer) => DkimReport {
            domain: Some(mailer.domain().to_owned()),
            signed: mailer.signs(),
            records: mailer
                .dkim()
                .keys()
                .iter()
                .map(|k| DkimRecord::of(k, Some(mailer.domain())))
                .collect(),
        },
        None => DkimReport {
            domain: None,
            signed: false,
            records: Vec::new(),
        },
    })
}
