//! A run's trace, built from its stored events: crew → task → agent → LLM call / tool
//! call, each span with the start and end times of its events and the attributes of
//! OpenTelemetry's GenAI semantic conventions (operation, model, provider, token counts,
//! tool name). Prompts, completions, tool arguments and results, and error texts (which
//! can quote them) are only included when the operator turns content capture on.
//!
//! Ids are derived from the execution (trace id) and the event that opened a span (span
//! id), so a retried export sends the same spans again rather than new ones.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opentelemetry::KeyValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::events::StoredEvent;

/// What a span is, for its kind and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanRole {
    Crew,
    Task,
    Agent,
    LlmCall,
    ToolCall,
}

/// One span, ready to become OpenTelemetry's `SpanData`.
#[derive(Debug, Clone)]
pub struct SpanNode {
    pub span_id: u64,
    pub parent: Option<u64>,
    pub role: SpanRole,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub attributes: Vec<KeyValue>,
    /// `Some` when it failed, with a description (a fixed word unless content is captured).
    pub error: Option<String>,
}

impl SpanNode {
    #[cfg(test)]
    pub fn attribute(&self, key: &str) -> Option<&opentelemetry::Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }
}

/// The execution's facts the root span needs.
pub struct TraceRoot<'a> {
    pub execution_id: Uuid,
    pub crew_name: &'a str,
    /// succeeded | failed | cancelled
    pub status: &'a str,
    pub end_code: Option<&'a str>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A span id from the execution and the seq of the event that opened the span (0: root).
