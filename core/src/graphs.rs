//! Stored graphs: CRUD with optimistic concurrency, version history, duplicate and
//! export/import. Every query is scoped to the caller; someone else's graph is "not found".
//!
//! A document that cannot be read as a graph (wrong JSON shapes, unknown node types,
//! duplicate ids...) is refused with its problems and nothing is stored. A readable but
//! invalid graph is stored as a draft — the front end saves work in progress — with
//! `valid: false` and its problems.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Principal;
use crate::crew::tools::ToolRegistry;
use crate::error::{CoreError, CoreResult};
use crate::fields;
use crate::graph::problems::Problem;
use crate::graph::validate::{Validation, validate};
use crate::outbound::OutboundPolicy;
use crate::pagination::{Cursor, Page, PageRequest};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Largest stored document (its JSON text).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The export format's name and version, checked on import.
pub const EXPORT_FORMAT: &str = "crewgraph.graph";
pub const EXPORT_FORMAT_VERSION: i64 = 1;

/// Problems that mean the document is not a graph at all: such a write is refused.
const UNREADABLE: &[&str] = &[
    "invalid_document",
    "invalid_id",
    "invalid_edge",
    "unknown_node_type",
    "too_many_nodes",
    "too_many_edges",
    "duplicate_node_id",
    "duplicate_edge_id",
];

