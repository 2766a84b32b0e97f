//! The node types a graph may hold, each with a JSON Schema of its `data` generated from
//! the field descriptors (`fields`: types, defaults, enums and descriptions from CrewAI
//! 0.121.1's parameters), so the front end can build its forms from them.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::crew::tools::ToolInfo;
use crate::graph::document::NodeKind;
use crate::graph::fields::{Field, FieldDefault, FieldType, fields_of};

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
    let (title, description) = match kind {
        NodeKind::Agent => ("Agent", AGENT_DESCRIPTION),
        NodeKind::Task => ("Task", TASK_DESCRIPTION),
        NodeKind::Tool => ("Tool", TOOL_DESCRIPTION),
        NodeKind::Llm => ("LLM", LLM_DESCRIPTION),
        NodeKind::Crew => ("Crew", CREW_DESCRIPTION),
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
        schema: data_schema(kind, tools),
        accepts_edges_from,
        connects_to,
    }
}

const AGENT_DESCRIPTION: &str = "An autonomous unit with a role, a goal and a backstory that performs tasks, \
     uses tools and may delegate to coworkers. Edges: agent → task (performs it); \
     tool → agent (may use it); llm → agent (its model).";
const TASK_DESCRIPTION: &str = "A piece of work with a description and an expected output. Edges: \
     agent → task (who performs it); task → task (the target sees the source's output as \
     context, in the order of these edges; `no_context` for none); tool → task (tools for this task only, instead of the agent's).";
const TOOL_DESCRIPTION: &str = "A tool from the tool repository. Edges: tool → agent, tool → task.";
const LLM_DESCRIPTION: &str = "A model and its settings. Edges: llm → agent (the agent's model), \
     llm → crew (the manager's model in a hierarchical crew). An agent's inline `llm` \
     string is the shorthand.";
const CREW_DESCRIPTION: &str =
    "Crew-wide settings (at most one crew node; defaults apply without one).";

/// The JSON Schema of a kind's `data`, generated from its field descriptors.
fn data_schema(kind: NodeKind, tools: &[ToolInfo]) -> Value {
    let fields = fields_of(kind);
    let properties: Map<String, Value> = fields
        .iter()
        .map(|field| (field.name.to_string(), field_schema(field, tools)))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn field_schema(field: &Field, tools: &[ToolInfo]) -> Value {
    let base = match field.ty {
        FieldType::Bool => "boolean",
        FieldType::Integer { .. } => "integer",
        FieldType::Number { .. } => "number",
        _ => "string",
    };
    let mut schema = Map::new();
    schema.insert(
        "type".into(),
        if field.nullable {
            json!([base, "null"])
        } else {
            json!(base)
        },
    );
    let mut set = |key: &str, value: Value| {
        schema.insert(key.to_string(), value);
    };
    match field.ty {
        FieldType::Text if field.required => set("minLength", json!(1)),
        FieldType::HttpUrl => set("format", json!("uri")),
        FieldType::Uuid => set("format", json!("uuid")),
        FieldType::ToolName => set(
            "enum",
            json!(tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()),
        ),
        FieldType::Choice(options) => set("enum", json!(options)),
        FieldType::Integer { min: Some(min) } => set("minimum", json!(min)),
        FieldType::Number { min, above, max } => {
            for (key, bound) in [
                ("minimum", min),
                ("exclusiveMinimum", above),
                ("maximum", max),
            ] {
                if let Some(bound) = bound {
                    set(key, json_number(bound));
                }
            }
        }
        _ => {}
    }
    match field.default {
        FieldDefault::Unstated => {}
        FieldDefault::Null => set("default", Value::Null),
        FieldDefault::Bool(value) => set("default", json!(value)),
        FieldDefault::Count(value) => set("default", json!(value)),
        FieldDefault::Text(value) => set("default", json!(value)),
    }
    if !field.examples.is_empty() {
        set("examples", json!(field.examples));
    }
    set("description", json!(field.description));
    Value::Object(schema)
}

/// Whole bounds as integers (`0`, not `0.0`), as a hand-written schema has them.
fn json_number(bound: f64) -> Value {
    if bound.fract() == 0.0 && bound.abs() < 1e15 {
        json!(bound as i64)
    } else {
        json!(bound)
    }
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
