//! Configuration from the environment (DESIGN §8), validated in one pass.
//!
//! Every problem is collected before anything is reported, so an operator fixes a broken
//! deployment in one round instead of one variable per restart. Each section reads its
//! variables in its own file; [`Config::from_lookup`] reads them in a fixed order.

mod api;
mod auth;
mod database;
mod encryption;
mod logging;
mod mlflow;
mod monitoring;
mod outbound;
mod prices;
mod reader;
mod webhooks;
mod worker;

use std::fmt;
use std::time::Duration;

pub use api::{ApiConfig, CorsOrigins, DEFAULT_API_ADDR, DEFAULT_MAX_BODY_BYTES};
pub use auth::{AuthConfig, BootstrapAdmin, looks_like_email};
pub use database::{DEFAULT_DATABASE_MAX_CONNECTIONS, DEFAULT_DATABASE_URL, DatabaseConfig};
pub use encryption::EncryptionKeys;
pub use logging::{LogConfig, LogFormat};
pub use mlflow::{
    DEFAULT_EXPERIMENT_NAME, EXPERIMENT_NAME_PLACEHOLDERS, MlflowAuth, MlflowConfig,
    MlflowTracking, OtlpDestination,
};
pub use monitoring::{DEFAULT_WORKER_HTTP_ADDR, MonitoringConfig};
pub use outbound::OutboundConfig;
pub use reader::Lookup;
pub use webhooks::WebhookConfig;
pub use worker::{DEFAULT_WORKER_CONCURRENCY, ExecutionLimits, WorkerConfig};

use reader::Reader;

/// Which binary is loading its configuration: each requires only the secrets it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Api,
    Worker,
    /// Maintenance commands (`migrate`, `rotate-keys`) that only need the database.
    Maintenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug)]
pub struct Config {
    pub environment: Environment,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    pub executions: ExecutionLimits,
    pub outbound: OutboundConfig,
    pub webhooks: WebhookConfig,
    pub auth: AuthConfig,
    pub encryption_keys: EncryptionKeys,
    pub log: LogConfig,
    /// MLflow runs and OTLP traces of ended executions.
    pub mlflow: MlflowConfig,
    /// The price table for cost estimates (`CREWGRAPH_PRICES_FILE`).
    pub prices: crate::metrics::prices::PriceTable,
    pub monitoring: MonitoringConfig,
    /// Things worth a warning at start-up (development defaults in use), logged once
    /// telemetry is up.
    pub warnings: Vec<String>,
}

/// Every missing or malformed variable, each naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {}: {}", problem.variable, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the configuration from the process environment. In development a `.env` file
    /// in the working directory is read first (it never overrides real variables).
    pub fn from_env(component: Component) -> Result<Self, ConfigError> {
        let is_production = std::env::var("CREWGRAPH_ENV")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "production" | "prod"
                )
            })
            .unwrap_or(false);
        if !is_production {
            // A missing .env is the normal case; a malformed one is reported below as the
            // variables it failed to provide.
            let _ = dotenvy::dotenv();
        }
        Self::from_lookup(component, |name| match std::env::var(name) {
            Ok(value) => Lookup::Value(value),
            Err(std::env::VarError::NotPresent) => Lookup::Missing,
            Err(std::env::VarError::NotUnicode(_)) => Lookup::NotUnicode,
        })
    }

    /// Loads the configuration from any source of variables (tests pass a map).
    pub fn from_lookup(
        component: Component,
        lookup: impl Fn(&str) -> Lookup,
    ) -> Result<Self, ConfigError> {
        let mut reader = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let mut warnings = Vec::new();
        let environment = read_environment(&mut reader);
        let production = environment == Environment::Production;
        let database = database::read(&mut reader, production);
        let api = api::read(&mut reader, production);
        let (worker, executions) = worker::read(&mut reader);
        let outbound = outbound::read(&mut reader);
        let webhooks = webhooks::read(&mut reader);
        let jwt_secret = auth::read_jwt_secret(&mut reader, production, component, &mut warnings);
        let encryption_keys = encryption::read(&mut reader, production, component, &mut warnings);
        let (admin, allow_registration) = auth::read_accounts(&mut reader);
        let log = logging::read(&mut reader);
        let mlflow = mlflow::read(&mut reader);
        let prices = prices::read(&mut reader);
        let monitoring = monitoring::read(&mut reader);
        if !reader.problems.is_empty() {
            return Err(ConfigError {
                problems: reader.problems,
            });
        }
        Ok(Config {
            environment,
            database,
            api,
            worker,
            executions,
            outbound,
            webhooks,
            auth: AuthConfig {
                jwt_secret,
                admin,
                allow_registration,
            },
            encryption_keys,
            log,
            mlflow,
            prices,
            monitoring,
            warnings,
        })
    }
}

fn read_environment(reader: &mut Reader<'_>) -> Environment {
    match reader.get("CREWGRAPH_ENV") {
        None => Environment::Development,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Environment::Development,
            "production" | "prod" => Environment::Production,
            _ => {
                reader.problem(
                    "CREWGRAPH_ENV",
                    format!("must be `development` or `production`, got `{v}`"),
                );
                Environment::Development
            }
        },
    }
}

/// How long the API waits for in-flight requests after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests;
