//! Graphs: `/api/v1/workspaces/{workspace_id}/graphs` (create, list, import) and
//! `/api/v1/graphs/{id}` (get, replace with optimistic concurrency, rename, duplicate,
//! export, delete, version history).

use chrono::{DateTime, Utc};
use crewgraph_core::graphs::{self, GraphVersion, ListFilter, NewGraph, SortOrder};
use crewgraph_core::pagination::{List, PageRequest};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use super::graph_bodies::{GraphBody, example_document, example_time};
use super::graph_requests::{
    CreateGraphRequest, DuplicateGraphRequest, ReplaceGraphRequest, UpdateGraphRequest,
};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct GraphsApi;

/// A graph in a list (without its document).
#[derive(Object)]
#[oai(rename = "GraphSummary", example)]
pub struct GraphSummaryBody {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub version: i32,
    pub valid: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Example for GraphSummaryBody {
    fn example() -> Self {
        let g = GraphBody::example();
        GraphSummaryBody {
            id: g.id,
            workspace_id: g.workspace_id,
            name: g.name,
            description: g.description,
            version: g.version,
            valid: g.valid,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct GraphPage {
    pub items: Vec<GraphSummaryBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl Example for GraphPage {
    fn example() -> Self {
        GraphPage {
            items: vec![GraphSummaryBody::example()],
            next_cursor: None,
        }
    }
}

/// A stored version of a graph's document.
#[derive(Object)]
#[oai(rename = "GraphVersion", example)]
pub struct GraphVersionBody {
    pub version: i32,
    pub name: String,
    pub valid: bool,
    pub created_at: DateTime<Utc>,
    /// Present when one version is read; absent in lists.
    pub document: Option<Value>,
}

impl GraphVersionBody {
    fn from_version(v: GraphVersion, with_document: bool) -> Self {
        GraphVersionBody {
            version: v.version,
            name: v.name,
            valid: v.valid,
            created_at: v.created_at,
            document: with_document.then_some(v.document),
        }
    }
}

impl Example for GraphVersionBody {
    fn example() -> Self {
        GraphVersionBody {
            version: 2,
            name: "Greeter".into(),
            valid: true,
            created_at: example_time(),
            document: Some(example_document()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct GraphVersionPage {
    /// Newest first.
    pub items: Vec<GraphVersionBody>,
    pub next_cursor: Option<String>,
}

impl Example for GraphVersionPage {
    fn example() -> Self {
        let mut version = GraphVersionBody::example();
        version.document = None;
        GraphVersionPage {
            items: vec![version],
            next_cursor: None,
        }
    }
}

/// The portable form of a graph, accepted by import.
#[derive(Object)]
#[oai(rename = "GraphExport", example)]
pub struct GraphExportBody {
    /// Always `crewgraph.graph`.
    pub format: String,
    /// Always 1.
    pub format_version: i64,
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
}

impl Example for GraphExportBody {
    fn example() -> Self {
        GraphExportBody {
            format: graphs::EXPORT_FORMAT.into(),
            format_version: graphs::EXPORT_FORMAT_VERSION,
            name: "Greeter".into(),
            description: None,
            document: example_document(),
        }
    }
}

#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum GraphSort {
    /// Most recently updated first.
    UpdatedDesc,
    /// Least recently updated first.
    UpdatedAsc,
}

#[derive(ApiResponse)]
pub enum GraphCreated {
    /// Created; `ETag` is its version.
    #[oai(status = 201)]
    Created(Json<GraphBody>, #[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
pub enum GraphResponse {
    /// `ETag` is the document's version, for `If-Match` on the next replace.
    #[oai(status = 200)]
    Ok(Json<GraphBody>, #[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
pub enum GraphPageResponse {
    #[oai(status = 200)]
    Ok(Json<GraphPage>),
}

#[derive(ApiResponse)]
pub enum GraphDeleted {
    /// Deleted, with its version history.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum GraphExportResponse {
    #[oai(status = 200)]
    Ok(Json<GraphExportBody>),
}

#[derive(ApiResponse)]
pub enum GraphVersionPageResponse {
    #[oai(status = 200)]
    Ok(Json<GraphVersionPage>),
}

#[derive(ApiResponse)]
pub enum GraphVersionResponse {
    #[oai(status = 200)]
    Ok(Json<GraphVersionBody>),
}

fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

fn created(graph: graphs::Graph) -> GraphCreated {
    let tag = etag(graph.version);
    GraphCreated::Created(Json(graph.into()), tag)
}

fn ok(graph: graphs::Graph) -> GraphResponse {
    let tag = etag(graph.version);
    GraphResponse::Ok(Json(graph.into()), tag)
}

/// `"3"`, `W/"3"` or `3` → Some(3); `*` → None (any version).
fn parse_if_match(value: &str) -> Result<Option<i32>, ApiError> {
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i32>()
        .map(Some)
        .map_err(|_| ApiError::BadRequest {
            code: "invalid_if_match",
            message: "If-Match must be a graph version as returned in ETag, e.g. \"3\"".into(),
        })
}

#[OpenApi(tag = "ApiTags::Graphs")]
impl GraphsApi {
    /// Create a graph in one of your workspaces.
    #[oai(
        path = "/api/v1/workspaces/:workspace_id/graphs",
        method = "post",
        operation_id = "create_graph"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        workspace_id: Path<Uuid>,
        body: JsonBody<CreateGraphRequest>,
    ) -> Result<GraphCreated, ApiError> {
        let body = body.0;
        let graph = graphs::create(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            workspace_id.0,
            NewGraph {
                name: body.name,
                description: body.description,
                document: body
                    .document
                    .unwrap_or_else(|| serde_json::json!({"nodes": [], "edges": []})),
            },
        )
        .await?;
        Ok(created(graph))
    }

    /// A workspace's graphs, most recently updated first (or `sort=updated_asc`).
    #[oai(
        path = "/api/v1/workspaces/:workspace_id/graphs",
        method = "get",
        operation_id = "list_graphs"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        workspace_id: Path<Uuid>,
        /// Only graphs whose name contains this (case-insensitive).
        name: Query<Option<String>>,
        sort: Query<Option<GraphSort>>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page (with the same `sort`).
        cursor: Query<Option<String>>,
    ) -> Result<GraphPageResponse, ApiError> {
        let (sort, list) = match sort.0 {
            Some(GraphSort::UpdatedAsc) => (SortOrder::UpdatedAsc, List::GraphsOldestFirst),
            _ => (SortOrder::UpdatedDesc, List::GraphsNewestFirst),
        };
        let page = PageRequest::parse(list, limit.0, cursor.0.as_deref())?;
        let filter = ListFilter {
            name: name.0.filter(|n| !n.is_empty()),
            sort,
        };
        let result = graphs::list(&state.db, &auth.0, workspace_id.0, filter, page).await?;
        Ok(GraphPageResponse::Ok(Json(GraphPage {
            items: result
                .items
                .into_iter()
                .map(|g| GraphSummaryBody {
                    id: g.id,
                    workspace_id: g.workspace_id,
                    name: g.name,
                    description: g.description,
                    version: g.version,
                    valid: g.valid,
                    created_at: g.created_at,
                    updated_at: g.updated_at,
                })
                .collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// Import a graph exported with `GET /api/v1/graphs/{id}/export`.
    #[oai(
        path = "/api/v1/workspaces/:workspace_id/graphs/import",
        method = "post",
        operation_id = "import_graph"
    )]
    async fn import(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        workspace_id: Path<Uuid>,
        /// A `GraphExport` document.
        body: JsonBody<Value>,
    ) -> Result<GraphCreated, ApiError> {
        let new = graphs::read_export(&body.0)?;
        let graph = graphs::create(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            workspace_id.0,
            new,
        )
        .await?;
        Ok(created(graph))
    }

    /// One graph with its document; `ETag` is its version.
    #[oai(
        path = "/api/v1/graphs/:id",
        method = "get",
        operation_id = "get_graph"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<GraphResponse, ApiError> {
        Ok(ok(graphs::get(&state.db, &auth.0, id.0).await?))
    }

    /// Replace the document. Say which version you replace (`If-Match: "3"` or
    /// `version: 3`); if someone changed it since, the answer is 409 `version_conflict`
    /// with `details.current_version` and nothing is stored. Drafts with validation errors
    /// are stored (`valid: false`); a document that is not a readable graph is refused
    /// (422 `invalid_graph_document`), leaving the stored graph as it was.
    #[oai(
        path = "/api/v1/graphs/:id",
        method = "put",
        operation_id = "replace_graph"
    )]
    async fn replace(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: JsonBody<ReplaceGraphRequest>,
    ) -> Result<GraphResponse, ApiError> {
        let body = body.0;
        let expected = match (if_match.0.as_deref(), body.version) {
            (Some(header), _) => match parse_if_match(header)? {
                Some(version) => Some(version),
                // `*`: whatever is stored now.
                None => Some(graphs::get(&state.db, &auth.0, id.0).await?.version),
            },
            (None, version) => version,
        };
        let graph = graphs::replace(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            id.0,
            expected,
            body.name,
            body.document,
        )
        .await?;
        Ok(ok(graph))
    }

    /// Rename a graph or change its description (the document and version are untouched).
    #[oai(
        path = "/api/v1/graphs/:id",
        method = "patch",
        operation_id = "update_graph"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateGraphRequest>,
    ) -> Result<GraphResponse, ApiError> {
        let body = body.0;
        let description = super::patch_field(body.description);
        let graph =
            graphs::update_details(&state.db, &auth.0, id.0, body.name, description).await?;
        Ok(ok(graph))
    }

    /// Delete a graph and its version history.
    #[oai(
        path = "/api/v1/graphs/:id",
        method = "delete",
        operation_id = "delete_graph"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<GraphDeleted, ApiError> {
        graphs::delete(&state.db, &auth.0, id.0).await?;
        Ok(GraphDeleted::NoContent)
    }

    /// Copy a graph (its current document) into a new graph.
    #[oai(
        path = "/api/v1/graphs/:id/duplicate",
        method = "post",
        operation_id = "duplicate_graph"
    )]
    async fn duplicate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<DuplicateGraphRequest>,
    ) -> Result<GraphCreated, ApiError> {
        let body = body.0;
        let graph = graphs::duplicate(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            id.0,
            body.name,
            body.workspace_id,
        )
        .await?;
        Ok(created(graph))
    }

    /// The graph as a portable JSON document (import it with `.../graphs/import`).
    #[oai(
        path = "/api/v1/graphs/:id/export",
        method = "get",
        operation_id = "export_graph"
    )]
    async fn export(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<GraphExportResponse, ApiError> {
        let graph = graphs::get(&state.db, &auth.0, id.0).await?;
        Ok(GraphExportResponse::Ok(Json(GraphExportBody {
            format: graphs::EXPORT_FORMAT.into(),
            format_version: graphs::EXPORT_FORMAT_VERSION,
            name: graph.name,
            description: graph.description,
            document: graph.document,
        })))
    }

    /// The graph's stored versions, newest first (without documents).
    #[oai(
        path = "/api/v1/graphs/:id/versions",
        method = "get",
        operation_id = "list_graph_versions"
    )]
    async fn versions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<GraphVersionPageResponse, ApiError> {
        let page = PageRequest::parse(List::GraphVersions, limit.0, cursor.0.as_deref())?;
        let result = graphs::list_versions(&state.db, &auth.0, id.0, page).await?;
        Ok(GraphVersionPageResponse::Ok(Json(GraphVersionPage {
            items: result
                .items
                .into_iter()
                .map(|v| GraphVersionBody::from_version(v, false))
                .collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// One stored version, with its document.
    #[oai(
        path = "/api/v1/graphs/:id/versions/:version",
        method = "get",
        operation_id = "get_graph_version"
    )]
    async fn version(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        version: Path<i32>,
    ) -> Result<GraphVersionResponse, ApiError> {
        let v = graphs::get_version(&state.db, &auth.0, id.0, version.0).await?;
        Ok(GraphVersionResponse::Ok(Json(
            GraphVersionBody::from_version(v, true),
        )))
    }

    /// Make an old version current again, as a new version (history is kept). With
    /// `If-Match`, only if the graph is still at that version.
    #[oai(
        path = "/api/v1/graphs/:id/versions/:version/restore",
        method = "post",
        operation_id = "restore_graph_version"
    )]
    async fn restore(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        version: Path<i32>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<GraphResponse, ApiError> {
        let expected = if_match
            .0
            .as_deref()
            .map(parse_if_match)
            .transpose()?
            .flatten();
        let graph = graphs::restore_version(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            id.0,
            version.0,
            expected,
        )
        .await?;
        Ok(ok(graph))
    }
}
