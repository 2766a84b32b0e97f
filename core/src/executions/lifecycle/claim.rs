//! `queued → running`: the claim, and the heartbeat that keeps a claim alive.

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Finish, Outcome, Status, end_code, finish};
use crate::crew::spec::CrewSpec;
use crate::error::CoreResult;
use crate::executions::queue_task;

/// A running execution as its worker sees it.
#[derive(Debug, Clone)]
pub struct Started {
    pub execution_id: Uuid,
    pub task_id: Uuid,
    pub owner: Uuid,
    pub attempt: i32,
    pub spec: CrewSpec,
    pub inputs: Map<String, Value>,
}

#[derive(FromQueryResult)]
struct ClaimRow {
    id: Uuid,
    task_id: Uuid,
    user_id: Uuid,
    attempt: i32,
    spec: Value,
    inputs: Value,
}

/// Claims up to `limit` runnable executions in one statement: their fang tasks go
/// `new → in_progress` (`FOR UPDATE SKIP LOCKED`, oldest first, as fang orders them) and
/// their executions `queued → running` for this worker, atomically. This is the one
/// statement outside `queue_task` that touches fang's table: the task and the execution
/// must change together. (fang's own `fetch_and_touch_task` selects and marks in two
/// statements, so two workers can fetch one task, and it claims one task per round trip.)
/// Executions whose stored crew this worker cannot read fail.
pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    limit: u32,
) -> CoreResult<Vec<Started>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    debug_assert!(Status::Queued.can_become(Status::Running));
    let rows = ClaimRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        r#"
WITH picked AS MATERIALIZED (
    -- Task and execution locked together (a cancel holding the execution is skipped,
    -- not waited for: no lock-order deadlock with it).
    SELECT t.id FROM fang_tasks t
    JOIN executions e ON e.id = CASE WHEN t.metadata->>'execution_id' ~ '^[0-9a-fA-F-]{36}$'
                                     THEN (t.metadata->>'execution_id')::uuid END
    WHERE t.task_type = $1 AND t.state IN ('new', 'retried') AND t.scheduled_at <= now()
      AND e.status = 'queued'
    ORDER BY t.created_at, t.scheduled_at
    LIMIT $3 FOR UPDATE OF t, e SKIP LOCKED
), task AS (
    UPDATE fang_tasks f SET state = 'in_progress', updated_at = now()
    FROM picked WHERE f.id = picked.id
    RETURNING f.id, (f.metadata->>'execution_id')::uuid AS execution_id
), started AS (
    UPDATE executions e SET status = 'running', attempt = e.attempt + 1, worker_id = $2,
           heartbeat_at = now(), started_at = COALESCE(e.started_at, now())
    FROM task WHERE e.id = task.execution_id AND e.status = 'queued'
    RETURNING e.id, task.id AS task_id, e.user_id, e.attempt, e.spec, e.inputs
)
SELECT id, task_id, user_id, attempt, spec, inputs FROM started
"#,
        [
            queue_task::TASK_TYPE.into(),
            worker_id.into(),
            i64::from(limit).into(),
        ],
    ))
    .all(db)
    .await?;
    let mut started = Vec::with_capacity(rows.len());
    for row in rows {
        let spec = serde_json::from_value::<CrewSpec>(row.spec);
        match (spec, row.inputs) {
            (Ok(spec), Value::Object(inputs)) => started.push(Started {
                execution_id: row.id,
                task_id: row.task_id,
                owner: row.user_id,
                attempt: row.attempt,
                spec,
                inputs,
            }),
            _ => {
                // The rest of the batch still runs whatever happens to this one.
                if let Err(error) = fail_unreadable(db, row.id, row.attempt, row.task_id).await {
                    tracing::warn!(execution_id = %row.id, %error, "recording an unreadable execution failed");
                }
            }
        }
    }
    Ok(started)
}

async fn fail_unreadable(
    db: &DatabaseConnection,
    execution_id: Uuid,
    attempt: i32,
    task_id: Uuid,
) -> CoreResult<()> {
    let txn = db.begin().await?;
    let outcome = Outcome::failed(
        end_code::UNREADABLE_EXECUTION,
        "the stored crew cannot be read by this worker version",
    );
    let recorded = finish(
        &txn,
        &Finish::of_running(execution_id, attempt, task_id, outcome.clone()),
    )
    .await?;
    txn.commit().await?;
    if recorded {
        crate::monitoring::metrics().executions.finished(&outcome);
    }
    Ok(())
}

/// What the heartbeat learned about this worker's executions.
#[derive(Debug, Default)]
pub struct Pulse {
    /// Cancellation was requested (a NOTIFY may have been missed).
    pub cancel_requested: Vec<Uuid>,
    /// No longer running as this worker's attempt: recovered by the reaper, or ended
    /// meanwhile (the worker tells which: only it knows whether it recorded the end).
    pub not_held: Vec<Uuid>,
}

/// Marks this worker's running executions alive.
pub async fn heartbeat(
    db: &DatabaseConnection,
    worker_id: &str,
    running: &[(Uuid, i32)],
) -> CoreResult<Pulse> {
    if running.is_empty() {
        return Ok(Pulse::default());
    }
    let input: Vec<Value> = running
        .iter()
        .map(|(id, attempt)| json!({"id": id, "attempt": attempt}))
        .collect();
    let rows = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            // Rows locked in id order, as every other writer of executions does.
            "WITH mine AS (SELECT (x->>'id')::uuid AS id, (x->>'attempt')::integer AS attempt \
                           FROM jsonb_array_elements($2::jsonb) x), \
             locked AS (SELECT e.id FROM executions e JOIN mine ON mine.id = e.id \
                        WHERE e.attempt = mine.attempt AND e.worker_id = $1 AND e.status = 'running' \
                        ORDER BY e.id FOR UPDATE OF e) \
             UPDATE executions e SET heartbeat_at = now() FROM locked WHERE e.id = locked.id \
             RETURNING e.id, e.cancel_requested_at IS NOT NULL AS cancel",
            [worker_id.into(), Value::Array(input).into()],
        ))
        .await?;
    let mut pulse = Pulse::default();
    let mut alive = Vec::new();
    for row in rows {
        let id: Uuid = row.try_get("", "id")?;
        if row.try_get::<bool>("", "cancel")? {
            pulse.cancel_requested.push(id);
        }
        alive.push(id);
    }
    pulse.not_held = running
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !alive.contains(id))
        .collect();
    Ok(pulse)
}
