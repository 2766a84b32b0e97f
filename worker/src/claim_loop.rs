//! The claim loop: while crew slots are free, claim that many queued executions (one
//! statement over fang's task table) and start them; when the queue is empty, sleep until
//! a NOTIFY wakes it (or a slow safety-net poll, for notifications lost while the listener
//! reconnected).

use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::executions::lifecycle;
use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::execute;

/// How often an idle worker looks at the queue without being woken.
pub const SAFETY_NET_POLL: Duration = Duration::from_secs(2);

/// Most executions claimed in one statement.
const MAX_CLAIM_BATCH: usize = 32;

pub async fn run(context: Arc<WorkerContext>, stopping: CancellationToken) {
    loop {
        // One free slot at least; then as many as are free, up to a batch.
        let first = tokio::select! {
            permit = context.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopping.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM_BATCH {
            match context.slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let limit = u32::try_from(permits.len()).unwrap_or(1);
        // Not raced with `stopping`: a claim that commits must be run (or handed back by
        // the shutdown), never dropped half-way.
        let claimed = lifecycle::claim(&context.db, &context.worker_id, limit).await;
        match claimed {
            Ok(started) if !started.is_empty() => {
                for run in started {
                    let Some(permit) = permits.pop() else { break };
                    execute::spawn(context.clone(), run, permit);
                }
            }
            Ok(_) => {
                drop(permits);
                tokio::select! {
                    () = context.wake.notified() => {}
                    () = tokio::time::sleep(SAFETY_NET_POLL) => {}
                    () = stopping.cancelled() => return,
                }
            }
            Err(error) => {
                drop(permits);
                tracing::warn!(%error, "claiming from the queue failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopping.cancelled() => return,
                }
            }
        }
    }
}
