//! Recording an ended execution's figures, in the transaction that records the end
//! (`lifecycle::finish_many`): whoever ends a run — its worker, the reaper, a cancel — the
//! figures are written with it, from the run's own event log, so a cancelled or lost run
//! keeps the tokens it spent and no exporter outage can lose them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::prices::PriceTable;
use crate::crew::output::UsageMetrics;
use crate::error::{CoreError, CoreResult};

/// The event types the figures are counted from (the rest is never read).
const COUNTED_EVENTS: &str = "llm.started,llm.completed,llm.failed,tool.started,tool.failed,\
                              task.started,task.completed,task.failed";

/// The ended executions as the finish statement left them.
#[derive(Debug, FromQueryResult)]
struct EndedRow {
    id: Uuid,
    user_id: Uuid,
    graph_id: Option<Uuid>,
    status: String,
    end_code: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: DateTime<Utc>,
    attempt: i32,
    lost_count: i32,
    /// `[{id, name, agent}]` of the spec's tasks, in order.
    tasks: Value,
    /// The spec's agents' roles, in order.
    agent_roles: Value,
}

/// One counted event, reduced to the fields the figures need.
#[derive(Debug, FromQueryResult)]
struct EventFact {
    execution_id: Uuid,
    event_type: String,
    created_at: DateTime<Utc>,
    call_id: Option<String>,
    task_id: Option<String>,
    model: Option<String>,
    agent_role: Option<String>,
    usage: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct SpecTask {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    agent: Option<usize>,
}

/// More tokens than any call can use (10^12); larger reports are capped to it.
const MAX_TOKENS_PER_CALL: u64 = 1_000_000_000_000;
/// A run's sums stay far below `bigint`'s limit, so dashboards summing millions of runs
/// cannot overflow either.
const MAX_TOKENS: u64 = 1_000_000_000_000_000;

/// Counts of one scope (a run, a task, a model).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub llm_calls: i64,
    pub llm_failures: i64,
    pub successful_requests: i64,
    pub tool_calls: i64,
    pub tool_failures: i64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
}

impl Counts {
    /// Counts a call's usage. A provider (any endpoint a user names) may report absurd
    /// numbers: each is capped, so the sums always fit the `bigint` columns and a run's
    /// end can always be recorded.
    fn add_usage(&mut self, usage: &UsageMetrics, cost: f64) {
        let add = |sum: &mut u64, n: u64| {
            *sum = sum
                .saturating_add(n.min(MAX_TOKENS_PER_CALL))
                .min(MAX_TOKENS)
        };
        add(&mut self.prompt_tokens, usage.prompt_tokens);
        add(&mut self.completion_tokens, usage.completion_tokens);
        add(&mut self.cached_prompt_tokens, usage.cached_prompt_tokens);
        add(&mut self.total_tokens, usage.total_tokens);
        if cost.is_finite() {
            self.cost_usd += cost;
        }
    }
}

