//! The suppression list: addresses no email is sent to.

use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{AuditEntry, Store, StoreError, audit};

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The address, lower case.
    pub address: String,
    /// `bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// The SMTP answer of a bounce, or the note given with it.
    pub detail: Option<String>,
    /// The email that bounced.
    pub email_id: Option<String>,
    /// When (Unix ms).
    pub created_at: i64,
    /// Who: `user:<id>`, `key:<id>` or `system`.
    pub created_by: String,
}

fn suppression(row: &AnyRow) -> Result<Suppression, StoreError> {
    Ok(Suppression {
        address: row.try_get("address")?,
        reason: row.try_get("reason")?,
        detail: row.try_get("detail")?,
        email_id: row.try_get("email_id")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

macro_rules! columns {
    () => {
        "address, reason, detail, email_id, created_at, created_by"
    };
}

impl Store {
    /// Adds `s` (its address lower-cased) unless the address is already
    /// suppressed, with `audit` in the same transaction; returns whether it
    /// was added. The first reason stays: a later bounce does not turn an
    /// unsubscribe into a bounce.
    pub async fn suppress(
        &self,
        s: &Suppression,
        audit: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let added = sqlx::query(
            "INSERT INTO suppressions (address, reason, detail, email_id, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address) DO NOTHING",
        )
        .bind(s.address.to_lowercase())
        .bind(&s.reason)
        .bind(&s.detail)
        .bind(&s.email_id)
        .bind(s.created_at)
        .bind(&s.created_by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added && let Some(entry) = &audit {
            audit::insert(entry).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Which of `addresses` are suppressed (compared in lower case).
    pub async fn suppressed(&self, addresses: &[&str]) -> Result<Vec<Suppression>, StoreError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=addresses.len()).map(|i| format!("${i}")).collect();
        // Only numbered placeholders are formatted in; the addresses are bound.
        let sql = format!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM suppressions WHERE address IN ({})"
            ),
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in addresses {
            query = query.bind(a.to_lowercase());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(suppression).collect()
    }

    /// At most `limit` entries whose address contains `search` (lower
    /// case), in address order after `after`.
    pub async fn suppressions(
        &self,
        search: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError> {
        // `instr`/`strpos` differ between the two databases; LIKE does
        // not, with the pattern's own wildcards escaped.
        let pattern = search.map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM suppressions \
             WHERE (CAST($1 AS TEXT) IS NULL OR address LIKE CAST($1 AS TEXT) ESCAPE '\\') \
               AND (CAST($2 AS TEXT) IS NULL OR address > CAST($2 AS TEXT)) \
             ORDER BY address LIMIT $3"
        ))
        .bind(pattern)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(suppression).collect()
    }

    /// Lifts the suppression of `address`, with `audit` in the same
    /// transaction; returns whether there was one.
    pub async fn lift_suppression(
        &self,
        address: &str,
        audit: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let lifted = sqlx::query("DELETE FROM suppressions WHERE address = $1")
            .bind(address.to_lowercase())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if lifted && let Some(entry) = &audit {
            audit::insert(entry).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }
}
