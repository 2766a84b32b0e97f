//! One module per resource, each an `#[OpenApi]` impl; [`api`] merges them for the one
//! OpenAPI service.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod dashboard;
pub mod dashboard_bodies;
pub mod execution_metrics;
pub mod executions;
pub mod graph_bodies;
pub mod graph_requests;
pub mod graphs;
pub mod health;
pub mod mlflow_export;
pub mod templates;
pub mod threads;
pub mod tokens;
pub mod tools;
pub mod users;
pub mod validation;
pub mod webhooks;
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
    /// Crew graphs: store, version, validate, export and import.
    Graphs,
    /// The node types a graph may hold, with JSON Schemas for forms.
    NodeTypes,
    /// The tool repository.
    Tools,
    /// Ready-made graphs (written by admins).
    Templates,
    /// Conversations, optionally bound to a graph, and their messages.
    Threads,
    /// Runs of graphs: kickoff, status, event log, live events (SSE), cancel.
    Executions,
    /// Figures over ended runs: summary, time series, failing graphs, end codes, models.
    Dashboards,
    /// Signed webhooks of graphs and kickoffs, their deliveries and every attempt.
    Webhooks,
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
        graphs::GraphsApi,
        validation::ValidationApi,
        tools::ToolsApi,
        templates::TemplatesApi,
        threads::ThreadsApi,
        executions::ExecutionsApi,
        // Nested: poem-openapi merges tuples of at most 16.
        (
            execution_metrics::ExecutionMetricsApi,
            dashboard::DashboardApi,
            dashboard::AdminDashboardApi,
            webhooks::WebhooksApi,
        ),
    )
}

/// A PATCH field: absent keeps the stored value (`None`), `null` clears it (`Some(None)`).
pub fn patch_field<T>(value: poem_openapi::types::MaybeUndefined<T>) -> Option<Option<T>> {
    use poem_openapi::types::MaybeUndefined;
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}
