//! The tool repository: a [`Tool`] trait, a [`ToolRegistry`] and the built-in tools.
//! Arguments are validated against each tool's JSON Schema before it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

mod calculator;
mod current_datetime;
mod hello_world;
mod http_fetch;
pub mod schema;

pub use calculator::Calculator;
pub use current_datetime::CurrentDatetime;
pub use hello_world::HelloWorld;
pub use http_fetch::HttpFetch;

/// A failure a tool reports; the agent sees its message as an observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the schema.
    #[error("{0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// No tool of that name is registered.
    #[error("there is no tool named '{0}'")]
    Unknown(String),
}

#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    /// The name agents call it by (CrewAI matches it case-insensitively).
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema (an object schema) of the arguments. serde_json maps are sorted, so
    /// list `required` properties in the order the prompt should show them.
    fn args_schema(&self) -> Value;
    /// Whether the crew's tool-result cache may answer a repeated call (CrewAI's
    /// `cache_function`); false for tools whose answer changes, such as a clock.
    fn cacheable(&self) -> bool {
        true
    }
    /// Runs with arguments already validated against `args_schema`.
    async fn run(&self, args: Value) -> Result<String, ToolError>;
}

/// What the API shows of a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub args_schema: Value,
}

#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// Every built-in tool.
    pub fn builtin() -> Self {
        let mut registry = ToolRegistry::default();
        registry.register(Arc::new(HelloWorld));
        registry.register(Arc::new(Calculator));
        registry.register(Arc::new(CurrentDatetime));
        registry.register(Arc::new(HttpFetch::default()));
        registry
    }

    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name().to_string(), tool);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// Validates `args` against the tool's schema, then runs it.
    pub async fn invoke(&self, name: &str, args: Value) -> Result<String, ToolError> {
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::Unknown(name.to_string()))?;
        invoke_tool(tool.as_ref(), args).await
    }

    /// Sorted by name.
    pub fn list(&self) -> Vec<ToolInfo> {
        self.tools
            .values()
            .map(|tool| ToolInfo {
                name: tool.name().to_string(),
                description: tool.description().to_string(),
                args_schema: tool.args_schema(),
            })
            .collect()
    }
}

/// Validation + run for one tool.
pub async fn invoke_tool(tool: &dyn Tool, args: Value) -> Result<String, ToolError> {
    if let Err(problems) = schema::validate(&tool.args_schema(), &args) {
        return Err(ToolError::InvalidArguments(format!(
            "Arguments validation failed: {}",
            problems.join("; ")
        )));
    }
    tool.run(args).await
}
