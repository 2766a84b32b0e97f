//! Executions (DESIGN §3): `queued → running → succeeded | failed | cancelled`, and
//! `queued → cancelled`. Kickoff validates, snapshots the graph and its compiled spec,
//! inserts the execution, enqueues its fang task, records `execution.queued` and wakes
//! the workers — all in one transaction. Every query is scoped to the caller.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, FromQueryResult, Statement,
    TransactionTrait,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::Principal;
use crate::crew::events::RuntimeEvent;
use crate::crew::tools::ToolRegistry;
use crate::error::{CoreError, CoreResult};
use crate::events::{self, EventBatch, StoredEvent};
use crate::graph::compile::{NotCompilable, compile_document};
use crate::metrics::{self, RunMetrics};
use crate::outbound::OutboundPolicy;
use crate::pagination::{Cursor, Page, PageRequest};
use crate::threads::{self, MessageRole};

pub mod credentials;
pub mod lifecycle;
pub mod queue_task;

pub use lifecycle::Status;

/// Messages of a thread a chat run sees (the newest ones).
pub const CHAT_HISTORY_MESSAGES: u32 = 20;
/// Largest kickoff inputs (their JSON text).
pub const MAX_INPUTS_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, FromQueryResult)]
pub struct Execution {
    pub id: Uuid,
    pub graph_id: Option<Uuid>,
    pub graph_version: Option<i32>,
    pub thread_id: Option<Uuid>,
    pub status: Status,
    pub inputs: Value,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub attempt: i32,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The run's figures (`execution_metrics` as JSON): null until it ends.
    pub metrics: Option<Value>,
}

impl Execution {
    /// The run's figures, once it ended.
    pub fn run_metrics(&self) -> CoreResult<Option<RunMetrics>> {
        metrics::summary_of(&self.metrics)
    }
}

const COLUMNS: &str = "id, graph_id, graph_version, thread_id, status, inputs, result, error, \
                       attempt, last_seq, created_at, started_at, finished_at, cancel_requested_at, \
                       (SELECT to_jsonb(m) FROM execution_metrics m \
                        WHERE m.execution_id = executions.id) AS metrics";

