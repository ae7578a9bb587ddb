//! Password hashing with argon2id at one of OWASP's recommended parameter
//! sets: 46 MiB of memory, 1 pass, 1 lane (equivalent in strength to their
//! first choice, 19 MiB and 2 passes).
//!
//! Why the 46 MiB variant: glibc serves allocations above its mmap
//! threshold from fresh mappings and unmaps them on free, but it raises that
//! threshold to the size of each large block freed, up to 32 MiB. A 19 MiB
//! block would therefore come from the heap from the second hash on and stay
//! in the process after it (measured: idle memory 10 MB -> 52 MB). Above 32
//! MiB every hash maps its memory and gives it back.
//!
//! Each hash costs tens of milliseconds of CPU and 19 MiB, on purpose. It
//! runs on the blocking pool so it never stalls the async workers, and a
//! semaphore bounds how many run at once, so a burst of logins cannot
//! exhaust memory or starve the other requests.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use tokio::sync::Semaphore;

use super::AuthError;

/// Memory cost in KiB, passes and lanes (see the module's comment).
const M_COST_KIB: u32 = 46 * 1024;
const T_COST: u32 = 1;
const P_COST: u32 = 1;

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashing and verification, at most a few at a time.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// The hash of a random password, verified against when a login names
    /// no existing user, so that a failure takes as long either way.
    decoy: Arc<str>,
}

impl Passwords {
    /// Hashing at most `concurrency` passwords at once.
    pub async fn new(concurrency: usize) -> Result<Self, AuthError> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let decoy_password = super::tokens::generate(super::tokens::Kind::Session)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        let decoy = run(&permits, move || hash_now(&decoy_password)).await?;
        Ok(Self {
            permits,
            decoy: decoy.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_owned();
        run(&self.permits, move || hash_now(&password)).await
    }

    /// Whether `password` matches `hash`. With `hash` `None` (no such user)
    /// the decoy is checked, so the answer (`false`) takes the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.decoy.to_string(), false),
        };
        let matches = run(&self.permits, move || {
            Ok(argon2()?
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok())
        })
        .await?;
        Ok(matches && real)
    }
}

fn hash_now(password: &str) -> Result<String, AuthError> {
    argon2()?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

async fn run<T: Send + 'static>(
    permits: &Semaphore,
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    let _permit = permits
        .acquire()
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_parameters_and_verify() {
        let p = Passwords::new(2).await.unwrap();
        let hash = p.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong horse battery", Some(&hash)).await.unwrap());
        assert_ne!(
            hash,
            p.hash("correct horse battery").await.unwrap(),
            "salted"
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies_even_with_the_decoy_password() {
        let p = Passwords::new(1).await.unwrap();
        assert!(!p.verify("anything at all", None).await.unwrap());
    }
}