#[derive(Debug, Clone, FromQueryResult)]
pub struct Graph {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
    pub version: i32,
    pub valid: bool,
    pub problems: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, workspace_id, name, description, document, version, valid, problems, \
                       created_at, updated_at";

#[derive(Debug, Clone, FromQueryResult)]
pub struct GraphVersion {
    pub version: i32,
    pub name: String,
    pub valid: bool,
    pub created_at: DateTime<Utc>,
    pub document: Value,
}

/// What a new graph holds.
pub struct NewGraph {
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Most recently updated first (the default).
    UpdatedDesc,
    UpdatedAsc,
}

pub struct ListFilter {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    pub sort: SortOrder,
}

pub fn validate_name(name: &str) -> CoreResult<String> {
    fields::required_text(name, "name", "invalid_name", MAX_NAME_CHARS)
}

pub fn validate_description(description: Option<String>) -> CoreResult<Option<String>> {
    fields::optional_text(
        description,
        "description",
        "invalid_description",
        MAX_DESCRIPTION_CHARS,
    )
}

/// Checks a document for storage: its size, then that it reads as a graph. Returns its
/// validation (which may hold errors: drafts are allowed).
pub fn check_storable(
    document: &Value,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
) -> CoreResult<Validation> {
    let size = serde_json::to_vec(document).map(|b| b.len()).unwrap_or(0);
    if size > MAX_DOCUMENT_BYTES {
        return Err(CoreError::TooLarge {
            code: "graph_too_large",
            message: format!(
                "the graph document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes"
            ),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let validation = validate(document, &|name| tools.contains(name), llm_hosts);
    let unreadable: Vec<&Problem> = validation
        .problems
        .iter()
        .filter(|p| UNREADABLE.contains(&p.code))
        .collect();
    if !unreadable.is_empty() {
        return Err(CoreError::Problems {
            code: "invalid_graph_document",
            message: "the document is not a readable graph; nothing was stored".into(),
            details: json!({ "problems": unreadable }),
        });
    }
    Ok(validation)
}

fn problems_json(validation: &Validation) -> Value {
    serde_json::to_value(&validation.problems).unwrap_or_else(|_| json!([]))
}

async fn insert_version<C: ConnectionTrait>(db: &C, graph: &Graph) -> CoreResult<()> {
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO graph_versions (graph_id, version, name, document, valid) \
         VALUES ($1, $2, $3, $4, $5)",
        [
            graph.id.into(),
            graph.version.into(),
            graph.name.clone().into(),
            graph.document.clone().into(),
            graph.valid.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn create(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    workspace_id: Uuid,
    new: NewGraph,
) -> CoreResult<Graph> {
    let name = validate_name(&new.name)?;
    let description = validate_description(new.description)?;
    let validation = check_storable(&new.document, tools, llm_hosts)?;
    let txn = db.begin().await?;
    let graph = Graph::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "INSERT INTO graphs (id, user_id, workspace_id, name, description, document, valid, problems) \
             SELECT $1, $2, w.id, $4, $5, $6, $7, $8 FROM workspaces w WHERE w.id = $3 AND w.user_id = $2 \
             RETURNING {COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            principal.user_id.into(),
            workspace_id.into(),
            name.into(),
            description.into(),
            new.document.into(),
            validation.is_valid().into(),
            problems_json(&validation).into(),
        ],
    ))
    .one(&txn)
    .await?
    .ok_or(CoreError::NotFound("workspace"))?;
    insert_version(&txn, &graph).await?;
    txn.commit().await?;
    Ok(graph)
}

/// The graphs of one of the caller's workspaces.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    workspace_id: Uuid,
    filter: ListFilter,
    page: PageRequest,
) -> CoreResult<Page<Graph>> {
    // The workspace must be the caller's: an empty list would hide a wrong id.
    crate::workspaces::get(db, principal, workspace_id).await?;
    let after = page.after_time_id()?;
    let (comparison, direction) = match filter.sort {
        SortOrder::UpdatedDesc => ("<", "DESC"),
        SortOrder::UpdatedAsc => (">", "ASC"),
    };
    let pattern = filter.name.map(|n| {
        format!(
            "%{}%",
            n.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = Graph::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM graphs \
             WHERE workspace_id = $1 AND user_id = $2 \
               AND ($3::text IS NULL OR name ILIKE $3) \
               AND ($4::timestamptz IS NULL OR (updated_at, id) {comparison} ($4::timestamptz, $5::uuid)) \
             ORDER BY updated_at {direction}, id {direction} LIMIT $6"
        ),
        [
            workspace_id.into(),
            principal.user_id.into(),
            pattern.into(),
            after.map(|(t, _)| t).into(),
            after.map(|(_, id)| id).into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_keyed_rows(rows, page, |g| {
        Cursor::TimeId(g.updated_at, g.id)
    }))
}

pub async fn get(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<Graph> {
    get_in(db, principal, id).await
}

pub(crate) async fn get_in<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<Graph> {
    Graph::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM graphs WHERE id = $1 AND user_id = $2"),
        [id.into(), principal.user_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("graph"))
}

fn version_conflict(current: i32) -> CoreError {
    CoreError::Conflict {
        code: "version_conflict",
        message: format!(
            "the graph was changed since you read it: it is at version {current}; \
             reload it, reapply your change and send that version"
        ),
        details: Some(json!({ "current_version": current })),
    }
}

/// Replaces the document (and optionally the name) if the stored version is still
/// `expected_version`; a stale write is a conflict that names the current version.
pub async fn replace(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    id: Uuid,
    expected_version: Option<i32>,
    name: Option<String>,
    document: Value,
) -> CoreResult<Graph> {
    let expected_version = expected_version.ok_or(CoreError::PreconditionRequired(
        "say which version you are replacing: send `If-Match: \"<version>\"` or `version` in the body",
    ))?;
    let name = name.as_deref().map(validate_name).transpose()?;
    let validation = check_storable(&document, tools, llm_hosts)?;
    let txn = db.begin().await?;
    let updated = Graph::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "UPDATE graphs SET document = $4, valid = $5, problems = $6, name = COALESCE($7, name), \
               version = version + 1, updated_at = now() \
             WHERE id = $1 AND user_id = $2 AND version = $3 RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            expected_version.into(),
            document.into(),
            validation.is_valid().into(),
            problems_json(&validation).into(),
            name.into(),
        ],
    ))
    .one(&txn)
    .await?;
    let graph = match updated {
        Some(graph) => graph,
        None => {
            let current = get_in(&txn, principal, id).await?;
            return Err(version_conflict(current.version));
        }
    };
    insert_version(&txn, &graph).await?;
    txn.commit().await?;
    Ok(graph)
}

/// Renames or re-describes a graph; the document and its version are untouched.
pub async fn update_details(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    name: Option<String>,
    description: Option<Option<String>>,
) -> CoreResult<Graph> {
    let name = name.as_deref().map(validate_name).transpose()?;
    let description = description.map(validate_description).transpose()?;
    Graph::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE graphs SET name = COALESCE($3, name), \
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
    .await?
    .ok_or(CoreError::NotFound("graph"))
}

pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let txn = db.begin().await?;
    // The graph's executions first, in id order: a run ending meanwhile holds its
    // execution and then references the graph (its figures, its webhook deliveries),
    // while the delete's `SET NULL` on executions would otherwise hold the graph and
    // wait for the execution — a deadlock. Taking the executions first orders both alike.
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT id FROM executions WHERE graph_id = $1 AND user_id = $2 ORDER BY id FOR UPDATE",
        [id.into(), principal.user_id.into()],
    ))
    .await?;
    let deleted = txn
        .execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "DELETE FROM graphs WHERE id = $1 AND user_id = $2",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("graph"));
    }
    txn.commit().await?;
    Ok(())
}

