//! The sink of one run: stamps the attempt on `execution.started`, merges token deltas
//! per LLM call for up to [`DELTA_WINDOW`] (a chatty model makes a few rows a second per
//! stream, not one per token), and hands events to the writer in order.
//!
//! The writer's channel is bounded. `emit` never blocks: when the channel is full, events
//! wait in this run's outbox (in order) and a drain task moves them on as the writer makes
//! room (so a streamed reply keeps flowing once the writer catches up); meanwhile
//! [`EventSink::ready`] — awaited by the runtime before each LLM and tool call — holds a
//! run that outpaces the writer there.
//!
//! The runtime's own terminal event is not forwarded: how a run ended is recorded by the
//! lifecycle, which derives the terminal event from the run's `Outcome` and writes it with
//! the status change.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crewgraph_core::crew::events::{EventSink, RuntimeEvent};
use crewgraph_core::monitoring::RunMetrics;
use futures::future::BoxFuture;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use crate::event_writer::{EventWriter, WriterMessage};

/// How long streamed chunks of one LLM call are merged into one `llm.delta` event.
pub const DELTA_WINDOW: Duration = Duration::from_millis(50);

pub struct ExecutionSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    execution_id: Uuid,
    attempt: i32,
    writer: EventWriter,
    /// Events the full channel could not take yet, oldest first.
    outbox: Mutex<VecDeque<RuntimeEvent>>,
    /// A drain task is moving the outbox on.
    draining: AtomicBool,
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
                outbox: Mutex::new(VecDeque::new()),
                draining: AtomicBool::new(false),
                pending: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Sends everything still waiting (before the run's last record).
    pub async fn flush(&self) {
        self.inner.flush_pending(None);
        self.inner.drain_outbox().await;
    }
}

impl SinkInner {
    fn message(&self, event: RuntimeEvent) -> WriterMessage {
        WriterMessage::Event {
            execution_id: self.execution_id,
            attempt: self.attempt,
            event,
        }
    }

    fn send(self: &Arc<Self>, event: RuntimeEvent) {
        let Ok(mut outbox) = self.outbox.lock() else {
            return;
        };
        if !outbox.is_empty() {
            outbox.push_back(event);
            return;
        }
        match self.writer.sender.try_send(self.message(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(WriterMessage::Event { event, .. })) => {
                outbox.push_back(event);
                drop(outbox);
                if !self.draining.swap(true, Ordering::AcqRel) {
                    let inner = Arc::clone(self);
                    tokio::spawn(async move {
                        inner.drain_outbox().await;
                        inner.draining.store(false, Ordering::Release);
                        // An event queued after the last check but before the flag fell.
                        inner.drain_outbox().await;
                    });
                }
            }
            // The writer is gone only at the very end of a shutdown.
            Err(_) => {}
        }
    }

    /// Moves the outbox into the channel as room appears, keeping the order: a slot is
    /// reserved first, and only then is the oldest event taken out.
    async fn drain_outbox(&self) {
        loop {
            if self.outbox.lock().map_or(true, |o| o.is_empty()) {
                return;
            }
            let Ok(permit) = self.writer.sender.reserve().await else {
                return;
            };
            let Ok(mut outbox) = self.outbox.lock() else {
                return;
            };
            match outbox.pop_front() {
                Some(event) => permit.send(self.message(event)),
                None => return,
            }
        }
    }

    /// Sends the pending delta; with a generation, only if it is still that one.
    fn flush_pending(self: &Arc<Self>, only_generation: Option<u64>) {
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
            // Derived from the outcome and written with the status (see the module doc).
            terminal if terminal.is_terminal() => inner.flush_pending(None),
            other => {
                if let Some(metrics) = RunMetrics::get() {
                    metrics.observe(&other);
                }
                inner.flush_pending(None);
                inner.send(other);
            }
        }
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.drain_outbox())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    fn task_event(n: usize) -> RuntimeEvent {
        RuntimeEvent::TaskFailed {
            task_id: n.to_string(),
            error: String::new(),
        }
    }

    #[tokio::test]
    async fn a_full_writer_holds_the_run_at_ready_and_keeps_the_order() {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(2);
        let sink = ExecutionSink::new(Uuid::now_v7(), 1, EventWriter { sender });
        // emit never blocks, whatever the channel holds.
        for n in 0..5 {
            sink.emit(task_event(n));
        }
        let mut ready = sink.ready();
        let waker = futures::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        assert!(
            ready.as_mut().poll(&mut context).is_pending(),
            "the run waits while the writer is full"
        );
        let mut order = Vec::new();
        let mut released = false;
        while order.len() < 5 {
            let Some(WriterMessage::Event { event, .. }) = receiver.recv().await else {
                panic!("expected an event");
            };
            if let RuntimeEvent::TaskFailed { task_id, .. } = event {
                order.push(task_id);
            }
            // The waiting run moves on as room appears.
            if !released {
                released = ready.as_mut().poll(&mut context) == Poll::Ready(());
            }
        }
        assert_eq!(order, ["0", "1", "2", "3", "4"]);
        assert!(released, "the run went on once its events were taken");
    }
}