#[derive(Debug, Serialize)]
struct RunRow {
    execution_id: Uuid,
    user_id: Uuid,
    graph_id: Option<Uuid>,
    status: String,
    end_code: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: DateTime<Utc>,
    queue_wait_ms: Option<i64>,
    run_ms: Option<i64>,
    attempts: i32,
    lost_count: i32,
    task_count: i64,
    tasks_completed: i64,
    #[serde(flatten)]
    counts: Counts,
    models: Vec<String>,
    unpriced_models: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TaskRow {
    execution_id: Uuid,
    task_index: i64,
    task_id: String,
    name: Option<String>,
    agent_role: Option<String>,
    status: &'static str,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize)]
struct ModelRow {
    execution_id: Uuid,
    model: String,
    user_id: Uuid,
    graph_id: Option<Uuid>,
    finished_at: DateTime<Utc>,
    priced: bool,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Default)]
struct Figures {
    runs: Vec<RunRow>,
    tasks: Vec<TaskRow>,
    models: Vec<ModelRow>,
}

/// Writes the figures of these (just ended) executions. Run in the finish transaction,
/// after the status update and before the terminal events are appended.
pub async fn record_ends<C: ConnectionTrait>(
    db: &C,
    execution_ids: &[Uuid],
    prices: &PriceTable,
) -> CoreResult<()> {
    if execution_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = execution_ids.iter().map(Uuid::to_string).collect();
    let ids = ids.join(",");
    let backend = db.get_database_backend();
    let ended = EndedRow::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT e.id, e.user_id, e.graph_id, e.status, e.error->>'code' AS end_code, \
           e.created_at, e.started_at, COALESCE(e.finished_at, now()) AS finished_at, \
           e.attempt, e.lost_count, \
           COALESCE((SELECT jsonb_agg(jsonb_build_object('id', t->'id', 'name', t->'name', \
                        'agent', t->'agent') ORDER BY n) \
                     FROM jsonb_array_elements(e.spec->'tasks') WITH ORDINALITY AS x(t, n)), \
                    '[]') AS tasks, \
           COALESCE((SELECT jsonb_agg(a->'role' ORDER BY n) \
                     FROM jsonb_array_elements(e.spec->'agents') WITH ORDINALITY AS y(a, n)), \
                    '[]') AS agent_roles \
         FROM executions e WHERE e.id = ANY(string_to_array($1, ',')::uuid[])",
        [ids.clone().into()],
    ))
    .all(db)
    .await?;
    let facts = EventFact::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT v.execution_id, v.type AS event_type, v.created_at, \
           v.data->>'call_id' AS call_id, v.data->>'task_id' AS task_id, \
           v.data->>'model' AS model, v.data->>'agent_role' AS agent_role, \
           v.data->'usage' AS usage \
         FROM execution_events v \
         WHERE v.execution_id = ANY(string_to_array($1, ',')::uuid[]) \
           AND v.type = ANY(string_to_array($2, ',')) \
         ORDER BY v.execution_id, v.seq",
        [ids.into(), COUNTED_EVENTS.into()],
    ))
    .all(db)
    .await?;
    let mut by_execution: HashMap<Uuid, Vec<EventFact>> = HashMap::new();
    for fact in facts {
        by_execution
            .entry(fact.execution_id)
            .or_default()
            .push(fact);
    }
    let mut figures = Figures::default();
    for run in &ended {
        let events = by_execution.remove(&run.id).unwrap_or_default();
        add_figures(&mut figures, run, &events, prices);
    }
    insert(db, &figures).await
}

/// A task's figures while its events are read.
#[derive(Default)]
struct TaskTally {
    status: Option<&'static str>,
    agent_role: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    counts: Counts,
}

/// Everything counted from one run's events.
#[derive(Default)]
struct RunTally<'a> {
    tasks: HashMap<&'a str, TaskTally>,
    /// Which task each LLM call belongs to (only `llm.started` names it).
    call_tasks: HashMap<&'a str, &'a str>,
    models: BTreeMap<&'a str, Counts>,
    total: Counts,
}

impl<'a> RunTally<'a> {
    fn count(&mut self, event: &'a EventFact, prices: &PriceTable) {
        let kind = event.event_type.as_str();
        let model = event.model.as_deref();
        let task_key = event.task_id.as_deref().or_else(|| {
            let call = event.call_id.as_deref()?;
            self.call_tasks.get(call).copied()
        });
        if let ("llm.started", Some(call), Some(task)) = (kind, event.call_id.as_deref(), task_key)
        {
            self.call_tasks.insert(call, task);
        }
        let usage: Option<UsageMetrics> = (kind == "llm.completed")
            .then(|| event.usage.clone())
            .flatten()
            .and_then(|u| serde_json::from_value(u).ok());
        let cost = match (&usage, model) {
            (Some(usage), Some(m)) => prices.cost_of(m, usage).unwrap_or(0.0),
            _ => 0.0,
        };
        let mut scopes: Vec<&mut Counts> = vec![&mut self.total];
        if let Some(m) = model {
            scopes.push(self.models.entry(m).or_default());
        }
        if let Some(task) = task_key {
            let tally = self.tasks.entry(task).or_default();
            match kind {
                "task.started" => {
                    tally.status = Some("interrupted");
                    tally.started_at.get_or_insert(event.created_at);
                    tally.agent_role = event.agent_role.clone();
                }
                "task.completed" => {
                    tally.status = Some("completed");
                    tally.finished_at = Some(event.created_at);
                }
                "task.failed" => {
                    tally.status = Some("failed");
                    tally.finished_at = Some(event.created_at);
                }
                _ => {}
            }
            scopes.push(&mut tally.counts);
        }
        for counts in scopes {
            match kind {
                "llm.started" => counts.llm_calls += 1,
                "llm.failed" => counts.llm_failures += 1,
                "llm.completed" => counts.successful_requests += 1,
                "tool.started" => counts.tool_calls += 1,
                "tool.failed" => counts.tool_failures += 1,
                _ => {}
            }
            if let Some(usage) = &usage {
                counts.add_usage(usage, cost);
            }
        }
    }
}