pub struct ListFilter {
    pub graph_id: Option<Uuid>,
    pub status: Option<Status>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Starts a run of one of the caller's graphs.
pub async fn kickoff(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    max_active: i64,
    graph_id: Uuid,
    inputs: Map<String, Value>,
    webhook_ids: &[Uuid],
) -> CoreResult<Execution> {
    let txn = db.begin().await?;
    let execution = kickoff_in(
        &txn,
        principal,
        tools,
        llm_hosts,
        max_active,
        graph_id,
        inputs,
        None,
        webhook_ids,
    )
    .await?;
    txn.commit().await?;
    Ok(execution)
}

/// A chat run: stores the user's message in a thread bound to a graph and starts a run
/// with it (and the thread's recent history) as inputs — or, when the run cannot start,
/// stores nothing.
pub async fn kickoff_chat(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    max_active: i64,
    thread_id: Uuid,
    content: &str,
) -> CoreResult<(threads::Message, Execution)> {
    let thread = threads::get(db, principal, thread_id).await?;
    let graph_id = thread.graph_id.ok_or_else(|| {
        CoreError::invalid(
            "thread_not_bound",
            "thread",
            "this thread is not bound to a graph",
        )
    })?;
    let txn = db.begin().await?;
    let history = threads::recent_messages(&txn, thread_id, CHAT_HISTORY_MESSAGES).await?;
    let message =
        threads::add_message_in(&txn, principal, thread_id, MessageRole::User, content).await?;
    let inputs = chat_inputs(content, &history);
    let execution = kickoff_in(
        &txn,
        principal,
        tools,
        llm_hosts,
        max_active,
        graph_id,
        inputs,
        Some(thread_id),
        &[],
    )
    .await?;
    let message = threads::link_execution(&txn, message.id, execution.id).await?;
    txn.commit().await?;
    Ok((message, execution))
}

/// How much of a thread's history a chat run gets (characters of `history`): the newest
/// messages that fit, each cut to [`CHAT_HISTORY_MESSAGE_CHARS`].
pub const CHAT_HISTORY_CHARS: usize = 32_000;
pub const CHAT_HISTORY_MESSAGE_CHARS: usize = 4_000;

/// The inputs of a chat run: `message`, `history` ("role: content" lines, oldest first)
/// and CrewAI's `crew_chat_messages` (the same as a JSON text). Long threads keep their
/// newest messages within a budget, so a thread never outgrows the inputs limit.
fn chat_inputs(content: &str, history: &[threads::Message]) -> Map<String, Value> {
    let mut kept: Vec<(&str, String)> = Vec::new();
    let mut used = 0;
    for message in history.iter().rev() {
        let text: String = message
            .content
            .chars()
            .take(CHAT_HISTORY_MESSAGE_CHARS)
            .collect();
        let size = text.chars().count() + message.role.len() + 3;
        if used + size > CHAT_HISTORY_CHARS {
            break;
        }
        used += size;
        kept.push((message.role.as_str(), text));
    }
    kept.reverse();
    let lines: Vec<String> = kept
        .iter()
        .map(|(role, text)| format!("{role}: {text}"))
        .collect();
    let messages: Vec<Value> = kept
        .iter()
        .map(|(role, text)| json!({"role": role, "content": text}))
        .chain(std::iter::once(json!({"role": "user", "content": content})))
        .collect();
    let mut inputs = Map::new();
    inputs.insert("message".into(), json!(content));
    inputs.insert("history".into(), json!(lines.join("\n")));
    inputs.insert(
        "crew_chat_messages".into(),
        json!(Value::Array(messages).to_string()),
    );
    inputs
}

async fn kickoff_in(
    txn: &DatabaseTransaction,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    max_active: i64,
    graph_id: Uuid,
    inputs: Map<String, Value>,
    thread_id: Option<Uuid>,
    webhook_ids: &[Uuid],
) -> CoreResult<Execution> {
    let inputs_size = serde_json::to_vec(&inputs).map(|b| b.len()).unwrap_or(0);
    if inputs_size > MAX_INPUTS_BYTES {
        return Err(CoreError::TooLarge {
            code: "inputs_too_large",
            message: format!("the inputs are {inputs_size} bytes; the limit is {MAX_INPUTS_BYTES}"),
            limit: MAX_INPUTS_BYTES,
        });
    }
    let graph = crate::graphs::get_in(txn, principal, graph_id).await?;
    let (spec, plan) = compile_document(&graph.document, &|name| tools.contains(name), llm_hosts)
        .map_err(|NotCompilable(problems)| CoreError::Problems {
        code: "graph_invalid",
        message: "the graph is not valid: fix its problems before running it".into(),
        details: json!({ "problems": problems }),
    })?;
    check_inputs_present(&plan.inputs, &inputs)?;
    reserve_active_slot(txn, principal, max_active).await?;
    let id = Uuid::now_v7();
    let task_id = Uuid::now_v7();
    let spec_json = serde_json::to_value(&spec).map_err(anyhow::Error::from)?;
    let mut execution = Execution::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "INSERT INTO executions (id, user_id, graph_id, graph_version, thread_id, status, \
               document, spec, inputs, queue_task_id) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9) RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            graph.id.into(),
            graph.version.into(),
            thread_id.into(),
            graph.document.into(),
            spec_json.into(),
            Value::Object(inputs.clone()).into(),
            task_id.into(),
        ],
    ))
    .one(txn)
    .await?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))?;
    queue_task::enqueue(txn, task_id, id).await?;
    // The graph's webhooks and those the kickoff names, fixed for this run.
    crate::webhooks::attach_to_execution(txn, principal, id, graph.id, webhook_ids).await?;
    let appended = events::append(
        txn,
        &[EventBatch {
            execution_id: id,
            attempt: None,
            events: vec![RuntimeEvent::ExecutionQueued {
                inputs: Value::Object(inputs),
            }],
        }],
    )
    .await?;
    execution.last_seq = appended.first().map_or(execution.last_seq, |a| a.last_seq);
    Ok(execution)
}

/// Every input the graph's placeholders name is given.
fn check_inputs_present(required: &[String], inputs: &Map<String, Value>) -> CoreResult<()> {
    let missing: Vec<&String> = required
        .iter()
        .filter(|name| !inputs.contains_key(name.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(CoreError::Problems {
            code: "missing_inputs",
            message: format!(
                "the graph needs these kickoff inputs: {}",
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            details: json!({ "missing": missing, "required": required }),
        });
    }
    Ok(())
}

/// Holds the caller's row (kickoffs of one user take turns) and checks the active limit.
async fn reserve_active_slot(
    txn: &DatabaseTransaction,
    principal: &Principal,
    max_active: i64,
) -> CoreResult<()> {
    // Serialise kickoffs of one user, so the active-execution limit holds under races.
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        [principal.user_id.into()],
    ))
    .await?;
    let active = txn
        .query_one(Statement::from_sql_and_values(
            txn.get_database_backend(),
            // Counting stops at the limit: the cost stays bounded however many are queued.
            "SELECT count(*) AS active FROM (SELECT 1 FROM executions \
               WHERE user_id = $1 AND status IN ('queued', 'running') LIMIT $2) AS active",
            [principal.user_id.into(), max_active.into()],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "active"))
        .transpose()?
        .unwrap_or(0);
    if active >= max_active {
        return Err(CoreError::Quota {
            code: "too_many_active_executions",
            message: format!(
                "you already have {active} queued or running executions (the limit is {max_active}); \
                 wait for one to finish or cancel one"
            ),
        });
    }
    Ok(())
}

pub async fn get(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<Execution> {
    get_in(db, principal, id).await
}

async fn get_in<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<Execution> {
    get_owned(db, principal.user_id, id).await
}

/// An execution of `owner`, who must still be an active user (stream tokens are checked
/// without a session, so this is where a deactivated user is stopped).
pub async fn get_owned<C: ConnectionTrait>(db: &C, owner: Uuid, id: Uuid) -> CoreResult<Execution> {
    Execution::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM executions WHERE id = $1 AND user_id = $2 \
             AND EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_active)"
        ),
        [id.into(), owner.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("execution"))
}

