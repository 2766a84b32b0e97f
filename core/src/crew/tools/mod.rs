//! The tool repository: a [`Tool`] trait, a [`ToolRegistry`] and the built-in tools.
//! Arguments are validated against each tool's JSON Schema before it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

mod hello_world;

pub use hello_world::HelloWorld;

/// A failure a tool reports; the agent sees its message as an observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the schema.
    #[error("{0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    /// The name agents call it by (CrewAI matches it case-insensitively).
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema (an object schema) of the arguments.
    fn args_schema(&self) -> Value;
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
