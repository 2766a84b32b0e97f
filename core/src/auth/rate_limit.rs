//! Fixed-window rate limits whose counters live in PostgreSQL, so every API replica
//! counts against the same budget.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sha2::{Digest as _, Sha256};

use crate::error::{CoreError, CoreResult};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub max_hits: i32,
    pub window: Duration,
}

pub const LOGIN_PER_ADDRESS: Limit = Limit {
    name: "login:address",
    max_hits: 20,
    window: Duration::from_secs(60),
};
pub const LOGIN_PER_ACCOUNT: Limit = Limit {
    name: "login:account",
    max_hits: 10,
    window: Duration::from_secs(300),
};
pub const REGISTER_PER_ADDRESS: Limit = Limit {
    name: "register:address",
    max_hits: 10,
    window: Duration::from_secs(3600),
};
pub const REGISTER_PER_ACCOUNT: Limit = Limit {
    name: "register:account",
    max_hits: 5,
    window: Duration::from_secs(3600),
};
pub const REFRESH_PER_ACCOUNT: Limit = Limit {
    name: "refresh:account",
    max_hits: 120,
    window: Duration::from_secs(60),
};
pub const REFRESH_PER_ADDRESS: Limit = Limit {
    name: "refresh:address",
    max_hits: 60,
    window: Duration::from_secs(60),
};

/// Counts one hit of `subject` (an address, an email) against `limit`; past the limit the
/// error says how long until the window ends. Subjects are stored hashed.
pub async fn hit(db: &DatabaseConnection, limit: Limit, subject: &str) -> CoreResult<()> {
    let key = format!(
        "{}:{}",
        limit.name,
        hex::encode(Sha256::digest(subject.to_lowercase().as_bytes()))
    );
    let window_secs = limit.window.as_secs_f64();
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            r#"
INSERT INTO rate_limit_counters AS c (key, window_started_at, hits)
VALUES ($1, now(), 1)
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN c.window_started_at <= now() - make_interval(secs => $2) THEN 1 ELSE c.hits + 1 END,
    window_started_at = CASE WHEN c.window_started_at <= now() - make_interval(secs => $2) THEN now() ELSE c.window_started_at END
RETURNING hits,
    GREATEST(EXTRACT(EPOCH FROM (window_started_at + make_interval(secs => $2) - now())), 0)::float8 AS remaining
"#,
            [key.into(), window_secs.into()],
        ))
        .await?
        .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("rate limit upsert returned no row")))?;
    let hits: i32 = row.try_get("", "hits")?;
    // Now and then, forget counters whose windows ended long ago, so the table stays small.
    if rand::random::<u8>() == 0 {
        db.execute(Statement::from_string(
            db.get_database_backend(),
            "DELETE FROM rate_limit_counters WHERE window_started_at < now() - interval '1 day'",
        ))
        .await?;
    }
    let remaining: f64 = row.try_get("", "remaining")?;
    if hits > limit.max_hits {
        return Err(CoreError::RateLimited {
            retry_after_secs: remaining.ceil().max(1.0) as u64,
        });
    }
    Ok(())
}
