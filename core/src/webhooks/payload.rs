//! The JSON a delivery sends: which event, when, and a summary of the execution (its
//! result and error, never its inputs: those may hold data the receiver has no business
//! with, and the receiver can read them through the API with its own credentials).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::CoreResult;

#[derive(FromQueryResult)]
struct Reported {
    id: Uuid,
    graph_id: Option<Uuid>,
    graph_version: Option<i32>,
    status: String,
    result: Option<Value>,
    error: Option<Value>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    event_type: String,
    event_data: Value,
    occurred_at: DateTime<Utc>,
}

/// The body of a delivery of the event `seq` of `execution_id`; `None` when the execution
/// or the event is gone (deleted by retention).
pub(super) async fn build<C: ConnectionTrait>(
    db: &C,
    delivery_id: Uuid,
    execution_id: Uuid,
    seq: i64,
) -> CoreResult<Option<String>> {
    let reported = Reported::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT e.id, e.graph_id, e.graph_version, e.status, e.result, e.error, e.created_at, \
           e.started_at, e.finished_at, ev.type AS event_type, ev.data AS event_data, \
           ev.created_at AS occurred_at \
         FROM executions e JOIN execution_events ev ON ev.execution_id = e.id AND ev.seq = $2 \
         WHERE e.id = $1",
        [execution_id.into(), seq.into()],
    ))
    .one(db)
    .await?;
    let Some(reported) = reported else {
        return Ok(None);
    };
    let body = render(delivery_id, reported);
    Ok(Some(
        serde_json::to_string(&body).map_err(anyhow::Error::from)?,
    ))
}

fn render(delivery_id: Uuid, r: Reported) -> Value {
    let mut execution = Map::new();
    execution.insert("id".into(), json!(r.id));
    execution.insert("graph_id".into(), json!(r.graph_id));
    execution.insert("graph_version".into(), json!(r.graph_version));
    execution.insert("status".into(), json!(r.status));
    if let Some(error) = r.error {
        execution.insert("error".into(), error);
    }
    if let Some(result) = r.result {
        execution.insert("result".into(), result_summary(&result));
    }
    execution.insert("created_at".into(), json!(r.created_at));
    execution.insert("started_at".into(), json!(r.started_at));
    execution.insert("finished_at".into(), json!(r.finished_at));
    let mut body = Map::new();
    body.insert("delivery_id".into(), json!(delivery_id));
    body.insert("event".into(), json!(r.event_type));
    body.insert("occurred_at".into(), json!(r.occurred_at));
    body.insert("execution".into(), Value::Object(execution));
    if r.event_type == "task.completed" {
        // `{task_id, output: {...}}`: the task's output, with its id.
        let task = match r.event_data.get("output") {
            Some(Value::Object(output)) => {
                let mut task = output.clone();
                task.entry("task_id")
                    .or_insert_with(|| r.event_data["task_id"].clone());
                Value::Object(task)
            }
            _ => r.event_data,
        };
        body.insert("task".into(), task);
    }
    Value::Object(body)
}

/// The final answer, every task's output and the token usage.
fn result_summary(result: &Value) -> Value {
    let mut summary = Map::new();
    for key in ["raw", "tasks_output", "token_usage"] {
        if let Some(value) = result.get(key) {
            summary.insert(key.into(), value.clone());
        }
    }
    Value::Object(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(event_type: &str, data: Value) -> Reported {
        Reported {
            id: Uuid::now_v7(),
            graph_id: Some(Uuid::now_v7()),
            graph_version: Some(2),
            status: "succeeded".into(),
            result: Some(json!({"raw": "done", "tasks_output": [], "token_usage": {},
                                "json_dict": {"x": 1}})),
            error: None,
            created_at: Utc::now(),
            started_at: Some(Utc::now()),
            finished_at: Some(Utc::now()),
            event_type: event_type.into(),
            event_data: data,
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn terminal_bodies_summarise_the_execution_without_inputs() {
        let id = Uuid::now_v7();
        let body = render(id, reported("execution.succeeded", json!({})));
        assert_eq!(body["delivery_id"], json!(id));
        assert_eq!(body["event"], "execution.succeeded");
        assert_eq!(body["execution"]["graph_version"], 2);
        assert_eq!(
            body["execution"]["result"],
            json!({"raw": "done", "tasks_output": [], "token_usage": {}})
        );
        assert!(body["execution"].get("inputs").is_none());
        assert!(body["execution"].get("error").is_none());
        assert!(body.get("task").is_none());
    }

    #[test]
    fn task_bodies_carry_the_tasks_output() {
        let data = json!({"task_id": "t", "output": {"raw": "one", "agent": "A"}});
        let body = render(Uuid::now_v7(), reported("task.completed", data));
        assert_eq!(
            body["task"],
            json!({"task_id": "t", "raw": "one", "agent": "A"})
        );
    }
}
