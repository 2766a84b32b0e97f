//! The parts that keep executions healthy: the heartbeat of this worker's runs (which
//! also catches cancel requests and lost claims) and the reaper that recovers the runs of
//! workers that died.

use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::executions::lifecycle;
use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::running::StopReason;

pub async fn heartbeat(context: Arc<WorkerContext>, stopped: CancellationToken) {
    let interval = (context.lost_after / 5).max(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopped.cancelled() => return,
        }
        let running = context.running.snapshot();
        match lifecycle::heartbeat(&context.db, &context.worker_id, &running).await {
            Ok(pulse) => {
                for id in pulse.cancel_requested {
                    context.running.stop(id, StopReason::Cancelled);
                }
                for id in pulse.lost {
                    tracing::warn!(execution_id = %id, "claim lost: stopping the run");
                    context.running.stop(id, StopReason::Lost);
                }
            }
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }
}

pub async fn reaper(context: Arc<WorkerContext>, stopping: CancellationToken) {
    let interval = (context.lost_after / 3).max(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopping.cancelled() => return,
        }
        match lifecycle::reap(&context.db, context.lost_after, context.max_attempts).await {
            Ok(reaped) if reaped != lifecycle::Reaped::default() => {
                tracing::info!(
                    requeued = reaped.requeued,
                    failed = reaped.failed,
                    released = reaped.stuck_tasks_released,
                    "recovered executions of lost workers"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reaper pass failed"),
        }
    }
}
