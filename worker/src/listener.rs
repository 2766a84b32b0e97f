//! One LISTEN connection per worker: queue notifications wake the claim loop, cancel
//! notifications stop a running crew at once. After the connection drops, sqlx
//! reconnects; whatever was notified meanwhile is caught by the claim loop's safety-net
//! poll and the heartbeat's cancel check.

use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::executions::queue_task::{CANCEL_CHANNEL, QUEUE_CHANNEL};
use sea_orm::sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::WorkerContext;
use crate::running::StopReason;

pub async fn run(context: Arc<WorkerContext>, database_url: String, stopping: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    loop {
        let listener = tokio::select! {
            listener = connect(&database_url) => listener,
            () = stopping.cancelled() => return,
        };
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stopping.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        // Anything notified before we listened: look now.
        context.wake.notify_one();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = stopping.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => match notification.channel() {
                    QUEUE_CHANNEL => context.wake.notify_one(),
                    CANCEL_CHANNEL => {
                        if let Ok(id) = Uuid::parse_str(notification.payload())
                            && context.running.stop(id, StopReason::Cancelled)
                        {
                            tracing::info!(execution_id = %id, "cancel requested");
                        }
                    }
                    _ => {}
                },
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    context.wake.notify_one();
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection failed");
                    break;
                }
            }
        }
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen_all([QUEUE_CHANNEL, CANCEL_CHANNEL]).await?;
    Ok(listener)
}
