//! Configuration from the environment (DESIGN §8), validated in one pass.
//!
//! Every problem is collected before anything is reported, so an operator fixes a broken
//! deployment in one round instead of one variable per restart.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretBox, SecretString};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/crewgraph";
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_WORKER_CONCURRENCY: usize = 64;
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 20;
const MIN_JWT_SECRET_BYTES: usize = 32;
const MAX_WORKER_CONCURRENCY: usize = 100_000;

/// The development encryption key. It is public (it is in the source), which is why
/// production refuses to start without `CREWGRAPH_ENCRYPTION_KEYS`.
const DEVELOPMENT_ENCRYPTION_KEY: [u8; 32] = *b"crewgraph-development-only-key!!";

#[derive(Debug)]
pub struct Config {
    pub environment: Environment,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    pub executions: ExecutionLimits,
    pub auth: AuthConfig,
    pub encryption_keys: EncryptionKeys,
    pub mlflow_tracking_uri: Option<url::Url>,
    pub log: LogConfig,
    /// Things worth a warning at start-up (development defaults in use), logged once
    /// telemetry is up.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen_addr: SocketAddr,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Seconds an execution may run before it fails with `timeout`.
    pub execution_timeout_secs: u64,
    /// A running execution whose heartbeat is older than this is recovered.
    pub lost_after_secs: u64,
    /// Seconds a stopping worker lets running crews finish before handing them back.
    pub shutdown_grace_secs: u64,
    /// Claims of one execution before a lost worker fails it (`worker_lost`).
    pub max_attempts: i32,
    /// Operator fallback for models whose owner has no stored key for the provider: an
    /// OpenAI-compatible base URL (the Quickstart points it at `scripted-llm`).
    pub fallback_llm_base_url: Option<String>,
    pub fallback_llm_api_key: Option<SecretString>,
    /// Days finished executions are kept (`CREWGRAPH_RETENTION_DAYS`); `None`: forever.
    pub retention_days: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ExecutionLimits {
    /// Queued plus running executions one user may have.
    pub max_active_per_user: i64,
}

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

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

/// AES-256 master keys by version, newest first.
pub struct EncryptionKeys {
    keys: Vec<(u32, SecretBox<[u8; 32]>)>,
}

impl EncryptionKeys {
    pub fn newest(&self) -> (u32, &[u8; 32]) {
        let (version, key) = &self.keys[0];
        (*version, key.expose_secret())
    }

    pub fn get(&self, version: u32) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, key)| key.expose_secret())
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|(v, _)| *v).collect()
    }
}

impl fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("versions", &self.versions())
            .finish_non_exhaustive()
    }
}

impl Clone for EncryptionKeys {
    fn clone(&self) -> Self {
        Self {
            keys: self
                .keys
                .iter()
                .map(|(v, k)| (*v, SecretBox::new(Box::new(*k.expose_secret()))))
                .collect(),
        }
    }
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

        let environment = match reader.get("CREWGRAPH_ENV") {
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
        };
        let production = environment == Environment::Production;

        let database_url = match reader.get("DATABASE_URL") {
            Some(url) => {
                match url::Url::parse(&url) {
                    Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {}
                    Ok(_) => reader.problem(
                        "DATABASE_URL",
                        "must be a postgres:// or postgresql:// URL".into(),
                    ),
                    // The URL may hold a password: never echo it back.
                    Err(e) => reader.problem("DATABASE_URL", format!("is not a valid URL ({e})")),
                }
                url
            }
            None if production => {
                reader.problem("DATABASE_URL", "is required in production".into());
                String::new()
            }
            None => DEFAULT_DATABASE_URL.to_string(),
        };
        let max_connections = reader
            .parse_ranged(
                "CREWGRAPH_DATABASE_MAX_CONNECTIONS",
                DEFAULT_DATABASE_MAX_CONNECTIONS,
                1,
                1_000,
            )
            .unwrap_or(DEFAULT_DATABASE_MAX_CONNECTIONS);

