//! Reading an execution's figures back: the run's own (on the execution resource) and its
//! per-task and per-model breakdown.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Principal;
use crate::crew::output::UsageMetrics;
use crate::error::{CoreError, CoreResult};

/// An ended run's figures (a row of `execution_metrics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunMetrics {
    pub status: String,
    pub end_code: Option<String>,
    pub queue_wait_ms: Option<i64>,
    pub run_ms: Option<i64>,
    pub attempts: i32,
    pub lost_count: i32,
    pub task_count: i32,
    pub tasks_completed: i32,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub successful_requests: i32,
    pub tool_calls: i32,
    pub tool_failures: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub models: Vec<String>,
    pub unpriced_models: Vec<String>,
}

impl RunMetrics {
    /// From the JSON of a row (`to_jsonb(m)`).
    pub fn from_row_json(row: Value) -> CoreResult<RunMetrics> {
        serde_json::from_value(row).map_err(|e| CoreError::Internal(e.into()))
    }

    /// The run's token usage in CrewAI's `UsageMetrics` shape.
    pub fn usage(&self) -> UsageMetrics {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        UsageMetrics {
            total_tokens: count(self.total_tokens),
            prompt_tokens: count(self.prompt_tokens),
            cached_prompt_tokens: count(self.cached_prompt_tokens),
            completion_tokens: count(self.completion_tokens),
            successful_requests: count(i64::from(self.successful_requests)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskMetrics {
    pub task_index: i32,
    pub task_id: String,
    pub name: Option<String>,
    pub agent_role: Option<String>,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub tool_calls: i32,
    pub tool_failures: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelUsage {
    pub model: String,
    pub priced: bool,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub successful_requests: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

/// An ended execution's figures with their breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionFigures {
    pub run: RunMetrics,
    pub tasks: Vec<TaskMetrics>,
    pub models: Vec<ModelUsage>,
}

/// The figures of one of the caller's executions: `NotFound("execution")` when it is not
/// theirs, `Conflict(execution_not_ended)` while it has not ended.
pub async fn of_execution<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    execution_id: Uuid,
) -> CoreResult<ExecutionFigures> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT e.status, to_jsonb(m) AS run, \
               (SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t.task_index), '[]') \
                FROM execution_task_metrics t WHERE t.execution_id = e.id) AS tasks, \
               (SELECT COALESCE(jsonb_agg(to_jsonb(u) ORDER BY u.model), '[]') \
                FROM execution_model_usage u WHERE u.execution_id = e.id) AS models \
             FROM executions e LEFT JOIN execution_metrics m ON m.execution_id = e.id \
             WHERE e.id = $1 AND e.user_id = $2",
            [execution_id.into(), principal.user_id.into()],
        ))
        .await?
        .ok_or(CoreError::NotFound("execution"))?;
    let run: Option<Value> = row.try_get("", "run")?;
    let Some(run) = run else {
        let status: String = row.try_get("", "status")?;
        if crate::executions::Status::parse(&status).is_some_and(|s| s.is_terminal()) {
            // Ended before this version kept figures.
            return Err(CoreError::NotFound("execution metrics"));
        }
        return Err(CoreError::Conflict {
            code: "execution_not_ended",
            message: format!("the execution is {status}: its figures are recorded when it ends"),
            details: Some(serde_json::json!({ "status": status })),
        });
    };
    let internal = |e: serde_json::Error| CoreError::Internal(e.into());
    Ok(ExecutionFigures {
        run: RunMetrics::from_row_json(run)?,
        tasks: serde_json::from_value(row.try_get("", "tasks")?).map_err(internal)?,
        models: serde_json::from_value(row.try_get("", "models")?).map_err(internal)?,
    })
}

/// Reads an execution's `metrics` column (`to_jsonb` of its `execution_metrics` row).
pub fn summary_of(metrics: &Option<Value>) -> CoreResult<Option<RunMetrics>> {
    metrics.clone().map(RunMetrics::from_row_json).transpose()
}
