//! The PostgreSQL connection pool.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use secrecy::ExposeSecret as _;

use crate::config::DatabaseConfig;

/// Opens a pool without connecting yet: the API must start (and answer `/health` and a
/// 503 `/ready`) while the database is still down.
pub async fn connect_lazy(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(config, true)).await
}

/// Opens a pool and checks that the database answers.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(config, false)).await
}

fn options(config: &DatabaseConfig, lazy: bool) -> ConnectOptions {
    let mut options = ConnectOptions::new(config.url.expose_secret().to_string());
    options
        .max_connections(config.max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .connect_lazy(lazy)
        // Statement logging would put user data (and hashes) in the logs.
        .sqlx_logging(false);
    options
}

/// Retries `connect` with capped backoff until it succeeds or `patience` runs out; used
/// where a process cannot do anything useful without the database (migrations, workers).
pub async fn connect_with_patience(
    config: &DatabaseConfig,
    patience: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(100);
    loop {
        match connect(config).await {
            Ok(db) => return Ok(db),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The SQLSTATE of an error PostgreSQL reported (`None` for connection and driver
/// errors). Callers branch on it, and log it instead of the message, which can quote data.
pub fn sqlstate(err: &DbErr) -> Option<String> {
    use sea_orm::{RuntimeErr, sqlx};
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(e)))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(e))) => {
            e.code().map(|c| c.into_owned())
        }
        _ => None,
    }
}
