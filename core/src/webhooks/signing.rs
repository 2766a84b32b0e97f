//! The signature of a delivery: `X-Crewgraph-Signature: t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256, keyed with the webhook's secret (its UTF-8 text, `whsec_…`
//! included), of `"<t>.<body>"`. Signing the time with the body lets a receiver refuse
//! replays: a captured request is only accepted within its tolerance of `t`, and `t`
//! cannot be changed without the secret. [`verify`] is the receiver's side (the same
//! check docs/webhooks.md shows in Python and TypeScript).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::SecretString;
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "X-Crewgraph-Signature";
pub const DELIVERY_HEADER: &str = "X-Crewgraph-Delivery";
pub const EVENT_HEADER: &str = "X-Crewgraph-Event";
/// Every secret starts with this, so a leaked one is recognisable (secret scanners).
pub const SECRET_PREFIX: &str = "whsec_";
/// The replay window docs/webhooks.md recommends to receivers.
pub const RECOMMENDED_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// A new secret: the prefix and 32 random bytes (base64url).
pub fn new_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a receiver refuses a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the timestamp is outside the tolerance (a replay, or a clock far off)")]
    Expired,
}

/// The receiver's check: some `v1` in the header is the HMAC of `"t.body"` (compared in
/// constant time) and `t` is within `tolerance_secs` of `now`.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let matches = signatures.into_iter().flatten().any(|signature| {
        mac(secret, timestamp, body)
            .verify_slice(&signature)
            .is_ok()
    });
    if !matches {
        return Err(VerifyError::Mismatch);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn a_signature_verifies_and_any_change_is_refused() {
        let secret = new_secret();
        let secret = secret.expose_secret();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 43);
        let body = br#"{"event":"execution.succeeded"}"#;
        let header = signature_header(secret, 1_700_000_000, body);
        assert_eq!(verify(secret, &header, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(
            verify(secret, &header, b"{}", 1_700_000_100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, body, 1_700_000_100, 300),
            Err(VerifyError::Mismatch)
        );
        // A replay later than the tolerance, and a timestamp moved without re-signing.
        assert_eq!(
            verify(secret, &header, body, 1_700_000_301, 300),
            Err(VerifyError::Expired)
        );
        let moved = header.replace("t=1700000000", "t=1700000300");
        assert_eq!(
            verify(secret, &moved, body, 1_700_000_300, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "v1=00", body, 0, 300),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently: printf '1.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature_header("whsec_test", 1, b"{}"),
            "t=1,v1=7500d5d4be4b3ef07af1fe56f7d522d135cdaa7530de557e67cc1049c52de094"
        );
    }
}
