//! What an execution's MLflow run holds, read from PostgreSQL (the execution, its graph and
//! workspace names, the figures `core::metrics` kept at its end) and turned into params,
//! metrics and tags. Nothing a user typed into a run goes in — no inputs, outputs, prompts,
//! emails or secrets: only names, ids, counts and figures.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde_json::Value;
use uuid::Uuid;

use super::client::{KeyValue, Metric};
use crate::crew::spec::CrewSpec;
use crate::error::CoreResult;

/// MLflow's longest param value and experiment name.
const MAX_PARAM_CHARS: usize = 6000;
const MAX_EXPERIMENT_NAME_CHARS: usize = 500;

#[derive(Debug, Clone, FromQueryResult)]
pub struct ExecutionFacts {
    pub id: Uuid,
    pub graph_id: Option<Uuid>,
    pub graph_version: Option<i32>,
    pub status: String,
    pub end_code: Option<String>,
    pub spec: Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub graph_name: Option<String>,
    pub workspace_id: Option<Uuid>,
    pub workspace_name: Option<String>,
}

impl ExecutionFacts {
    pub fn start(&self) -> DateTime<Utc> {
        self.started_at.unwrap_or(self.created_at)
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or_else(|| self.start())
    }

    /// MLflow's run status for the execution's end.
    pub fn run_status(&self) -> &'static str {
        match self.status.as_str() {
            "succeeded" => "FINISHED",
            "cancelled" => "KILLED",
            _ => "FAILED",
        }
    }

    pub fn spec(&self) -> Option<CrewSpec> {
        serde_json::from_value(self.spec.clone()).ok()
    }
}

/// The run's figures (`execution_metrics`).
#[derive(Debug, Clone, FromQueryResult)]
pub struct RunFigures {
    pub queue_wait_ms: Option<i64>,
    pub run_ms: Option<i64>,
    pub attempts: i32,
    pub lost_count: i32,
    pub task_count: i32,
    pub tasks_completed: i32,
    pub llm_calls: i32,
    pub llm_failures: i32,
    pub tool_calls: i32,
    pub tool_failures: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub models: Vec<String>,
}

/// One task's figures (`execution_task_metrics`).
#[derive(Debug, Clone, FromQueryResult)]
pub struct TaskFigures {
    pub task_index: i32,
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

/// Everything a run is made of.
#[derive(Debug, Clone)]
pub struct RunData {
    pub execution: ExecutionFacts,
    /// `None` for an execution ended before figures were kept.
    pub figures: Option<RunFigures>,
    pub tasks: Vec<TaskFigures>,
}

/// Reads a run's data; `None` when the execution is gone.
pub async fn load<C: ConnectionTrait>(db: &C, execution_id: Uuid) -> CoreResult<Option<RunData>> {
    let backend = db.get_database_backend();
    let Some(execution) = ExecutionFacts::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT e.id, e.graph_id, e.graph_version, e.status, e.error->>'code' AS end_code, \
                e.spec, e.created_at, e.started_at, e.finished_at, g.name AS graph_name, \
                w.id AS workspace_id, w.name AS workspace_name \
         FROM executions e LEFT JOIN graphs g ON g.id = e.graph_id \
           LEFT JOIN workspaces w ON w.id = g.workspace_id \
         WHERE e.id = $1",
        [execution_id.into()],
    ))
    .one(db)
    .await?
    else {
        return Ok(None);
    };
    let figures = RunFigures::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT queue_wait_ms, run_ms, attempts, lost_count, task_count, tasks_completed, \
                llm_calls, llm_failures, tool_calls, tool_failures, prompt_tokens, \
                completion_tokens, cached_prompt_tokens, total_tokens, cost_usd, models \
         FROM execution_metrics WHERE execution_id = $1",
        [execution_id.into()],
    ))
    .one(db)
    .await?;
    let tasks = TaskFigures::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT task_index, finished_at, duration_ms, llm_calls, llm_failures, tool_calls, \
                tool_failures, prompt_tokens, completion_tokens, cached_prompt_tokens, \
                total_tokens, cost_usd \
         FROM execution_task_metrics WHERE execution_id = $1 ORDER BY task_index",
        [execution_id.into()],
    ))
    .all(db)
    .await?;
    Ok(Some(RunData {
        execution,
        figures,
        tasks,
    }))
}

/// The experiment's name from the operator's template; a deleted graph's runs go to
/// `(deleted)` names.
pub fn experiment_name(template: &str, execution: &ExecutionFacts) -> String {
    let deleted = "(deleted)";
    let id = |id: Option<Uuid>| id.map(|i| i.to_string()).unwrap_or_else(|| deleted.into());
    let name: String = template
        .replace(
            "{workspace}",
            execution.workspace_name.as_deref().unwrap_or(deleted),
        )
        .replace(
            "{graph}",
            execution.graph_name.as_deref().unwrap_or(deleted),
        )
        .replace("{workspace_id}", &id(execution.workspace_id))
        .replace("{graph_id}", &id(execution.graph_id));
    name.chars().take(MAX_EXPERIMENT_NAME_CHARS).collect()
}

