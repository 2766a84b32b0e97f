//! `/api/v1/templates`: everyone lists, reads and instantiates published templates;
//! admins create, change, publish and delete them (403 for others).

use chrono::{DateTime, Utc};
use crewgraph_core::pagination::{List, PageRequest};
use crewgraph_core::templates::{self, NewTemplate, Template, TemplateChanges};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use super::graph_bodies::{GraphBody, example_document, example_time};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct TemplatesApi;

#[derive(Object)]
#[oai(rename = "Template", example)]
pub struct TemplateBody {
    pub id: Uuid,
    /// Stable, URL-friendly name.
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub document: Value,
    /// Visible to everyone (otherwise to admins only).
    pub published: bool,
    /// Shipped with crewgraph.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Template> for TemplateBody {
    fn from(t: Template) -> Self {
        TemplateBody {
            id: t.id,
            slug: t.slug,
            name: t.name,
            description: t.description,
            document: t.document,
            published: t.published,
            builtin: t.builtin,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl Example for TemplateBody {
    fn example() -> Self {
        TemplateBody {
            id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001),
            slug: "hello-world".into(),
            name: "Hello world".into(),
            description: Some("One agent greets {name} with the hello_world tool.".into()),
            document: example_document(),
            published: true,
            builtin: true,
            created_at: example_time(),
            updated_at: example_time(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct TemplatePage {
    pub items: Vec<TemplateBody>,
    pub next_cursor: Option<String>,
}

impl Example for TemplatePage {
    fn example() -> Self {
        TemplatePage {
            items: vec![TemplateBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct CreateTemplateRequest {
    /// Default: derived from the name.
    #[oai(validator(max_length = 100))]
    pub slug: Option<String>,
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// Must be a valid graph. New templates start unpublished.
    pub document: Value,
}

impl Example for CreateTemplateRequest {
    fn example() -> Self {
        CreateTemplateRequest {
            slug: Some("greeter".into()),
            name: "Greeter".into(),
            description: None,
            document: example_document(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateTemplateRequest {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// `null` clears it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 2000))]
    pub description: MaybeUndefined<String>,
    /// Must be a valid graph.
    pub document: Option<Value>,
}

impl Example for UpdateTemplateRequest {
    fn example() -> Self {
        UpdateTemplateRequest {
            name: Some("Greeter (friendly)".into()),
            description: MaybeUndefined::Undefined,
            document: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct InstantiateTemplateRequest {
    /// One of your workspaces.
    pub workspace_id: Uuid,
    /// Default: the template's name.
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
}

impl Example for InstantiateTemplateRequest {
    fn example() -> Self {
        InstantiateTemplateRequest {
            workspace_id: Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            name: Some("My greeter".into()),
        }
    }
}

#[derive(ApiResponse)]
pub enum TemplateResponse {
    #[oai(status = 200)]
    Ok(Json<TemplateBody>),
}

#[derive(ApiResponse)]
pub enum TemplateCreated {
    #[oai(status = 201)]
    Created(Json<TemplateBody>),
}

#[derive(ApiResponse)]
pub enum TemplatePageResponse {
    #[oai(status = 200)]
    Ok(Json<TemplatePage>),
}

#[derive(ApiResponse)]
pub enum TemplateDeleted {
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum TemplateInstantiated {
    /// The new graph; `ETag` is its version.
    #[oai(status = 201)]
    Created(Json<GraphBody>, #[oai(header = "ETag")] String),
}

#[OpenApi(prefix_path = "/api/v1/templates", tag = "ApiTags::Templates")]
impl TemplatesApi {
    /// Published templates (admins see unpublished ones too), oldest first.
    #[oai(path = "/", method = "get", operation_id = "list_templates")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<TemplatePageResponse, ApiError> {
        let page = PageRequest::parse(List::Templates, limit.0, cursor.0.as_deref())?;
        let result = templates::list(&state.db, &auth.0, page).await?;
        Ok(TemplatePageResponse::Ok(Json(TemplatePage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// Create a template (admins only; starts unpublished).
    #[oai(path = "/", method = "post", operation_id = "create_template")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateTemplateRequest>,
    ) -> Result<TemplateCreated, ApiError> {
        let body = body.0;
        let template = templates::create(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            NewTemplate {
                slug: body.slug,
                name: body.name,
                description: body.description,
                document: body.document,
            },
        )
        .await?;
        Ok(TemplateCreated::Created(Json(template.into())))
    }

    /// One template.
    #[oai(path = "/:id", method = "get", operation_id = "get_template")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<TemplateResponse, ApiError> {
        let template = templates::get(&state.db, &auth.0, id.0).await?;
        Ok(TemplateResponse::Ok(Json(template.into())))
    }

    /// Change a template (admins only).
    #[oai(path = "/:id", method = "patch", operation_id = "update_template")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateTemplateRequest>,
    ) -> Result<TemplateResponse, ApiError> {
        let body = body.0;
        let description = super::patch_field(body.description);
        let template = templates::update(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            id.0,
            TemplateChanges {
                name: body.name,
                description,
                document: body.document,
            },
        )
        .await?;
        Ok(TemplateResponse::Ok(Json(template.into())))
    }

    /// Publish a template: everyone can see and use it (admins only).
    #[oai(
        path = "/:id/publish",
        method = "post",
        operation_id = "publish_template"
    )]
    async fn publish(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<TemplateResponse, ApiError> {
        let template = templates::set_published(&state.db, &auth.0, id.0, true).await?;
        Ok(TemplateResponse::Ok(Json(template.into())))
    }

    /// Withdraw a template from everyone but admins (admins only).
    #[oai(
        path = "/:id/unpublish",
        method = "post",
        operation_id = "unpublish_template"
    )]
    async fn unpublish(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<TemplateResponse, ApiError> {
        let template = templates::set_published(&state.db, &auth.0, id.0, false).await?;
        Ok(TemplateResponse::Ok(Json(template.into())))
    }

    /// Delete a template (admins only). Graphs made from it are not affected.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_template")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<TemplateDeleted, ApiError> {
        templates::delete(&state.db, &auth.0, id.0).await?;
        Ok(TemplateDeleted::NoContent)
    }

    /// Create a graph from a template in one of your workspaces.
    #[oai(
        path = "/:id/instantiate",
        method = "post",
        operation_id = "instantiate_template"
    )]
    async fn instantiate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<InstantiateTemplateRequest>,
    ) -> Result<TemplateInstantiated, ApiError> {
        let body = body.0;
        let graph = templates::instantiate(
            &state.db,
            &auth.0,
            &state.tools,
            &state.llm_hosts,
            id.0,
            body.workspace_id,
            body.name,
        )
        .await?;
        let tag = format!("\"{}\"", graph.version);
        Ok(TemplateInstantiated::Created(Json(graph.into()), tag))
    }
}