        let listen_addr = match reader.get("CREWGRAPH_API_ADDR") {
            Some(v) => v.trim().parse::<SocketAddr>().unwrap_or_else(|_| {
                reader.problem(
                    "CREWGRAPH_API_ADDR",
                    format!("must be an address like 127.0.0.1:8080, got `{v}`"),
                );
                default_api_addr()
            }),
            None => default_api_addr(),
        };
        let max_body_bytes = reader
            .parse_ranged(
                "CREWGRAPH_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                1_024,
                256 * 1024 * 1024,
            )
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);

        let concurrency = reader
            .parse_ranged(
                "CREWGRAPH_WORKER_CONCURRENCY",
                DEFAULT_WORKER_CONCURRENCY,
                1,
                MAX_WORKER_CONCURRENCY,
            )
            .unwrap_or(DEFAULT_WORKER_CONCURRENCY);

        let execution_timeout_secs = reader
            .parse_ranged(
                "CREWGRAPH_EXECUTION_TIMEOUT_SECS",
                1800u64,
                1,
                7 * 24 * 3600,
            )
            .unwrap_or(1800);
        let lost_after_secs = reader
            .parse_ranged("CREWGRAPH_WORKER_LOST_AFTER_SECS", 30u64, 2, 3600)
            .unwrap_or(30);
        let shutdown_grace_secs = reader
            .parse_ranged("CREWGRAPH_WORKER_SHUTDOWN_GRACE_SECS", 30u64, 0, 3600)
            .unwrap_or(30);
        let max_attempts = reader
            .parse_ranged("CREWGRAPH_EXECUTION_MAX_ATTEMPTS", 3i32, 1, 100)
            .unwrap_or(3);
        let retention_days = reader
            .get("CREWGRAPH_RETENTION_DAYS")
            .is_some()
            .then(|| reader.parse_ranged("CREWGRAPH_RETENTION_DAYS", 1u32, 1, 36_500))
            .flatten();
        let max_active_per_user = reader
            .parse_ranged("CREWGRAPH_MAX_ACTIVE_EXECUTIONS", 100i64, 1, 1_000_000)
            .unwrap_or(100);
        let fallback_llm_base_url = reader.get("CREWGRAPH_FALLBACK_LLM_BASE_URL").and_then(|v| {
            match url::Url::parse(v.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    Some(v.trim().trim_end_matches('/').to_string())
                }
                _ => {
                    reader.problem(
                        "CREWGRAPH_FALLBACK_LLM_BASE_URL",
                        "must be an http:// or https:// URL".into(),
                    );
                    None
                }
            }
        });
        let fallback_llm_api_key = reader
            .get("CREWGRAPH_FALLBACK_LLM_API_KEY")
            .map(SecretString::from);

        let jwt_secret = match reader.get("CREWGRAPH_JWT_SECRET") {
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

        let encryption_keys = match reader.get("CREWGRAPH_ENCRYPTION_KEYS") {
            Some(v) => match parse_encryption_keys(&v) {
                Ok(keys) => {
                    if production && keys.get_any_matching(&DEVELOPMENT_ENCRYPTION_KEY) {
                        reader.problem(
                            "CREWGRAPH_ENCRYPTION_KEYS",
                            "holds the public development key, refused in production".into(),
                        );
                    }
                    keys
                }
                Err(message) => {
                    reader.problem("CREWGRAPH_ENCRYPTION_KEYS", message);
                    development_keys()
                }
            },
            None if production && component != Component::Maintenance => {
                reader.problem(
                    "CREWGRAPH_ENCRYPTION_KEYS",
                    "is required in production".into(),
                );
                development_keys()
            }
            None => {
                if component != Component::Maintenance {
                    warnings.push(
                        "CREWGRAPH_ENCRYPTION_KEYS is not set: provider keys are encrypted with \
                         the public development key"
                            .into(),
                    );
                }
                development_keys()
            }
        };

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

        let mlflow_tracking_uri =
            reader
                .get("MLFLOW_TRACKING_URI")
                .and_then(|v| match url::Url::parse(v.trim()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    _ => {
                        reader.problem(
                            "MLFLOW_TRACKING_URI",
                            // The URL may carry credentials: never echo it.
                            "must be an http:// or https:// URL".into(),
                        );
                        None
                    }
                });

        let filter = reader.get("RUST_LOG").unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
            reader.problem("RUST_LOG", format!("is not a valid log filter ({e})"));
        }
        let format = match reader.get("CREWGRAPH_LOG_FORMAT") {
            None => LogFormat::Pretty,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    reader.problem(
                        "CREWGRAPH_LOG_FORMAT",
                        format!("must be `json` or `pretty`, got `{v}`"),
                    );
                    LogFormat::Pretty
                }
            },
        };

        if !reader.problems.is_empty() {
            return Err(ConfigError {
                problems: reader.problems,
            });
        }
        Ok(Config {
            environment,
            database: DatabaseConfig {
                url: SecretString::from(database_url),
                max_connections,
            },
            api: ApiConfig {
                listen_addr,
                max_body_bytes,
            },
            worker: WorkerConfig {
                concurrency,
                execution_timeout_secs,
                lost_after_secs,
                shutdown_grace_secs,
                max_attempts,
                fallback_llm_base_url,
                fallback_llm_api_key,
                retention_days,
            },
            executions: ExecutionLimits {
                max_active_per_user,
            },
            auth: AuthConfig {
                jwt_secret: SecretString::from(jwt_secret),
                admin,
                allow_registration,
            },
            encryption_keys,
            mlflow_tracking_uri,
            log: LogConfig { filter, format },
            warnings,
        })
    }
}

