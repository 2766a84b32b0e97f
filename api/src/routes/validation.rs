//! Validation and the node-type catalogue: `POST /api/v1/graphs/validate`,
//! `POST /api/v1/graphs/{id}/validate`, `GET /api/v1/node-types`,
//! `POST /api/v1/node-types/{type}/validate`. (The tools are in `tools.rs`.)

use crewgraph_core::graph::document::NodeKind;
use crewgraph_core::graph::node_types::{self, NodeType};
use crewgraph_core::graph::validate::{validate, validate_node};
use crewgraph_core::graphs;
use crewgraph_core::outbound::OutboundPolicy;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::ApiTags;
use super::graph_bodies::{ProblemBody, ValidationBody, example_document};
use super::tools::ToolBody;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct ValidationApi;

#[derive(Object)]
#[oai(example)]
pub struct ValidateGraphRequest {
    /// The graph document to check (nothing is stored).
    pub document: Value,
}

impl Example for ValidateGraphRequest {
    fn example() -> Self {
        ValidateGraphRequest {
            document: example_document(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ValidateNodeRequest {
    /// The node's `data`.
    pub data: BTreeMap<String, Value>,
    /// The node's id, echoed in the problems (default `node`).
    pub id: Option<String>,
}

impl Example for ValidateNodeRequest {
    fn example() -> Self {
        let mut data = BTreeMap::new();
        data.insert("role".into(), json!("Researcher"));
        data.insert("goal".into(), json!(""));
        ValidateNodeRequest {
            data,
            id: Some("a1".into()),
        }
    }
}

#[derive(Object)]
#[oai(rename = "NodeValidationResult", example)]
pub struct NodeValidationBody {
    pub valid: bool,
    pub problems: Vec<ProblemBody>,
}

impl Example for NodeValidationBody {
    fn example() -> Self {
        let problems = validate_node(
            NodeKind::Agent,
            "a1",
            ValidateNodeRequest::example().data.into_iter().collect(),
            &|_| true,
            &OutboundPolicy::default(),
        );
        NodeValidationBody {
            valid: false,
            problems: problems.iter().map(ProblemBody::from).collect(),
        }
    }
}

/// A node type with the JSON Schema of its `data`.
#[derive(Object)]
#[oai(rename = "NodeType", example)]
pub struct NodeTypeBody {
    /// `agent`, `task`, `tool`, `llm` or `crew`.
    #[oai(rename = "type")]
    pub kind: String,
    pub title: String,
    pub description: String,
    /// JSON Schema of the node's `data`: fields, types, defaults, enums, descriptions.
    pub schema: Value,
    pub accepts_edges_from: Vec<String>,
    pub connects_to: Vec<String>,
}

impl From<NodeType> for NodeTypeBody {
    fn from(t: NodeType) -> Self {
        NodeTypeBody {
            kind: t.kind.into(),
            title: t.title.into(),
            description: t.description.into(),
            schema: t.schema,
            accepts_edges_from: t.accepts_edges_from.into_iter().map(Into::into).collect(),
            connects_to: t.connects_to.into_iter().map(Into::into).collect(),
        }
    }
}

impl Example for NodeTypeBody {
    fn example() -> Self {
        node_types::node_type(
            NodeKind::Tool,
            &crewgraph_core::crew::tools::ToolRegistry::builtin().list(),
        )
        .into()
    }
}

impl Example for NodeTypesBody {
    fn example() -> Self {
        let tools = crewgraph_core::crew::tools::ToolRegistry::builtin().list();
        NodeTypesBody {
            node_types: node_types::node_types(&tools)
                .into_iter()
                .map(Into::into)
                .collect(),
            tools: tools.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct NodeTypesBody {
    pub node_types: Vec<NodeTypeBody>,
    /// The tools a tool node may name, with their argument schemas.
    pub tools: Vec<ToolBody>,
}

#[derive(ApiResponse)]
pub enum ValidationResponse {
    /// The problems (empty when clean) and, when there is no error, the plan.
    #[oai(status = 200)]
    Ok(Json<ValidationBody>),
}

#[derive(ApiResponse)]
pub enum NodeValidationResponse {
    #[oai(status = 200)]
    Ok(Json<NodeValidationBody>),
}

#[derive(ApiResponse)]
pub enum NodeTypesResponse {
    #[oai(status = 200)]
    Ok(Json<NodeTypesBody>),
}

#[OpenApi(tag = "ApiTags::Graphs")]
impl ValidationApi {
    /// Validate a graph document without storing it: every problem at once, and the
    /// compiled plan (task order, agents, context, tools, required inputs) when valid. A
    /// document that is not a readable graph is 422 `invalid_graph_document` with the JSON
    /// path of each problem.
    #[oai(
        path = "/api/v1/graphs/validate",
        method = "post",
        operation_id = "validate_document"
    )]
    async fn validate_document(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        body: JsonBody<ValidateGraphRequest>,
    ) -> Result<ValidationResponse, ApiError> {
        let validation = graphs::check_storable(&body.0.document, &state.tools, &state.llm_hosts)?;
        Ok(ValidationResponse::Ok(Json(ValidationBody::from(
            &validation,
        ))))
    }

    /// Validate a stored graph's current document.
    #[oai(
        path = "/api/v1/graphs/:id/validate",
        method = "post",
        operation_id = "validate_graph"
    )]
    async fn validate_graph(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<ValidationResponse, ApiError> {
        let graph = graphs::get(&state.db, &auth.0, id.0).await?;
        let validation = validate(
            &graph.document,
            &|name| state.tools.contains(name),
            &state.llm_hosts,
        );
        Ok(ValidationResponse::Ok(Json(ValidationBody::from(
            &validation,
        ))))
    }

    /// Every node type with the JSON Schema of its `data`, and the tools.
    #[oai(
        path = "/api/v1/node-types",
        method = "get",
        operation_id = "list_node_types",
        tag = "ApiTags::NodeTypes"
    )]
    async fn node_types(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
    ) -> Result<NodeTypesResponse, ApiError> {
        let tools = state.tools.list();
        Ok(NodeTypesResponse::Ok(Json(NodeTypesBody {
            node_types: node_types::node_types(&tools)
                .into_iter()
                .map(Into::into)
                .collect(),
            tools: tools.into_iter().map(Into::into).collect(),
        })))
    }

    /// Validate one node's `data` (for forms): the same field rules as graph validation.
    #[oai(
        path = "/api/v1/node-types/:type/validate",
        method = "post",
        operation_id = "validate_node",
        tag = "ApiTags::NodeTypes"
    )]
    async fn validate_node(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        /// `agent`, `task`, `tool`, `llm` or `crew`.
        #[oai(name = "type")]
        kind: Path<String>,
        body: JsonBody<ValidateNodeRequest>,
    ) -> Result<NodeValidationResponse, ApiError> {
        let kind = NodeKind::parse(&kind.0)
            .ok_or_else(|| ApiError::NotFound(format!("node type `{}` not found", kind.0)))?;
        let body = body.0;
        let problems = validate_node(
            kind,
            body.id.as_deref().unwrap_or("node"),
            body.data.into_iter().collect(),
            &|name| state.tools.contains(name),
            &state.llm_hosts,
        );
        Ok(NodeValidationResponse::Ok(Json(NodeValidationBody {
            valid: !crewgraph_core::graph::problems::has_errors(&problems),
            problems: problems.iter().map(ProblemBody::from).collect(),
        })))
    }
}
