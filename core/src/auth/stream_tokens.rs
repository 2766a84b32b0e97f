//! Execution-scoped stream tokens: browsers' `EventSource` cannot send headers, so the
//! events endpoint also accepts `?token=`. A stream token is a short-lived JWT for one
//! execution with its own audience: it cannot be used as an access token, and an access
//! token cannot be used as a stream token (URLs end up in logs and histories; this limits
//! what a leaked one is worth).

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::tokens::ISSUER;
use crate::error::{CoreError, CoreResult};

pub const STREAM_AUDIENCE: &str = "crewgraph-stream";
pub const STREAM_TOKEN_TTL: Duration = Duration::minutes(5);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StreamClaims {
    sub: Uuid,
    /// The execution this token may stream.
    exe: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

pub struct StreamTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl StreamTokens {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[STREAM_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        StreamTokens {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    pub fn issue(&self, user_id: Uuid, execution_id: Uuid) -> CoreResult<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + STREAM_TOKEN_TTL;
        let claims = StreamClaims {
            sub: user_id,
            exe: execution_id,
            iss: ISSUER.into(),
            aud: STREAM_AUDIENCE.into(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|e| CoreError::Internal(anyhow::anyhow!("signing a stream token: {e}")))?;
        Ok((token, expires_at))
    }

    /// The user a token was issued to, if it is valid for `execution_id`.
    pub fn verify(&self, token: &str, execution_id: Uuid) -> CoreResult<Uuid> {
        let claims = jsonwebtoken::decode::<StreamClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| CoreError::Unauthenticated("invalid or expired stream token"))?;
        if claims.exe != execution_id {
            return Err(CoreError::Unauthenticated(
                "this stream token is for another execution",
            ));
        }
        Ok(claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::auth::tokens::AccessTokens;

    fn secret() -> SecretString {
        SecretString::from("a-test-secret-that-is-long-enough-0123")
    }

    #[test]
    fn a_stream_token_opens_one_execution_only() {
        let tokens = StreamTokens::new(&secret());
        let (user, execution) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = tokens.issue(user, execution).expect("issue");
        assert_eq!(tokens.verify(&token, execution).expect("verify"), user);
        assert!(tokens.verify(&token, Uuid::new_v4()).is_err());
    }

    #[test]
    fn stream_and_access_tokens_are_not_interchangeable() {
        let (user, execution) = (Uuid::new_v4(), Uuid::new_v4());
        let stream = StreamTokens::new(&secret());
        let access = AccessTokens::new(&secret());
        let (stream_token, _) = stream.issue(user, execution).expect("issue");
        assert!(access.verify(&stream_token).is_err());
        let (access_token, _) = access
            .issue(user, Uuid::new_v4(), Role::User)
            .expect("issue");
        assert!(stream.verify(&access_token, execution).is_err());
    }
}
