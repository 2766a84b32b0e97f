//! Graphs with their version history, templates (with the built-in ones), and threads of
//! messages.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Statement;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Built-in templates: (slug, name, description, document). Seeded with
/// `ON CONFLICT DO NOTHING`, so an admin's later edits are never overwritten.
pub const BUILTIN_TEMPLATES: &[(&str, &str, &str, &str)] = &[
    (
        "hello-world",
        "Hello world",
        "One agent greets {name} with the hello_world tool: the smallest crew that runs.",
        include_str!("templates/hello_world.json"),
    ),
    (
        "research-and-write",
        "Research and write",
        "A sequential crew: a researcher gathers the key points about {topic}, a reporting analyst turns them into a report.",
        include_str!("templates/research_and_write.json"),
    ),
    (
        "hierarchical-team",
        "Hierarchical team",
        "A manager delegates a brief about {topic} to a researcher, an analyst and a writer.",
        include_str!("templates/hierarchical_team.json"),
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            r#"
CREATE TABLE graphs (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text CHECK (length(description) <= 2000),
    document jsonb NOT NULL,
    -- Incremented by every change of the document; the ETag of optimistic concurrency.
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    valid boolean NOT NULL,
    problems jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX graphs_workspace_updated_idx ON graphs (workspace_id, updated_at DESC, id DESC);
CREATE INDEX graphs_user_id_idx ON graphs (user_id);

-- Every stored document, so a version can be read or restored.
CREATE TABLE graph_versions (
    graph_id uuid NOT NULL REFERENCES graphs(id) ON DELETE CASCADE,
    version integer NOT NULL,
    name text NOT NULL,
    document jsonb NOT NULL,
    valid boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (graph_id, version)
);

CREATE TABLE templates (
    id uuid PRIMARY KEY,
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text CHECK (length(description) <= 2000),
    document jsonb NOT NULL,
    published boolean NOT NULL DEFAULT false,
    builtin boolean NOT NULL DEFAULT false,
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE threads (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    -- A thread bound to a graph runs it for each user message (chat runs).
    graph_id uuid REFERENCES graphs(id) ON DELETE SET NULL,
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_workspace_idx ON threads (workspace_id, id);
CREATE INDEX threads_user_id_idx ON threads (user_id);

CREATE TABLE messages (
    id uuid PRIMARY KEY,
    thread_id uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content text NOT NULL CHECK (length(content) <= 100000),
    -- The execution this message started (user) or came from (assistant).
    execution_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_thread_idx ON messages (thread_id, id);
"#,
        )
        .await?;
        for (index, (slug, name, description, document)) in BUILTIN_TEMPLATES.iter().enumerate() {
            // Fixed ids so every database agrees on the built-ins.
            let id = format!("00000000-0000-7000-8000-{:012x}", index + 1);
            db.execute(Statement::from_sql_and_values(
                db.get_database_backend(),
                "INSERT INTO templates (id, slug, name, description, document, published, builtin) \
                 VALUES ($1::uuid, $2, $3, $4, $5::jsonb, true, true) ON CONFLICT (slug) DO NOTHING",
                [
                    id.into(),
                    (*slug).into(),
                    (*name).into(),
                    (*description).into(),
                    (*document).into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE messages; DROP TABLE threads; DROP TABLE templates; \
                 DROP TABLE graph_versions; DROP TABLE graphs;",
            )
            .await?;
        Ok(())
    }
}
