//! The PostgreSQL connection pool.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, sqlx};
use secrecy::ExposeSecret as _;

use crate::config::DatabaseConfig;
use crate::error::{CoreError, CoreResult};

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
    database_error(err).and_then(|e| e.code().map(|c| c.into_owned()))
}

fn database_error(err: &DbErr) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(e)))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(e)))
        | DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::Database(e))) => Some(e.as_ref()),
        _ => None,
    }
}

fn driver_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// What a database error means for the caller — read here once, from the error's
/// structure (SQLSTATE, driver error kind, OS error), never from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database cannot be reached now or ended the session (down, restarting, network,
    /// pool exhausted): retry later.
    Unavailable(UnavailableCause),
    /// This process ran out of file descriptors: not the database's fault.
    OutOfFileDescriptors,
    /// Text PostgreSQL cannot store (NUL characters, invalid UTF-8): the input's fault.
    UnstorableText,
    /// Anything else: a bug or an unexpected state.
    Other,
}

/// Why the database is unavailable, as a stable category (the full error can name hosts,
/// users and databases: it goes to the log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableCause {
    Timeout,
    ConnectionRefused,
    AuthenticationFailed,
    ConnectionLost,
    ShuttingDown,
}

impl UnavailableCause {
    pub fn as_str(self) -> &'static str {
        match self {
            UnavailableCause::Timeout => "timeout",
            UnavailableCause::ConnectionRefused => "connection_refused",
            UnavailableCause::AuthenticationFailed => "authentication_failed",
            UnavailableCause::ConnectionLost => "connection_lost",
            UnavailableCause::ShuttingDown => "shutting_down",
        }
    }
}

/// EMFILE and ENFILE: the process's or the system's file table is full.
const FILE_TABLE_FULL: [i32; 2] = [24, 23];

pub fn classify(err: &DbErr) -> DbFailure {
    use UnavailableCause::*;
    if let DbErr::ConnectionAcquire(acquire) = err {
        return DbFailure::Unavailable(match acquire {
            sea_orm::ConnAcquireErr::Timeout => Timeout,
            sea_orm::ConnAcquireErr::ConnectionClosed => ConnectionLost,
        });
    }
    if let Some(code) = sqlstate(err) {
        return match code.as_str() {
            "22021" | "22P05" => DbFailure::UnstorableText,
            // invalid_authorization_specification, invalid_password
            "28000" | "28P01" => DbFailure::Unavailable(AuthenticationFailed),
            // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped
            c if c.starts_with("57P") => DbFailure::Unavailable(ShuttingDown),
            // connection exceptions; too_many_connections
            c if c.starts_with("08") || c == "53300" => DbFailure::Unavailable(ConnectionLost),
            _ => DbFailure::Other,
        };
    }
    match driver_error(err) {
        Some(sqlx::Error::Io(io))
            if io
                .raw_os_error()
                .is_some_and(|n| FILE_TABLE_FULL.contains(&n)) =>
        {
            DbFailure::OutOfFileDescriptors
        }
        Some(sqlx::Error::Io(io)) => DbFailure::Unavailable(match io.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectionRefused,
            std::io::ErrorKind::TimedOut => Timeout,
            _ => ConnectionLost,
        }),
        Some(sqlx::Error::PoolTimedOut) => DbFailure::Unavailable(Timeout),
        Some(sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed) => {
            DbFailure::Unavailable(ConnectionLost)
        }
        Some(sqlx::Error::Tls(_)) => DbFailure::Unavailable(ConnectionRefused),
        _ if matches!(err, DbErr::Conn(_)) => DbFailure::Unavailable(ConnectionLost),
        _ => DbFailure::Other,
    }
}

/// The database is away (down, restarting, unreachable): a retry later can succeed.
pub fn is_unavailable(err: &DbErr) -> bool {
    matches!(classify(err), DbFailure::Unavailable(_))
}

/// Worth retrying after a pause: the database is away, or this process is out of file
/// descriptors for a moment (connections being closed free them).
pub fn is_transient(err: &DbErr) -> bool {
    matches!(
        classify(err),
        DbFailure::Unavailable(_) | DbFailure::OutOfFileDescriptors
    )
}

/// The name of the constraint a write violated (unique, foreign key, check...), if any.
pub fn violated_constraint(err: &DbErr) -> Option<&str> {
    database_error(err).and_then(|e| e.constraint())
}

/// Turns the violation of one named constraint into a precise error at the call site
/// (instead of matching on error text); every other error stays what it was.
pub trait OnConstraint<T> {
    fn on_constraint(self, name: &str, error: impl FnOnce() -> CoreError) -> CoreResult<T>;
}

impl<T> OnConstraint<T> for Result<T, DbErr> {
    fn on_constraint(self, name: &str, error: impl FnOnce() -> CoreError) -> CoreResult<T> {
        self.map_err(|err| {
            if violated_constraint(&err) == Some(name) {
                error()
            } else {
                CoreError::Database(err)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind, os: Option<i32>) -> DbErr {
        let error = match os {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::from(kind),
        };
        DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::Io(error)))
    }

    #[test]
    fn running_out_of_file_descriptors_is_not_a_database_outage() {
        assert_eq!(
            classify(&io(std::io::ErrorKind::Other, Some(24))),
            DbFailure::OutOfFileDescriptors
        );
        assert!(!is_unavailable(&io(std::io::ErrorKind::Other, Some(24))));
        assert_eq!(
            classify(&io(std::io::ErrorKind::ConnectionRefused, None)),
            DbFailure::Unavailable(UnavailableCause::ConnectionRefused)
        );
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
        assert_eq!(classify(&DbErr::Custom("a bug".into())), DbFailure::Other);
    }
}
