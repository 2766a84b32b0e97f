//! Identity: passwords, sessions with rotating refresh tokens, personal access tokens,
//! rate limits, and the authentication of requests.

pub mod admin;
pub mod password;
pub mod personal_tokens;
pub mod provider_keys;
pub mod rate_limit;
pub mod sessions;
pub mod stream_tokens;
pub mod tokens;
pub mod users;

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling, as established from a credential. Every query of a resource is scoped
/// to `user_id`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

#[derive(Debug, Clone, Copy)]
pub enum Credential {
    /// A JWT access token of this login session.
    Session(Uuid),
    /// A personal access token.
    PersonalAccessToken(Uuid),
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn session_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::PersonalAccessToken(_) => None,
        }
    }
}