fn add_figures(figures: &mut Figures, run: &EndedRow, events: &[EventFact], prices: &PriceTable) {
    let spec_tasks: Vec<SpecTask> = serde_json::from_value(run.tasks.clone()).unwrap_or_default();
    let agent_roles: Vec<Option<String>> =
        serde_json::from_value(run.agent_roles.clone()).unwrap_or_default();
    let mut tally = RunTally::default();
    for event in events {
        tally.count(event, prices);
    }
    let RunTally {
        mut tasks,
        models,
        total,
        ..
    } = tally;
    let mut tasks_completed = 0;
    for (index, spec_task) in spec_tasks.iter().enumerate() {
        let tally = tasks.remove(spec_task.id.as_str()).unwrap_or_default();
        let status = tally.status.unwrap_or("not_started");
        if status == "completed" {
            tasks_completed += 1;
        }
        let agent_role = tally.agent_role.or_else(|| {
            let agent = spec_task.agent?;
            agent_roles.get(agent).cloned().flatten()
        });
        figures.tasks.push(TaskRow {
            execution_id: run.id,
            task_index: index as i64,
            task_id: spec_task.id.clone(),
            name: spec_task.name.clone(),
            agent_role,
            status,
            started_at: tally.started_at,
            finished_at: tally.finished_at,
            duration_ms: tally
                .started_at
                .zip(tally.finished_at)
                .map(|(start, end)| (end - start).num_milliseconds().max(0)),
            counts: tally.counts,
        });
    }
    let unpriced: BTreeSet<&str> = models
        .keys()
        .copied()
        .filter(|m| prices.price_of(m).is_none())
        .collect();
    for (model, counts) in &models {
        figures.models.push(ModelRow {
            execution_id: run.id,
            model: (*model).to_string(),
            user_id: run.user_id,
            graph_id: run.graph_id,
            finished_at: run.finished_at,
            priced: !unpriced.contains(model),
            counts: counts.clone(),
        });
    }
    figures.runs.push(RunRow {
        execution_id: run.id,
        user_id: run.user_id,
        graph_id: run.graph_id,
        status: run.status.clone(),
        end_code: run.end_code.clone(),
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        queue_wait_ms: run
            .started_at
            .map(|start| (start - run.created_at).num_milliseconds().max(0)),
        run_ms: run
            .started_at
            .map(|start| (run.finished_at - start).num_milliseconds().max(0)),
        attempts: run.attempt,
        lost_count: run.lost_count,
        task_count: spec_tasks.len() as i64,
        tasks_completed,
        counts: total,
        models: models.keys().map(|m| (*m).to_string()).collect(),
        unpriced_models: unpriced.into_iter().map(str::to_string).collect(),
    });
}

