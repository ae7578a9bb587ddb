//! Deleting what is older than its retention: finished emails, generations
//! and audit entries. Each call deletes one batch in one short transaction,
//! so a large backlog (the first run after retention is switched on) never
//! holds SQLite's single writer for long; the caller repeats until a batch
//! comes back short.

use super::{Store, StoreError};

/// What retention applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Emails sent or failed; queued and in-flight ones are never deleted.
    Emails,
    /// AI generations.
    Generations,
    /// Audit entries.
    Audit,
}

impl Retained {
    /// Every kind, in the order a run goes through them.
    pub const ALL: [Retained; 3] = [Retained::Emails, Retained::Generations, Retained::Audit];

    /// Its name in metrics, logs and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Retained::Emails => "emails",
            Retained::Generations => "generations",
            Retained::Audit => "audit",
        }
    }

    /// The batch delete: ids chosen by age through the table's time index,
    /// then deleted by primary key (a form SQLite and PostgreSQL share).
    fn delete_sql(self) -> &'static str {
        match self {
            Retained::Emails => {
                "DELETE FROM emails WHERE id IN (SELECT id FROM emails \
                 WHERE created_at < $1 AND status IN ('sent', 'failed') LIMIT $2)"
            }
            Retained::Generations => {
                "DELETE FROM generations WHERE id IN (SELECT id FROM generations \
                 WHERE created_at < $1 LIMIT $2)"
            }
            Retained::Audit => {
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                 WHERE at < $1 LIMIT $2)"
            }
        }
    }
}

impl Store {
    /// Deletes at most `batch` rows of `kind` created before `cutoff` (Unix
    /// ms) and returns how many went.
    pub async fn delete_expired(
        &self,
        kind: Retained,
        cutoff: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(kind.delete_sql())
            .bind(cutoff)
            .bind(batch)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
