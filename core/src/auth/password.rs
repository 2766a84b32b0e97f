//! Password hashing with argon2id. Parameters are OWASP's minimum recommendation
//! (m = 19 MiB, t = 2, p = 1); hashing runs on the blocking pool so it never stalls the
//! async runtime.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{CoreError, CoreResult};

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long enough for any passphrase, short enough that hashing cannot be used as a DoS.
pub const MAX_PASSWORD_CHARS: usize = 256;
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn validate_new_password(password: &str) -> CoreResult<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(CoreError::invalid(
            "password_too_short",
            "password",
            format!("the password must have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(CoreError::invalid(
            "password_too_long",
            "password",
            format!("the password must have at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

pub async fn hash_password(password: SecretString) -> CoreResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| CoreError::Internal(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| CoreError::Internal(e.into()))?
}

/// Checks `password` against `stored`. With no stored hash (unknown user) it still does
/// the full work against a dummy hash, so the answer takes the same time either way.
pub async fn verify_password(password: SecretString, stored: Option<String>) -> CoreResult<bool> {
    tokio::task::spawn_blocking(move || {
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (dummy_hash().to_string(), false),
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| CoreError::Internal(anyhow::anyhow!("stored password hash: {e}")))?;
        let matches = hasher()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(|e| CoreError::Internal(e.into()))?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(b"no such user: timing equaliser", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_documented_parameters_and_verify() {
        let hash = hash_password(SecretString::from("correct horse"))
            .await
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify_password(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("wrong horse"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("anything"), None)
                .await
                .expect("verify")
        );
    }

    #[test]
    fn new_passwords_have_length_bounds() {
        assert!(validate_new_password("short").is_err());
        assert!(validate_new_password("long enough").is_ok());
        assert!(validate_new_password(&"x".repeat(257)).is_err());
    }
}
