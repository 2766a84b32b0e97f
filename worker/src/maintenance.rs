//! The parts that keep executions healthy: the heartbeat of this worker's runs (which
//! also catches cancel requests and lost claims) and the reaper that recovers the runs of
//! workers that died.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crewgraph_core::executions::lifecycle::{self, Status, end_code};
use crewgraph_core::jobs;
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
        let beat = async {
            if running.is_empty() {
                context
                    .db
                    .ping()
                    .await
                    .map(|()| lifecycle::Pulse::default())
                    .map_err(crewgraph_core::error::CoreError::from)
            } else {
                lifecycle::heartbeat(&context.db, &context.worker_id, &running).await
            }
        };
        // A connection that hangs (a black-holed network) counts as a failure too.
        let beat = match tokio::time::timeout(interval, beat).await {
            Ok(beat) => beat,
            Err(_) => Err(crewgraph_core::error::CoreError::Internal(anyhow::anyhow!(
                "the heartbeat got no answer in {} ms",
                interval.as_millis()
            ))),
        };
        let now = Instant::now();
        match beat {
            Ok(pulse) => {
                if let Ok(mut health) = context.health.lock() {
                    health.last_heartbeat = now;
                    health.connected_since.get_or_insert(now);
                }
                for id in pulse.cancel_requested {
                    context.running.stop(id, StopReason::Cancelled);
                }
                for id in pulse.not_held {
                    if let Some((_, attempt)) = running.iter().find(|(r, _)| *r == id)
                        && context.running.lose_if_still_running(id, *attempt)
                    {
                        tracing::warn!(execution_id = %id, "claim lost: stopping the run");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "heartbeat failed");
                let silent_for = match context.health.lock() {
                    Ok(mut health) => {
                        health.connected_since = None;
                        now.duration_since(health.last_heartbeat)
                    }
                    Err(_) => Duration::ZERO,
                };
                if silent_for > context.lost_after && context.running.len() > 0 {
                    // Others consider these runs lost by now and will run them again.
                    tracing::warn!(
                        running = context.running.len(),
                        "no heartbeat for too long: stopping every run"
                    );
                    context.running.stop_all(StopReason::Lost);
                }
            }
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
        // After an outage every heartbeat is stale: give the owners one full period to
        // beat again before judging them lost.
        let connected_long_enough = context.health.lock().is_ok_and(|health| {
            health
                .connected_since
                .is_some_and(|since| since.elapsed() >= context.lost_after)
        });
        if !connected_long_enough {
            continue;
        }
        match lifecycle::reap(&context.db, context.lost_after, context.max_attempts).await {
            Ok(reaped) if reaped != lifecycle::Reaped::default() => {
                let executions = &crewgraph_core::monitoring::metrics().executions;
                let (failed, cancelled) = (reaped.failed as u64, reaped.cancelled as u64);
                executions.finished_as(Status::Failed, end_code::WORKER_LOST, failed);
                executions.finished_as(Status::Cancelled, end_code::CANCELLED, cancelled);
                tracing::info!(
                    requeued = reaped.requeued,
                    failed = reaped.failed,
                    cancelled = reaped.cancelled,
                    released = reaped.stuck_tasks_released,
                    "recovered executions of lost workers"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reaper pass failed"),
        }
        match jobs::rescue(&context.db).await {
            Ok(0) => {}
            Ok(rescued) => tracing::warn!(rescued, "follow-up jobs cut off by a crash: retried"),
            Err(error) => tracing::warn!(%error, "rescuing follow-up jobs failed"),
        }
    }
}
