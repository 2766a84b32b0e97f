//! The worker's one writer of the event log. Crews emit events into a channel; the writer
//! takes everything waiting, writes it in one transaction (one statement for all events
//! of all executions: group commit), records finished runs in the same transaction after
//! their last events, and goes again. Under load batches grow instead of transactions
//! multiplying; idle, an event is written as soon as it arrives.
//!
//! Token deltas are merged per LLM call for up to [`DELTA_WINDOW`], so a chatty model
//! produces a few rows a second per stream, not one per token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crewgraph_core::crew::events::{EventSink, RuntimeEvent};
use crewgraph_core::error::{CoreError, CoreResult};
use crewgraph_core::events::{self, EventBatch};
use crewgraph_core::executions::lifecycle::{self, Finish};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::running::{Running, StopReason};

/// How long streamed chunks of one LLM call are merged into one `llm.delta` event.
pub const DELTA_WINDOW: Duration = Duration::from_millis(50);
/// Most messages taken into one transaction.
const MAX_BATCH: usize = 5_000;

/// How a run's record ends.
pub enum Completion {
    /// Terminal: status, result/error, queue task removed, chat message, then the
    /// terminal event — one transaction.
    Finish(Box<Finish>, Option<RuntimeEvent>),
    /// Back to the queue (shutdown): it does not count as lost.
    HandBack {
        execution_id: Uuid,
        attempt: i32,
        task_id: Uuid,
    },
}

enum WriterMessage {
    Event {
        execution_id: Uuid,
        attempt: i32,
        event: RuntimeEvent,
    },
    Complete {
        completion: Completion,
        done: oneshot::Sender<bool>,
    },
}

#[derive(Clone)]
pub struct EventWriter {
    sender: mpsc::UnboundedSender<WriterMessage>,
}

impl EventWriter {
    /// Starts the writer task; it ends when every `EventWriter` clone is dropped and
    /// everything sent has been written.
    pub fn start(
        db: DatabaseConnection,
        running: Arc<Running>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let handle = tokio::spawn(write_loop(db, running, receiver));
        (EventWriter { sender }, handle)
    }

    fn send_event(&self, execution_id: Uuid, attempt: i32, event: RuntimeEvent) {
        // Fails only once the writer is gone, at the very end of a shutdown.
        let _ = self.sender.send(WriterMessage::Event {
            execution_id,
            attempt,
            event,
        });
    }

    /// Records how a run ended, after every event it emitted; `true` if it was recorded
    /// (`false`: the claim had been taken back).
    pub async fn complete(&self, completion: Completion) -> bool {
        let (done, answer) = oneshot::channel();
        if self
            .sender
            .send(WriterMessage::Complete { completion, done })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn write_loop(
    db: DatabaseConnection,
    running: Arc<Running>,
    mut receiver: mpsc::UnboundedReceiver<WriterMessage>,
) {
    while let Some(first) = receiver.recv().await {
        let mut messages = vec![first];
        while messages.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(message) => messages.push(message),
                Err(_) => break,
            }
        }
        let (batches, completions) = gather(messages, &running);
        let outcome = write_with_retries(&db, &batches, &completions).await;
        let (written, recorded, dropped) = match outcome {
            Ok((written, recorded)) => (written, recorded, Vec::new()),
            // Something in this batch cannot be stored: write each execution on its own,
            // so one bad run cannot stop the others.
            Err(error) => {
                tracing::error!(code = ?sqlstate(&error), "a batch of events cannot be stored; writing runs one by one");
                write_one_by_one(&db, &batches, &completions).await
            }
        };
        for batch in &batches {
            // Events that could not be stored are gone, but their run goes on (and its end
            // is recorded); only a fenced-off run has lost its claim.
            if let Some(attempt) = batch.attempt
                && !written.contains(&batch.execution_id)
                && !dropped.contains(&batch.execution_id)
            {
                tracing::warn!(execution_id = %batch.execution_id, attempt, "claim lost: stopping the run without writing");
                running.stop_attempt(batch.execution_id, attempt, StopReason::Lost);
            }
        }
        for ((_, done), recorded) in completions.into_iter().zip(recorded) {
            let _ = done.send(recorded);
        }
    }
}