/// What a variable source answers for one name.
pub enum Lookup {
    Value(String),
    Missing,
    NotUnicode,
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Lookup,
    problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    /// The variable's value; an empty value counts as unset (compose files often pass `VAR=`).
    fn get(&mut self, name: &'static str) -> Option<String> {
        match (self.lookup)(name) {
            Lookup::Value(v) if v.trim().is_empty() => None,
            Lookup::Value(v) => Some(v),
            Lookup::Missing => None,
            Lookup::NotUnicode => {
                self.problem(name, "is not valid UTF-8".into());
                None
            }
        }
    }

    fn problem(&mut self, variable: &'static str, message: String) {
        self.problems.push(ConfigProblem { variable, message });
    }

    fn parse_ranged<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else {
            return Some(default);
        };
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Some(v),
            _ => {
                self.problem(
                    name,
                    format!("must be a whole number from {min} to {max}, got `{raw}`"),
                );
                None
            }
        }
    }

    fn parse_bool(&mut self, name: &'static str) -> Option<bool> {
        let raw = self.get(name)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => {
                self.problem(name, format!("must be `true` or `false`, got `{raw}`"));
                None
            }
        }
    }
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

fn development_keys() -> EncryptionKeys {
    EncryptionKeys {
        keys: vec![(1, SecretBox::new(Box::new(DEVELOPMENT_ENCRYPTION_KEY)))],
    }
}

impl EncryptionKeys {
    fn get_any_matching(&self, key: &[u8; 32]) -> bool {
        self.keys.iter().any(|(_, k)| k.expose_secret() == key)
    }
}

/// Parses `v2:<base64 of 32 bytes>,v1:<...>` (newest first). Messages never echo key material.
fn parse_encryption_keys(raw: &str) -> Result<EncryptionKeys, String> {
    let mut keys: Vec<(u32, SecretBox<[u8; 32]>)> = Vec::new();
    for (index, entry) in raw.split(',').map(str::trim).enumerate() {
        let position = index + 1;
        let Some((version, encoded)) = entry.split_once(':') else {
            return Err(format!(
                "entry {position} must look like `v1:<base64 of 32 bytes>`"
            ));
        };
        let version = version
            .strip_prefix('v')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("entry {position} has a version that is not `v<number>`"))?;
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| format!("entry {position} (v{version}) is not valid base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "entry {position} (v{version}) must decode to 32 bytes, got {}",
                bytes.len()
            )
        })?;
        if keys.iter().any(|(v, _)| *v == version) {
            return Err(format!("version v{version} appears more than once"));
        }
        if let Some((previous, _)) = keys.last()
            && *previous < version
        {
            return Err(format!(
                "keys must be listed newest first (v{previous} before v{version})"
            ));
        }
        keys.push((version, SecretBox::new(Box::new(key))));
    }
    Ok(EncryptionKeys { keys })
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

