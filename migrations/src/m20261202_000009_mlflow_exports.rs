//! MLflow export state: one row per ended execution whose run (and trace) is to be
//! exported, written with the end (`core::mlflow::queue_exports`) and kept up to date by
//! the export job — what the execution resource shows under `mlflow`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
CREATE TABLE mlflow_exports (
    execution_id uuid PRIMARY KEY REFERENCES executions(id) ON DELETE CASCADE,
    -- pending (queued or being retried) | exported | failed (given up after `attempts`)
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'exported', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- The last attempt's failure, without credentials.
    last_error text,
    -- Known as soon as the run exists (a retry reuses them).
    experiment_id text,
    run_id text,
    -- Set once every trace destination accepted the run's spans.
    traces_sent_at timestamptz,
    -- An attempt holds the export until then: fang can hand one job to two workers.
    leased_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    exported_at timestamptz
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE mlflow_exports;")
            .await?;
        Ok(())
    }
}
