//! Threads (conversations, optionally bound to a graph) and their messages. A user
//! message in a thread bound to a graph starts a chat run (the execution pipeline); the
//! worker appends the crew's answer as an assistant message linked to the execution.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{CoreError, CoreResult};
use crate::pagination::{Cursor, Page, PageRequest};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_MESSAGE_CHARS: usize = 100_000;

#[derive(Debug, Clone, FromQueryResult)]
pub struct Thread {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub graph_id: Option<Uuid>,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const THREAD_COLUMNS: &str = "id, workspace_id, graph_id, title, created_at, updated_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::System => "system",
        }
    }
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct Message {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub role: String,
    pub content: String,
    pub execution_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

const MESSAGE_COLUMNS: &str = "id, thread_id, role, content, execution_id, created_at";

pub struct ThreadChanges {
    pub title: Option<String>,
    /// `Some(None)` unbinds the thread from its graph.
    pub graph_id: Option<Option<Uuid>>,
}

fn validate_title(title: &str) -> CoreResult<String> {
    crate::fields::required_text(title, "title", "invalid_title", MAX_TITLE_CHARS)
}

/// A graph the caller owns, or "graph not found".
async fn check_graph(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    crate::graphs::get(db, principal, id).await.map(|_| ())
}

pub async fn create(
    db: &DatabaseConnection,
    principal: &Principal,
    workspace_id: Uuid,
    title: &str,
    graph_id: Option<Uuid>,
) -> CoreResult<Thread> {
    let title = validate_title(title)?;
    if let Some(graph_id) = graph_id {
        check_graph(db, principal, graph_id).await?;
    }
    Thread::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO threads (id, user_id, workspace_id, graph_id, title) \
             SELECT $1, $2, w.id, $4, $5 FROM workspaces w WHERE w.id = $3 AND w.user_id = $2 \
             RETURNING {THREAD_COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            principal.user_id.into(),
            workspace_id.into(),
            graph_id.into(),
            title.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("workspace"))
}

/// A workspace's threads, most recently active first.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    workspace_id: Uuid,
    page: PageRequest,
) -> CoreResult<Page<Thread>> {
    crate::workspaces::get(db, principal, workspace_id).await?;
    let after = page.after_time_id()?;
    let rows = Thread::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE workspace_id = $1 AND user_id = $2 \
               AND ($3::timestamptz IS NULL OR (updated_at, id) < ($3::timestamptz, $4::uuid)) \
             ORDER BY updated_at DESC, id DESC LIMIT $5"
        ),
        [
            workspace_id.into(),
            principal.user_id.into(),
            after.map(|(t, _)| t).into(),
            after.map(|(_, id)| id).into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_keyed_rows(rows, page, |t| {
        Cursor::TimeId(t.updated_at, t.id)
    }))
}

pub async fn get(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<Thread> {
    Thread::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1 AND user_id = $2"),
        [id.into(), principal.user_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("thread"))
}

pub async fn update(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    changes: ThreadChanges,
) -> CoreResult<Thread> {
    let title = changes.title.as_deref().map(validate_title).transpose()?;
    if let Some(Some(graph_id)) = changes.graph_id {
        check_graph(db, principal, graph_id).await?;
    }
    Thread::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE threads SET title = COALESCE($3, title), \
               graph_id = CASE WHEN $4::boolean THEN $5::uuid ELSE graph_id END, \
               updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {THREAD_COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            title.into(),
            changes.graph_id.is_some().into(),
            changes.graph_id.flatten().into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("thread"))
}

pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM threads WHERE id = $1 AND user_id = $2",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("thread"));
    }
    Ok(())
}

fn validate_content(content: &str) -> CoreResult<()> {
    if content.trim().is_empty() || content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(CoreError::invalid(
            "invalid_content",
            "content",
            format!("a message has 1 to {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Appends a message to one of the caller's threads (and marks the thread active).
pub async fn add_message(
    db: &DatabaseConnection,
    principal: &Principal,
    thread_id: Uuid,
    role: MessageRole,
    content: &str,
) -> CoreResult<Message> {
    add_message_in(db, principal, thread_id, role, content).await
}

/// [`add_message`] on any connection (a chat run's kickoff transaction).
pub async fn add_message_in<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    thread_id: Uuid,
    role: MessageRole,
    content: &str,
) -> CoreResult<Message> {
    validate_content(content)?;
    Message::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "WITH thread AS ( \
               UPDATE threads SET updated_at = now() WHERE id = $2 AND user_id = $3 RETURNING id) \
             INSERT INTO messages (id, thread_id, role, content) \
             SELECT $1, thread.id, $4, $5 FROM thread RETURNING {MESSAGE_COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            thread_id.into(),
            principal.user_id.into(),
            role.as_str().into(),
            content.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("thread"))
}

/// Links a user message to the execution it started.
pub async fn link_execution<C: ConnectionTrait>(
    db: &C,
    message_id: Uuid,
    execution_id: Uuid,
) -> CoreResult<Message> {
    Message::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("UPDATE messages SET execution_id = $2 WHERE id = $1 RETURNING {MESSAGE_COLUMNS}"),
        [message_id.into(), execution_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("message"))
}

/// What a run's message in a thread says: answers can be long, and a thread keeps what
/// fits a message (and no U+0000, which PostgreSQL cannot store).
pub fn run_message_content(content: &str) -> String {
    if content.trim().is_empty() {
        "(the crew gave an empty answer)".into()
    } else {
        content
            .chars()
            .filter(|c| *c != '\0')
            .take(MAX_MESSAGE_CHARS)
            .collect()
    }
}

/// A thread's messages, oldest first.
pub async fn list_messages(
    db: &DatabaseConnection,
    principal: &Principal,
    thread_id: Uuid,
    page: PageRequest,
) -> CoreResult<Page<Message>> {
    get(db, principal, thread_id).await?;
    let rows = Message::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 \
               AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ),
        [
            thread_id.into(),
            page.after_id()?.into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |m| m.id))
}

/// The latest `limit` messages of a thread, oldest first (the chat history a run sees).
pub async fn recent_messages<C: ConnectionTrait>(
    db: &C,
    thread_id: Uuid,
    limit: u32,
) -> CoreResult<Vec<Message>> {
    let mut rows = Message::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 ORDER BY id DESC LIMIT $2"
        ),
        [thread_id.into(), i64::from(limit).into()],
    ))
    .all(db)
    .await?;
    rows.reverse();
    Ok(rows)
}

pub async fn get_message(
    db: &DatabaseConnection,
    principal: &Principal,
    thread_id: Uuid,
    message_id: Uuid,
) -> CoreResult<Message> {
    Message::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT m.id, m.thread_id, m.role, m.content, m.execution_id, m.created_at \
         FROM messages m JOIN threads t ON t.id = m.thread_id \
         WHERE m.id = $1 AND m.thread_id = $2 AND t.user_id = $3",
        [
            message_id.into(),
            thread_id.into(),
            principal.user_id.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("message"))
}

pub async fn delete_message(
    db: &DatabaseConnection,
    principal: &Principal,
    thread_id: Uuid,
    message_id: Uuid,
) -> CoreResult<()> {
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM messages m USING threads t \
             WHERE m.id = $1 AND m.thread_id = $2 AND t.id = m.thread_id AND t.user_id = $3",
            [
                message_id.into(),
                thread_id.into(),
                principal.user_id.into(),
            ],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("message"));
    }
    Ok(())
}
