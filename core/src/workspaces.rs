//! Workspaces: a user's folders of graphs and threads. Every query is scoped to the
//! caller; someone else's workspace is "not found".

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::OnConstraint as _;
use crate::error::{CoreError, CoreResult};
use crate::fields;
use crate::pagination::{Page, PageRequest};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

#[derive(Debug, Clone, FromQueryResult)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, description, created_at, updated_at";

pub struct WorkspaceChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
}

fn validate_name(name: &str) -> CoreResult<String> {
    fields::required_text(name, "name", "invalid_name", MAX_NAME_CHARS)
}

fn validate_description(description: Option<String>) -> CoreResult<Option<String>> {
    fields::optional_text(
        description,
        "description",
        "invalid_description",
        MAX_DESCRIPTION_CHARS,
    )
}

/// The error for a violation of `workspaces_name_key`.
fn name_conflict() -> CoreError {
    CoreError::Conflict {
        code: "name_taken",
        message: "you already have a workspace with this name".into(),
        details: None,
    }
}

pub async fn create(
    db: &DatabaseConnection,
    principal: &Principal,
    name: &str,
    description: Option<String>,
) -> CoreResult<Workspace> {
    let name = validate_name(name)?;
    let description = validate_description(description)?;
    Workspace::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO workspaces (id, user_id, name, description) VALUES ($1, $2, $3, $4) \
             RETURNING {COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            principal.user_id.into(),
            name.into(),
            description.into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("workspaces_name_key", name_conflict)?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))
}

/// The caller's workspaces, oldest first.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    page: PageRequest,
) -> CoreResult<Page<Workspace>> {
    let rows = Workspace::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM workspaces \
             WHERE user_id = $1 AND ($2::uuid IS NULL OR id > $2::uuid) ORDER BY id LIMIT $3"
        ),
        [
            principal.user_id.into(),
            page.after.into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |w| w.id))
}

pub async fn get(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<Workspace> {
    Workspace::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM workspaces WHERE id = $1 AND user_id = $2"),
        [id.into(), principal.user_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("workspace"))
}

pub async fn update(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    changes: WorkspaceChanges,
) -> CoreResult<Workspace> {
    let name = changes.name.as_deref().map(validate_name).transpose()?;
    let description = changes.description.map(validate_description).transpose()?;
    Workspace::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE workspaces SET name = COALESCE($3::text, name), \
               description = CASE WHEN $4::boolean THEN $5::text ELSE description END, \
               updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            name.into(),
            description.is_some().into(),
            description.flatten().into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("workspaces_name_key", name_conflict)?
    .ok_or(CoreError::NotFound("workspace"))
}

/// Deletes a workspace and everything in it.
pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM workspaces WHERE id = $1 AND user_id = $2",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("workspace"));
    }
    Ok(())
}