type Completions = Vec<(Completion, oneshot::Sender<bool>)>;

/// Groups events per execution (in order, deltas merged). Events of an older attempt of
/// an execution that also has a newer one here belong to a run that lost its claim.
fn gather(messages: Vec<WriterMessage>, running: &Running) -> (Vec<EventBatch>, Completions) {
    let mut batches: Vec<EventBatch> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut completions = Vec::new();
    for message in messages {
        match message {
            WriterMessage::Event {
                execution_id,
                attempt,
                event,
            } => {
                let slot = *index.entry(execution_id).or_insert_with(|| {
                    batches.push(EventBatch {
                        execution_id,
                        attempt: Some(attempt),
                        events: Vec::new(),
                    });
                    batches.len() - 1
                });
                let batch = &mut batches[slot];
                match batch.attempt {
                    Some(current) if current == attempt => {
                        push_merging_deltas(&mut batch.events, event)
                    }
                    Some(current) if current < attempt => {
                        running.stop_attempt(execution_id, current, StopReason::Lost);
                        batch.attempt = Some(attempt);
                        batch.events = vec![event];
                    }
                    _ => running.stop_attempt(execution_id, attempt, StopReason::Lost),
                }
            }
            WriterMessage::Complete { completion, done } => completions.push((completion, done)),
        }
    }
    (batches, completions)
}

/// Retries while the database is unreachable (it may be restarting) — the run's events
/// wait in memory — and once for anything else (a deadlock, a serialization failure).
async fn write_with_retries(
    db: &DatabaseConnection,
    batches: &[EventBatch],
    completions: &Completions,
) -> CoreResult<(Vec<Uuid>, Vec<bool>)> {
    let mut delay = Duration::from_millis(50);
    let mut other_failures = 0;
    loop {
        match write(db, batches, completions.iter().map(|(c, _)| c)).await {
            Ok(results) => return Ok(results),
            Err(error) if is_connection_error(&error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "the database is unreachable; events wait");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) if other_failures == 0 => {
                tracing::warn!(code = ?sqlstate(&error), "writing events failed; retrying once");
                other_failures += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn is_connection_error(error: &CoreError) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match error {
        CoreError::Database(DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) => true,
        CoreError::Database(
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)),
        ) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => true,
            // Connection exceptions (08) and a session ended by an operator or a restart (57).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
            _ => false,
        },
        _ => false,
    }
}

/// The fallback after a batch failed for a reason other than the connection: each
/// execution on its own. If its events and end cannot be stored together, its events are
/// tried alone, and its end is recorded as a failure, so no execution stays `running`.
async fn write_one_by_one(
    db: &DatabaseConnection,
    batches: &[EventBatch],
    completions: &Completions,
) -> (Vec<Uuid>, Vec<bool>, Vec<Uuid>) {
    let mut written = Vec::new();
    let mut dropped = Vec::new();
    let mut recorded = vec![false; completions.len()];
    let mut ids: Vec<Uuid> = batches.iter().map(|b| b.execution_id).collect();
    for (completion, _) in completions {
        let id = completion_execution(completion);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in ids {
        let own_batches: Vec<EventBatch> = batches
            .iter()
            .filter(|b| b.execution_id == id)
            .cloned()
            .collect();
        let own: Vec<usize> = completions
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| completion_execution(c) == id)
            .map(|(i, _)| i)
            .collect();
        let own_completions: Vec<&Completion> = own.iter().map(|&i| &completions[i].0).collect();
        match write_retrying_connection(db, &own_batches, &own_completions).await {
            Ok((ok, results)) => {
                written.extend(ok);
                for (slot, result) in own.into_iter().zip(results) {
                    recorded[slot] = result;
                }
                continue;
            }
            Err(error) => {
                tracing::error!(execution_id = %id, code = ?sqlstate(&error), "storing this run's events and end failed");
            }
        }
        match write_retrying_connection(db, &own_batches, &[]).await {
            Ok((ok, _)) => written.extend(ok),
            Err(error) => {
                dropped.push(id);
                tracing::error!(execution_id = %id, code = ?sqlstate(&error), "this run's events cannot be stored; dropped");
            }
        }
        for slot in own {
            let failure = as_failure(&completions[slot].0);
            match write_retrying_connection(db, &[], &[&failure]).await {
                Ok((_, results)) => recorded[slot] = results.first().copied().unwrap_or(false),
                Err(error) => {
                    tracing::error!(execution_id = %id, code = ?sqlstate(&error), "this run's end cannot be recorded");
                }
            }
        }
    }
    (written, recorded, dropped)
}

