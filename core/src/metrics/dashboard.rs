//! Dashboards: figures over the run metrics of executions that ended in a time range —
//! for a user's own executions, per graph, and for admins across users. Everything is
//! computed in SQL over `execution_metrics` and `execution_model_usage`, and every
//! statement is bounded by a `finished_at` range on an index whose leading columns are
//! the scope's (`(user_id, finished_at)`, `(graph_id, finished_at)`, `(finished_at)`).
//!
//! Each public function checks the caller's right to the scope itself ([`authorize`]), so
//! no route can forget to.

mod range;
mod ranking;
mod rankings;
mod scope;
mod series;
mod summary;

use sea_orm::{DatabaseConnection, Statement};

pub use range::{Bucket, DEFAULT_RANGE_DAYS, MAX_BUCKETS, MAX_RANGE_DAYS, TimeRange, TimeZone};
pub use ranking::{RankPage, RankPageRequest, Ranking};
pub use rankings::{EndCode, FailingGraph, ModelUsage};
pub use scope::{Audience, DashboardRequest, Scope, authorize};
pub use series::SeriesPoint;
pub use summary::Summary;

use crate::auth::Principal;
use crate::error::CoreResult;

/// The 50th and 95th percentiles (continuous: interpolated between runs); `None` when no
/// run in the range has the figure (none started, say).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    /// Part of `prompt` served from the provider's cache.
    pub cached_prompt: i64,
    pub total: i64,
}

/// `succeeded / runs`, `None` without runs (no rate, rather than a misleading 0).
fn success_rate(succeeded: i64, runs: i64) -> Option<f64> {
    (runs > 0).then(|| succeeded as f64 / runs as f64)
}

pub async fn summary(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
) -> CoreResult<Summary> {
    let scope = authorize(db, principal, request).await?;
    summary::query(db, &scope).await
}

pub async fn timeseries(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
    bucket: Bucket,
    time_zone: &TimeZone,
) -> CoreResult<Vec<SeriesPoint>> {
    bucket.check_count(&request.range)?;
    let scope = authorize(db, principal, request).await?;
    series::query(db, &scope, bucket, time_zone).await
}

pub async fn failing_graphs(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
    page: &RankPageRequest,
) -> CoreResult<RankPage<FailingGraph>> {
    let scope = authorize(db, principal, request).await?;
    rankings::failing_graphs(db, &scope, page).await
}

pub async fn end_codes(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
    page: &RankPageRequest,
) -> CoreResult<RankPage<EndCode>> {
    let scope = authorize(db, principal, request).await?;
    rankings::end_codes(db, &scope, page).await
}

pub async fn models(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
    page: &RankPageRequest,
) -> CoreResult<RankPage<ModelUsage>> {
    let scope = authorize(db, principal, request).await?;
    rankings::models(db, &scope, page).await
}

/// Every statement the dashboards run for `scope` (first pages, day buckets), named, so
/// a test can `EXPLAIN` them and check their plans read the range through an index.
pub fn statements(scope: &Scope) -> CoreResult<Vec<(&'static str, Statement)>> {
    let page = |ranking| RankPageRequest::parse(ranking, None, None);
    Ok(vec![
        ("summary", summary::statement(scope)),
        ("timeseries", series::statement(scope, Bucket::Day)),
        (
            "failing_graphs",
            rankings::failing_graphs_statement(scope, &page(Ranking::FailingGraphs)?)?,
        ),
        (
            "end_codes",
            rankings::end_codes_statement(scope, &page(Ranking::EndCodes)?)?,
        ),
        (
            "models",
            rankings::models_statement(scope, &page(Ranking::Models)?)?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_success_rate_is_absent_without_runs() {
        assert_eq!(success_rate(0, 0), None);
        assert_eq!(success_rate(3, 4), Some(0.75));
        assert_eq!(success_rate(0, 2), Some(0.0));
    }
}
