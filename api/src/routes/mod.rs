//! One module per resource, each an `#[OpenApi]` impl; [`api`] merges them for the one
//! OpenAPI service.

pub mod health;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes for orchestrators.
    Operations,
}

/// Every resource's operations, merged in one place.
pub fn api() -> impl poem_openapi::OpenApi {
    health::HealthApi
}