/// The run's name in MLflow's list: the graph's name and the execution's id.
pub fn run_name(execution: &ExecutionFacts) -> String {
    let graph = execution.graph_name.as_deref().unwrap_or("run");
    let name: String = graph.chars().take(200).collect();
    format!("{name} {}", execution.id)
}

/// Params: how the crew was made (process, models, sizes, graph version).
pub fn run_params(data: &RunData) -> Vec<KeyValue> {
    let spec = data.execution.spec();
    let mut models: Vec<String> = match (&data.figures, &spec) {
        (Some(figures), _) if !figures.models.is_empty() => figures.models.clone(),
        (_, Some(spec)) => spec
            .agents
            .iter()
            .map(|a| a.llm.model.clone())
            .chain(spec.manager_llm.iter().map(|m| m.model.clone()))
            .collect(),
        _ => Vec::new(),
    };
    models.sort();
    models.dedup();
    let mut params = Vec::new();
    let mut add = |key: &str, value: String| {
        params.push(KeyValue {
            key: key.into(),
            value: value.chars().take(MAX_PARAM_CHARS).collect(),
        })
    };
    if let Some(spec) = &spec {
        let process = serde_json::to_value(spec.process)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        add("process", process);
        add("agent_count", spec.agents.len().to_string());
        add("task_count", spec.tasks.len().to_string());
        if let Some(manager) = &spec.manager_llm {
            add("manager_model", manager.model.clone());
        }
    }
    add("models", models.join(","));
    if let Some(version) = data.execution.graph_version {
        add("graph_version", version.to_string());
    }
    params
}

/// Tags: ids, status and end code (the execution id is set when the run is created).
pub fn run_tags(execution: &ExecutionFacts) -> Vec<KeyValue> {
    let mut tags = vec![
        ("crewgraph.status", Some(execution.status.clone())),
        ("crewgraph.end_code", execution.end_code.clone()),
        (
            "crewgraph.graph_id",
            execution.graph_id.map(|g| g.to_string()),
        ),
        (
            "crewgraph.workspace_id",
            execution.workspace_id.map(|w| w.to_string()),
        ),
        ("mlflow.source.name", Some("crewgraph".to_string())),
        ("mlflow.source.type", Some("JOB".to_string())),
    ];
    tags.retain(|(_, value)| value.is_some());
    tags.into_iter()
        .filter_map(|(key, value)| {
            value.map(|value| KeyValue {
                key: key.into(),
                value,
            })
        })
        .collect()
}

