//! The tool repository: `GET /api/v1/tools` and `POST /api/v1/tools/{name}/invoke`, which
//! runs one tool with arguments (for trying a tool out from the builder).

use std::time::{Duration, Instant};

use crewgraph_core::crew::tools::{ToolError, ToolInfo, schema};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

/// An invocation never takes longer than this, whatever the tool's own limits.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ToolsApi;

/// A tool of the tool repository.
#[derive(Object)]
#[oai(rename = "Tool", example)]
pub struct ToolBody {
    pub name: String,
    pub description: String,
    /// JSON Schema of its arguments.
    pub args_schema: Value,
}

impl From<ToolInfo> for ToolBody {
    fn from(t: ToolInfo) -> Self {
        ToolBody {
            name: t.name,
            description: t.description,
            args_schema: t.args_schema,
        }
    }
}

impl Example for ToolBody {
    fn example() -> Self {
        ToolBody {
            name: "hello_world".into(),
            description: "Greets someone by name. Use it to say hello.".into(),
            args_schema: json!({
                "type": "object",
                "properties": {"name": {"type": "string", "description": "Who to greet",
                                        "minLength": 1, "maxLength": 200}},
                "required": ["name"],
                "additionalProperties": false
            }),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ToolListBody {
    pub items: Vec<ToolBody>,
}

impl Example for ToolListBody {
    fn example() -> Self {
        ToolListBody {
            items: vec![ToolBody::example()],
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct InvokeToolRequest {
    /// The arguments, checked against the tool's `args_schema` before it runs; `{}` when
    /// absent.
    pub args: Option<Value>,
}

impl Example for InvokeToolRequest {
    fn example() -> Self {
        InvokeToolRequest {
            args: Some(json!({"name": "Ada"})),
        }
    }
}

/// What the tool returned: the text an agent would see as its observation.
#[derive(Object)]
#[oai(rename = "ToolInvocation", example)]
pub struct ToolInvocationBody {
    pub tool: String,
    pub output: String,
    /// How long the tool ran, in milliseconds.
    pub duration_ms: u64,
}

impl Example for ToolInvocationBody {
    fn example() -> Self {
        ToolInvocationBody {
            tool: "hello_world".into(),
            output: "Hello, Ada!".into(),
            duration_ms: 0,
        }
    }
}

#[derive(ApiResponse)]
pub enum ToolListResponse {
    #[oai(status = 200)]
    Ok(Json<ToolListBody>),
}

#[derive(ApiResponse)]
pub enum InvokeToolResponse {
    /// The tool ran and answered.
    #[oai(status = 200)]
    Ok(Json<ToolInvocationBody>),
}

#[OpenApi(tag = "ApiTags::Tools")]
impl ToolsApi {
    /// The tool repository: every tool with the JSON Schema of its arguments.
    #[oai(path = "/api/v1/tools", method = "get", operation_id = "list_tools")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
    ) -> Result<ToolListResponse, ApiError> {
        Ok(ToolListResponse::Ok(Json(ToolListBody {
            items: state.tools.list().into_iter().map(Into::into).collect(),
        })))
    }

    /// Run one tool with arguments, as an agent would (the answer is the observation it
    /// would see). The arguments are checked against the tool's `args_schema` first: a
    /// mismatch is 422 `invalid_tool_arguments` with every problem in `details.problems`.
    /// A tool that runs and fails is 422 `tool_failed` with its message (e.g. `http_fetch`
    /// refusing a non-public address); one still running after 30 s (beyond its own
    /// limits) is stopped: 422 `tool_timeout`. An unknown tool is 404.
    #[oai(
        path = "/api/v1/tools/:name/invoke",
        method = "post",
        operation_id = "invoke_tool"
    )]
    async fn invoke(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        /// The tool's name (`GET /api/v1/tools`).
        name: Path<String>,
        body: JsonBody<InvokeToolRequest>,
    ) -> Result<InvokeToolResponse, ApiError> {
        let name = name.0;
        let tool = state
            .tools
            .get(&name)
            .ok_or_else(|| ApiError::NotFound(format!("tool `{name}` not found")))?;
        let args = body.0.args.unwrap_or_else(|| json!({}));
        if let Err(problems) = schema::validate(&tool.args_schema(), &args) {
            return Err(invalid_arguments(&name, problems));
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(INVOKE_TIMEOUT, state.tools.invoke(&name, args)).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(Ok(output)) => Ok(InvokeToolResponse::Ok(Json(ToolInvocationBody {
                tool: name,
                output,
                duration_ms,
            }))),
            // The tool's own checks of its arguments (a URL that does not parse, say).
            Ok(Err(ToolError::InvalidArguments(problem))) => {
                Err(invalid_arguments(&name, vec![problem]))
            }
            Ok(Err(ToolError::Failed(message))) => Err(ApiError::Unprocessable {
                code: "tool_failed",
                message,
                details: Some(json!({"tool": name, "duration_ms": duration_ms})),
            }),
            Ok(Err(ToolError::Unknown(_))) => {
                Err(ApiError::NotFound(format!("tool `{name}` not found")))
            }
            Err(_) => Err(ApiError::Unprocessable {
                code: "tool_timeout",
                message: format!(
                    "the tool `{name}` did not finish within {} s and was stopped",
                    INVOKE_TIMEOUT.as_secs()
                ),
                details: Some(json!({"tool": name, "timeout_ms": INVOKE_TIMEOUT.as_millis()})),
            }),
        }
    }
}

fn invalid_arguments(name: &str, problems: Vec<String>) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_tool_arguments",
        message: format!(
            "the arguments do not match the args_schema of `{name}`: {}",
            problems.join("; ")
        ),
        details: Some(json!({"tool": name, "problems": problems})),
    }
}
