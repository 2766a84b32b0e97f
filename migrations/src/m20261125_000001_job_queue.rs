//! fang's PostgreSQL schema. fang 0.11 ships it as diesel migrations, which we do not run,
//! so it is reproduced here from `fang/postgres_migrations/.../create_fang_tasks/up.sql`,
//! with one change: ids default to the built-in `gen_random_uuid()` (PostgreSQL 13+)
//! instead of requiring the `uuid-ossp` extension, which managed databases may not allow.
//! fang always supplies ids itself, so its behaviour is the same.

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
CREATE TYPE fang_task_state AS ENUM ('new', 'in_progress', 'failed', 'finished', 'retried');

CREATE TABLE fang_tasks (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     metadata jsonb NOT NULL,
     error_message TEXT,
     state fang_task_state DEFAULT 'new' NOT NULL,
     task_type TEXT DEFAULT 'common' NOT NULL,
     uniq_hash TEXT,
     retries INTEGER DEFAULT 0 NOT NULL,
     scheduled_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
     created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
     updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);

CREATE INDEX fang_tasks_state_index ON fang_tasks(state);
CREATE INDEX fang_tasks_type_index ON fang_tasks(task_type);
CREATE INDEX fang_tasks_scheduled_at_index ON fang_tasks(scheduled_at);
CREATE INDEX fang_tasks_uniq_hash ON fang_tasks(uniq_hash);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE fang_tasks; DROP TYPE fang_task_state;")
            .await?;
        Ok(())
    }
}
