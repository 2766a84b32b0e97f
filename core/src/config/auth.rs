//! Sessions (`CREWGRAPH_JWT_SECRET`), the bootstrap admin and open registration.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;
use secrecy::SecretString;

use super::Component;
use super::reader::Reader;

pub(super) const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt_secret: SecretString,
    pub admin: Option<BootstrapAdmin>,
    pub allow_registration: bool,
}

#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: SecretString,
}

pub(super) fn read_jwt_secret(
    reader: &mut Reader<'_>,
    production: bool,
    component: Component,
    warnings: &mut Vec<String>,
) -> SecretString {
    let secret = match reader.get("CREWGRAPH_JWT_SECRET") {
        Some(secret) if secret.len() >= MIN_JWT_SECRET_BYTES => secret,
        Some(_) => {
            reader.problem(
                "CREWGRAPH_JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            );
            String::new()
        }
        None if production && component == Component::Api => {
            reader.problem("CREWGRAPH_JWT_SECRET", "is required in production".into());
            String::new()
        }
        None => {
            if component == Component::Api {
                warnings.push(
                    "CREWGRAPH_JWT_SECRET is not set: using a random secret for this process \
                     (sessions end when it restarts and are not shared between replicas)"
                        .into(),
                );
            }
            random_secret()
        }
    };
    SecretString::from(secret)
}

/// The bootstrap admin (both variables or neither) and whether anyone may register.
pub(super) fn read_accounts(reader: &mut Reader<'_>) -> (Option<BootstrapAdmin>, bool) {
    let admin_email = reader.get("CREWGRAPH_ADMIN_EMAIL");
    let admin_password = reader.get("CREWGRAPH_ADMIN_PASSWORD");
    let admin = match (admin_email, admin_password) {
        (None, None) => None,
        (Some(email), Some(password)) => {
            let email = email.trim().to_string();
            if !looks_like_email(&email) {
                reader.problem("CREWGRAPH_ADMIN_EMAIL", "is not an email address".into());
            }
            if password.chars().count() < 12 {
                reader.problem(
                    "CREWGRAPH_ADMIN_PASSWORD",
                    "must be at least 12 characters".into(),
                );
            }
            Some(BootstrapAdmin {
                email,
                password: SecretString::from(password),
            })
        }
        (Some(_), None) => {
            reader.problem(
                "CREWGRAPH_ADMIN_PASSWORD",
                "is required when CREWGRAPH_ADMIN_EMAIL is set".into(),
            );
            None
        }
        (None, Some(_)) => {
            reader.problem(
                "CREWGRAPH_ADMIN_EMAIL",
                "is required when CREWGRAPH_ADMIN_PASSWORD is set".into(),
            );
            None
        }
    };
    let allow_registration = reader
        .parse_bool("CREWGRAPH_ALLOW_REGISTRATION")
        .unwrap_or(true);
    (admin, allow_registration)
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// A deliberately loose check: the real proof of an address is a message reaching it.
pub fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.len() <= 254
}