/// The three tables in one statement.
async fn insert<C: ConnectionTrait>(db: &C, figures: &Figures) -> CoreResult<()> {
    if figures.runs.is_empty() {
        return Ok(());
    }
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            r#"
WITH runs AS (
    INSERT INTO execution_metrics (execution_id, user_id, graph_id, status, end_code,
        created_at, started_at, finished_at, queue_wait_ms, run_ms, attempts, lost_count,
        task_count, tasks_completed, {COUNT_COLUMNS}, models, unpriced_models)
    SELECT r.execution_id, r.user_id, r.graph_id, r.status, r.end_code, r.created_at,
        r.started_at, r.finished_at, r.queue_wait_ms, r.run_ms, r.attempts, r.lost_count,
        r.task_count, r.tasks_completed, {COUNT_VALUES},
        ARRAY(SELECT jsonb_array_elements_text(x->'models')),
        ARRAY(SELECT jsonb_array_elements_text(x->'unpriced_models'))
    FROM jsonb_array_elements($1::jsonb) AS x,
         jsonb_to_record(x) AS r(execution_id uuid, user_id uuid, graph_id uuid, status text,
            end_code text, created_at timestamptz, started_at timestamptz,
            finished_at timestamptz, queue_wait_ms bigint, run_ms bigint, attempts integer,
            lost_count integer, task_count integer, tasks_completed integer, {COUNT_TYPES})
    ON CONFLICT (execution_id) DO NOTHING
    RETURNING execution_id
), tasks AS (
    INSERT INTO execution_task_metrics (execution_id, task_index, task_id, name, agent_role,
        status, started_at, finished_at, duration_ms, {COUNT_COLUMNS})
    SELECT r.execution_id, r.task_index, r.task_id, r.name, r.agent_role, r.status,
        r.started_at, r.finished_at, r.duration_ms, {COUNT_VALUES}
    FROM jsonb_to_recordset($2::jsonb) AS r(execution_id uuid, task_index integer,
        task_id text, name text, agent_role text, status text, started_at timestamptz,
        finished_at timestamptz, duration_ms bigint, {COUNT_TYPES})
    JOIN runs USING (execution_id)
)
INSERT INTO execution_model_usage (execution_id, model, user_id, graph_id, finished_at,
    priced, llm_calls, llm_failures, successful_requests, prompt_tokens, completion_tokens,
    cached_prompt_tokens, total_tokens, cost_usd)
SELECT r.execution_id, r.model, r.user_id, r.graph_id, r.finished_at, r.priced,
    r.llm_calls, r.llm_failures, r.successful_requests, r.prompt_tokens, r.completion_tokens,
    r.cached_prompt_tokens, r.total_tokens, r.cost_usd
FROM jsonb_to_recordset($3::jsonb) AS r(execution_id uuid, model text, user_id uuid,
    graph_id uuid, finished_at timestamptz, priced boolean, {COUNT_TYPES})
JOIN runs USING (execution_id)
"#
        ),
        [
            to_json(&figures.runs)?.into(),
            to_json(&figures.tasks)?.into(),
            to_json(&figures.models)?.into(),
        ],
    ))
    .await?;
    Ok(())
}

const COUNT_COLUMNS: &str = "llm_calls, llm_failures, successful_requests, tool_calls, tool_failures, prompt_tokens, \
    completion_tokens, cached_prompt_tokens, total_tokens, cost_usd";
const COUNT_VALUES: &str = "r.llm_calls, r.llm_failures, r.successful_requests, r.tool_calls, r.tool_failures, \
    r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens, r.total_tokens, r.cost_usd";
const COUNT_TYPES: &str = "llm_calls integer, llm_failures integer, successful_requests integer, \
    tool_calls integer, \
    tool_failures integer, prompt_tokens bigint, completion_tokens bigint, \
    cached_prompt_tokens bigint, total_tokens bigint, cost_usd double precision";

fn to_json<T: Serialize>(rows: &[T]) -> CoreResult<Value> {
    serde_json::to_value(rows).map_err(|e| CoreError::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_token_reports_are_capped_so_the_figures_always_fit() {
        let mut counts = Counts::default();
        let huge = UsageMetrics {
            total_tokens: u64::MAX,
            prompt_tokens: 10_000_000_000_000_000_000,
            cached_prompt_tokens: 0,
            completion_tokens: 7,
            successful_requests: 1,
        };
        for _ in 0..3 {
            counts.add_usage(&huge, f64::INFINITY);
        }
        assert_eq!(counts.prompt_tokens, 3 * MAX_TOKENS_PER_CALL);
        assert_eq!(counts.completion_tokens, 21);
        assert!(counts.total_tokens <= MAX_TOKENS && MAX_TOKENS < i64::MAX as u64);
        assert_eq!(counts.cost_usd, 0.0, "a non-finite cost is not added");
    }
}