/// Metrics: the run's figures at step 0, and per-task series (`task.*`) whose step is the
/// task's index. Timestamps come from the execution, so a retry logs identical points.
pub fn metric_points(data: &RunData) -> Vec<Metric> {
    let end = data.execution.end().timestamp_millis();
    let mut points = Vec::new();
    if let Some(f) = &data.figures {
        let figures: [(&str, Option<f64>); 15] = [
            ("queue_wait_ms", f.queue_wait_ms.map(|v| v as f64)),
            ("run_ms", f.run_ms.map(|v| v as f64)),
            ("attempts", Some(f64::from(f.attempts))),
            ("lost_count", Some(f64::from(f.lost_count))),
            ("task_count", Some(f64::from(f.task_count))),
            ("tasks_completed", Some(f64::from(f.tasks_completed))),
            ("llm_calls", Some(f64::from(f.llm_calls))),
            ("llm_failures", Some(f64::from(f.llm_failures))),
            ("tool_calls", Some(f64::from(f.tool_calls))),
            ("tool_failures", Some(f64::from(f.tool_failures))),
            ("prompt_tokens", Some(f.prompt_tokens as f64)),
            ("completion_tokens", Some(f.completion_tokens as f64)),
            ("cached_prompt_tokens", Some(f.cached_prompt_tokens as f64)),
            ("total_tokens", Some(f.total_tokens as f64)),
            ("cost_usd", Some(f.cost_usd)),
        ];
        points.extend(figures.into_iter().filter_map(|(key, value)| {
            value.map(|value| Metric {
                key: key.into(),
                value,
                timestamp: end,
                step: 0,
            })
        }));
    }
    for task in &data.tasks {
        let timestamp = task.finished_at.map_or(end, |t| t.timestamp_millis());
        let series: [(&str, Option<f64>); 10] = [
            ("task.duration_ms", task.duration_ms.map(|v| v as f64)),
            ("task.llm_calls", Some(f64::from(task.llm_calls))),
            ("task.llm_failures", Some(f64::from(task.llm_failures))),
            ("task.tool_calls", Some(f64::from(task.tool_calls))),
            ("task.tool_failures", Some(f64::from(task.tool_failures))),
            ("task.prompt_tokens", Some(task.prompt_tokens as f64)),
            (
                "task.completion_tokens",
                Some(task.completion_tokens as f64),
            ),
            (
                "task.cached_prompt_tokens",
                Some(task.cached_prompt_tokens as f64),
            ),
            ("task.total_tokens", Some(task.total_tokens as f64)),
            ("task.cost_usd", Some(task.cost_usd)),
        ];
        points.extend(series.into_iter().filter_map(|(key, value)| {
            value.map(|value| Metric {
                key: key.into(),
                value,
                timestamp,
                step: i64::from(task.task_index),
            })
        }));
    }
    points
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;

    fn facts() -> ExecutionFacts {
        ExecutionFacts {
            id: Uuid::nil(),
            graph_id: Some(Uuid::from_u128(7)),
            graph_version: Some(3),
            status: "failed".into(),
            end_code: Some("llm_error".into()),
            spec: json!({
                "process": "hierarchical",
                "agents": [
                    {"id": "a", "role": "R", "goal": "G", "backstory": "B",
                     "llm": {"model": "openai/gpt-4o-mini"}},
                    {"id": "b", "role": "S", "goal": "G", "backstory": "B",
                     "llm": {"model": "openai/gpt-4o-mini"}}
                ],
                "tasks": [],
                "manager_llm": {"model": "anthropic/claude-3-5-haiku"}
            }),
            created_at: Utc.timestamp_millis_opt(1_000).single().expect("time"),
            started_at: Some(Utc.timestamp_millis_opt(2_000).single().expect("time")),
            finished_at: Some(Utc.timestamp_millis_opt(9_000).single().expect("time")),
            graph_name: Some("Research".into()),
            workspace_id: Some(Uuid::from_u128(9)),
            workspace_name: Some("Team".into()),
        }
    }

    fn task(index: i32, duration: Option<i64>) -> TaskFigures {
        TaskFigures {
            task_index: index,
            finished_at: None,
            duration_ms: duration,
            llm_calls: 1,
            llm_failures: 0,
            tool_calls: 2,
            tool_failures: 0,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_prompt_tokens: 0,
            total_tokens: 15,
            cost_usd: 0.5,
        }
    }

    #[test]
    fn experiment_names_follow_the_template_and_survive_a_deleted_graph() {
        let mut execution = facts();
        assert_eq!(
            experiment_name("crewgraph/{workspace}/{graph}", &execution),
            "crewgraph/Team/Research"
        );
        assert_eq!(
            experiment_name("g-{graph_id}", &execution),
            format!("g-{}", Uuid::from_u128(7))
        );
        execution.graph_name = None;
        execution.workspace_name = None;
        assert_eq!(
            experiment_name("crewgraph/{workspace}/{graph}", &execution),
            "crewgraph/(deleted)/(deleted)"
        );
    }

    #[test]
    fn params_describe_the_crew_and_tags_carry_ids_and_the_end_but_nothing_typed_in() {
        let data = RunData {
            execution: facts(),
            figures: None,
            tasks: vec![],
        };
        let params: Vec<(String, String)> = run_params(&data)
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect();
        let expected = [
            ("process", "hierarchical"),
            ("agent_count", "2"),
            ("task_count", "0"),
            ("manager_model", "anthropic/claude-3-5-haiku"),
            ("models", "anthropic/claude-3-5-haiku,openai/gpt-4o-mini"),
            ("graph_version", "3"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(params, expected);
        let tags: Vec<String> = run_tags(&data.execution)
            .into_iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect();
        assert!(tags.contains(&"crewgraph.status=failed".to_string()));
        assert!(tags.contains(&"crewgraph.end_code=llm_error".to_string()));
        assert_eq!(data.execution.run_status(), "FAILED");
    }

    #[test]
    fn task_series_use_the_task_index_as_step_and_fixed_timestamps() {
        let data = RunData {
            execution: facts(),
            figures: None,
            tasks: vec![task(0, Some(40)), task(1, None)],
        };
        let points = metric_points(&data);
        let durations: Vec<(i64, f64)> = points
            .iter()
            .filter(|m| m.key == "task.duration_ms")
            .map(|m| (m.step, m.value))
            .collect();
        assert_eq!(
            durations,
            vec![(0, 40.0)],
            "a task that never ran has no duration"
        );
        let tokens: Vec<i64> = points
            .iter()
            .filter(|m| m.key == "task.total_tokens")
            .map(|m| m.step)
            .collect();
        assert_eq!(tokens, vec![0, 1]);
        assert!(points.iter().all(|m| m.timestamp == 9_000));
        assert_eq!(metric_points(&data), points, "the same points every time");
    }
}
