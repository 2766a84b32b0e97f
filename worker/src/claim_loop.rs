//! The claim loop: while a crew slot is free, claim the next execution through fang and
//! start it; when the queue is empty, sleep until a NOTIFY wakes it (or a slow safety-net
//! poll, for notifications lost while the listener reconnected).

use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::executions::lifecycle::{self, StartOutcome};
use crewgraph_core::queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::execute;

/// How often an idle worker looks at the queue without being woken.
pub const SAFETY_NET_POLL: Duration = Duration::from_secs(2);

pub async fn run(context: Arc<WorkerContext>, queue: Queue, stopping: CancellationToken) {
    loop {
        let permit = tokio::select! {
            permit = context.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopping.cancelled() => return,
        };
        let claimed = tokio::select! {
            claimed = queue.claim_next() => claimed,
            () = stopping.cancelled() => return,
        };
        match claimed {
            Ok(Some(task)) => match lifecycle::start(&context.db, task, &context.worker_id).await {
                Ok(StartOutcome::Started(started)) => {
                    execute::spawn(context.clone(), *started, permit)
                }
                Ok(
                    StartOutcome::Gone | StartOutcome::TakenElsewhere | StartOutcome::Unreadable,
                ) => {}
                Err(error) => {
                    tracing::warn!(%error, execution_id = %task.execution_id, "starting a claimed execution failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    () = context.wake.notified() => {}
                    () = tokio::time::sleep(SAFETY_NET_POLL) => {}
                    () = stopping.cancelled() => return,
                }
            }
            Err(error) => {
                drop(permit);
                tracing::warn!(%error, "claiming from the queue failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopping.cancelled() => return,
                }
            }
        }
    }
}