pub fn span_id(execution_id: Uuid, seq: i64) -> u64 {
    let digest = Sha256::new()
        .chain_update(execution_id.as_bytes())
        .chain_update(seq.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Zero is the invalid span id.
    u64::from_be_bytes(bytes).max(1)
}

struct Builder {
    execution_id: Uuid,
    capture: bool,
    root_id: u64,
    done: Vec<SpanNode>,
    open: Vec<SpanNode>,
    tasks: HashMap<String, u64>,
    agents: HashMap<(String, String), u64>,
    calls: HashMap<String, u64>,
    /// Open tool calls by (task, agent, tool): started and ended in order.
    tools: HashMap<(String, String, String), Vec<u64>>,
}

fn text(data: &Value, key: &str) -> String {
    data[key].as_str().unwrap_or_default().to_string()
}

/// `openai/gpt-4o-mini` → (`openai`, `gpt-4o-mini`); a bare name is OpenAI's (as CrewAI).
fn provider_and_model(model: &str) -> (String, String) {
    match model.split_once('/') {
        Some((provider, name)) => (provider.to_string(), name.to_string()),
        None => ("openai".to_string(), model.to_string()),
    }
}

/// GenAI messages (`[{role, parts: [{type: text, content}]}]`) from chat messages.
fn genai_messages(messages: &Value) -> String {
    let converted: Vec<Value> = messages
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    json!({"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(converted).to_string()
}

impl Builder {
    fn open_span(
        &mut self,
        seq: i64,
        parent: u64,
        role: SpanRole,
        name: String,
        at: DateTime<Utc>,
        attributes: Vec<KeyValue>,
    ) -> u64 {
        let id = span_id(self.execution_id, seq);
        self.open.push(SpanNode {
            span_id: id,
            parent: Some(parent),
            role,
            name,
            start: at,
            end: at,
            attributes,
            error: None,
        });
        id
    }

    /// Ends an open span; `error` marks it failed.
    fn close(&mut self, id: u64, at: DateTime<Utc>, extra: Vec<KeyValue>, error: Option<String>) {
        if let Some(index) = self.open.iter().position(|s| s.span_id == id) {
            let mut span = self.open.remove(index);
            span.end = at.max(span.start);
            span.attributes.extend(extra);
            span.error = error;
            self.done.push(span);
        }
    }

    /// Ends every open span (a restarted attempt, or the end of the run).
    fn close_all(&mut self, at: DateTime<Utc>, why: &str) {
        for mut span in std::mem::take(&mut self.open) {
            span.end = at.max(span.start);
            span.error = Some(why.to_string());
            self.done.push(span);
        }
        self.tasks.clear();
        self.agents.clear();
        self.calls.clear();
        self.tools.clear();
    }

    fn failure(&self, data: &Value) -> String {
        if self.capture {
            text(data, "error")
        } else {
            "failed".into()
        }
    }

    fn parent_of(&self, task_id: &str, agent_role: &str) -> u64 {
        self.agents
            .get(&(task_id.to_string(), agent_role.to_string()))
            .or_else(|| self.tasks.get(task_id))
            .copied()
            .unwrap_or(self.root_id)
    }

    fn event(&mut self, event: &StoredEvent) {
        let (data, at, seq) = (&event.data, event.created_at, event.seq);
        match event.event_type.as_str() {
            "execution.started" => self.close_all(at, "interrupted"),
            "task.started" => {
                let task_id = text(data, "task_id");
                let name = data["name"].as_str().unwrap_or(&task_id).to_string();
                let attributes = vec![
                    KeyValue::new("crewgraph.task_id", task_id.clone()),
                    KeyValue::new("gen_ai.agent.name", text(data, "agent_role")),
                ];
                let root = self.root_id;
                let id = self.open_span(
                    seq,
                    root,
                    SpanRole::Task,
                    format!("task {name}"),
                    at,
                    attributes,
                );
                self.tasks.insert(task_id, id);
            }
            "task.completed" | "task.failed" => {
                if let Some(id) = self.tasks.remove(&text(data, "task_id")) {
                    let error = (event.event_type == "task.failed").then(|| self.failure(data));
                    self.close(id, at, vec![], error);
                }
            }
            "agent.started" => {
                let (task_id, role) = (text(data, "task_id"), text(data, "agent_role"));
                let parent = self.tasks.get(&task_id).copied().unwrap_or(self.root_id);
                let attributes = vec![
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.name", role.clone()),
                ];
                let name = format!("invoke_agent {role}");
                let id = self.open_span(seq, parent, SpanRole::Agent, name, at, attributes);
                self.agents.insert((task_id, role), id);
            }
            "agent.completed" => {
                let key = (text(data, "task_id"), text(data, "agent_role"));
                if let Some(id) = self.agents.remove(&key) {
                    self.close(id, at, vec![], None);
                }
            }
            "llm.started" => self.llm_started(event),
            "llm.completed" | "llm.failed" => self.llm_ended(event),
            "tool.started" => self.tool_started(event),
            "tool.completed" | "tool.failed" => self.tool_ended(event),
            _ => {}
        }
    }

    fn llm_started(&mut self, event: &StoredEvent) {
        let data = &event.data;
        let model = text(data, "model");
        let (provider, name) = provider_and_model(&model);
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider),
            KeyValue::new("gen_ai.request.model", name.clone()),
            KeyValue::new("gen_ai.agent.name", text(data, "agent_role")),
        ];
        if self.capture {
            attributes.push(KeyValue::new(
                "gen_ai.input.messages",
                genai_messages(&data["messages"]),
            ));
        }
        let parent = self.parent_of(&text(data, "task_id"), &text(data, "agent_role"));
        let id = self.open_span(
            event.seq,
            parent,
            SpanRole::LlmCall,
            format!("chat {name}"),
            event.created_at,
            attributes,
        );
        self.calls.insert(text(data, "call_id"), id);
    }

    fn llm_ended(&mut self, event: &StoredEvent) {
        let data = &event.data;
        let Some(id) = self.calls.remove(&text(data, "call_id")) else {
            return;
        };
        if event.event_type == "llm.failed" {
            let extra = vec![KeyValue::new("error.type", "llm_call_failed")];
            let error = Some(self.failure(data));
            return self.close(id, event.created_at, extra, error);
        }
        let usage = &data["usage"];
        let count = |key: &str| usage[key].as_i64().unwrap_or(0);
        let (_, model) = provider_and_model(&text(data, "model"));
        let mut extra = vec![
            KeyValue::new("gen_ai.response.model", model),
            KeyValue::new("gen_ai.usage.input_tokens", count("prompt_tokens")),
            KeyValue::new("gen_ai.usage.output_tokens", count("completion_tokens")),
        ];
        if count("cached_prompt_tokens") > 0 {
            extra.push(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                count("cached_prompt_tokens"),
            ));
        }
        if self.capture {
            let output = json!([{"role": "assistant",
                                 "parts": [{"type": "text", "content": data["response"]}]}]);
            extra.push(KeyValue::new("gen_ai.output.messages", output.to_string()));
        }
        self.close(id, event.created_at, extra, None);
    }

    fn tool_key(data: &Value) -> (String, String, String) {
        (
            text(data, "task_id"),
            text(data, "agent_role"),
            text(data, "tool_name"),
        )
    }

    fn tool_started(&mut self, event: &StoredEvent) {
        let data = &event.data;
        let tool = text(data, "tool_name");
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", tool.clone()),
        ];
        if self.capture {
            attributes.push(KeyValue::new(
                "gen_ai.tool.call.arguments",
                data["tool_args"].to_string(),
            ));
        }
        let parent = self.parent_of(&text(data, "task_id"), &text(data, "agent_role"));
        let id = self.open_span(
            event.seq,
            parent,
            SpanRole::ToolCall,
            format!("execute_tool {tool}"),
            event.created_at,
            attributes,
        );
        self.tools.entry(Self::tool_key(data)).or_default().push(id);
    }

    fn tool_ended(&mut self, event: &StoredEvent) {
        let data = &event.data;
        let open = self.tools.entry(Self::tool_key(data)).or_default();
        if open.is_empty() {
            return;
        }
        let id = open.remove(0);
        if event.event_type == "tool.failed" {
            let error = Some(self.failure(data));
            return self.close(id, event.created_at, vec![], error);
        }
        let mut extra = vec![KeyValue::new(
            "crewgraph.tool.from_cache",
            data["from_cache"].as_bool().unwrap_or(false),
        )];
        if self.capture {
            extra.push(KeyValue::new(
                "gen_ai.tool.call.result",
                text(data, "output"),
            ));
        }
        self.close(id, event.created_at, extra, None);
    }
}

