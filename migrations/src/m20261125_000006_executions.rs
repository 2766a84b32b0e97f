//! Executions (runs of a graph) and their event log.

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
CREATE TABLE executions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    graph_id uuid REFERENCES graphs(id) ON DELETE SET NULL,
    graph_version integer,
    -- Set for chat runs: the thread gets the crew's answer as an assistant message.
    thread_id uuid REFERENCES threads(id) ON DELETE SET NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- What runs: the graph as it was at kickoff, and its compiled CrewSpec.
    document jsonb NOT NULL,
    spec jsonb NOT NULL,
    inputs jsonb NOT NULL,
    result jsonb,
    error jsonb,
    -- fang's task row for this execution (claimed by the worker's own statement; see
    -- core::executions::queue_task).
    queue_task_id uuid,
    -- Claims so far (every claim counts, so attempts never repeat); a worker's writes are
    -- fenced by the attempt it claimed.
    attempt integer NOT NULL DEFAULT 0,
    -- Claims lost with their worker (killed, unreachable): past a limit the run fails.
    lost_count integer NOT NULL DEFAULT 0,
    worker_id text,
    heartbeat_at timestamptz,
    cancel_requested_at timestamptz,
    -- The last event's seq: events get gap-free numbers under this row's lock.
    last_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX executions_user_created_idx ON executions (user_id, created_at DESC, id DESC);
CREATE INDEX executions_graph_idx ON executions (graph_id, created_at DESC);
CREATE INDEX executions_active_idx ON executions (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX executions_heartbeat_idx ON executions (heartbeat_at) WHERE status = 'running';
CREATE INDEX executions_queued_task_idx ON executions (queue_task_id) WHERE status = 'queued';

-- The worker's claim orders runnable tasks of a type by creation (as fang does); without
-- this index it sorts the whole queue on every claim.
CREATE INDEX fang_tasks_runnable_idx ON fang_tasks (task_type, created_at, scheduled_at)
    WHERE state IN ('new', 'retried');

CREATE TABLE execution_events (
    execution_id uuid NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    seq bigint NOT NULL CHECK (seq >= 1),
    type text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (execution_id, seq)
);

ALTER TABLE messages ADD CONSTRAINT messages_execution_fk
    FOREIGN KEY (execution_id) REFERENCES executions(id) ON DELETE SET NULL;
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE messages DROP CONSTRAINT messages_execution_fk; \
                 DROP INDEX fang_tasks_runnable_idx; \
                 DROP TABLE execution_events; DROP TABLE executions;",
            )
            .await?;
        Ok(())
    }
}
