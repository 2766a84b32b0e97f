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
use crewgraph_core::error::CoreResult;
use crewgraph_core::events::{self, EventBatch};
use crewgraph_core::executions::lifecycle::{self, Finish};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::running::{Running, StopReason};

/// How long streamed chunks of one LLM call are merged into one `llm.delta` event.
pub const DELTA_WINDOW: Duration = Duration::from_millis(50);
/// Most messages taken into one transaction.
const MAX_BATCH: usize = 5_000;

/// How a run's record ends.
pub enum Completion {
    /// Terminal: status, result/error, queue task removed, chat message.
    Finish(Finish),
    /// Back to the queue (shutdown): the attempt does not count.
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
        let mut batches: Vec<EventBatch> = Vec::new();
        let mut index: HashMap<(Uuid, i32), usize> = HashMap::new();
        let mut completions = Vec::new();
        for message in messages {
            match message {
                WriterMessage::Event {
                    execution_id,
                    attempt,
                    event,
                } => {
                    let slot = *index.entry((execution_id, attempt)).or_insert_with(|| {
                        batches.push(EventBatch {
                            execution_id,
                            attempt: Some(attempt),
                            events: Vec::new(),
                        });
                        batches.len() - 1
                    });
                    push_merging_deltas(&mut batches[slot].events, event);
                }
                WriterMessage::Complete { completion, done } => {
                    completions.push((completion, done))
                }
            }
        }
        let mut delay = Duration::from_millis(50);
        let results = loop {
            match write(&db, &batches, &completions).await {
                Ok(results) => break results,
                Err(error) => {
                    // Keep everything and retry: the database may be restarting.
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "writing events failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        };
        let (written, recorded) = results;
        for batch in &batches {
            if !written.contains(&batch.execution_id) {
                tracing::warn!(execution_id = %batch.execution_id, "claim lost: stopping the run without writing");
                running.stop(batch.execution_id, StopReason::Lost);
            }
        }
        for ((_, done), recorded) in completions.into_iter().zip(recorded) {
            let _ = done.send(recorded);
        }
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

async fn write(
    db: &DatabaseConnection,
    batches: &[EventBatch],
    completions: &[(Completion, oneshot::Sender<bool>)],
) -> CoreResult<(Vec<Uuid>, Vec<bool>)> {
    let txn = db.begin().await?;
    let written: Vec<Uuid> = events::append(&txn, batches)
        .await?
        .into_iter()
        .map(|a| a.execution_id)
        .collect();
    let mut recorded = Vec::with_capacity(completions.len());
    for (completion, _) in completions {
        recorded.push(match completion {
            Completion::Finish(finish) => lifecycle::finish(&txn, finish).await?,
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
            }),
        }
    }

    /// Sends any merged delta still waiting (before the run's last record).
    pub fn flush(&self) {
        self.inner.flush_pending(None);
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
            other => {
                inner.flush_pending(None);
                inner.send(other);
            }
        }
    }
}
