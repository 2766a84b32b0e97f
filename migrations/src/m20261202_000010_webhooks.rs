//! Signed webhooks (`core::webhooks`): a user's webhooks (on a graph, or on none: then
//! only kickoffs that name them fire them), the webhooks an execution took at kickoff
//! (a snapshot, so later edits of a graph's webhooks leave queued runs alone), deliveries
//! (one per subscribed event, created in the transaction that appends the event) and
//! every attempt of each.

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
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Null: a webhook that only kickoffs naming it (`webhook_ids`) fire.
    graph_id uuid REFERENCES graphs(id) ON DELETE CASCADE,
    url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events text[] NOT NULL CHECK (cardinality(events) >= 1),
    description text CHECK (length(description) <= 500),
    enabled boolean NOT NULL DEFAULT true,
    -- The signing secret, AES-256-GCM like provider keys (core::crypto).
    secret_ciphertext bytea NOT NULL,
    secret_nonce bytea NOT NULL,
    secret_key_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id, id);
CREATE INDEX webhooks_graph_idx ON webhooks (graph_id, id) WHERE graph_id IS NOT NULL;

CREATE TABLE execution_webhooks (
    execution_id uuid NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    -- The webhook's events at kickoff.
    events text[] NOT NULL,
    PRIMARY KEY (execution_id, webhook_id)
);
CREATE INDEX execution_webhooks_webhook_idx ON execution_webhooks (webhook_id);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    execution_id uuid NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    event_type text NOT NULL,
    -- The reported event: execution_events (execution_id, seq).
    event_seq bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempt_count integer NOT NULL DEFAULT 0,
    -- When the attempt under way started (a crashed one is taken up again later).
    attempt_started_at timestamptz,
    next_attempt_at timestamptz,
    -- The exact JSON sent, built at the first attempt and sent unchanged by every retry.
    body text,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, execution_id, event_seq)
);
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_execution_idx ON webhook_deliveries (execution_id, id);

CREATE TABLE webhook_delivery_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    number integer NOT NULL CHECK (number >= 1),
    started_at timestamptz NOT NULL,
    -- The receiver's HTTP status; null when no answer came.
    status_code integer,
    latency_ms bigint NOT NULL,
    error text,
    PRIMARY KEY (delivery_id, number)
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE webhook_delivery_attempts; DROP TABLE webhook_deliveries; \
                 DROP TABLE execution_webhooks; DROP TABLE webhooks;",
            )
            .await?;
        Ok(())
    }
}
