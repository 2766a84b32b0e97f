//! The worker's one writer of the event log. Crews emit events into a channel; the writer
//! takes everything waiting, writes it in one transaction (one statement for all events
//! of all executions: group commit), records finished runs in the same transaction after
//! their last events, and goes again. Under load batches grow instead of transactions
//! multiplying; idle, an event is written as soon as it arrives.
//!
//! The channel to the writer is bounded ([`QUEUE_CAPACITY`] messages): when the writer
//! falls behind, runs wait at their next LLM or tool call (see `sink`), as River bounds
//! its completer, instead of piling events up in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::crew::events::RuntimeEvent;
use crewgraph_core::error::{CoreError, CoreResult};
use crewgraph_core::events::{self, EventBatch};
use crewgraph_core::executions::lifecycle::{self, Finish, Outcome, Status, end_code};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::running::{Running, StopReason};

/// Most messages taken into one transaction.
const MAX_BATCH: usize = 5_000;
/// Messages the writer's channel holds before runs are held back.
pub const QUEUE_CAPACITY: usize = 4_096;

/// How a run's record ends.
pub enum Completion {
    /// Terminal: status, result/error, queue task removed, chat message, then the
    /// terminal event — one transaction.
    Finish(Box<Finish>),
    /// Back to the queue (shutdown): it does not count as lost.
    HandBack {
        execution_id: Uuid,
        attempt: i32,
        task_id: Uuid,
    },
}

pub(crate) enum WriterMessage {
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
    pub(crate) sender: mpsc::Sender<WriterMessage>,
}

impl EventWriter {
    /// Starts the writer task; it ends when every `EventWriter` clone is dropped and
    /// everything sent has been written.
    pub fn start(
        db: DatabaseConnection,
        running: Arc<Running>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let handle = tokio::spawn(write_loop(db, running, receiver));
        (EventWriter { sender }, handle)
    }

    /// Records how a run ended, after every event it emitted; `true` if it was recorded
    /// (`false`: the claim had been taken back).
    pub async fn complete(&self, completion: Completion) -> bool {
        let (done, answer) = oneshot::channel();
        if self
            .sender
            .send(WriterMessage::Complete { completion, done })
            .await
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
    mut receiver: mpsc::Receiver<WriterMessage>,
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
            Err(error) if is_transient(&error) => {
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

/// The database is away or this process is briefly out of file descriptors: the events
/// wait in memory and the write is tried again.
fn is_transient(error: &CoreError) -> bool {
    matches!(error, CoreError::Database(e) if crewgraph_core::db::is_transient(e))
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
            Err(error) if is_transient(&error) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// A run's end recorded as a failure to store it.
fn as_failure(completion: &Completion) -> Completion {
    let (execution_id, attempt, task_id) = match completion {
        Completion::Finish(finish) => (finish.execution_id, finish.attempt, finish.task_id),
        Completion::HandBack {
            execution_id,
            attempt,
            task_id,
        } => (*execution_id, *attempt, Some(*task_id)),
    };
    Completion::Finish(Box::new(Finish {
        execution_id,
        attempt,
        task_id,
        from: Status::Running,
        outcome: Outcome::failed(
            end_code::RESULT_NOT_STORED,
            "the run's result could not be stored",
        ),
    }))
}

/// The SQLSTATE of a database error, else its class (logged instead of the message, which
/// can quote data).
fn sqlstate(error: &CoreError) -> Option<String> {
    match error {
        CoreError::Database(e) => crewgraph_core::db::sqlstate(e)
            .or_else(|| Some(format!("{:?}", crewgraph_core::db::classify(e)))),
        _ => None,
    }
}

fn completion_execution(completion: &Completion) -> Uuid {
    match completion {
        Completion::Finish(finish) => finish.execution_id,
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
    let ids: Vec<Uuid> = batches
        .iter()
        .map(|b| b.execution_id)
        .chain(completions.iter().map(|c| completion_execution(c)))
        .collect();
    lifecycle::lock_in_id_order(&txn, &ids).await?;
    let written: Vec<Uuid> = events::append(&txn, batches)
        .await?
        .into_iter()
        .map(|a| a.execution_id)
        .collect();
    // Every run that ended: recorded together.
    let finishes: Vec<Finish> = completions
        .iter()
        .filter_map(|c| match c {
            Completion::Finish(finish) => Some(finish.as_ref().clone()),
            Completion::HandBack { .. } => None,
        })
        .collect();
    let mut finished = lifecycle::finish_many(&txn, &finishes).await?.into_iter();
    let mut recorded = Vec::with_capacity(completions.len());
    for completion in &completions {
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
    let executions = &crewgraph_core::monitoring::metrics().executions;
    for (completion, recorded) in completions.iter().zip(&recorded) {
        if let (Completion::Finish(finish), true) = (completion, recorded) {
            executions.finished(&finish.outcome);
        }
    }
    Ok((written, recorded))
}
