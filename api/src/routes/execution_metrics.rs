//! An execution's figures: the summary on the execution resource (`usage`, `metrics`) and
//! the per-task and per-model breakdown (`GET /api/v1/executions/{id}/metrics`).

use chrono::{DateTime, Utc};
use crewgraph_core::crew::output::UsageMetrics;
use crewgraph_core::executions::Execution;
use crewgraph_core::metrics::{self, ModelUsage, RunMetrics, TaskMetrics};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::startup::AppState;

/// Token usage in CrewAI's `UsageMetrics` shape.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(rename = "Usage")]
pub struct UsageBody {
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    /// LLM calls that answered.
    pub successful_requests: u64,
}

impl From<UsageMetrics> for UsageBody {
    fn from(u: UsageMetrics) -> Self {
        UsageBody {
            total_tokens: u.total_tokens,
            prompt_tokens: u.prompt_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            completion_tokens: u.completion_tokens,
            successful_requests: u.successful_requests,
        }
    }
}

/// An ended run's figures, recorded with its end.
#[derive(Object, Clone, Debug)]
#[oai(rename = "RunMetrics")]
pub struct RunMetricsBody {
    /// Kickoff to the first start (null when it never started).
    #[oai(nullable)]
    pub queue_wait_ms: Option<i64>,
    /// First start to the end (null when it never started).
    #[oai(nullable)]
    pub run_ms: Option<i64>,
    /// Claims by workers (more than 1 after a hand-back or a lost worker).
    pub attempts: i32,
    /// Re-runs after the first claim (`attempts - 1`, never below 0).
    pub retries: i32,
    pub task_count: i32,
    pub tasks_completed: i32,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub tool_calls: i32,
    pub tool_failures: i32,
    /// Estimated from the operator's price table (US dollars).
    pub cost_usd: f64,
    /// Models the run called.
    pub models: Vec<String>,
    /// Called models the price table does not know: counted as costing nothing.
    pub unpriced_models: Vec<String>,
}

impl From<&RunMetrics> for RunMetricsBody {
    fn from(m: &RunMetrics) -> Self {
        RunMetricsBody {
            queue_wait_ms: m.queue_wait_ms,
            run_ms: m.run_ms,
            attempts: m.attempts,
            retries: (m.attempts - 1).max(0),
            task_count: m.task_count,
            tasks_completed: m.tasks_completed,
            llm_calls: m.llm_calls,
            llm_failures: m.llm_failures,
            tool_calls: m.tool_calls,
            tool_failures: m.tool_failures,
            cost_usd: m.cost_usd,
            models: m.models.clone(),
            unpriced_models: m.unpriced_models.clone(),
        }
    }
}

impl Example for RunMetricsBody {
    fn example() -> Self {
        RunMetricsBody {
            queue_wait_ms: Some(4),
            run_ms: Some(1_830),
            attempts: 1,
            retries: 0,
            task_count: 1,
            tasks_completed: 1,
            llm_calls: 2,
            llm_failures: 0,
            tool_calls: 1,
            tool_failures: 0,
            cost_usd: 0.000_076_2,
            models: vec!["gpt-4o-mini".into()],
            unpriced_models: Vec::new(),
        }
    }
}

/// The usage and figures an execution resource shows: the recorded figures once it
/// ended (every end, cancelled and failed runs too), else the result's own usage.
pub fn usage_and_metrics(e: &Execution) -> (Option<UsageBody>, Option<RunMetricsBody>) {
    let recorded = e.run_metrics().unwrap_or_else(|error| {
        tracing::error!(execution_id = %e.id, error = %error, "unreadable run metrics");
        None
    });
    match recorded {
        Some(m) => (Some(m.usage().into()), Some((&m).into())),
        None => {
            let usage = e
                .result
                .as_ref()
                .and_then(|r| r.get("token_usage"))
                .and_then(|u| serde_json::from_value::<UsageMetrics>(u.clone()).ok());
            (usage.map(Into::into), None)
        }
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename = "TaskRunStatus", rename_all = "snake_case")]
pub enum TaskStatusBody {
    Completed,
    Failed,
    /// Started, never ended (the run was cancelled or failed meanwhile).
    Interrupted,
    NotStarted,
}

