//! Follow-up jobs: work that happens after (or beside) runs, where at-least-once with
//! retries and backoff is what we want — retention now; MLflow export, webhook delivery
//! and scheduled kickoffs later. fang's own worker pool runs them (its polling, retries,
//! backoff and cron scheduling); crew executions are not among them (they are claimed by
//! the worker's own loop, see `executions::queue_task`).
//!
//! fang builds a job from its stored metadata alone, so what a job needs from the process
//! (the database pool, the settings) comes from the one [`JobContext`] the pool's owner
//! installs at start-up. Every job is idempotent: fang's fetch can hand one task to two
//! workers, and a job cut off by a crash runs again after [`JOB_LEASE`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fang::{AsyncQueue, AsyncQueueable, AsyncRunnable, AsyncWorkerPool, FangError, SleepParams};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::sync::Notify;

use crate::error::{CoreError, CoreResult};

mod retention;

pub use retention::{RetentionSweep, delete_finished_before};

/// fang's `task_type` of every follow-up job: one pool runs them all.
pub const TASK_TYPE: &str = "crewgraph_follow_up";
/// A job still `in_progress` after this long was cut off (its worker died): it is retried.
pub const JOB_LEASE: Duration = Duration::from_secs(15 * 60);

/// What jobs need from the process that runs them.
pub struct JobContext {
    pub db: DatabaseConnection,
    /// Finished executions older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// What webhook deliveries need: the master keys, the address policy, the retry rules.
    pub webhooks: crate::webhooks::DeliverySettings,
    gate: JobGate,
}

static CONTEXT: OnceLock<Arc<JobContext>> = OnceLock::new();

/// The installed context, entered for the length of one job (refused once the pool is
/// shutting down: fang then retries the job later, on this or another worker).
pub(crate) fn enter() -> Result<(Arc<JobContext>, JobGuard), FangError> {
    let context = CONTEXT.get().cloned().ok_or_else(|| FangError {
        description: "no job context in this process".into(),
    })?;
    let guard = context.gate.enter().ok_or_else(|| FangError {
        description: "the worker is shutting down".into(),
    })?;
    Ok((context, guard))
}

