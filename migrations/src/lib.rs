//! crewgraph's database schema. Each feature adds its own migration here; the API and the
//! worker refuse work until every migration is applied (`/ready` says which are missing).

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{Statement, TransactionTrait};

mod m20261125_000001_job_queue;
mod m20261125_000002_identity;
mod m20261125_000003_provider_api_keys;
mod m20261125_000004_workspaces;
mod m20261125_000005_graphs_templates_threads;
mod m20261125_000006_executions;
mod m20261201_000007_retention;
mod m20261202_000008_execution_metrics;
mod m20261202_000009_mlflow_exports;
mod m20261202_000010_webhooks;

pub use m20261125_000005_graphs_templates_threads::BUILTIN_TEMPLATES;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_job_queue::Migration),
            Box::new(m20261125_000002_identity::Migration),
            Box::new(m20261125_000003_provider_api_keys::Migration),
            Box::new(m20261125_000004_workspaces::Migration),
            Box::new(m20261125_000005_graphs_templates_threads::Migration),
            Box::new(m20261125_000006_executions::Migration),
            Box::new(m20261201_000007_retention::Migration),
            Box::new(m20261202_000008_execution_metrics::Migration),
            Box::new(m20261202_000009_mlflow_exports::Migration),
            Box::new(m20261202_000010_webhooks::Migration),
        ]
    }
}

/// Serialises concurrent `migrate` runs (several replicas started with `--migrate`).
const MIGRATION_LOCK_KEY: i64 = 0x6372_6577_6d69_6772; // "crewmigr"

/// Applies every pending migration in one transaction under an advisory lock, so replicas
/// starting together neither race nor leave a half-applied schema.
pub async fn migrate_up<C>(db: &C) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await?;
    let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
        .await?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(pending)
}

/// Names of migrations this build knows that the database has not applied. Read-only (a
/// readiness probe must not write), and unlike sea-orm's own status it does not create the
/// bookkeeping table.
pub async fn pending_migrations<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let table_exists = db
        .query_one(Statement::from_string(
            backend,
            "SELECT to_regclass('seaql_migrations') IS NOT NULL AS present",
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    let applied: Vec<String> = if table_exists {
        db.query_all(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations",
        ))
        .await?
        .into_iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .filter(|name| !applied.contains(name))
        .collect())
}

/// Every migration name, in order; the test harness keys its template database on it.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// A hash of the migration sources: changes whenever any migration does.
pub const FINGERPRINT: &str = env!("CREWGRAPH_MIGRATIONS_FINGERPRINT");
