//! A range's figures per hour or day, every bucket present (empty ones as zeros) so
//! charts are continuous.
//!
//! Buckets follow the requested time zone: the statement runs in a transaction whose
//! `TimeZone` is set to it, so `date_trunc` cuts at local hours and midnights and the
//! series' `interval '1 day'` steps are calendar days (23 or 25 hours across a daylight
//! saving change), exactly as PostgreSQL does for the session's zone.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, TransactionTrait,
};

use super::range::{Bucket, TimeZone, invalid_time_zone};
use super::scope::{Binds, Scope};
use crate::db;
use crate::error::{CoreError, CoreResult};

#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct SeriesPoint {
    /// The bucket's first instant.
    pub start: DateTime<Utc>,
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub llm_calls: i64,
    pub run_ms_p50: Option<f64>,
    pub run_ms_p95: Option<f64>,
}

pub fn statement(scope: &Scope, bucket: Bucket) -> Statement {
    let unit = bucket.unit();
    let mut binds = Binds::default();
    let condition = scope.condition("", &mut binds);
    let from = binds.push(scope.range.from);
    let to = binds.push(scope.range.to);
    // The last bucket starts before `to` (the range is half-open).
    let sql = format!(
        "WITH buckets AS ( \
           SELECT generate_series(date_trunc('{unit}', {from}::timestamptz), \
                                  {to}::timestamptz - interval '1 microsecond', \
                                  interval '1 {unit}') AS start), \
         figures AS ( \
           SELECT date_trunc('{unit}', finished_at) AS start, count(*) AS runs, \
             count(*) FILTER (WHERE status = 'succeeded') AS succeeded, \
             count(*) FILTER (WHERE status = 'failed') AS failed, \
             count(*) FILTER (WHERE status = 'cancelled') AS cancelled, \
             sum(total_tokens)::bigint AS total_tokens, \
             sum(cost_usd)::float8 AS cost_usd, \
             sum(llm_calls)::bigint AS llm_calls, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY run_ms) AS run_ms_p50, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY run_ms) AS run_ms_p95 \
           FROM execution_metrics WHERE {condition} GROUP BY 1) \
         SELECT b.start, coalesce(f.runs, 0) AS runs, \
           coalesce(f.succeeded, 0) AS succeeded, coalesce(f.failed, 0) AS failed, \
           coalesce(f.cancelled, 0) AS cancelled, \
           coalesce(f.total_tokens, 0)::bigint AS total_tokens, \
           coalesce(f.cost_usd, 0)::float8 AS cost_usd, \
           coalesce(f.llm_calls, 0)::bigint AS llm_calls, f.run_ms_p50, f.run_ms_p95 \
         FROM buckets b LEFT JOIN figures f ON f.start = b.start ORDER BY b.start"
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, binds.0)
}

pub async fn query(
    db: &DatabaseConnection,
    scope: &Scope,
    bucket: Bucket,
    time_zone: &TimeZone,
) -> CoreResult<Vec<SeriesPoint>> {
    bucket.check_count(&scope.range)?;
    let txn = db.begin().await?;
    // `true`: for this transaction only, so the pooled connection keeps its zone.
    let set_zone = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('TimeZone', $1, true)",
        [time_zone.name().into()],
    );
    if let Err(err) = txn.execute(set_zone).await {
        // 22023 invalid_parameter_value: a zone PostgreSQL does not know.
        return Err(if db::sqlstate(&err).as_deref() == Some("22023") {
            invalid_time_zone()
        } else {
            CoreError::Database(err)
        });
    }
    let points = SeriesPoint::find_by_statement(statement(scope, bucket))
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(points)
}