impl TaskStatusBody {
    fn parse(status: &str) -> TaskStatusBody {
        match status {
            "completed" => TaskStatusBody::Completed,
            "failed" => TaskStatusBody::Failed,
            "interrupted" => TaskStatusBody::Interrupted,
            _ => TaskStatusBody::NotStarted,
        }
    }
}

/// Tokens and cost of a part of a run.
#[derive(Object, Clone, Debug)]
#[oai(rename = "TokenCounts")]
pub struct TokenCountsBody {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Object, Clone, Debug)]
#[oai(rename = "TaskMetrics")]
pub struct TaskMetricsBody {
    /// The task's place in the crew (0-based).
    pub task_index: i32,
    /// The task node's id.
    pub task_id: String,
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub agent_role: Option<String>,
    pub status: TaskStatusBody,
    #[oai(nullable)]
    pub started_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub finished_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub duration_ms: Option<i64>,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub tool_calls: i32,
    pub tool_failures: i32,
    pub tokens: TokenCountsBody,
}

impl From<TaskMetrics> for TaskMetricsBody {
    fn from(t: TaskMetrics) -> Self {
        TaskMetricsBody {
            task_index: t.task_index,
            status: TaskStatusBody::parse(&t.status),
            task_id: t.task_id,
            name: t.name,
            agent_role: t.agent_role,
            started_at: t.started_at,
            finished_at: t.finished_at,
            duration_ms: t.duration_ms,
            llm_calls: t.llm_calls,
            llm_failures: t.llm_failures,
            tool_calls: t.tool_calls,
            tool_failures: t.tool_failures,
            tokens: TokenCountsBody {
                prompt_tokens: t.prompt_tokens,
                completion_tokens: t.completion_tokens,
                cached_prompt_tokens: t.cached_prompt_tokens,
                total_tokens: t.total_tokens,
                cost_usd: t.cost_usd,
            },
        }
    }
}

#[derive(Object, Clone, Debug)]
#[oai(rename = "ModelUsage")]
pub struct ModelUsageBody {
    pub model: String,
    /// Whether the price table knows the model (if not, its cost counts as 0).
    pub priced: bool,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub tokens: TokenCountsBody,
}

impl From<ModelUsage> for ModelUsageBody {
    fn from(m: ModelUsage) -> Self {
        ModelUsageBody {
            model: m.model,
            priced: m.priced,
            llm_calls: m.llm_calls,
            llm_failures: m.llm_failures,
            tokens: TokenCountsBody {
                prompt_tokens: m.prompt_tokens,
                completion_tokens: m.completion_tokens,
                cached_prompt_tokens: m.cached_prompt_tokens,
                total_tokens: m.total_tokens,
                cost_usd: m.cost_usd,
            },
        }
    }
}

/// An ended execution's figures: the run's, each task's and each model's.
#[derive(Object)]
#[oai(rename = "ExecutionMetrics")]
pub struct ExecutionMetricsBody {
    pub execution_id: Uuid,
    pub usage: UsageBody,
    pub run: RunMetricsBody,
    pub tasks: Vec<TaskMetricsBody>,
    pub models: Vec<ModelUsageBody>,
}

#[derive(ApiResponse)]
pub enum ExecutionMetricsResponse {
    #[oai(status = 200)]
    Ok(Json<ExecutionMetricsBody>),
}

pub struct ExecutionMetricsApi;

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionMetricsApi {
    /// An ended execution's figures: queue wait, run time, LLM and tool calls, tokens and
    /// estimated cost, for the run, each task and each model. 409 `execution_not_ended`
    /// while it is queued or running.
    #[oai(
        path = "/api/v1/executions/:id/metrics",
        method = "get",
        operation_id = "get_execution_metrics"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<ExecutionMetricsResponse, ApiError> {
        let figures = metrics::of_execution(&state.db, &auth.0, id.0).await?;
        Ok(ExecutionMetricsResponse::Ok(Json(ExecutionMetricsBody {
            execution_id: id.0,
            usage: figures.run.usage().into(),
            run: (&figures.run).into(),
            tasks: figures.tasks.into_iter().map(Into::into).collect(),
            models: figures.models.into_iter().map(Into::into).collect(),
        })))
    }
}