/// One write, retried while the database is unreachable.
async fn write_retrying_connection(
    db: &DatabaseConnection,
    batches: &[EventBatch],
    completions: &[&Completion],
) -> CoreResult<(Vec<Uuid>, Vec<bool>)> {
    let mut delay = Duration::from_millis(50);
    loop {
        match write(db, batches, completions.iter().copied()).await {
            Err(error) if is_connection_error(&error) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// A run's end recorded as a failure to store it.
fn as_failure(completion: &Completion) -> Completion {
    let message = "the run's result could not be stored".to_string();
    let (execution_id, attempt, task_id) = match completion {
        Completion::Finish(finish, _) => (finish.execution_id, finish.attempt, finish.task_id),
        Completion::HandBack {
            execution_id,
            attempt,
            task_id,
        } => (*execution_id, *attempt, *task_id),
    };
    Completion::Finish(
        Box::new(Finish {
            execution_id,
            attempt,
            task_id,
            outcome: lifecycle::Outcome::Failed {
                code: "result_not_stored".into(),
                message: message.clone(),
            },
        }),
        Some(RuntimeEvent::ExecutionFailed {
            code: "result_not_stored".into(),
            error: message,
        }),
    )
}

/// The SQLSTATE of a database error (logged instead of the message, which can quote data).
fn sqlstate(error: &CoreError) -> Option<String> {
    match error {
        CoreError::Database(e) => crewgraph_core::db::sqlstate(e),
        _ => None,
    }
}

fn completion_execution(completion: &Completion) -> Uuid {
    match completion {
        Completion::Finish(finish, _) => finish.execution_id,
        Completion::HandBack { execution_id, .. } => *execution_id,
    }
}

/// Consecutive chunks of one LLM call become one event.
fn push_merging_deltas(events: &mut Vec<RuntimeEvent>, event: RuntimeEvent) {
    if let RuntimeEvent::LlmDelta { call_id, chunk, .. } = &event
        && let Some(RuntimeEvent::LlmDelta {
            call_id: last_call,
            chunk: last_chunk,
            ..
        }) = events.last_mut()
        && last_call == call_id
    {
        last_chunk.push_str(chunk);
        return;
    }
    events.push(event);
}

async fn write<'a>(
    db: &DatabaseConnection,
    batches: &[EventBatch],
    completions: impl Iterator<Item = &'a Completion>,
) -> CoreResult<(Vec<Uuid>, Vec<bool>)> {
    let completions: Vec<&Completion> = completions.collect();
    let txn = db.begin().await?;
    // Every execution this transaction touches, locked first and in id order (as the
    // heartbeat and the API lock them): the statements below cannot deadlock with them.
    let mut ids: Vec<String> = batches
        .iter()
        .map(|b| b.execution_id)
        .chain(completions.iter().map(|c| completion_execution(c)))
        .map(|id| id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT id FROM executions WHERE id = ANY(string_to_array($1, ',')::uuid[]) ORDER BY id FOR UPDATE",
        [ids.join(",").into()],
    ))
    .await?;
    let written: Vec<Uuid> = events::append(&txn, batches)
        .await?
        .into_iter()
        .map(|a| a.execution_id)
        .collect();
    // Every run that ended: recorded together.
    let finishes: Vec<(&Finish, Option<RuntimeEvent>)> = completions
        .iter()
        .filter_map(|c| match c {
            Completion::Finish(finish, terminal) => Some((finish.as_ref(), terminal.clone())),
            Completion::HandBack { .. } => None,
        })
        .collect();
    let mut finished = lifecycle::finish_many(&txn, &finishes).await?.into_iter();
    let mut recorded = Vec::with_capacity(completions.len());
    for completion in completions {
        recorded.push(match completion {
            Completion::Finish(..) => finished.next().unwrap_or(false),
            Completion::HandBack {
                execution_id,
                attempt,
                task_id,
            } => lifecycle::hand_back(&txn, *execution_id, *attempt, *task_id).await?,
        });
    }
    txn.commit().await?;
    Ok((written, recorded))
}

/// The sink of one run: stamps the attempt on `execution.started`, merges deltas for
/// [`DELTA_WINDOW`], and hands events to the writer in order.
pub struct ExecutionSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    execution_id: Uuid,
    attempt: i32,
    writer: EventWriter,
    pending: Mutex<Option<PendingDelta>>,
    generation: AtomicU64,
    /// The run's terminal event, held back: it is written with the status change.
    terminal: Mutex<Option<RuntimeEvent>>,
}

