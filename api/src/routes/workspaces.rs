//! `/api/v1/workspaces`: the caller's folders of graphs and threads.

use chrono::{DateTime, Utc};
use crewgraph_core::pagination::{List, PageRequest};
use crewgraph_core::workspaces::{self, Workspace, WorkspaceChanges};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct WorkspacesApi;

#[derive(Object)]
#[oai(example)]
pub struct CreateWorkspaceRequest {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
}

impl Example for CreateWorkspaceRequest {
    fn example() -> Self {
        CreateWorkspaceRequest {
            name: "Research crews".into(),
            description: Some("Crews that research and write reports".into()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateWorkspaceRequest {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// `null` clears it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 2000))]
    pub description: MaybeUndefined<String>,
}

impl Example for UpdateWorkspaceRequest {
    fn example() -> Self {
        UpdateWorkspaceRequest {
            name: Some("Research crews (2026)".into()),
            description: MaybeUndefined::Undefined,
        }
    }
}

#[derive(Object)]
#[oai(rename = "Workspace", example)]
pub struct WorkspaceBody {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Example for WorkspaceBody {
    fn example() -> Self {
        WorkspaceBody {
            id: Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            name: "Research crews".into(),
            description: None,
            created_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
            updated_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
        }
    }
}

impl From<Workspace> for WorkspaceBody {
    fn from(w: Workspace) -> Self {
        WorkspaceBody {
            id: w.id,
            name: w.name,
            description: w.description,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct WorkspacePage {
    pub items: Vec<WorkspaceBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl Example for WorkspacePage {
    fn example() -> Self {
        WorkspacePage {
            items: vec![WorkspaceBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(ApiResponse)]
pub enum WorkspaceCreated {
    #[oai(status = 201)]
    Created(Json<WorkspaceBody>),
}

#[derive(ApiResponse)]
pub enum WorkspaceResponse {
    #[oai(status = 200)]
    Ok(Json<WorkspaceBody>),
}

#[derive(ApiResponse)]
pub enum WorkspacePageResponse {
    #[oai(status = 200)]
    Ok(Json<WorkspacePage>),
}

#[derive(ApiResponse)]
pub enum WorkspaceDeleted {
    /// Deleted, with everything in it.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/workspaces", tag = "ApiTags::Workspaces")]
impl WorkspacesApi {
    /// Create a workspace.
    #[oai(path = "/", method = "post", operation_id = "create_workspace")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateWorkspaceRequest>,
    ) -> Result<WorkspaceCreated, ApiError> {
        let body = body.0;
        let workspace =
            workspaces::create(&state.db, &auth.0, &body.name, body.description).await?;
        Ok(WorkspaceCreated::Created(Json(workspace.into())))
    }

    /// The caller's workspaces, oldest first.
    #[oai(path = "/", method = "get", operation_id = "list_workspaces")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<WorkspacePageResponse, ApiError> {
        let page = PageRequest::parse(List::Workspaces, limit.0, cursor.0.as_deref())?;
        let result = workspaces::list(&state.db, &auth.0, page).await?;
        Ok(WorkspacePageResponse::Ok(Json(WorkspacePage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// One workspace.
    #[oai(path = "/:id", method = "get", operation_id = "get_workspace")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
    ) -> Result<WorkspaceResponse, ApiError> {
        let workspace = workspaces::get(&state.db, &auth.0, id.0).await?;
        Ok(WorkspaceResponse::Ok(Json(workspace.into())))
    }

    /// Rename a workspace or change its description.
    #[oai(path = "/:id", method = "patch", operation_id = "update_workspace")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
        body: JsonBody<UpdateWorkspaceRequest>,
    ) -> Result<WorkspaceResponse, ApiError> {
        let body = body.0;
        let description = super::patch_field(body.description);
        let workspace = workspaces::update(
            &state.db,
            &auth.0,
            id.0,
            WorkspaceChanges {
                name: body.name,
                description,
            },
        )
        .await?;
        Ok(WorkspaceResponse::Ok(Json(workspace.into())))
    }

    /// Delete a workspace and everything in it.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_workspace")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
    ) -> Result<WorkspaceDeleted, ApiError> {
        workspaces::delete(&state.db, &auth.0, id.0).await?;
        Ok(WorkspaceDeleted::NoContent)
    }
}
