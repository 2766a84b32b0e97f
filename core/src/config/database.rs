//! `DATABASE_URL` and the connection pool.

use secrecy::SecretString;

use super::reader::Reader;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/crewgraph";
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 20;

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
}

pub(super) fn read(reader: &mut Reader<'_>, production: bool) -> DatabaseConfig {
    let url = match reader.get("DATABASE_URL") {
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
    DatabaseConfig {
        url: SecretString::from(url),
        max_connections,
    }
}