struct PendingDelta {
    generation: u64,
    call_id: String,
    agent_role: String,
    chunk: String,
}

impl ExecutionSink {
    pub fn new(execution_id: Uuid, attempt: i32, writer: EventWriter) -> Self {
        ExecutionSink {
            inner: Arc::new(SinkInner {
                execution_id,
                attempt,
                writer,
                pending: Mutex::new(None),
                generation: AtomicU64::new(0),
                terminal: Mutex::new(None),
            }),
        }
    }

    /// Sends any merged delta still waiting (before the run's last record).
    pub fn flush(&self) {
        self.inner.flush_pending(None);
    }

    /// The terminal event the run emitted, if any.
    pub fn take_terminal(&self) -> Option<RuntimeEvent> {
        self.inner.terminal.lock().ok().and_then(|mut t| t.take())
    }
}

impl SinkInner {
    fn send(&self, event: RuntimeEvent) {
        self.writer
            .send_event(self.execution_id, self.attempt, event);
    }

    /// Sends the pending delta; with a generation, only if it is still that one.
    fn flush_pending(&self, only_generation: Option<u64>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let due = match (&*pending, only_generation) {
            (Some(delta), Some(generation)) => delta.generation == generation,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if due && let Some(delta) = pending.take() {
            self.send(RuntimeEvent::LlmDelta {
                call_id: delta.call_id,
                agent_role: delta.agent_role,
                chunk: delta.chunk,
            });
        }
    }
}

impl EventSink for ExecutionSink {
    fn emit(&self, event: RuntimeEvent) {
        let inner = &self.inner;
        match event {
            RuntimeEvent::LlmDelta {
                call_id,
                agent_role,
                chunk,
            } => {
                let Ok(mut pending) = inner.pending.lock() else {
                    return;
                };
                if let Some(delta) = pending.as_mut()
                    && delta.call_id == call_id
                {
                    delta.chunk.push_str(&chunk);
                    return;
                }
                if let Some(delta) = pending.take() {
                    inner.send(RuntimeEvent::LlmDelta {
                        call_id: delta.call_id,
                        agent_role: delta.agent_role,
                        chunk: delta.chunk,
                    });
                }
                let generation = inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *pending = Some(PendingDelta {
                    generation,
                    call_id,
                    agent_role,
                    chunk,
                });
                let timer = Arc::clone(inner);
                tokio::spawn(async move {
                    tokio::time::sleep(DELTA_WINDOW).await;
                    timer.flush_pending(Some(generation));
                });
            }
            RuntimeEvent::ExecutionStarted {
                crew_name,
                inputs,
                attempt: _,
            } => {
                inner.flush_pending(None);
                inner.send(RuntimeEvent::ExecutionStarted {
                    crew_name,
                    inputs,
                    attempt: u32::try_from(inner.attempt).ok(),
                });
            }
            terminal if terminal.is_terminal() => {
                inner.flush_pending(None);
                if let Ok(mut slot) = inner.terminal.lock() {
                    *slot = Some(terminal);
                }
            }
            other => {
                inner.flush_pending(None);
                inner.send(other);
            }
        }
    }
}