/// How long the API waits for in-flight requests after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(component: Component, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(component, |name| match map.get(name) {
            Some(v) => Lookup::Value(v.clone()),
            None => Lookup::Missing,
        })
    }

    fn variables(err: &ConfigError) -> Vec<&'static str> {
        err.problems.iter().map(|p| p.variable).collect()
    }

    #[test]
    fn development_defaults_load_with_warnings() {
        let config = load(Component::Api, &[]).expect("defaults are valid in development");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.api.listen_addr.to_string(), DEFAULT_API_ADDR);
        assert_eq!(config.database.url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(config.worker.concurrency, DEFAULT_WORKER_CONCURRENCY);
        assert_eq!(config.log.format, LogFormat::Pretty);
        assert!(config.auth.jwt_secret.expose_secret().len() >= MIN_JWT_SECRET_BYTES);
        assert_eq!(config.encryption_keys.versions(), vec![1]);
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = load(
            Component::Api,
            &[
                ("DATABASE_URL", "mysql://x"),
                ("CREWGRAPH_API_ADDR", "nowhere"),
                ("CREWGRAPH_WORKER_CONCURRENCY", "0"),
                ("CREWGRAPH_LOG_FORMAT", "xml"),
                ("CREWGRAPH_JWT_SECRET", "short"),
                ("CREWGRAPH_ENCRYPTION_KEYS", "v1:notbase64!"),
                ("MLFLOW_TRACKING_URI", "ftp://x"),
                ("RUST_LOG", "info,[[["),
            ],
        )
        .expect_err("all of these are malformed");
        assert_eq!(
            variables(&err),
            vec![
                "DATABASE_URL",
                "CREWGRAPH_API_ADDR",
                "CREWGRAPH_WORKER_CONCURRENCY",
                "CREWGRAPH_JWT_SECRET",
                "CREWGRAPH_ENCRYPTION_KEYS",
                "MLFLOW_TRACKING_URI",
                "RUST_LOG",
                "CREWGRAPH_LOG_FORMAT",
            ]
        );
    }

    #[test]
    fn production_refuses_development_defaults() {
        let err = load(Component::Api, &[("CREWGRAPH_ENV", "production")])
            .expect_err("production needs real secrets");
        assert_eq!(
            variables(&err),
            vec![
                "DATABASE_URL",
                "CREWGRAPH_JWT_SECRET",
                "CREWGRAPH_ENCRYPTION_KEYS"
            ]
        );
        let dev_key = BASE64.encode(DEVELOPMENT_ENCRYPTION_KEY);
        let err = load(
            Component::Worker,
            &[
                ("CREWGRAPH_ENV", "production"),
                ("DATABASE_URL", "postgres://db/crewgraph"),
                ("CREWGRAPH_ENCRYPTION_KEYS", &format!("v1:{dev_key}")),
            ],
        )
        .expect_err("the public development key is refused");
        assert_eq!(variables(&err), vec!["CREWGRAPH_ENCRYPTION_KEYS"]);
    }

    #[test]
    fn worker_in_production_does_not_need_the_jwt_secret() {
        let key = BASE64.encode([7u8; 32]);
        let config = load(
            Component::Worker,
            &[
                ("CREWGRAPH_ENV", "production"),
                ("DATABASE_URL", "postgres://db/crewgraph"),
                ("CREWGRAPH_ENCRYPTION_KEYS", &format!("v1:{key}")),
            ],
        )
        .expect("a worker needs the database and the encryption keys only");
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn encryption_keys_parse_newest_first() {
        let k2 = BASE64.encode([2u8; 32]);
        let k1 = BASE64.encode([1u8; 32]);
        let keys = parse_encryption_keys(&format!("v2:{k2}, v1:{k1}")).expect("valid keys");
        assert_eq!(keys.versions(), vec![2, 1]);
        assert_eq!(keys.newest(), (2, &[2u8; 32]));
        assert_eq!(keys.get(1), Some(&[1u8; 32]));
        assert!(parse_encryption_keys(&format!("v1:{k1},v2:{k2}")).is_err());
        assert!(parse_encryption_keys(&format!("v1:{k1},v1:{k1}")).is_err());
        assert!(parse_encryption_keys(&format!("x1:{k1}")).is_err());
        let short = BASE64.encode([1u8; 16]);
        let message =
            parse_encryption_keys(&format!("v1:{short}")).expect_err("16 bytes is too short");
        assert!(message.contains("32 bytes"), "{message}");
        assert!(!message.contains(&short), "key material must not be echoed");
    }

    #[test]
    fn database_url_problems_never_echo_the_url() {
        let err = load(
            Component::Api,
            &[("DATABASE_URL", "postgres://user:hunter2@[bad")],
        )
        .expect_err("malformed URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn admin_email_and_password_go_together() {
        let err = load(Component::Api, &[("CREWGRAPH_ADMIN_EMAIL", "a@b.co")])
            .expect_err("password missing");
        assert_eq!(variables(&err), vec!["CREWGRAPH_ADMIN_PASSWORD"]);
        let config = load(
            Component::Api,
            &[
                ("CREWGRAPH_ADMIN_EMAIL", "admin@example.com"),
                ("CREWGRAPH_ADMIN_PASSWORD", "correct horse battery"),
            ],
        )
        .expect("valid admin");
        assert_eq!(
            config.auth.admin.map(|a| a.email).as_deref(),
            Some("admin@example.com")
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let config = load(Component::Api, &[("MLFLOW_TRACKING_URI", "")]).expect("empty is unset");
        assert!(config.mlflow_tracking_uri.is_none());
    }
}