/// A copy as a new graph (version 1), in the same or another of the caller's workspaces.
pub async fn duplicate(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    id: Uuid,
    name: Option<String>,
    workspace_id: Option<Uuid>,
) -> CoreResult<Graph> {
    let source = get(db, principal, id).await?;
    let name = name.unwrap_or_else(|| {
        let copy = format!("{} (copy)", source.name);
        copy.chars().take(MAX_NAME_CHARS).collect()
    });
    create(
        db,
        principal,
        tools,
        llm_hosts,
        workspace_id.unwrap_or(source.workspace_id),
        NewGraph {
            name,
            description: source.description,
            document: source.document,
        },
    )
    .await
}

/// The portable form of a graph (`GET .../export`, `POST .../import`).
pub fn export(graph: &Graph) -> Value {
    json!({
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "name": graph.name,
        "description": graph.description,
        "document": graph.document,
    })
}

/// Reads an export; every problem with its JSON path.
pub fn read_export(export: &Value) -> CoreResult<NewGraph> {
    let mut problems = Vec::new();
    if export.get("format").and_then(Value::as_str) != Some(EXPORT_FORMAT) {
        problems
            .push(json!({"path": "$.format", "message": format!("must be \"{EXPORT_FORMAT}\"")}));
    }
    if export.get("format_version").and_then(Value::as_i64) != Some(EXPORT_FORMAT_VERSION) {
        problems.push(json!({"path": "$.format_version", "message": format!("must be {EXPORT_FORMAT_VERSION}")}));
    }
    let name = export.get("name").and_then(Value::as_str);
    if name.is_none() {
        problems.push(json!({"path": "$.name", "message": "must be text"}));
    }
    let description = match export.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            problems.push(json!({"path": "$.description", "message": "must be text or null"}));
            None
        }
    };
    let document = export.get("document");
    if !document.is_some_and(Value::is_object) {
        problems.push(json!({"path": "$.document", "message": "must be a graph document object"}));
    }
    match (name, document) {
        (Some(name), Some(document)) if problems.is_empty() => Ok(NewGraph {
            name: name.to_string(),
            description,
            document: document.clone(),
        }),
        _ => Err(CoreError::Problems {
            code: "invalid_export",
            message: "this is not a crewgraph graph export".into(),
            details: json!({ "problems": problems }),
        }),
    }
}

/// Stored versions, newest first.
pub async fn list_versions(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    page: PageRequest,
) -> CoreResult<Page<GraphVersion>> {
    get(db, principal, id).await?;
    let after = page.after_number()?;
    let rows = GraphVersion::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT version, name, valid, created_at, document FROM graph_versions \
         WHERE graph_id = $1 AND ($2::integer IS NULL OR version < $2) \
         ORDER BY version DESC LIMIT $3",
        [
            id.into(),
            after
                .map(i32::try_from)
                .transpose()
                .map_err(|_| {
                    CoreError::invalid("invalid_cursor", "cursor", "the cursor is not valid")
                })?
                .into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    Ok(Page::from_keyed_rows(rows, page, |v| {
        Cursor::Number(i64::from(v.version))
    }))
}

pub async fn get_version(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    version: i32,
) -> CoreResult<GraphVersion> {
    GraphVersion::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT v.version, v.name, v.valid, v.created_at, v.document FROM graph_versions v \
         JOIN graphs g ON g.id = v.graph_id \
         WHERE v.graph_id = $1 AND g.user_id = $2 AND v.version = $3",
        [id.into(), principal.user_id.into(), version.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("graph version"))
}

/// Makes an old version current again, as a new version (history is never rewritten).
pub async fn restore_version(
    db: &DatabaseConnection,
    principal: &Principal,
    tools: &ToolRegistry,
    llm_hosts: &OutboundPolicy,
    id: Uuid,
    version: i32,
    expected_version: Option<i32>,
) -> CoreResult<Graph> {
    let old = get_version(db, principal, id, version).await?;
    let expected = match expected_version {
        Some(v) => v,
        None => get(db, principal, id).await?.version,
    };
    replace(
        db,
        principal,
        tools,
        llm_hosts,
        id,
        Some(expected),
        None,
        old.document,
    )
    .await
}
