//! Runs one claimed execution: the owner's credentials, the runtime with this run's sink
//! and stop token, the time limit, then the record of how it ended.

use std::sync::Arc;

use crewgraph_core::crew::events::RuntimeEvent;
use crewgraph_core::crew::{RunDeps, RunError, run_crew};
use crewgraph_core::executions::credentials::OwnerCredentials;
use crewgraph_core::executions::lifecycle::{Finish, Outcome, Started};
use futures::FutureExt as _;
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
    // The runtime's own terminal event (succeeded/failed), held back by the sink.
    let emitted_terminal = sink.take_terminal();
    let finish = |outcome, terminal| {
        Completion::Finish(
            Box::new(Finish {
                execution_id,
                attempt,
                task_id,
                outcome,
            }),
            terminal,
        )
    };
    let completion = match result {
        Ok(Ok(output)) => {
            let terminal = emitted_terminal.or_else(|| {
                Some(RuntimeEvent::ExecutionSucceeded {
                    output: output.clone(),
                })
            });
            Some(finish(Outcome::Succeeded(Box::new(output)), terminal))
        }
        Ok(Err(RunError::Cancelled)) => match stop_reason {
            Some(StopReason::Shutdown) => Some(Completion::HandBack {
                execution_id,
                attempt,
                task_id,
            }),
            Some(StopReason::Lost) => None,
            Some(StopReason::Cancelled) | None => {
                let reason = "cancelled on request".to_string();
                Some(finish(
                    Outcome::Cancelled {
                        reason: reason.clone(),
                    },
                    Some(RuntimeEvent::ExecutionCancelled { reason }),
                ))
            }
        },
        Ok(Err(error)) => {
            // Every end has its terminal event, even when the runtime could not emit one.
            let terminal = emitted_terminal.or_else(|| {
                Some(RuntimeEvent::ExecutionFailed {
                    code: error.code().to_string(),
                    error: error.to_string(),
                })
            });
            Some(finish(
                Outcome::Failed {
                    code: error.code().to_string(),
                    message: error.to_string(),
                },
                terminal,
            ))
        }
        Err(_) => {
            let message = format!(
                "the execution ran longer than its limit of {} s",
                context.execution_timeout.as_secs()
            );
            Some(finish(
                Outcome::Failed {
                    code: "execution_timeout".into(),
                    message: message.clone(),
                },
                Some(RuntimeEvent::ExecutionFailed {
                    code: "execution_timeout".into(),
                    error: message,
                }),
            ))
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
    // Only now: until its end is recorded, the heartbeat keeps the run alive.
    context.running.remove(execution_id, attempt);
}
