//! The first administrator, from configuration: never a default password.
//!
//! - With `ADMIN_PASSWORD` (from a Secret in Kubernetes), the account
//!   `ADMIN_USERNAME` is created with it, or its password is set to it when
//!   it differs, so rotating the Secret rotates the password (and ends the
//!   account's sessions).
//! - Without it, in development, the first start creates the account with a
//!   random password written once to `DATA_DIR/admin-password` (mode 0600);
//!   the log says where, never what.
//! - Without it, in production, start-up stops while no administrator
//!   exists: there is no way in otherwise.

use std::{path::PathBuf, time::SystemTime};

use super::{AuthError, Role, passwords::Passwords, tokens};
use crate::{
    audit::{Context, Outcome},
    config::{Config, Mode},
    store::{Store, StoreError},
};

/// Why the first administrator could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Hashing or the store failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Production without a way in.
    #[error(
        "ADMIN_PASSWORD is required while no administrator exists (SECUREVAULT_ENV=production)"
    )]
    NoAdministrator,
    /// The generated password could not be written.
    #[error("cannot write the generated administrator password to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Creates or updates the first administrator as configured.
pub async fn first_admin(
    store: &Store,
    passwords: &Passwords,
    config: &Config,
) -> Result<(), BootstrapError> {
    let name = &config.auth.admin_username;
    let audit = Context::system();
    let now = SystemTime::now();
    if let Some(password) = &config.auth.admin_password {
        match store.user_by_name(name).await? {
            None => {
                let hash = passwords.hash(password.expose()).await?;
                store
                    .insert_user(name, &hash, Role::Admin.as_str(), now)
                    .await?;
                tracing::info!(username = %name, "administrator created from ADMIN_PASSWORD");
                audit
                    .record(
                        store,
                        "user.create",
                        Some(name),
                        Outcome::Success,
                        Some("administrator from ADMIN_PASSWORD".into()),
                    )
                    .await;
            }
            Some(user)
                if !passwords
                    .verify(password.expose(), Some(&user.password_hash))
                    .await? =>
            {
                let hash = passwords.hash(password.expose()).await?;
                store.set_password(&user.id, &hash, now).await?;
                tracing::info!(username = %name, "administrator password changed to ADMIN_PASSWORD; its sessions ended");
                audit
                    .record(
                        store,
                        "user.password_change",
                        Some(name),
                        Outcome::Success,
                        Some("ADMIN_PASSWORD changed".into()),
                    )
                    .await;
            }
            Some(_) => {}
        }
        return Ok(());
    }
    if store.admin_exists().await? {
        return Ok(());
    }
    if config.mode == Mode::Production {
        return Err(BootstrapError::NoAdministrator);
    }
    let password =
        tokens::generate(tokens::Kind::Session).map_err(|e| AuthError::Hash(e.to_string()))?;
    let password = password[4..28].to_owned();
    let path = config.data_dir.join("admin-password");
    write_private(&path, &password).map_err(|source| BootstrapError::Write {
        path: path.clone(),
        source,
    })?;
    let hash = passwords.hash(&password).await?;
    store
        .insert_user(name, &hash, Role::Admin.as_str(), now)
        .await?;
    tracing::warn!(
        username = %name,
        path = %path.display(),
        "no administrator existed: created one with a generated password, written to {}; set ADMIN_PASSWORD to choose it",
        path.display()
    );
    audit
        .record(
            store,
            "user.create",
            Some(name),
            Outcome::Success,
            Some("administrator with a generated password (development)".into()),
        )
        .await;
    Ok(())
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        crate::private_files::private_dir(dir)?;
    }
    let mut file = crate::private_files::create_private(path)?;
    writeln!(file, "{text}")
}
