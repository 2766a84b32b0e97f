//! Runs one claimed execution: the owner's credentials, the runtime with this run's sink
//! and stop token, the time limit, then the record of how it ended.

use std::sync::Arc;

use crewgraph_core::crew::events::{EventSink as _, RuntimeEvent};
use crewgraph_core::crew::{RunDeps, RunError, run_crew};
use crewgraph_core::executions::credentials::OwnerCredentials;
use crewgraph_core::executions::lifecycle::{Finish, Outcome, Started};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::context::WorkerContext;
use crate::event_writer::{Completion, ExecutionSink};
use crate::running::StopReason;

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
    let result = tokio::time::timeout(
        context.execution_timeout,
        run_crew(&spec, &inputs, deps, &sink, token),
    )
    .await;
    let stop_reason = context.running.remove(execution_id);
    let finish = |outcome| {
        Completion::Finish(Finish {
            execution_id,
            attempt,
            task_id,
            outcome,
        })
    };
    let completion = match result {
        Ok(Ok(output)) => Some(finish(Outcome::Succeeded(Box::new(output)))),
        Ok(Err(RunError::Cancelled)) => match stop_reason {
            Some(StopReason::Shutdown) => Some(Completion::HandBack {
                execution_id,
                attempt,
                task_id,
            }),
            Some(StopReason::Lost) => None,
            Some(StopReason::Cancelled) | None => {
                let reason = "cancelled on request".to_string();
                sink.emit(RuntimeEvent::ExecutionCancelled {
                    reason: reason.clone(),
                });
                Some(finish(Outcome::Cancelled { reason }))
            }
        },
        // The runtime has emitted `execution.failed` itself.
        Ok(Err(error)) => Some(finish(Outcome::Failed {
            code: error.code().to_string(),
            message: error.to_string(),
        })),
        Err(_) => {
            let message = format!(
                "the execution ran longer than its limit of {} s",
                context.execution_timeout.as_secs()
            );
            sink.emit(RuntimeEvent::ExecutionFailed {
                code: "execution_timeout".into(),
                error: message.clone(),
            });
            Some(finish(Outcome::Failed {
                code: "execution_timeout".into(),
                message,
            }))
        }
    };
    sink.flush();
    match completion {
        Some(completion) => {
            let recorded = context.writer.complete(completion).await;
            tracing::info!(recorded, "execution ended");
        }
        None => tracing::warn!("execution abandoned: another worker holds it now"),
    }
}
