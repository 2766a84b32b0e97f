//! Access tokens (JWT, HS256 only) and opaque secrets (refresh tokens, personal access
//! tokens): 256 random bits, stored only as SHA-256 hashes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::auth::Role;
use crate::error::{CoreError, CoreResult};

pub const ISSUER: &str = "crewgraph";
pub const AUDIENCE: &str = "crewgraph-api";
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
pub const REFRESH_TOKEN_PREFIX: &str = "cgr_";
pub const PERSONAL_ACCESS_TOKEN_PREFIX: &str = "cgp_";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    /// The login session; revoking it ends this token before `exp`.
    pub sid: Uuid,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// Signs and checks access tokens with the configured secret.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl AccessTokens {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // The algorithm is fixed: `alg: none` and every other algorithm are rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        AccessTokens {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: Role,
    ) -> CoreResult<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + ACCESS_TOKEN_TTL;
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            role,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| {
            CoreError::Internal(anyhow::anyhow!("signing an access token: {e}"))
        })?;
        Ok((token, expires_at))
    }

    pub fn verify(&self, token: &str) -> CoreResult<AccessClaims> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| CoreError::Unauthenticated("invalid or expired access token"))
    }
}

/// A new opaque secret `<prefix><43 base64url chars>` (256 random bits) and its hash.
pub fn new_secret(prefix: &str) -> (SecretString, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_secret(&token);
    (SecretString::from(token), hash)
}

pub fn hash_secret(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(&SecretString::from(
            "a-test-secret-that-is-long-enough-0123",
        ))
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = tokens().issue(user, session, Role::Admin).expect("issue");
        let claims = tokens().verify(&token).expect("verify");
        assert_eq!(
            (claims.sub, claims.sid, claims.role),
            (user, session, Role::Admin)
        );
    }

    #[test]
    fn another_secret_or_a_tampered_token_is_rejected() {
        let (token, _) = tokens()
            .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User)
            .expect("issue");
        let other = AccessTokens::new(&SecretString::from(
            "another-secret-that-is-long-enough-999",
        ));
        assert!(other.verify(&token).is_err());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(tokens().verify(&tampered).is_err());
    }

    #[test]
    fn secrets_have_256_bits_and_their_prefix() {
        let (secret, hash) = new_secret(PERSONAL_ACCESS_TOKEN_PREFIX);
        let text = secret.expose_secret();
        assert!(text.starts_with("cgp_"));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&text[4..]).expect("base64").len(),
            32
        );
        assert_eq!(hash, hash_secret(text));
        assert_ne!(new_secret("x").1, new_secret("x").1);
    }
}
