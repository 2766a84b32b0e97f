//! Property test: random edits of a valid graph never make validation panic, and the same
//! document always gives the same problems and plan (and the same compiled spec).

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::graph::compile::compile;
use crate::graph::validate::validate;
use crate::outbound::OutboundPolicy;

fn tools(name: &str) -> bool {
    matches!(name, "hello_world" | "calculator")
}

fn base() -> Value {
    json!({
        "nodes": [
            {"id": "r", "type": "agent", "position": {"x": 0, "y": 0}, "data": {"role": "Researcher {topic}", "goal": "g", "backstory": "b", "llm": "openai/gpt-4o-mini"}},
            {"id": "w", "type": "agent", "position": {"x": 0, "y": 100}, "data": {"role": "Writer", "goal": "g", "backstory": "b", "allow_delegation": true}},
            {"id": "t1", "type": "task", "position": {"x": 200, "y": 0}, "data": {"description": "Research {topic}", "expected_output": "facts"}},
            {"id": "t2", "type": "task", "position": {"x": 200, "y": 100}, "data": {"description": "Write", "expected_output": "article", "async_execution": false}},
            {"id": "t3", "type": "task", "position": {"x": 200, "y": 200}, "data": {"description": "Edit", "expected_output": "final", "order": 1}},
            {"id": "h", "type": "tool", "data": {"tool": "hello_world"}},
            {"id": "m", "type": "llm", "data": {"model": "openai/gpt-4o"}},
            {"id": "c", "type": "crew", "data": {"process": "sequential"}}
        ],
        "edges": [
            {"id": "e1", "source": "r", "target": "t1"},
            {"id": "e2", "source": "w", "target": "t2"},
            {"id": "e3", "source": "w", "target": "t3"},
            {"id": "e4", "source": "t1", "target": "t2"},
            {"id": "e5", "source": "h", "target": "r"},
            {"id": "e6", "source": "m", "target": "w"}
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    RemoveNode(usize),
    RemoveEdge(usize),
    AddEdge(usize, usize),
    SetType(usize, &'static str),
    SetField(usize, &'static str, Value),
    DuplicateNode(usize),
    RenameNode(usize, String),
    SetProcess(&'static str),
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z{}_ -]{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({"nested": true})),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = prop::sample::select(vec![
        "role",
        "goal",
        "backstory",
        "description",
        "expected_output",
        "tool",
        "model",
        "max_iter",
        "async_execution",
        "no_context",
        "order",
        "output_file",
        "process",
        "manager_llm",
        "tool_calling",
        "temperature",
        "max_execution_time",
    ]);
    let kind = prop::sample::select(vec!["agent", "task", "tool", "llm", "crew", "robot"]);
    prop_oneof![
        (0usize..12).prop_map(Edit::RemoveNode),
        (0usize..12).prop_map(Edit::RemoveEdge),
        (0usize..12, 0usize..12).prop_map(|(a, b)| Edit::AddEdge(a, b)),
        (0usize..12, kind).prop_map(|(i, k)| Edit::SetType(i, k)),
        (0usize..12, field, any_json()).prop_map(|(i, f, v)| Edit::SetField(i, f, v)),
        (0usize..12).prop_map(Edit::DuplicateNode),
        (0usize..12, "[a-z0-9]{0,3}").prop_map(|(i, id)| Edit::RenameNode(i, id)),
        prop::sample::select(vec!["sequential", "hierarchical", "parallel"])
            .prop_map(Edit::SetProcess),
    ]
}

fn apply(document: &mut Value, edit: &Edit) {
    let node_count = document["nodes"].as_array().map_or(0, Vec::len);
    let edge_count = document["edges"].as_array().map_or(0, Vec::len);
    let node_id =
        |document: &Value, i: usize| document["nodes"][i % node_count.max(1)]["id"].clone();
    match edit {
        Edit::RemoveNode(i) if node_count > 0 => {
            if let Some(nodes) = document["nodes"].as_array_mut() {
                nodes.remove(i % node_count);
            }
        }
        Edit::RemoveEdge(i) if edge_count > 0 => {
            if let Some(edges) = document["edges"].as_array_mut() {
                edges.remove(i % edge_count);
            }
        }
        Edit::AddEdge(a, b) if node_count > 0 => {
            let edge = json!({"id": format!("x{a}_{b}_{edge_count}"), "source": node_id(document, *a), "target": node_id(document, *b)});
            if let Some(edges) = document["edges"].as_array_mut() {
                edges.push(edge);
            }
        }
        Edit::SetType(i, kind) if node_count > 0 => {
            document["nodes"][i % node_count]["type"] = json!(kind)
        }
        Edit::SetField(i, field, value) if node_count > 0 => {
            document["nodes"][i % node_count]["data"][*field] = value.clone()
        }
        Edit::DuplicateNode(i) if node_count > 0 => {
            let copy = document["nodes"][i % node_count].clone();
            if let Some(nodes) = document["nodes"].as_array_mut() {
                nodes.push(copy);
            }
        }
        Edit::RenameNode(i, id) if node_count > 0 => {
            document["nodes"][i % node_count]["id"] = json!(id)
        }
        Edit::SetProcess(process) => {
            if let Some(crew) = document["nodes"]
                .as_array_mut()
                .and_then(|nodes| nodes.iter_mut().find(|n| n["type"] == "crew"))
            {
                crew["data"]["process"] = json!(process);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_edits_never_panic_and_validation_is_deterministic(edits in prop::collection::vec(edit(), 0..8)) {
        let mut document = base();
        for edit in &edits {
            apply(&mut document, edit);
        }
        let first = validate(&document, &tools, &OutboundPolicy::default());
        let reparsed: Value = serde_json::from_str(&document.to_string()).expect("round trip");
        let second = validate(&reparsed, &tools, &OutboundPolicy::default());
        prop_assert_eq!(&first.problems, &second.problems);
        prop_assert_eq!(&first.plan, &second.plan);
        if let Some(plan) = &first.plan {
            prop_assert_eq!(compile(&document, plan), compile(&reparsed, plan));
            // Every planned task's explicit context comes earlier in the order.
            for (index, task) in plan.tasks.iter().enumerate() {
                for context in task.context.iter().flatten() {
                    let position = plan.tasks.iter().position(|t| &t.node_id == context);
                    prop_assert!(position.is_some_and(|p| p < index));
                }
            }
        }
    }
}
