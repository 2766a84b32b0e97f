//! Run metrics: an ended execution's figures, per run, per task and per model, written in
//! the transaction that records the end (`core::metrics`), so no exporter outage can lose
//! them. `user_id`, `graph_id` and `finished_at` are copied in so the dashboards read
//! these tables alone, through their time-range indexes.

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
CREATE TABLE execution_metrics (
    execution_id uuid PRIMARY KEY REFERENCES executions(id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    graph_id uuid REFERENCES graphs(id) ON DELETE SET NULL,
    status text NOT NULL,
    -- The end's code (`error.code`); null when it succeeded.
    end_code text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz NOT NULL,
    -- Kickoff to the first start; null when it never started.
    queue_wait_ms bigint,
    -- The last start to the end; null when it never started.
    run_ms bigint,
    attempts integer NOT NULL,
    lost_count integer NOT NULL,
    task_count integer NOT NULL,
    tasks_completed integer NOT NULL,
    llm_calls integer NOT NULL,
    llm_failures integer NOT NULL,
    -- LLM calls that answered (CrewAI's `successful_requests`).
    successful_requests integer NOT NULL,
    tool_calls integer NOT NULL,
    tool_failures integer NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_prompt_tokens bigint NOT NULL,
    total_tokens bigint NOT NULL,
    -- Estimated from the operator's price table at the end (core::metrics::prices).
    cost_usd double precision NOT NULL,
    models text[] NOT NULL,
    -- Models used that the price table does not know: they are counted as costing nothing.
    unpriced_models text[] NOT NULL
);
CREATE INDEX execution_metrics_user_finished_idx ON execution_metrics (user_id, finished_at);
CREATE INDEX execution_metrics_graph_finished_idx ON execution_metrics (graph_id, finished_at);
CREATE INDEX execution_metrics_finished_idx ON execution_metrics (finished_at);

CREATE TABLE execution_task_metrics (
    execution_id uuid NOT NULL REFERENCES execution_metrics(execution_id) ON DELETE CASCADE,
    -- The task's place in the crew's task list (0-based): MLflow's `step`.
    task_index integer NOT NULL,
    task_id text NOT NULL,
    name text,
    agent_role text,
    -- completed | failed | interrupted (started, never ended) | not_started
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint,
    llm_calls integer NOT NULL,
    llm_failures integer NOT NULL,
    -- LLM calls that answered (CrewAI's `successful_requests`).
    successful_requests integer NOT NULL,
    tool_calls integer NOT NULL,
    tool_failures integer NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_prompt_tokens bigint NOT NULL,
    total_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    PRIMARY KEY (execution_id, task_index)
);

CREATE TABLE execution_model_usage (
    execution_id uuid NOT NULL REFERENCES execution_metrics(execution_id) ON DELETE CASCADE,
    model text NOT NULL,
    user_id uuid NOT NULL,
    graph_id uuid,
    finished_at timestamptz NOT NULL,
    llm_calls integer NOT NULL,
    llm_failures integer NOT NULL,
    -- LLM calls that answered (CrewAI's `successful_requests`).
    successful_requests integer NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_prompt_tokens bigint NOT NULL,
    total_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    priced boolean NOT NULL,
    PRIMARY KEY (execution_id, model)
);
CREATE INDEX execution_model_usage_user_finished_idx ON execution_model_usage (user_id, finished_at);
CREATE INDEX execution_model_usage_finished_idx ON execution_model_usage (finished_at);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE execution_model_usage; DROP TABLE execution_task_metrics; \
                 DROP TABLE execution_metrics;",
            )
            .await?;
        Ok(())
    }
}
