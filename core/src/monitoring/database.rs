//! Facts about the database, read at scrape time in one round trip of indexed queries:
//! the execution queue (depth and oldest wait), running crews, follow-up jobs by kind and
//! state; and this process's connection pool.

use std::time::Duration;

use prometheus::core::Collector as _;
use prometheus::{IntGaugeVec, Opts};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};

use super::{Scraped, bounded_label};
use crate::executions::queue_task;
use crate::jobs;

/// A scrape must answer even when the database does not.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Each part reads one partial or plain index: the runnable-task index of the claim for
/// the queue (count and oldest entry), the running executions' heartbeat index, fang's
/// task-type index for follow-up jobs (finished ones are deleted by fang).
const FACTS_SQL: &str = r#"
SELECT 'queue' AS part, NULL::text AS kind, NULL::text AS state, count(*) AS n,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age
FROM fang_tasks WHERE task_type = $1 AND state IN ('new', 'retried')
UNION ALL
SELECT 'running', NULL, NULL, count(*), 0 FROM executions WHERE status = 'running'
UNION ALL
SELECT 'jobs', metadata->>'type',
       CASE WHEN state = 'in_progress' THEN 'running'
            WHEN state = 'retried' THEN 'retrying'
            WHEN state = 'failed' THEN 'failed'
            ELSE 'waiting' END,
       count(*), 0
FROM fang_tasks
WHERE task_type = $2
  AND (state IN ('in_progress', 'retried', 'failed') OR (state = 'new' AND scheduled_at <= now()))
GROUP BY 2, 3
"#;

/// Kinds of follow-up job reported (they are the job types of this code base).
const MAX_JOB_SERIES: usize = 64;

#[derive(Debug, FromQueryResult)]
struct FactRow {
    part: String,
    kind: Option<String>,
    state: Option<String>,
    n: i64,
    age: f64,
}

/// Adds the database's facts and this process's pool to `scraped`. When the queries
/// fail or time out, only `crewgraph_database_up 0` and the pool are reported.
pub async fn database_facts(db: &DatabaseConnection, scraped: &mut Scraped) {
    let query = FactRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        FACTS_SQL,
        [queue_task::TASK_TYPE.into(), jobs::TASK_TYPE.into()],
    ))
    .all(db);
    let rows = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: reading database facts failed");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("metrics: the database facts query timed out");
            Vec::new()
        }
    };
    let up = !rows.is_empty();
    scraped.gauge(
        "crewgraph_database_up",
        "1 when this scrape's database queries answered.",
        i64::from(up),
    );
    if up {
        add_facts(&rows, scraped);
    }
    // After the query, so the pool reports the connection it used.
    pool_gauges(db, scraped);
}

fn add_facts(rows: &[FactRow], scraped: &mut Scraped) {
    let jobs = match IntGaugeVec::new(
        Opts::new(
            "crewgraph_follow_up_jobs",
            "Follow-up jobs (MLflow export, webhooks, retention, ...) by kind and state: \
             `waiting` (due, first try), `running`, `retrying` (failed, to be retried), \
             `failed` (given up).",
        ),
        &["kind", "state"],
    ) {
        Ok(jobs) => Some(jobs),
        Err(error) => {
            tracing::error!(%error, "invalid follow-up job gauge");
            None
        }
    };
    let mut job_series = 0;
    for row in rows {
        match row.part.as_str() {
            "queue" => {
                scraped.gauge(
                    "crewgraph_queue_depth",
                    "Executions queued and waiting for a worker.",
                    row.n,
                );
                scraped.gauge_f64(
                    "crewgraph_queue_oldest_age_seconds",
                    "How long the oldest queued execution has waited (0 when none waits).",
                    row.age.max(0.0),
                );
            }
            "running" => scraped.gauge(
                "crewgraph_executions_running",
                "Executions running on any worker.",
                row.n,
            ),
            _ => {
                if let (Some(jobs), Some(state)) = (&jobs, &row.state)
                    && job_series < MAX_JOB_SERIES
                {
                    let kind = bounded_label(row.kind.as_deref().unwrap_or_default());
                    jobs.with_label_values(&[kind, state.as_str()]).add(row.n);
                    job_series += 1;
                }
            }
        }
    }
    if let Some(jobs) = jobs
        && job_series > 0
    {
        scraped.extend(jobs.collect());
    }
}

/// The sqlx pool under sea-orm: connections open, in use and the configured maximum.
fn pool_gauges(db: &DatabaseConnection, scraped: &mut Scraped) {
    // `get_postgres_connection_pool` panics on any other kind of connection.
    if !matches!(db, DatabaseConnection::SqlxPostgresPoolConnection(_)) {
        return;
    }
    let pool = db.get_postgres_connection_pool();
    let open = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    scraped.gauge(
        "crewgraph_db_pool_connections",
        "Connections this process's database pool holds open.",
        open,
    );
    scraped.gauge(
        "crewgraph_db_pool_connections_in_use",
        "Connections of this process's database pool in use right now.",
        (open - idle).max(0),
    );
    scraped.gauge(
        "crewgraph_db_pool_max_connections",
        "The most connections this process's database pool may open.",
        i64::from(pool.options().get_max_connections()),
    );
}
