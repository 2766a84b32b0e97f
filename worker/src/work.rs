//! `crewgraph-worker work`: wires the parts — LISTEN, claim loop, executions, event
//! writer, heartbeat, reaper, and fang's pool for follow-up jobs — and stops them in order
//! on SIGTERM: no new claims or jobs, running crews and jobs get the grace period to
//! finish, what is left goes back to the queue, every event is written, then the process
//! exits.

use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::config::Config;
use crewgraph_core::crew::llm::HttpLlmConnector;
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::executions::credentials::Fallback;
use crewgraph_core::jobs::JobPool;
use crewgraph_core::monitoring::RunMetrics;
use crewgraph_core::{db, shutdown};
use secrecy::ExposeSecret as _;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::context::WorkerContext;
use crate::event_writer::EventWriter;
use crate::http::{HttpPort, HttpState};
use crate::running::{Running, StopReason};
use crate::{claim_loop, listener, maintenance};

/// How long the worker waits for the database at start-up before giving up.
const DATABASE_PATIENCE: Duration = Duration::from_secs(60);
/// fang pool workers for follow-up jobs (they are short and rare).
const JOB_WORKERS: u32 = 2;
/// After the grace period, how long handed-back runs get to stop and be recorded.
const HAND_BACK_PATIENCE: Duration = Duration::from_secs(10);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let db = tokio::select! {
        db = db::connect_with_patience(&config.database, DATABASE_PATIENCE) => db?,
        () = &mut stop => return Ok(()),
    };
    let pending = crewgraph_migrations::pending_migrations(&db).await?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database schema is not up to date ({} pending migration(s)): run `crewgraph-api migrate`",
            pending.len()
        );
    }
    // Bound before anything starts: a taken port stops the worker at once.
    let http_port = HttpPort::bind(&config.monitoring).await?;
    let database_url = config.database.url.expose_secret().to_string();
    let retention = config
        .worker
        .retention_days
        .map(|days| Duration::from_secs(u64::from(days) * 24 * 3600));
    let webhooks = crewgraph_core::webhooks::DeliverySettings::from_config(&config);
    crewgraph_core::mlflow::install(&config.mlflow)?;
    let jobs = JobPool::start(&database_url, db.clone(), retention, webhooks, JOB_WORKERS).await?;
    let running = Arc::new(Running::default());
    let (writer, writer_task) = EventWriter::start(db.clone(), running.clone());
    let concurrency = config.worker.concurrency;
    let context = Arc::new(WorkerContext {
        worker_id: worker_id(),
        db: db.clone(),
        writer,
        running: running.clone(),
        slots: Arc::new(Semaphore::new(concurrency)),
        wake: Notify::new(),
        connector: HttpLlmConnector::new(Arc::new(
            crewgraph_core::crew::llm::StaticCredentials::default(),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_policy(config.llm_outbound_policy()),
        keys: Arc::new(config.encryption_keys.clone()),
        fallback: Fallback {
            base_url: config.worker.fallback_llm_base_url.clone(),
            api_key: config.worker.fallback_llm_api_key.clone(),
        },
        tools: ToolRegistry::builtin(),
        execution_timeout: Duration::from_secs(config.worker.execution_timeout_secs),
        lost_after: Duration::from_secs(config.worker.lost_after_secs),
        max_attempts: config.worker.max_attempts,
        health: std::sync::Mutex::new(crate::context::Health {
            last_heartbeat: std::time::Instant::now(),
            connected_since: Some(std::time::Instant::now()),
        }),
    });
    RunMetrics::install(&context.tools);
    let stopping = CancellationToken::new();
    let stopped = CancellationToken::new();
    let http_addr = http_port.as_ref().and_then(HttpPort::local_addr);
    let mut background = vec![
        tokio::spawn(listener::run(
            context.clone(),
            database_url,
            stopping.clone(),
        )),
        tokio::spawn(maintenance::reaper(context.clone(), stopping.clone())),
        tokio::spawn(maintenance::heartbeat(context.clone(), stopped.clone())),
    ];
    if let Some(port) = http_port {
        let state = HttpState {
            db: db.clone(),
            running: running.clone(),
            slots: context.slots.clone(),
            concurrency,
            stopping: stopping.clone(),
            metrics_token: config.monitoring.metrics_token.clone(),
        };
        background.push(port.serve(state, stopped.clone()));
    }
    let claims = tokio::spawn(claim_loop::run(context.clone(), stopping.clone()));
    tracing::info!(
        worker_id = %context.worker_id,
        concurrency,
        http_addr = http_addr.map(|a| a.to_string()),
        fallback_llm = context.fallback.base_url.is_some(),
        retention_days = config.worker.retention_days,
        "crewgraph-worker ready"
    );

    stop.await;
    shut_down(Stopping {
        context,
        running,
        jobs,
        claims,
        background,
        writer_task,
        stopping,
        stopped,
        grace: Duration::from_secs(config.worker.shutdown_grace_secs),
        concurrency,
    })
    .await?;
    db.close().await?;
    tracing::info!("crewgraph-worker stopped");
    Ok(())
}

/// What the shutdown sequence stops, in order.
struct Stopping {
    context: Arc<WorkerContext>,
    running: Arc<Running>,
    jobs: JobPool,
    claims: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    writer_task: tokio::task::JoinHandle<()>,
    stopping: CancellationToken,
    stopped: CancellationToken,
    grace: Duration,
    concurrency: usize,
}

/// No new claims or jobs; running crews (and jobs) get the grace period; the rest is
/// handed back; every event is written.
async fn shut_down(parts: Stopping) -> anyhow::Result<()> {
    let Stopping {
        context,
        running,
        jobs,
        claims,
        background,
        writer_task,
        stopping,
        stopped,
        grace,
        concurrency,
    } = parts;
    tracing::info!(
        running = running.len(),
        grace_secs = grace.as_secs(),
        "crewgraph-worker stopping: no new claims"
    );
    stopping.cancel();
    let _ = claims.await;
    let jobs_done = tokio::spawn(jobs.shutdown(grace));
    let all_slots = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(grace, context.slots.acquire_many(all_slots))
        .await
        .is_ok();
    if !drained {
        tracing::info!(
            running = running.len(),
            "grace period over: handing the rest back"
        );
        running.stop_all(StopReason::Shutdown);
        if tokio::time::timeout(HAND_BACK_PATIENCE, context.slots.acquire_many(all_slots))
            .await
            .is_err()
        {
            tracing::warn!("some runs did not stop in time; the reaper will recover them");
        }
    }
    if !jobs_done.await.unwrap_or(false) {
        tracing::warn!("follow-up jobs still running: fang retries them after their lease");
    }
    stopped.cancel();
    for task in background {
        let _ = task.await;
    }
    // The last writer handle goes with the context: the writer drains and ends.
    drop(context);
    if tokio::time::timeout(HAND_BACK_PATIENCE, writer_task)
        .await
        .is_err()
    {
        tracing::warn!("the event writer did not finish in time");
    }
    Ok(())
}

/// `host-pid-random`, so an operator can tell which container holds an execution.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{suffix}", std::process::id())
}
