//! LLM provider API keys, encrypted at rest (AES-256-GCM; see `crewgraph_core::crypto`).

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
CREATE TABLE provider_api_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    provider text NOT NULL
        CHECK (provider IN ('openai', 'anthropic', 'azure-openai', 'ollama', 'openai-compatible')),
    base_url text CHECK (length(base_url) <= 2048),
    -- AES-256-GCM output (ciphertext and tag), its 96-bit nonce, and the master key version.
    ciphertext bytea NOT NULL,
    nonce bytea NOT NULL CHECK (length(nonce) = 12),
    key_version integer NOT NULL CHECK (key_version > 0),
    -- What responses show instead of the secret, e.g. `sk-…a1b2`.
    secret_hint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX provider_api_keys_name_key ON provider_api_keys (user_id, lower(name));
CREATE INDEX provider_api_keys_key_version_idx ON provider_api_keys (key_version);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE provider_api_keys;")
            .await?;
        Ok(())
    }
}
