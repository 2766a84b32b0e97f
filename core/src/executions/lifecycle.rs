//! The worker's side of an execution's life: start (`queued → running`, fenced by the
//! attempt number), heartbeat, finish, hand back on shutdown, and the reaper that recovers
//! executions of lost workers. Every write of a worker names the attempt it claimed, so a
//! worker whose claim was taken back cannot overwrite its successor's work.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::crew::events::RuntimeEvent;
use crate::crew::output::CrewOutput;
use crate::crew::spec::CrewSpec;
use crate::error::CoreResult;
use crate::events::{self, EventBatch};
use crate::queue;
use crate::threads::{self, MessageRole};

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
/// their executions `queued → running` for this worker, atomically — fang's own
/// `fetch_and_touch_task` selects and marks in two statements, so two workers can fetch
/// one task, and it claims one task per round trip. Only tasks of queued executions are
/// taken (the reaper removes tasks left behind by finished ones). Executions whose stored
/// crew cannot be read fail.
pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    limit: u32,
) -> CoreResult<Vec<Started>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
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
            queue::TASK_TYPE.into(),
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
    let message = "the stored crew cannot be read by this worker version";
    finish(
        &txn,
        &Finish {
            execution_id,
            attempt,
            task_id,
            outcome: Outcome::Failed {
                code: "unreadable_execution".into(),
                message: message.into(),
            },
        },
        Some(RuntimeEvent::ExecutionFailed {
            code: "unreadable_execution".into(),
            error: message.into(),
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// What the heartbeat learned about this worker's executions.
#[derive(Debug, Default)]
pub struct Pulse {
    /// Cancellation was requested (a NOTIFY may have been missed).
    pub cancel_requested: Vec<Uuid>,
    /// No longer this worker's (recovered by the reaper): stop them without writing.
    pub lost: Vec<Uuid>,
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
    pulse.lost = running
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !alive.contains(id))
        .collect();
    Ok(pulse)
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Box<CrewOutput>),
    Failed { code: String, message: String },
    Cancelled { reason: String },
}

pub struct Finish {
    pub execution_id: Uuid,
    pub attempt: i32,
    pub task_id: Uuid,
    pub outcome: Outcome,
}

/// Records the end of a run: status, result or error, the queue task removed, for chat
/// runs the answer (or the failure) in the thread, and then the terminal event — in the
/// caller's transaction, so a client that sees the terminal event finds the execution
/// finished. `false` (and nothing written) if the claim was lost meanwhile.
pub async fn finish<C: ConnectionTrait>(
    db: &C,
    finish: &Finish,
    terminal: Option<RuntimeEvent>,
) -> CoreResult<bool> {
    Ok(finish_many(db, &[(finish, terminal)])
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

#[derive(serde::Serialize)]
struct FinishRow {
    id: Uuid,
    attempt: i32,
    task_id: Uuid,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    /// The chat message a run leaves in its thread (used when it has one).
    message_id: Uuid,
    message_role: &'static str,
    message: String,
}

/// [`finish`] for many runs at once: two statements whatever their number (the worker's
/// writer records every run that ended since its last write together). Returns, per run,
/// whether it was recorded.
pub async fn finish_many<C: ConnectionTrait>(
    db: &C,
    finishes: &[(&Finish, Option<RuntimeEvent>)],
) -> CoreResult<Vec<bool>> {
    if finishes.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(finishes.len());
    for (finish, _) in finishes {
        let (status, result, error, role, message) = match &finish.outcome {
            Outcome::Succeeded(output) => (
                "succeeded",
                Some(events::without_nul(
                    serde_json::to_value(output.as_ref()).map_err(anyhow::Error::from)?,
                )),
                None,
                MessageRole::Assistant,
                output.raw.clone(),
            ),
            Outcome::Failed { code, message } => (
                "failed",
                None,
                Some(events::without_nul(
                    json!({"code": code, "message": message}),
                )),
                MessageRole::System,
                format!("The run failed: {message}"),
            ),
            Outcome::Cancelled { reason } => (
                "cancelled",
                None,
                Some(events::without_nul(
                    json!({"code": "cancelled", "message": reason}),
                )),
                MessageRole::System,
                "The run was cancelled.".to_string(),
            ),
        };
        rows.push(FinishRow {
            id: finish.execution_id,
            attempt: finish.attempt,
            task_id: finish.task_id,
            status,
            result,
            error,
            message_id: Uuid::now_v7(),
            message_role: role.as_str(),
            message: threads::run_message_content(&message),
        });
    }
    let input = serde_json::to_value(&rows).map_err(anyhow::Error::from)?;
    let done: Vec<(Uuid, i32)> = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            r#"
WITH input AS (
    SELECT (x->>'id')::uuid AS id, (x->>'attempt')::integer AS attempt,
           (x->>'task_id')::uuid AS task_id, x->>'status' AS status,
           x->'result' AS result, x->'error' AS error, (x->>'message_id')::uuid AS message_id,
           x->>'message_role' AS message_role, x->>'message' AS message
    FROM jsonb_array_elements($1::jsonb) AS x
), done AS (
    UPDATE executions e SET status = i.status, result = i.result, error = i.error,
           finished_at = now(), heartbeat_at = NULL
    FROM input i WHERE e.id = i.id AND e.attempt = i.attempt AND e.status = 'running'
    RETURNING e.id, e.attempt, e.thread_id, i.task_id, i.message_id, i.message_role, i.message
), removed AS (
    DELETE FROM fang_tasks f USING done WHERE f.id = done.task_id
), touched AS (
    UPDATE threads t SET updated_at = now() FROM done WHERE t.id = done.thread_id
), answered AS (
    INSERT INTO messages (id, thread_id, role, content, execution_id)
    SELECT d.message_id, d.thread_id, d.message_role, d.message, d.id
    FROM done d JOIN threads t ON t.id = d.thread_id
)
SELECT id, attempt FROM done
"#,
            [input.into()],
        ))
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                row.try_get::<Uuid>("", "id")?,
                row.try_get::<i32>("", "attempt")?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let recorded = |finish: &Finish| done.contains(&(finish.execution_id, finish.attempt));
    let terminal: Vec<EventBatch> = finishes
        .iter()
        .filter(|(finish, _)| recorded(finish))
        .filter_map(|(finish, event)| {
            event.clone().map(|event| EventBatch {
                execution_id: finish.execution_id,
                attempt: None,
                events: vec![event],
            })
        })
        .collect();
    events::append(db, &terminal).await?;
    Ok(finishes
        .iter()
        .map(|(finish, _)| recorded(finish))
        .collect())
}

/// Ends a run that was asked to stop but whose worker can no longer do it (lost, or
/// handing back): cancelled, with its event. A cancel request must never turn into a re-run.
async fn cancel_instead<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    attempt: i32,
    task_id: Option<Uuid>,
) -> CoreResult<bool> {
    let reason = "cancelled on request".to_string();
    finish(
        db,
        &Finish {
            execution_id,
            attempt,
            task_id: task_id.unwrap_or_default(),
            outcome: Outcome::Cancelled {
                reason: reason.clone(),
            },
        },
        Some(RuntimeEvent::ExecutionCancelled { reason }),
    )
    .await
}

