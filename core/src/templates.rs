//! Templates: ready-made graphs everyone can read and instantiate into a workspace. Only
//! admins create, change, publish and delete them; others see published ones only.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Principal;
use crate::crew::tools::ToolRegistry;
use crate::db::OnConstraint as _;
use crate::error::{CoreError, CoreResult};
use crate::graphs::{self, Graph, NewGraph};
use crate::outbound::OutboundPolicy;
use crate::pagination::{Page, PageRequest};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Template {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
    pub published: bool,
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, slug, name, description, document, published, builtin, created_at, updated_at";

pub struct NewTemplate {
    pub slug: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
}

pub struct TemplateChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub document: Option<Value>,
}

fn require_admin(principal: &Principal) -> CoreResult<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(CoreError::Forbidden("only admins can manage templates"))
    }
}

/// `Research & Write!` → `research-write`.
fn slug_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(100).collect()
}

fn check_slug(slug: &str) -> CoreResult<()> {
    let valid = (1..=100).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "invalid_slug",
            "slug",
            "a slug has 1 to 100 lowercase letters, digits and dashes, not starting with a dash",
        ))
    }
}

/// Templates must be runnable: a document with errors is refused with its problems.
fn check_document(
    document: &Value,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
) -> CoreResult<()> {
    let validation = graphs::check_storable(document, tools, llm_hosts)?;
    if validation.is_valid() {
        Ok(())
    } else {
        Err(CoreError::Problems {
            code: "graph_invalid",
            message: "a template must be a valid graph".into(),
            details: json!({ "problems": validation.problems }),
        })
    }
}

/// The error for a violation of `templates_slug_key`.
fn slug_conflict() -> CoreError {
    CoreError::Conflict {
        code: "slug_taken",
        message: "another template has this slug".into(),
        details: None,
    }
}

/// Published templates (admins also see unpublished ones), oldest first.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    page: PageRequest,
) -> CoreResult<Page<Template>> {
    let rows = Template::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM templates WHERE (published OR $1) \
             AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ),
        [
            principal.is_admin().into(),
            page.after_id()?.into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |t| t.id))
}

pub async fn get(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<Template> {
    Template::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM templates WHERE id = $1 AND (published OR $2)"),
        [id.into(), principal.is_admin().into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("template"))
}

pub async fn create(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    new: NewTemplate,
) -> CoreResult<Template> {
    require_admin(principal)?;
    let name = graphs::validate_name(&new.name)?;
    let slug = new.slug.unwrap_or_else(|| slug_from(&name));
    check_slug(&slug)?;
    check_document(&new.document, tools, llm_hosts)?;
    Template::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO templates (id, slug, name, description, document, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            slug.into(),
            name.into(),
            graphs::validate_description(new.description)?.into(),
            new.document.into(),
            principal.user_id.into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("templates_slug_key", slug_conflict)?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))
}

pub async fn update(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    id: Uuid,
    changes: TemplateChanges,
) -> CoreResult<Template> {
    require_admin(principal)?;
    let name = changes
        .name
        .as_deref()
        .map(graphs::validate_name)
        .transpose()?;
    if let Some(document) = &changes.document {
        check_document(document, tools, llm_hosts)?;
    }
    let description = changes
        .description
        .map(graphs::validate_description)
        .transpose()?;
    Template::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE templates SET name = COALESCE($2, name), document = COALESCE($3, document), \
               description = CASE WHEN $4::boolean THEN $5::text ELSE description END, \
               updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            name.into(),
            changes.document.into(),
            description.is_some().into(),
            description.flatten().into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("template"))
}

pub async fn set_published(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    published: bool,
) -> CoreResult<Template> {
    require_admin(principal)?;
    Template::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE templates SET published = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        ),
        [id.into(), published.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("template"))
}

pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    require_admin(principal)?;
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM templates WHERE id = $1",
            [id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("template"));
    }
    Ok(())
}

/// A new graph in one of the caller's workspaces, from a template they can see.
pub async fn instantiate(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    id: Uuid,
    workspace_id: Uuid,
    name: Option<String>,
) -> CoreResult<Graph> {
    let template = get(db, principal, id).await?;
    graphs::create(
        db,
        principal,
        tools,
        llm_hosts,
        workspace_id,
        NewGraph {
            name: name.unwrap_or(template.name),
            description: template.description,
            document: template.document,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slug_from("Research & Write!"), "research-write");
        assert_eq!(slug_from("  Hello   World "), "hello-world");
        assert!(check_slug(&slug_from("Hello world")).is_ok());
        assert!(check_slug("").is_err());
        assert!(check_slug("Upper").is_err());
        assert!(check_slug("-dash").is_err());
    }
}
