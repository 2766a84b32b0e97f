//! Loading, defaults, and that every problem is reported at once.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret as _;

use super::auth::MIN_JWT_SECRET_BYTES;
use super::encryption::{DEVELOPMENT_ENCRYPTION_KEY, parse_encryption_keys};
use super::*;

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
            ("CREWGRAPH_RETENTION_DAYS", "0"),
            ("CREWGRAPH_LLM_ALLOWED_HOSTS", "http://ollama:11434"),
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
            "CREWGRAPH_RETENTION_DAYS",
            "CREWGRAPH_LLM_ALLOWED_HOSTS",
            "CREWGRAPH_JWT_SECRET",
            "CREWGRAPH_ENCRYPTION_KEYS",
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
    let message = parse_encryption_keys(&format!("v1:{short}")).expect_err("16 bytes is too short");
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
    let err =
        load(Component::Api, &[("CREWGRAPH_ADMIN_EMAIL", "a@b.co")]).expect_err("password missing");
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
    let config = load(
        Component::Api,
        &[
            ("CREWGRAPH_RETENTION_DAYS", ""),
            ("CREWGRAPH_LLM_ALLOWED_HOSTS", " "),
        ],
    )
    .expect("empty is unset");
    assert_eq!(config.worker.retention_days, None, "unset keeps forever");
    assert!(config.outbound.llm_allowed_hosts.is_empty());
}

#[test]
fn retention_days_are_a_positive_whole_number() {
    let config = load(Component::Worker, &[("CREWGRAPH_RETENTION_DAYS", "30")]).expect("valid");
    assert_eq!(config.worker.retention_days, Some(30));
    for bad in ["0", "-1", "thirty", "1.5"] {
        let err = load(Component::Worker, &[("CREWGRAPH_RETENTION_DAYS", bad)])
            .expect_err("not a positive number");
        assert_eq!(variables(&err), vec!["CREWGRAPH_RETENTION_DAYS"], "{bad}");
    }
}

#[test]
fn the_llm_policy_allows_listed_hosts_and_the_fallback() {
    use crate::outbound::Route;
    let config = load(
        Component::Api,
        &[
            (
                "CREWGRAPH_LLM_ALLOWED_HOSTS",
                "ollama.internal:11434, 127.0.0.1",
            ),
            (
                "CREWGRAPH_FALLBACK_LLM_BASE_URL",
                "http://10.0.0.5:9000/v1/",
            ),
        ],
    )
    .expect("valid");
    let policy = config.llm_outbound_policy();
    for url in [
        "http://ollama.internal:11434/v1",
        "http://127.0.0.1:8000/v1",
        "http://10.0.0.5:9000/v1",
    ] {
        assert_eq!(policy.check_base_url(url), Ok(Route::Trusted), "{url}");
    }
    assert!(policy.check_base_url("http://10.0.0.6/v1").is_err());
}

#[test]
fn cors_origins_default_to_local_dev_servers_in_development_and_parse_exact_lists() {
    let config = load(Component::Api, &[]).expect("development defaults");
    let dev = &config.api.cors_origins;
    assert_eq!(*dev, CorsOrigins::LocalDevServers);
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "http://[::1]:8000",
    ] {
        assert!(dev.allows(origin), "{origin}");
    }
    for origin in [
        "http://evil.example",
        "http://localhost.evil.example:5173",
        "null",
    ] {
        assert!(!dev.allows(origin), "{origin}");
    }
    let config = load(
        Component::Api,
        &[(
            "CREWGRAPH_CORS_ORIGINS",
            "https://App.Example.com, http://localhost:5173/",
        )],
    )
    .expect("valid origins");
    let exact = &config.api.cors_origins;
    assert!(exact.allows("https://app.example.com"));
    assert!(exact.allows("http://localhost:5173"));
    assert!(!exact.allows("http://localhost:5174"));
    let err = load(
        Component::Api,
        &[("CREWGRAPH_CORS_ORIGINS", "https://app.example.com/path")],
    )
    .expect_err("a path is not an origin");
    assert_eq!(variables(&err), vec!["CREWGRAPH_CORS_ORIGINS"]);
}

#[test]
fn webhook_settings_have_defaults_and_bad_values_are_named() {
    let config = load(Component::Worker, &[]).expect("defaults");
    assert_eq!(config.webhooks.max_attempts, 8);
    assert_eq!(config.webhooks.backoff_base, Duration::from_secs(10));
    assert!(config.webhooks.allowed_hosts.is_empty());
    let config = load(
        Component::Worker,
        &[
            (
                "CREWGRAPH_WEBHOOK_ALLOWED_HOSTS",
                "127.0.0.1:9000, hooks.internal",
            ),
            ("CREWGRAPH_WEBHOOK_MAX_ATTEMPTS", "3"),
            ("CREWGRAPH_WEBHOOK_BACKOFF_SECS", "1"),
        ],
    )
    .expect("valid settings");
    assert_eq!(config.webhooks.allowed_hosts.len(), 2);
    assert_eq!(config.webhooks.max_attempts, 3);
    let policy = config.webhook_outbound_policy();
    assert!(policy.check_base_url("http://127.0.0.1:9000/hook").is_ok());
    assert!(policy.check_base_url("http://127.0.0.1:9001/hook").is_err());
    let err = load(
        Component::Worker,
        &[
            ("CREWGRAPH_WEBHOOK_ALLOWED_HOSTS", "http://x/y"),
            ("CREWGRAPH_WEBHOOK_MAX_ATTEMPTS", "0"),
            ("CREWGRAPH_WEBHOOK_BACKOFF_SECS", "soon"),
        ],
    )
    .expect_err("all malformed");
    assert_eq!(
        variables(&err),
        vec![
            "CREWGRAPH_WEBHOOK_ALLOWED_HOSTS",
            "CREWGRAPH_WEBHOOK_MAX_ATTEMPTS",
            "CREWGRAPH_WEBHOOK_BACKOFF_SECS"
        ]
    );
}

#[test]
fn the_worker_http_port_defaults_to_loopback_can_be_turned_off_and_the_metrics_token_is_checked() {
    let config = load(Component::Worker, &[]).expect("defaults");
    assert_eq!(
        config.monitoring.worker_http_addr.map(|a| a.to_string()),
        Some(DEFAULT_WORKER_HTTP_ADDR.to_string())
    );
    assert!(config.monitoring.metrics_token.is_none());
    let config = load(
        Component::Worker,
        &[
            ("CREWGRAPH_WORKER_HTTP_ADDR", "OFF"),
            ("CREWGRAPH_METRICS_TOKEN", "a-long-enough-scrape-token"),
        ],
    )
    .expect("valid");
    assert_eq!(config.monitoring.worker_http_addr, None);
    assert_eq!(
        config
            .monitoring
            .metrics_token
            .as_ref()
            .map(|t| t.expose_secret().to_string()),
        Some("a-long-enough-scrape-token".to_string())
    );
    let err = load(
        Component::Api,
        &[
            ("CREWGRAPH_WORKER_HTTP_ADDR", "localhost"),
            ("CREWGRAPH_METRICS_TOKEN", "short"),
        ],
    )
    .expect_err("both malformed");
    assert_eq!(
        variables(&err),
        vec!["CREWGRAPH_WORKER_HTTP_ADDR", "CREWGRAPH_METRICS_TOKEN"]
    );
    assert!(
        !err.to_string().contains("short"),
        "a rejected token is never echoed"
    );
}
