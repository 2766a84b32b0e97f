//! The node types a graph may hold, each with a JSON Schema of its `data` (fields, types,
//! defaults, enums and descriptions from CrewAI 0.121.1's parameters), so the front end
//! can build its forms from them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::crew::spec::{DEFAULT_MAX_ITER, DEFAULT_MAX_RETRY_LIMIT, DEFAULT_MODEL};
use crate::crew::tools::ToolInfo;
use crate::graph::document::NodeKind;

#[derive(Debug, Clone, Serialize)]
pub struct NodeType {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of the node's `data`.
    pub schema: Value,
    /// Node types an edge may come from into this one.
    pub accepts_edges_from: Vec<&'static str>,
    /// Node types an edge from this one may go to.
    pub connects_to: Vec<&'static str>,
}

/// Every node type; the tool node's `tool` field enumerates `tools`.
pub fn node_types(tools: &[ToolInfo]) -> Vec<NodeType> {
    NodeKind::ALL
        .into_iter()
        .map(|kind| node_type(kind, tools))
        .collect()
}

pub fn node_type(kind: NodeKind, tools: &[ToolInfo]) -> NodeType {
    let (title, description, schema) = match kind {
        NodeKind::Agent => ("Agent", AGENT_DESCRIPTION, agent_schema()),
        NodeKind::Task => ("Task", TASK_DESCRIPTION, task_schema()),
        NodeKind::Tool => ("Tool", TOOL_DESCRIPTION, tool_schema(tools)),
        NodeKind::Llm => ("LLM", LLM_DESCRIPTION, llm_schema()),
        NodeKind::Crew => ("Crew", CREW_DESCRIPTION, crew_schema()),
    };
    let (accepts_edges_from, connects_to) = match kind {
        NodeKind::Agent => (vec!["tool", "llm"], vec!["task"]),
        NodeKind::Task => (vec!["agent", "task", "tool"], vec!["task"]),
        NodeKind::Tool => (vec![], vec!["agent", "task"]),
        NodeKind::Llm => (vec![], vec!["agent", "crew"]),
        NodeKind::Crew => (vec!["llm"], vec![]),
    };
    NodeType {
        kind: kind.as_str(),
        title,
        description,
        schema,
        accepts_edges_from,
        connects_to,
    }
}

const AGENT_DESCRIPTION: &str = "An autonomous unit with a role, a goal and a backstory that performs tasks, \
     uses tools and may delegate to coworkers. Edges: agent → task (performs it); \
     tool → agent (may use it); llm → agent (its model).";
const TASK_DESCRIPTION: &str = "A piece of work with a description and an expected output. Edges: \
     agent → task (who performs it); task → task (the target sees the source's output as \
     context); tool → task (tools for this task only, instead of the agent's).";
const TOOL_DESCRIPTION: &str = "A tool from the tool repository. Edges: tool → agent, tool → task.";
const LLM_DESCRIPTION: &str = "A model and its settings. Edges: llm → agent (the agent's model), \
     llm → crew (the manager's model in a hierarchical crew). An agent's inline `llm` \
     string is the shorthand.";
const CREW_DESCRIPTION: &str =
    "Crew-wide settings (at most one crew node; defaults apply without one).";

fn agent_schema() -> Value {
    json!({
        "type": "object",
        "required": ["role", "goal", "backstory"],
        "properties": {
            "role": {"type": "string", "minLength": 1, "description": "Defines the agent's function and expertise within the crew. `{placeholders}` are filled from the kickoff inputs."},
            "goal": {"type": "string", "minLength": 1, "description": "The individual objective that guides the agent's decision-making. `{placeholders}` allowed."},
            "backstory": {"type": "string", "minLength": 1, "description": "Provides context and personality to the agent, enriching interactions. `{placeholders}` allowed."},
            "llm": {"type": "string", "default": DEFAULT_MODEL, "examples": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "ollama/llama3.1"], "description": "Model as a LiteLLM-style string (shorthand for an llm node linked to this agent)."},
            "tool_calling": {"type": "string", "enum": ["react", "native"], "default": "react", "description": "`react`: CrewAI's Thought/Action/Observation text protocol. `native`: the provider's function calling."},
            "max_iter": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_ITER, "description": "Maximum iterations before the agent must give its best answer."},
            "max_rpm": {"type": ["integer", "null"], "minimum": 1, "default": null, "description": "Maximum requests per minute to the model (no limit when unset)."},
            "max_execution_time": {"type": ["integer", "null"], "minimum": 1, "default": null, "description": "Maximum seconds for one task execution."},
            "max_retry_limit": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_RETRY_LIMIT, "description": "Maximum retries when an error occurs."},
            "allow_delegation": {"type": "boolean", "default": false, "description": "Allow the agent to delegate work to, or ask questions of, the other agents."},
            "use_system_prompt": {"type": "boolean", "default": true, "description": "Send the role-playing prompt as a system message (else everything goes in one user message)."},
            "respect_context_window": {"type": "boolean", "default": true, "description": "Summarise the conversation when it outgrows the model's context window."},
            "cache": {"type": "boolean", "default": true, "description": "Reuse results of identical tool calls."},
            "verbose": {"type": "boolean", "default": false, "description": "Accepted for compatibility; every step is an event anyway."}
        }
    })
}