/// Counts jobs in flight and refuses new ones after `close`.
#[derive(Default)]
struct JobGate {
    closed: AtomicBool,
    in_flight: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

pub(crate) struct JobGuard {
    in_flight: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl JobGate {
    fn enter(&self) -> Option<JobGuard> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = JobGuard {
            in_flight: self.in_flight.clone(),
            idle: self.idle.clone(),
        };
        // Refused: the guard's drop counts it out again (and wakes a waiting shutdown).
        (!self.closed.load(Ordering::SeqCst)).then_some(guard)
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// fang's worker pool running the follow-up jobs of this process.
pub struct JobPool {
    context: Arc<JobContext>,
}

/// How often an idle pool worker looks for due jobs (fang polls; nothing here is urgent).
const POLL: SleepParams = SleepParams {
    sleep_period: Duration::from_secs(1),
    max_sleep_period: Duration::from_secs(5),
    min_sleep_period: Duration::from_secs(1),
    sleep_step: Duration::from_secs(1),
};

impl JobPool {
    /// Installs the context, schedules the periodic jobs (once across workers: they are
    /// unique) and starts `workers` pool workers on their own small connection pool.
    pub async fn start(
        database_url: &str,
        db: DatabaseConnection,
        retention: Option<Duration>,
        webhooks: crate::webhooks::DeliverySettings,
        workers: u32,
    ) -> CoreResult<JobPool> {
        let context = Arc::new(JobContext {
            db,
            retention,
            webhooks,
            gate: JobGate::default(),
        });
        if CONTEXT.set(context.clone()).is_err() {
            return Err(CoreError::Internal(anyhow::anyhow!(
                "the job pool is already running in this process"
            )));
        }
        let mut queue = AsyncQueue::builder()
            .uri(database_url)
            .max_pool_size(workers.max(1) + 1)
            .build();
        queue
            .connect()
            .await
            .map_err(|e| CoreError::Internal(anyhow::anyhow!("job queue connection: {e:?}")))?;
        if retention.is_some() {
            // One sweep now, then every hour.
            schedule(&queue, &RetentionSweep { periodic: false }).await?;
            schedule(&queue, &RetentionSweep { periodic: true }).await?;
        }
        let mut pool: AsyncWorkerPool<AsyncQueue> = AsyncWorkerPool::builder()
            .queue(queue)
            .number_of_workers(workers.max(1))
            .task_type(TASK_TYPE)
            .sleep_params(POLL)
            .retention_mode(fang::RetentionMode::RemoveFinished)
            .build();
        pool.start().await;
        Ok(JobPool { context })
    }

    /// Stops taking jobs and waits (up to `grace`) for those in flight. fang's pool has
    /// no stop of its own: its workers end with the process, and a job they fetch from now
    /// on is refused and retried later, elsewhere.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let gate = &self.context.gate;
        gate.closed.store(true, Ordering::SeqCst);
        let drained = async {
            loop {
                let idle = gate.idle.notified();
                if gate.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(grace, drained).await.is_ok()
    }
}

async fn schedule(queue: &AsyncQueue, job: &dyn AsyncRunnable) -> CoreResult<()> {
    let result = match job.cron() {
        Some(_) => queue.schedule_task(job).await,
        None => queue.insert_task(job).await,
    };
    result
        .map(|_| ())
        .map_err(|e| CoreError::Internal(anyhow::anyhow!("scheduling a job: {e:?}")))
}

/// Queues a follow-up job in the caller's transaction (fang's own `insert_task` uses its
/// own pool and could not join it), so the job exists exactly when what caused it was
/// committed. `delay` postpones its first run. Jobs queued this way must not be `uniq`
/// (fang's uniqueness hash is computed by its own insert).
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    job: &dyn AsyncRunnable,
    delay: Duration,
) -> CoreResult<()> {
    debug_assert!(!job.uniq() && job.cron().is_none());
    let metadata = serde_json::to_value(job).map_err(|e| CoreError::Internal(e.into()))?;
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        // fang compares `scheduled_at` with the pool worker's clock: a job due now is
        // written a minute back, so a worker whose clock lags the database's sees it.
        "INSERT INTO fang_tasks (metadata, task_type, scheduled_at) VALUES ($1, $2, \
           CASE WHEN $3 = 0 THEN now() - interval '1 minute' \
                ELSE now() + make_interval(secs => $3) END)",
        [
            metadata.into(),
            job.task_type().into(),
            delay.as_secs_f64().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// [`enqueue`] for many jobs in one statement (each postponed by its own delay).
pub async fn enqueue_many<C: ConnectionTrait>(
    db: &C,
    jobs: &[(&dyn AsyncRunnable, Duration)],
) -> CoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let rows = jobs
        .iter()
        .map(|(job, delay)| {
            debug_assert!(!job.uniq() && job.cron().is_none());
            Ok(serde_json::json!({
                "metadata": serde_json::to_value(job).map_err(|e| CoreError::Internal(e.into()))?,
                "task_type": job.task_type(),
                "delay": delay.as_secs_f64(),
            }))
        })
        .collect::<CoreResult<Vec<_>>>()?;
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        // Due now: a minute back, as in `enqueue`.
        "INSERT INTO fang_tasks (metadata, task_type, scheduled_at) \
         SELECT x->'metadata', x->>'task_type', \
           CASE WHEN (x->>'delay')::float8 = 0 THEN now() - interval '1 minute' \
                ELSE now() + make_interval(secs => (x->>'delay')::float8) END \
         FROM jsonb_array_elements($1::jsonb) AS x",
        [serde_json::Value::Array(rows).into()],
    ))
    .await?;
    Ok(())
}

/// Cut off this many times, a job is given up (it may be what kills its worker).
pub const MAX_RESCUES: i32 = 10;

/// Puts follow-up jobs cut off by a crash (left `in_progress` past [`JOB_LEASE`]) back to
/// be retried — or, after [`MAX_RESCUES`], marks them failed. Run by the worker's reaper.
pub async fn rescue<C: ConnectionTrait>(db: &C) -> CoreResult<u64> {
    Ok(db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE fang_tasks SET retries = retries + 1, updated_at = now(), \
               state = CASE WHEN retries + 1 >= $3 THEN 'failed' ELSE 'retried' END::fang_task_state, \
               error_message = CASE WHEN retries + 1 >= $3 \
                 THEN 'cut off by a crash too many times' ELSE error_message END \
             WHERE task_type = $1 AND state = 'in_progress' \
               AND updated_at < now() - make_interval(secs => $2)",
            [
                TASK_TYPE.into(),
                JOB_LEASE.as_secs_f64().into(),
                MAX_RESCUES.into(),
            ],
        ))
        .await?
        .rows_affected())
}