/// The caller's executions, newest first.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    filter: ListFilter,
    page: PageRequest,
) -> CoreResult<Page<Execution>> {
    let after = page.after_time_id()?;
    let rows = Execution::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM executions WHERE user_id = $1 \
               AND ($2::uuid IS NULL OR graph_id = $2) \
               AND ($3::text IS NULL OR status = $3) \
               AND ($4::timestamptz IS NULL OR created_at >= $4) \
               AND ($5::timestamptz IS NULL OR created_at < $5) \
               AND ($6::timestamptz IS NULL OR (created_at, id) < ($6::timestamptz, $7::uuid)) \
             ORDER BY created_at DESC, id DESC LIMIT $8"
        ),
        [
            principal.user_id.into(),
            filter.graph_id.into(),
            filter.status.map(|s| s.as_str()).into(),
            filter.created_after.into(),
            filter.created_before.into(),
            after.map(|(t, _)| t).into(),
            after.map(|(_, id)| id).into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_keyed_rows(rows, page, |e| {
        Cursor::TimeId(e.created_at, e.id)
    }))
}

/// An execution's status and the seq of its last event, or `None` if it is gone (for a
/// stream deciding whether anything more can come).
pub async fn stream_position<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> CoreResult<Option<(Status, i64)>> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT status, last_seq FROM executions WHERE id = $1",
            [id.into()],
        ))
        .await?;
    row.map(|r| -> CoreResult<(Status, i64)> {
        Ok((r.try_get("", "status")?, r.try_get("", "last_seq")?))
    })
    .transpose()
}

/// Stored events of one of the caller's executions after `after`, at most `limit`.
pub async fn events_after(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    after: i64,
    limit: u32,
) -> CoreResult<Vec<StoredEvent>> {
    get(db, principal, id).await?;
    events::read_after(db, id, after, limit).await
}

/// Cancels an execution: a queued one at once (`execution.cancelled` is recorded here),
/// a running one by asking its worker, which stops within a second and records
/// `execution.cancelled` itself. Cancelling a finished execution is a conflict; cancelling
/// a cancelled one answers it again.
pub async fn cancel(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<Execution> {
    let txn = db.begin().await?;
    let row = txn
        .query_one(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT status, attempt, queue_task_id FROM executions \
             WHERE id = $1 AND user_id = $2 FOR UPDATE",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .ok_or(CoreError::NotFound("execution"))?;
    let status: Status = row.try_get("", "status")?;
    let mut ended_before_start = false;
    match status {
        Status::Queued => {
            ended_before_start = lifecycle::finish(
                &txn,
                &lifecycle::Finish {
                    execution_id: id,
                    attempt: row.try_get("", "attempt")?,
                    task_id: row.try_get("", "queue_task_id")?,
                    from: Status::Queued,
                    outcome: lifecycle::Outcome::cancelled(lifecycle::cancel_reason::BEFORE_START),
                },
            )
            .await?;
        }
        Status::Running => {
            txn.execute(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE executions SET cancel_requested_at = COALESCE(cancel_requested_at, now()) WHERE id = $1",
                [id.into()],
            ))
            .await?;
            queue_task::notify(&txn, queue_task::CANCEL_CHANNEL, &id.to_string()).await?;
        }
        Status::Cancelled => {}
        Status::Succeeded | Status::Failed => {
            return Err(CoreError::Conflict {
                code: "execution_finished",
                message: format!(
                    "the execution already {}; there is nothing to cancel",
                    status.as_str()
                ),
                details: Some(json!({ "status": status.as_str() })),
            });
        }
    }
    let execution = get_in(&txn, principal, id).await?;
    txn.commit().await?;
    if ended_before_start {
        crate::monitoring::metrics().executions.finished_as(
            Status::Cancelled,
            lifecycle::end_code::CANCELLED,
            1,
        );
    }
    Ok(execution)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: String) -> threads::Message {
        threads::Message {
            id: Uuid::now_v7(),
            thread_id: Uuid::now_v7(),
            role: role.into(),
            content,
            execution_id: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn chat_history_keeps_the_newest_messages_within_budget() {
        let history: Vec<threads::Message> = (0..20)
            .map(|n| message("user", format!("{n}{}", "x".repeat(50_000))))
            .collect();
        let inputs = chat_inputs("hi", &history);
        let text = inputs["history"].as_str().expect("history");
        assert!(text.chars().count() <= CHAT_HISTORY_CHARS);
        assert!(
            text.ends_with('x') && text.contains("user: 19x"),
            "the newest is kept"
        );
        assert!(!text.contains("user: 0x"), "the oldest is dropped");
        assert!(serde_json::to_vec(&inputs).map(|b| b.len()).unwrap_or(0) < MAX_INPUTS_BYTES);
        let short = chat_inputs("hi", &[message("assistant", "hello".into())]);
        assert_eq!(short["history"], "assistant: hello");
        assert_eq!(
            short["crew_chat_messages"],
            r#"[{"content":"hello","role":"assistant"},{"content":"hi","role":"user"}]"#
        );
    }
}
