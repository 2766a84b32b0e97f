//! One module per resource, each an `#[OpenApi]` impl; [`api`] merges them for the one
//! OpenAPI service.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod health;
pub mod tokens;
pub mod users;
pub mod workspaces;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes for orchestrators.
    Operations,
    /// Accounts and login sessions: register, login, refresh, logout.
    Auth,
    /// The caller's profile and password.
    Users,
    /// Personal access tokens for scripts and CI.
    Tokens,
    /// LLM provider API keys, stored encrypted and shown masked.
    ApiKeys,
    /// User management (admin role only).
    Admin,
    /// A user's folders of graphs and threads.
    Workspaces,
}

/// Every resource's operations, merged in one place.
pub fn api() -> impl poem_openapi::OpenApi {
    (
        health::HealthApi,
        auth::AuthApi,
        users::UsersApi,
        tokens::TokensApi,
        api_keys::ApiKeysApi,
        admin::AdminApi,
        workspaces::WorkspacesApi,
    )
}
