//! Runs one claimed execution: the owner's credentials, the runtime with this run's sink
//! and stop token, the time limit, then the record of how it ended.

use std::sync::Arc;

use crewgraph_core::crew::{RunDeps, RunError, run_crew};
use crewgraph_core::executions::credentials::OwnerCredentials;
use crewgraph_core::executions::lifecycle::{Finish, Outcome, Started, end_code};
use futures::FutureExt as _;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::context::WorkerContext;
use crate::event_writer::Completion;
use crate::running::StopReason;
use crate::sink::ExecutionSink;

pub fn spawn(context: Arc<WorkerContext>, started: Started, permit: OwnedSemaphorePermit) {
    let span = tracing::info_span!(
        "execution",
        execution_id = %started.execution_id,
        attempt = started.attempt
    );
    tokio::spawn(
        async move {
            execute(&context, started).await;
            drop(permit);
        }
        .instrument(span),
    );
}

async fn execute(context: &WorkerContext, started: Started) {
    let Started {
        execution_id,
        task_id,
        owner,
        attempt,
        spec,
        inputs,
    } = started;
    let token = context.running.insert(execution_id, attempt);
    tracing::info!("execution started");
    let sink = ExecutionSink::new(execution_id, attempt, context.writer.clone());
    let credentials = OwnerCredentials {
        db: context.db.clone(),
        keys: context.keys.clone(),
        owner,
        fallback: context.fallback.clone(),
    };
    let deps = RunDeps {
        connector: Arc::new(context.connector.with_credentials(Arc::new(credentials))),
        tools: context.tools.clone(),
    };
    // A panic inside the run (a bug in a tool, say) fails this execution, not the worker,
    // and never leaves it `running`.
    let run = std::panic::AssertUnwindSafe(run_crew(&spec, &inputs, deps, &sink, token))
        .catch_unwind()
        .map(|outcome| {
            outcome.unwrap_or_else(|_| {
                tracing::error!("the run panicked");
                Err(RunError::TaskFailed(
                    "the run stopped unexpectedly (internal error)".into(),
                ))
            })
        });
    let result = tokio::time::timeout(context.execution_timeout, run).await;
    let stop_reason = context.running.reason(execution_id, attempt);
    let finish = |outcome| {
        Some(Completion::Finish(Box::new(Finish::of_running(
            execution_id,
            attempt,
            task_id,
            outcome,
        ))))
    };
    let completion = match result {
        Ok(Err(RunError::Cancelled)) => match stop_reason {
            Some(StopReason::Shutdown) => Some(Completion::HandBack {
                execution_id,
                attempt,
                task_id,
            }),
            Some(StopReason::Lost) => None,
            Some(StopReason::Cancelled) | None => {
                finish(Outcome::of_run(&Err(RunError::Cancelled)))
            }
        },
        Ok(result) => finish(Outcome::of_run(&result)),
        Err(_) => finish(Outcome::failed(
            end_code::EXECUTION_TIMEOUT,
            format!(
                "the execution ran longer than its limit of {} s",
                context.execution_timeout.as_secs()
            ),
        )),
    };
    sink.flush().await;
    match completion {
        Some(completion) => {
            context.running.mark_ending(execution_id, attempt);
            let recorded = context.writer.complete(completion).await;
            tracing::info!(recorded, "execution ended");
        }
        None => tracing::warn!("execution abandoned: another worker holds it now"),
    }
    // Only now: until its end is recorded, the heartbeat keeps the run alive.
    context.running.remove(execution_id, attempt);
}
