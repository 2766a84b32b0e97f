//! `CrewSpec`: the seam between graphs and the runtime (DESIGN §9). A graph compiles into
//! one (`core::graph::compile`); the worker, `crewgraph-worker run` and the tests run one.
//! Field names and defaults follow CrewAI 0.121.1's Agent/Task/Crew/LLM parameters.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// CrewAI's default model when an agent names none (`create_llm(None)`).
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_MAX_ITER: u32 = 25;
pub const DEFAULT_MAX_RETRY_LIMIT: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    #[default]
    Sequential,
    Hierarchical,
}

/// A crew ready to run. Tasks are in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrewSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub process: Process,
    pub agents: Vec<AgentSpec>,
    pub tasks: Vec<TaskSpec>,
    /// The manager's model in a hierarchical crew (CrewAI `manager_llm`).
    #[serde(default)]
    pub manager_llm: Option<LlmSpec>,
    /// Requests per minute for every agent (CrewAI crew `max_rpm`).
    #[serde(default)]
    pub max_rpm: Option<u32>,
    /// One shared tool-result cache (CrewAI crew `cache`, default true).
    #[serde(default = "yes")]
    pub cache: bool,
}

/// How an agent talks to tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolCalling {
    /// CrewAI 0.121.1's ReAct text protocol (Thought / Action / Action Input / Observation).
    #[default]
    React,
    /// The provider's native function calling (opt-in per agent).
    Native,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The graph node id (stable handle in events).
    pub id: String,
    pub role: String,
    pub goal: String,
    pub backstory: String,
    pub llm: LlmSpec,
    /// Tool names from the tool repository.
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub allow_delegation: bool,
    #[serde(default = "default_max_iter")]
    pub max_iter: u32,
    #[serde(default)]
    pub max_rpm: Option<u32>,
    /// Seconds per task execution.
    #[serde(default)]
    pub max_execution_time: Option<u64>,
    #[serde(default = "default_max_retry_limit")]
    pub max_retry_limit: u32,
    #[serde(default = "yes")]
    pub use_system_prompt: bool,
    #[serde(default = "yes")]
    pub respect_context_window: bool,
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default)]
    pub tool_calling: ToolCalling,
}

/// Which earlier outputs a task sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", content = "tasks")]
pub enum TaskContext {
    /// CrewAI's default (`NOT_SPECIFIED`): every earlier output in the crew's output list.
    #[default]
    Default,
    /// Explicit context: indexes into `CrewSpec::tasks` (always earlier tasks).
    Tasks(Vec<usize>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The graph node id (stable handle in events and outputs).
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub description: String,
    pub expected_output: String,
    /// Index into `CrewSpec::agents`; `None` only in hierarchical crews.
    #[serde(default)]
    pub agent: Option<usize>,
    #[serde(default)]
    pub context: TaskContext,
    /// The task's own tools; when empty the agent's tools apply (CrewAI).
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub async_execution: bool,
    #[serde(default)]
    pub markdown: bool,
}

/// A model and how to reach it (CrewAI `LLM`). `None` fields are not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmSpec {
    /// LiteLLM-style model string: `openai/gpt-4o-mini`, `anthropic/claude-...`,
    /// `ollama/llama3.1`, or a bare name (OpenAI).
    pub model: String,
    /// An OpenAI-compatible (or Anthropic) base URL overriding the provider's.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A stored provider key of the crew's owner (`/api/v1/api-keys`).
    #[serde(default)]
    pub api_key_id: Option<Uuid>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// Seconds per request.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Stream tokens (each delta becomes an `llm.delta` event).
    #[serde(default = "yes")]
    pub stream: bool,
}

impl LlmSpec {
    pub fn model(model: impl Into<String>) -> Self {
        LlmSpec {
            model: model.into(),
            base_url: None,
            api_key_id: None,
            temperature: None,
            top_p: None,
            max_tokens: None,
            seed: None,
            timeout: None,
            stream: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_iter() -> u32 {
    DEFAULT_MAX_ITER
}

fn default_max_retry_limit() -> u32 {
    DEFAULT_MAX_RETRY_LIMIT
}