/// Gives a running execution back to the queue (a stopping worker's unfinished run). It
/// does not count as lost; the next claim is a new attempt. A run with a pending cancel
/// request is cancelled instead. `false` if the claim was lost meanwhile.
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    execution_id: Uuid,
    attempt: i32,
    task_id: Uuid,
) -> CoreResult<bool> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE executions SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE status END, \
               worker_id = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE worker_id END, \
               heartbeat_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE heartbeat_at END \
             WHERE id = $1 AND attempt = $2 AND status = 'running' \
             RETURNING cancel_requested_at IS NOT NULL AS cancel",
            [execution_id.into(), attempt.into()],
        ))
        .await?;
    match row.map(|r| r.try_get::<bool>("", "cancel")).transpose()? {
        None => Ok(false),
        Some(true) => cancel_instead(db, execution_id, attempt, Some(task_id)).await,
        Some(false) => {
            queue::requeue(db, task_id, execution_id).await?;
            Ok(true)
        }
    }
}

/// What one reaper pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub stuck_tasks_released: u64,
}

#[derive(FromQueryResult)]
struct StaleRow {
    id: Uuid,
    attempt: i32,
    lost_count: i32,
    queue_task_id: Option<Uuid>,
    cancel_requested: bool,
}

/// Recovers executions whose worker stopped heartbeating: re-queued until a run has been
/// lost `max_attempts` times, then failed with `worker_lost`; cancelled instead when a
/// cancel was requested. Safe to run from every worker at once (rows are taken with SKIP
/// LOCKED). Also releases fang tasks left `in_progress` by a worker that died between
/// fang's claim and the execution's start.
pub async fn reap(
    db: &DatabaseConnection,
    lost_after: Duration,
    max_attempts: i32,
) -> CoreResult<Reaped> {
    let txn = db.begin().await?;
    let stale = StaleRow::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT id, attempt, lost_count, queue_task_id, cancel_requested_at IS NOT NULL AS cancel_requested \
         FROM executions \
         WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
         ORDER BY heartbeat_at LIMIT 100 FOR UPDATE SKIP LOCKED",
        [lost_after.as_secs_f64().into()],
    ))
    .all(&txn)
    .await?;
    let mut reaped = Reaped::default();
    for row in stale {
        if row.cancel_requested {
            cancel_instead(&txn, row.id, row.attempt, row.queue_task_id).await?;
            tracing::warn!(execution_id = %row.id, "worker lost: execution cancelled as requested");
            reaped.cancelled += 1;
        } else if row.lost_count + 1 < max_attempts.max(1) {
            txn.execute(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE executions SET status = 'queued', worker_id = NULL, heartbeat_at = NULL, \
                   lost_count = lost_count + 1 WHERE id = $1",
                [row.id.into()],
            ))
            .await?;
            if let Some(task_id) = row.queue_task_id {
                queue::requeue(&txn, task_id, row.id).await?;
            }
            tracing::warn!(execution_id = %row.id, attempt = row.attempt, "worker lost: execution re-queued");
            reaped.requeued += 1;
        } else {
            let message = format!(
                "the worker running this execution was lost {} time(s); giving up",
                row.lost_count + 1
            );
            finish(
                &txn,
                &Finish {
                    execution_id: row.id,
                    attempt: row.attempt,
                    task_id: row.queue_task_id.unwrap_or_default(),
                    outcome: Outcome::Failed {
                        code: "worker_lost".into(),
                        message: message.clone(),
                    },
                },
                Some(RuntimeEvent::ExecutionFailed {
                    code: "worker_lost".into(),
                    error: message,
                }),
            )
            .await?;
            tracing::warn!(execution_id = %row.id, "worker lost too often: execution failed");
            reaped.failed += 1;
        }
    }
    reaped.stuck_tasks_released = txn
        .execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "UPDATE fang_tasks f SET state = 'new', updated_at = now() FROM executions e \
             WHERE e.queue_task_id = f.id AND e.status = 'queued' AND f.state = 'in_progress' \
               AND f.updated_at < now() - make_interval(secs => $1)",
            [lost_after.as_secs_f64().into()],
        ))
        .await?
        .rows_affected();
    // Tasks whose execution is finished or gone (normally removed with it).
    reaped.stuck_tasks_released += txn
        .execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "DELETE FROM fang_tasks f WHERE f.task_type = $1 \
               AND f.updated_at < now() - make_interval(secs => $2) \
               AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.queue_task_id = f.id \
                               AND e.status IN ('queued', 'running'))",
            [queue::TASK_TYPE.into(), lost_after.as_secs_f64().into()],
        ))
        .await?
        .rows_affected();
    if reaped.stuck_tasks_released > 0 {
        queue::notify(&txn, queue::QUEUE_CHANNEL, "released").await?;
    }
    txn.commit().await?;
    Ok(reaped)
}
