//! Retention: finished executions (with their events) older than
//! `CREWGRAPH_RETENTION_DAYS` are deleted, in short batches. Messages that pointed at a
//! deleted execution keep their text (their `execution_id` becomes null).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fang::typetag;
use fang::{AsyncQueueable, AsyncRunnable, FangError, Scheduled};
use sea_orm::{ConnectionTrait, Statement};
use serde::{Deserialize, Serialize};

use super::TASK_TYPE;
use crate::error::CoreResult;
use crate::executions::Status;

/// Rows deleted per statement: short transactions, no long locks.
const BATCH: i64 = 1_000;
/// Every hour, on the hour (UTC; fang's cron has a seconds field).
const EVERY_HOUR: &str = "0 0 * * * *";

/// One retention pass; `periodic` makes it fang's hourly cron job (unique across
/// workers), otherwise it runs once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionSweep {
    pub periodic: bool,
}

#[typetag::serde]
#[async_trait]
impl AsyncRunnable for RetentionSweep {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let (context, _guard) = super::enter()?;
        let Some(keep) = context.retention else {
            return Ok(());
        };
        let keep = chrono::Duration::from_std(keep).map_err(|e| FangError {
            description: format!("retention period: {e}"),
        })?;
        let deleted = delete_finished_before(&context.db, Utc::now() - keep)
            .await
            .map_err(|e| FangError {
                description: format!("retention sweep: {e}"),
            })?;
        if deleted > 0 {
            tracing::info!(deleted, "retention: deleted finished executions");
        }
        Ok(())
    }

    fn task_type(&self) -> String {
        TASK_TYPE.into()
    }

    fn uniq(&self) -> bool {
        true
    }

    fn cron(&self) -> Option<Scheduled> {
        self.periodic
            .then(|| Scheduled::CronPattern(EVERY_HOUR.into()))
    }

    /// Enough for a database outage or a few refusals by stopping workers.
    fn max_retries(&self) -> i32 {
        10
    }
}

/// Deletes executions that finished before `cutoff` (their events go with them), batch by
/// batch; returns how many.
pub async fn delete_finished_before<C: ConnectionTrait>(
    db: &C,
    cutoff: DateTime<Utc>,
) -> CoreResult<u64> {
    let terminal: Vec<&str> = Status::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(Status::as_str)
        .collect();
    let terminal = terminal.join(",");
    let mut total = 0;
    loop {
        let deleted = db
            .execute(Statement::from_sql_and_values(
                db.get_database_backend(),
                "DELETE FROM executions WHERE id IN ( \
                   SELECT id FROM executions WHERE finished_at < $1 \
                     AND status = ANY(string_to_array($3, ',')) \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
                [cutoff.into(), BATCH.into(), terminal.clone().into()],
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
