//! Ranked lists over a range: the graphs with the most failed runs, the most frequent end
//! codes, and usage per model. Each aggregates the range's rows (bounded by the range
//! index), then pages by keyset on (figure, key).

use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::Tokens;
use super::ranking::{RankKey, RankPage, RankPageRequest};
use super::scope::{Binds, Scope};
use crate::error::CoreResult;

/// Runs of deleted graphs (their `graph_id` is cleared) rank as one group whose key is
/// the nil uuid, so the keyset has a total order.
const NO_GRAPH: &str = "'00000000-0000-0000-0000-000000000000'::uuid";

#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct FailingGraph {
    /// `None`: runs of graphs deleted since.
    pub graph_id: Option<Uuid>,
    pub graph_name: Option<String>,
    pub failed: i64,
    pub runs: i64,
}

impl FailingGraph {
    /// `failed / runs`.
    pub fn failure_rate(&self) -> f64 {
        self.failed as f64 / self.runs.max(1) as f64
    }

    fn rank_key(&self) -> RankKey {
        RankKey {
            figure: self.failed,
            key: self.graph_id.unwrap_or_default().as_bytes().to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct EndCode {
    /// The end's `error.code` (`cancelled` for cancelled runs).
    pub code: String,
    pub runs: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelUsage {
    pub model: String,
    /// Executions that called it.
    pub runs: i64,
    pub llm_calls: i64,
    pub llm_failures: i64,
    pub successful_requests: i64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Whether the price table knew it for every run (otherwise its cost is partly
    /// counted as nothing).
    pub priced: bool,
}

#[derive(FromQueryResult)]
struct ModelRow {
    model: String,
    runs: i64,
    llm_calls: i64,
    llm_failures: i64,
    successful_requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_prompt_tokens: i64,
    total_tokens: i64,
    cost_usd: f64,
    priced: bool,
}

/// `figure < after OR (figure = after AND key > after_key)`, for a descending figure and
/// an ascending key; empty on the first page.
fn keyset(
    figure: &str,
    key: &str,
    after: Option<(i64, sea_orm::Value)>,
    binds: &mut Binds,
) -> String {
    match after {
        None => "TRUE".into(),
        Some((after_figure, after_key)) => {
            let f = binds.push(after_figure);
            let k = binds.push(after_key);
            format!("({figure} < {f} OR ({figure} = {f} AND {key} > {k}))")
        }
    }
}

pub fn failing_graphs_statement(scope: &Scope, page: &RankPageRequest) -> CoreResult<Statement> {
    let mut binds = Binds::default();
    let condition = scope.condition("", &mut binds);
    let after = match &page.after {
        Some(k) => Some((k.figure, k.uuid()?.into())),
        None => None,
    };
    let key = format!("coalesce(p.graph_id, {NO_GRAPH})");
    let keyset = keyset("p.failed", &key, after, &mut binds);
    let limit = binds.push(page.fetch_limit());
    let sql = format!(
        "WITH p AS ( \
           SELECT graph_id, count(*) FILTER (WHERE status = 'failed') AS failed, \
                  count(*) AS runs \
           FROM execution_metrics WHERE {condition} GROUP BY graph_id) \
         SELECT p.graph_id, g.name AS graph_name, p.failed, p.runs \
         FROM p LEFT JOIN graphs g ON g.id = p.graph_id \
         WHERE p.failed > 0 AND {keyset} \
         ORDER BY p.failed DESC, {key} LIMIT {limit}"
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        binds.0,
    ))
}

pub async fn failing_graphs(
    db: &DatabaseConnection,
    scope: &Scope,
    page: &RankPageRequest,
) -> CoreResult<RankPage<FailingGraph>> {
    let rows = FailingGraph::find_by_statement(failing_graphs_statement(scope, page)?)
        .all(db)
        .await?;
    Ok(page.page(rows, FailingGraph::rank_key))
}

pub fn end_codes_statement(scope: &Scope, page: &RankPageRequest) -> CoreResult<Statement> {
    let mut binds = Binds::default();
    let condition = scope.condition("", &mut binds);
    let after = match &page.after {
        Some(k) => Some((k.figure, k.text()?.into())),
        None => None,
    };
    let keyset = keyset("runs", "code", after, &mut binds);
    let limit = binds.push(page.fetch_limit());
    let sql = format!(
        "WITH c AS ( \
           SELECT end_code AS code, count(*) AS runs FROM execution_metrics \
           WHERE {condition} AND end_code IS NOT NULL GROUP BY end_code) \
         SELECT code, runs FROM c WHERE {keyset} ORDER BY runs DESC, code LIMIT {limit}"
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        binds.0,
    ))
}

pub async fn end_codes(
    db: &DatabaseConnection,
    scope: &Scope,
    page: &RankPageRequest,
) -> CoreResult<RankPage<EndCode>> {
    let rows = EndCode::find_by_statement(end_codes_statement(scope, page)?)
        .all(db)
        .await?;
    Ok(page.page(rows, |c| RankKey {
        figure: c.runs,
        key: c.code.as_bytes().to_vec(),
    }))
}

/// `execution_model_usage` has no graph index: a graph's usage is found through its
/// executions (`(graph_id, finished_at)` on `execution_metrics`, then the usage table's
/// primary key), not by reading every model row of the range.
pub fn models_statement(scope: &Scope, page: &RankPageRequest) -> CoreResult<Statement> {
    let mut binds = Binds::default();
    let condition = if scope.graph_id.is_some() {
        let executions = scope.condition("", &mut binds);
        format!("execution_id IN (SELECT execution_id FROM execution_metrics WHERE {executions})")
    } else {
        scope.condition("", &mut binds)
    };
    let after = match &page.after {
        Some(k) => Some((k.figure, k.text()?.into())),
        None => None,
    };
    let keyset = keyset("llm_calls", "model", after, &mut binds);
    let limit = binds.push(page.fetch_limit());
    let sql = format!(
        "WITH u AS ( \
           SELECT model, count(*) AS runs, sum(llm_calls)::bigint AS llm_calls, \
             sum(llm_failures)::bigint AS llm_failures, \
             sum(successful_requests)::bigint AS successful_requests, \
             sum(prompt_tokens)::bigint AS prompt_tokens, \
             sum(completion_tokens)::bigint AS completion_tokens, \
             sum(cached_prompt_tokens)::bigint AS cached_prompt_tokens, \
             sum(total_tokens)::bigint AS total_tokens, \
             sum(cost_usd)::float8 AS cost_usd, bool_and(priced) AS priced \
           FROM execution_model_usage WHERE {condition} GROUP BY model) \
         SELECT * FROM u WHERE {keyset} ORDER BY llm_calls DESC, model LIMIT {limit}"
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        binds.0,
    ))
}

pub async fn models(
    db: &DatabaseConnection,
    scope: &Scope,
    page: &RankPageRequest,
) -> CoreResult<RankPage<ModelUsage>> {
    let rows = ModelRow::find_by_statement(models_statement(scope, page)?)
        .all(db)
        .await?;
    let usage = rows
        .into_iter()
        .map(|r| ModelUsage {
            model: r.model,
            runs: r.runs,
            llm_calls: r.llm_calls,
            llm_failures: r.llm_failures,
            successful_requests: r.successful_requests,
            tokens: Tokens {
                prompt: r.prompt_tokens,
                completion: r.completion_tokens,
                cached_prompt: r.cached_prompt_tokens,
                total: r.total_tokens,
            },
            cost_usd: r.cost_usd,
            priced: r.priced,
        })
        .collect();
    Ok(page.page(usage, |m| RankKey {
        figure: m.llm_calls,
        key: m.model.as_bytes().to_vec(),
    }))
}