fn task_schema() -> Value {
    json!({
        "type": "object",
        "required": ["description", "expected_output"],
        "properties": {
            "name": {"type": ["string", "null"], "description": "A name for the task (shown in events and outputs)."},
            "description": {"type": "string", "minLength": 1, "description": "What the task is about. `{placeholders}` are filled from the kickoff inputs."},
            "expected_output": {"type": "string", "minLength": 1, "description": "A clear definition of the expected outcome. `{placeholders}` allowed."},
            "async_execution": {"type": "boolean", "default": false, "description": "Run asynchronously, alongside the following tasks (a crew may end with at most one)."},
            "markdown": {"type": "boolean", "default": false, "description": "Ask for a Markdown-formatted final answer."},
            "order": {"type": ["number", "null"], "description": "Breaks ties in task order between tasks that context edges do not order (lower first); then the vertical position."},
            "output_file": {"type": ["string", "null"], "description": "Accepted and validated as CrewAI does; outputs are stored with the execution, not written to the server's disk."}
        }
    })
}

fn tool_schema(tools: &[ToolInfo]) -> Value {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    json!({
        "type": "object",
        "required": ["tool"],
        "properties": {
            "tool": {"type": "string", "enum": names, "description": "The tool's name in the tool repository (`GET /api/v1/tools` lists them with their argument schemas)."}
        }
    })
}

fn llm_schema() -> Value {
    json!({
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "examples": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "ollama/llama3.1"], "description": "LiteLLM-style model string: provider/model."},
            "base_url": {"type": ["string", "null"], "format": "uri", "description": "An OpenAI-compatible (or Anthropic) endpoint instead of the provider's own."},
            "api_key_id": {"type": ["string", "null"], "format": "uuid", "description": "One of your stored provider keys (`/api/v1/api-keys`); by default your newest key for the provider is used."},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2, "description": "Sampling temperature."},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": "Nucleus sampling."},
            "max_tokens": {"type": ["integer", "null"], "minimum": 1, "description": "Maximum tokens of one completion."},
            "seed": {"type": ["integer", "null"], "description": "Seed for providers that support deterministic sampling."},
            "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 3600, "description": "Seconds to wait for one request."},
            "stream": {"type": "boolean", "default": true, "description": "Stream tokens (each chunk becomes an `llm.delta` event)."}
        }
    })
}

fn crew_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"], "description": "The crew's name (shown in events)."},
            "process": {"type": "string", "enum": ["sequential", "hierarchical"], "default": "sequential", "description": "`sequential`: tasks run in order, each by its agent. `hierarchical`: a manager plans, delegates and validates."},
            "manager_llm": {"type": ["string", "null"], "description": "The manager's model (hierarchical process; or link an llm node to the crew)."},
            "max_rpm": {"type": ["integer", "null"], "minimum": 1, "description": "Maximum requests per minute for every agent."},
            "cache": {"type": "boolean", "default": true, "description": "Share one tool-result cache among the agents."}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_object_schema_and_tool_names_are_enumerated() {
        let tools = vec![ToolInfo {
            name: "hello_world".into(),
            description: "Greets".into(),
            args_schema: json!({"type": "object"}),
        }];
        let types = node_types(&tools);
        assert_eq!(types.len(), 5);
        for node_type in &types {
            assert_eq!(node_type.schema["type"], "object", "{}", node_type.kind);
        }
        let tool = types.iter().find(|t| t.kind == "tool").expect("tool type");
        assert_eq!(
            tool.schema["properties"]["tool"]["enum"],
            json!(["hello_world"])
        );
        let agent = types
            .iter()
            .find(|t| t.kind == "agent")
            .expect("agent type");
        assert_eq!(agent.schema["properties"]["max_iter"]["default"], 25);
    }
}
