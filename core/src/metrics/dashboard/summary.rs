//! One range's figures in one statement over `execution_metrics`.

use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};

use super::scope::{Binds, Scope};
use super::{Percentiles, Tokens, success_rate};
use crate::error::{CoreError, CoreResult};

/// The figures of the executions that ended in a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// `succeeded / runs` (cancelled runs count as not succeeded); `None` without runs.
    pub success_rate: Option<f64>,
    /// Of the runs that started.
    pub run_ms: Percentiles,
    pub queue_wait_ms: Percentiles,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub llm_calls: i64,
    pub llm_failures: i64,
    /// LLM calls that answered (CrewAI's `successful_requests`).
    pub successful_requests: i64,
    pub tool_calls: i64,
    pub tool_failures: i64,
    /// Models used in the range that the price table did not know (counted at no cost).
    pub unpriced_models: Vec<String>,
}

#[derive(FromQueryResult)]
struct SummaryRow {
    runs: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    run_ms_p50: Option<f64>,
    run_ms_p95: Option<f64>,
    queue_wait_ms_p50: Option<f64>,
    queue_wait_ms_p95: Option<f64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_prompt_tokens: i64,
    total_tokens: i64,
    cost_usd: f64,
    llm_calls: i64,
    llm_failures: i64,
    successful_requests: i64,
    tool_calls: i64,
    tool_failures: i64,
    unpriced_models: serde_json::Value,
}

/// One pass over the range for the figures; the unpriced models come from a second,
/// narrower one (only rows that have any), which costs less than materialising the range
/// to read it twice.
pub fn statement(scope: &Scope) -> Statement {
    let mut binds = Binds::default();
    let condition = scope.condition("", &mut binds);
    let unpriced_condition = scope.condition("x.", &mut binds);
    let sql = format!(
        "SELECT count(*) AS runs, \
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded, \
           count(*) FILTER (WHERE status = 'failed') AS failed, \
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY run_ms) AS run_ms_p50, \
           percentile_cont(0.95) WITHIN GROUP (ORDER BY run_ms) AS run_ms_p95, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_wait_ms) AS queue_wait_ms_p50, \
           percentile_cont(0.95) WITHIN GROUP (ORDER BY queue_wait_ms) AS queue_wait_ms_p95, \
           coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens, \
           coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens, \
           coalesce(sum(cached_prompt_tokens), 0)::bigint AS cached_prompt_tokens, \
           coalesce(sum(total_tokens), 0)::bigint AS total_tokens, \
           coalesce(sum(cost_usd), 0)::float8 AS cost_usd, \
           coalesce(sum(llm_calls), 0)::bigint AS llm_calls, \
           coalesce(sum(llm_failures), 0)::bigint AS llm_failures, \
           coalesce(sum(successful_requests), 0)::bigint AS successful_requests, \
           coalesce(sum(tool_calls), 0)::bigint AS tool_calls, \
           coalesce(sum(tool_failures), 0)::bigint AS tool_failures, \
           (SELECT coalesce(json_agg(DISTINCT u ORDER BY u), '[]'::json) \
              FROM execution_metrics AS x, unnest(x.unpriced_models) AS u \
              WHERE {unpriced_condition} AND x.unpriced_models <> '{{}}') AS unpriced_models \
         FROM execution_metrics WHERE {condition}"
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, binds.0)
}

pub async fn query(db: &DatabaseConnection, scope: &Scope) -> CoreResult<Summary> {
    let row = SummaryRow::find_by_statement(statement(scope))
        .one(db)
        .await?
        .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("an aggregate returned no row")))?;
    let unpriced_models: Vec<String> = serde_json::from_value(row.unpriced_models)
        .map_err(|e| CoreError::Internal(anyhow::anyhow!("unpriced models: {e}")))?;
    Ok(Summary {
        runs: row.runs,
        succeeded: row.succeeded,
        failed: row.failed,
        cancelled: row.cancelled,
        success_rate: success_rate(row.succeeded, row.runs),
        run_ms: Percentiles {
            p50: row.run_ms_p50,
            p95: row.run_ms_p95,
        },
        queue_wait_ms: Percentiles {
            p50: row.queue_wait_ms_p50,
            p95: row.queue_wait_ms_p95,
        },
        tokens: Tokens {
            prompt: row.prompt_tokens,
            completion: row.completion_tokens,
            cached_prompt: row.cached_prompt_tokens,
            total: row.total_tokens,
        },
        cost_usd: row.cost_usd,
        llm_calls: row.llm_calls,
        llm_failures: row.llm_failures,
        successful_requests: row.successful_requests,
        tool_calls: row.tool_calls,
        tool_failures: row.tool_failures,
        unpriced_models,
    })
}
