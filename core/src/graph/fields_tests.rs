//! The field descriptors against their three readers: the form schema, validation, and
//! planning + compilation. Each test fails when one of them knows a field the
//! descriptors do not, or a descriptor is left unread.

use crate::outbound::OutboundPolicy;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::crew::tools::ToolInfo;
use crate::graph::compile::compile;
use crate::graph::document::NodeKind;
use crate::graph::fields::{CrewAi, FieldDefault, Use, fields_of, reads};
use crate::graph::node_types::node_type;
use crate::graph::validate::{validate, validate_node};

fn tools(name: &str) -> bool {
    name == "hello_world"
}

fn described(kind: NodeKind) -> BTreeSet<&'static str> {
    fields_of(kind).iter().map(|f| f.name).collect()
}

#[test]
fn the_form_schema_has_exactly_the_described_fields() {
    let catalogue = [ToolInfo {
        name: "hello_world".into(),
        description: "Greets".into(),
        args_schema: json!({"type": "object"}),
    }];
    for kind in NodeKind::ALL {
        let schema = node_type(kind, &catalogue).schema;
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(properties, described(kind), "{}", kind.as_str());
        let required: Vec<&str> = fields_of(kind)
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        let schema_required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(schema_required, required, "{}", kind.as_str());
    }
}

/// Data with every required field set right.
fn minimal_data(kind: NodeKind) -> Map<String, Value> {
    let mut data = Map::new();
    for field in fields_of(kind).iter().filter(|f| f.required) {
        let value = if field.name == "tool" {
            "hello_world"
        } else {
            "x"
        };
        data.insert(field.name.into(), json!(value));
    }
    data
}

#[test]
fn validation_checks_every_described_field() {
    for kind in NodeKind::ALL {
        assert_eq!(
            validate_node(
                kind,
                "n",
                minimal_data(kind),
                &tools,
                &OutboundPolicy::default()
            ),
            vec![],
            "{} with its required fields is valid",
            kind.as_str()
        );
        for field in fields_of(kind) {
            let mut data = minimal_data(kind);
            // An object is the wrong type for every field.
            data.insert(field.name.into(), json!({"nested": true}));
            let problems = validate_node(kind, "n", data, &tools, &OutboundPolicy::default());
            assert!(
                problems
                    .iter()
                    .any(|p| p.field.as_deref() == Some(field.name)),
                "validation ignores {}.{}: {problems:?}",
                kind.as_str(),
                field.name
            );
        }
    }
}

/// A graph that sets every field: two agents (one with a linked llm node, one inline),
/// two tasks, a tool, and a crew — planned and compiled once sequential, once hierarchical.
fn every_field_graph(process: &str) -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "R", "goal": "G", "backstory": "B",
             "llm": "openai/gpt-4o", "tool_calling": "native", "max_iter": 3, "max_rpm": 10,
             "max_execution_time": 60, "max_retry_limit": 1, "allow_delegation": true,
             "use_system_prompt": false, "respect_context_window": false, "cache": false,
             "verbose": true}},
            {"id": "b", "type": "agent", "data": {"role": "R2", "goal": "G", "backstory": "B"}},
            {"id": "t1", "type": "task", "data": {"name": "first", "description": "D {topic}",
             "expected_output": "E", "async_execution": false, "markdown": true, "order": 1,
             "output_file": "out/{topic}.md"}},
            {"id": "t2", "type": "task", "data": {"description": "D2", "expected_output": "E2"}},
            {"id": "h", "type": "tool", "data": {"tool": "hello_world"}},
            {"id": "m", "type": "llm", "data": {"model": "anthropic/claude-3-5-haiku-latest",
             "base_url": "https://llm.example.com/v1", "api_key_id": "0193a1b2-0000-7000-8000-000000000001",
             "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "seed": 7, "timeout": 30,
             "stream": false}},
            {"id": "c", "type": "crew", "data": {"name": "crew", "process": process,
             "manager_llm": "openai/gpt-4o", "max_rpm": 20, "cache": false}}
        ],
        "edges": [
            {"id": "e1", "source": "a", "target": "t1"},
            {"id": "e2", "source": "b", "target": "t2"},
            {"id": "e3", "source": "t1", "target": "t2"},
            {"id": "e4", "source": "h", "target": "a"},
            {"id": "e5", "source": "m", "target": "b"}
        ]
    })
}

#[test]
fn planning_and_compilation_read_exactly_the_described_fields_that_run() {
    reads::take();
    for process in ["sequential", "hierarchical"] {
        let document = every_field_graph(process);
        let validation = validate(&document, &tools, &OutboundPolicy::default());
        let plan = validation.plan.expect("valid");
        compile(&document, &plan);
    }
    let read = reads::take();
    for (kind, name) in &read {
        assert!(
            described(*kind).contains(name),
            "planning or compilation reads {}.{name}, which has no descriptor",
            kind.as_str()
        );
    }
    for kind in NodeKind::ALL {
        for field in fields_of(kind) {
            let is_read = read.contains(&(kind, field.name));
            match field.used {
                Use::Runs => assert!(
                    is_read,
                    "{}.{} is described as changing the run, but nothing reads it",
                    kind.as_str(),
                    field.name
                ),
                Use::CheckedOnly => assert!(
                    !is_read,
                    "{}.{} is described as checked only, but it is read",
                    kind.as_str(),
                    field.name
                ),
            }
        }
    }
}

/// Our default as Python source, to compare with CrewAI's.
fn python(default: FieldDefault) -> String {
    match default {
        FieldDefault::Unstated | FieldDefault::Null => "None".into(),
        FieldDefault::Bool(true) => "True".into(),
        FieldDefault::Bool(false) => "False".into(),
        FieldDefault::Count(count) => count.to_string(),
        FieldDefault::Text(text) => format!("'{text}'"),
    }
}

#[test]
fn defaults_are_crewai_defaults_unless_the_difference_is_explained() {
    for kind in NodeKind::ALL {
        for field in fields_of(kind) {
            let name = format!("{}.{}", kind.as_str(), field.name);
            match field.crewai {
                CrewAi::Required => assert!(field.required, "{name} is required in CrewAI"),
                CrewAi::Default(crewai) => {
                    assert_eq!(python(field.default), crewai, "{name}")
                }
                CrewAi::Differs { crewai, why } => {
                    assert_ne!(python(field.default), crewai, "{name}: stale difference");
                    assert!(!why.is_empty(), "{name}");
                }
                CrewAi::Absent => {}
            }
        }
    }
}
