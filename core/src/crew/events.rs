//! The events a run emits (DESIGN §4), each the counterpart of one of CrewAI 0.121.1's own
//! (crewai-reference.md §8), carrying the same key fields minus anything secret. The
//! runtime emits them in order through an [`EventSink`]; the worker stores them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crew::output::{CrewOutput, TaskOutput, UsageMetrics};

/// Where the runtime sends its events. `emit` must not block: the worker's sink queues
/// them for a writer task that batches `llm.delta` events.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: RuntimeEvent);

    /// Waits until the sink has room for more events. The runtime awaits it before every
    /// LLM and tool call, so a sink with a bounded writer holds runs back there (instead
    /// of letting events pile up in memory) while `emit` itself never blocks.
    fn ready(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// `{"type": "task.started", "data": {...}}` when serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RuntimeEvent {
    /// The API's kickoff (no CrewAI counterpart: CrewAI has no queue).
    #[serde(rename = "execution.queued")]
    ExecutionQueued { inputs: Value },
    /// `crew_kickoff_started`.
    #[serde(rename = "execution.started")]
    ExecutionStarted {
        crew_name: String,
        inputs: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
    },
    /// `task_started`.
    #[serde(rename = "task.started")]
    TaskStarted {
        task_id: String,
        #[serde(default)]
        name: Option<String>,
        description: String,
        agent_role: String,
        context: String,
    },
    /// `agent_execution_started`.
    #[serde(rename = "agent.started")]
    AgentStarted {
        task_id: String,
        agent_role: String,
        tools: Vec<String>,
        task_prompt: String,
    },
    /// `llm_call_started`.
    #[serde(rename = "llm.started")]
    LlmStarted {
        call_id: String,
        task_id: String,
        agent_role: String,
        model: String,
        messages: Value,
    },
    /// `llm_stream_chunk`.
    #[serde(rename = "llm.delta")]
    LlmDelta {
        call_id: String,
        agent_role: String,
        chunk: String,
    },
    /// `llm_call_completed`.
    #[serde(rename = "llm.completed")]
    LlmCompleted {
        call_id: String,
        agent_role: String,
        model: String,
        response: String,
        usage: UsageMetrics,
    },
    /// `llm_call_failed`.
    #[serde(rename = "llm.failed")]
    LlmFailed {
        call_id: String,
        agent_role: String,
        model: String,
        error: String,
    },
    /// `tool_usage_started`.
    #[serde(rename = "tool.started")]
    ToolStarted {
        task_id: String,
        agent_role: String,
        tool_name: String,
        tool_args: Value,
    },
    /// `tool_usage_finished`.
    #[serde(rename = "tool.completed")]
    ToolCompleted {
        task_id: String,
        agent_role: String,
        tool_name: String,
        tool_args: Value,
        output: String,
        from_cache: bool,
    },
    /// `tool_usage_error` (and selection/validation errors).
    #[serde(rename = "tool.failed")]
    ToolFailed {
        task_id: String,
        agent_role: String,
        tool_name: String,
        tool_args: Value,
        error: String,
    },
    /// A delegation tool handed work to a coworker.
    #[serde(rename = "agent.delegated")]
    AgentDelegated {
        task_id: String,
        from_role: String,
        to_role: String,
        /// `Delegate work to coworker` or `Ask question to coworker`.
        tool_name: String,
        task: String,
    },
    /// `agent_execution_completed`.
    #[serde(rename = "agent.completed")]
    AgentCompleted {
        task_id: String,
        agent_role: String,
        output: String,
    },
    /// `task_completed`.
    #[serde(rename = "task.completed")]
    TaskCompleted { task_id: String, output: TaskOutput },
    /// `task_failed`.
    #[serde(rename = "task.failed")]
    TaskFailed { task_id: String, error: String },
    /// `crew_kickoff_completed`.
    #[serde(rename = "execution.succeeded")]
    ExecutionSucceeded { output: CrewOutput },
    /// `crew_kickoff_failed`.
    #[serde(rename = "execution.failed")]
    ExecutionFailed { code: String, error: String },
    /// The run was stopped on request.
    #[serde(rename = "execution.cancelled")]
    ExecutionCancelled { reason: String },
}

impl RuntimeEvent {
    /// The `type` string (`task.started`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            RuntimeEvent::ExecutionQueued { .. } => "execution.queued",
            RuntimeEvent::ExecutionStarted { .. } => "execution.started",
            RuntimeEvent::TaskStarted { .. } => "task.started",
            RuntimeEvent::AgentStarted { .. } => "agent.started",
            RuntimeEvent::LlmStarted { .. } => "llm.started",
            RuntimeEvent::LlmDelta { .. } => "llm.delta",
            RuntimeEvent::LlmCompleted { .. } => "llm.completed",
            RuntimeEvent::LlmFailed { .. } => "llm.failed",
            RuntimeEvent::ToolStarted { .. } => "tool.started",
            RuntimeEvent::ToolCompleted { .. } => "tool.completed",
            RuntimeEvent::ToolFailed { .. } => "tool.failed",
            RuntimeEvent::AgentDelegated { .. } => "agent.delegated",
            RuntimeEvent::AgentCompleted { .. } => "agent.completed",
            RuntimeEvent::TaskCompleted { .. } => "task.completed",
            RuntimeEvent::TaskFailed { .. } => "task.failed",
            RuntimeEvent::ExecutionSucceeded { .. } => "execution.succeeded",
            RuntimeEvent::ExecutionFailed { .. } => "execution.failed",
            RuntimeEvent::ExecutionCancelled { .. } => "execution.cancelled",
        }
    }

    /// Terminal events end an execution's stream.
    pub fn is_terminal(&self) -> bool {
        crate::executions::lifecycle::is_terminal_event(self.type_name())
    }

    /// The `data` object alone.
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut object)) => object.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// Every event type, for documentation and the OpenAPI enum.
pub const EVENT_TYPES: &[&str] = &[
    "execution.queued",
    "execution.started",
    "task.started",
    "agent.started",
    "llm.started",
    "llm.delta",
    "llm.completed",
    "llm.failed",
    "tool.started",
    "tool.completed",
    "tool.failed",
    "agent.delegated",
    "agent.completed",
    "task.completed",
    "task.failed",
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
];