/// The run's spans, the root (crew) first. `events` are in seq order.
pub fn build_spans(root: &TraceRoot<'_>, events: &[StoredEvent], capture: bool) -> Vec<SpanNode> {
    let root_id = span_id(root.execution_id, 0);
    let mut builder = Builder {
        execution_id: root.execution_id,
        capture,
        root_id,
        done: Vec::new(),
        open: Vec::new(),
        tasks: HashMap::new(),
        agents: HashMap::new(),
        calls: HashMap::new(),
        tools: HashMap::new(),
    };
    let start = events
        .iter()
        .find(|e| e.event_type == "execution.started")
        .map_or(root.start, |e| e.created_at.min(root.start));
    for event in events {
        builder.event(event);
    }
    builder.close_all(root.end, "interrupted");
    let error = match root.status {
        "succeeded" => None,
        "cancelled" => Some("cancelled".to_string()),
        _ => Some(format!("failed: {}", root.end_code.unwrap_or("error"))),
    };
    let mut attributes = vec![
        KeyValue::new("crewgraph.execution_id", root.execution_id.to_string()),
        KeyValue::new("crewgraph.status", root.status.to_string()),
    ];
    if let Some(code) = root.end_code {
        attributes.push(KeyValue::new("crewgraph.end_code", code.to_string()));
    }
    let crew = SpanNode {
        span_id: root_id,
        parent: None,
        role: SpanRole::Crew,
        name: format!("crew {}", root.crew_name),
        start,
        end: root.end.max(start),
        attributes,
        error,
    };
    let mut spans = vec![crew];
    builder.done.sort_by_key(|s| (s.start, s.span_id));
    spans.extend(builder.done);
    spans
}

#[cfg(test)]
#[path = "traces_tests.rs"]
mod tests;
