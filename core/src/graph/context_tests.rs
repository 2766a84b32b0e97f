//! Task context as CrewAI 0.121.1 has it: an explicit context in the author's order,
//! "no context" (`context=[]`) apart from the default, and no context from a task the
//! author's `order` puts later.

use crate::outbound::OutboundPolicy;
use serde_json::{Value, json};

use crate::crew::spec::TaskContext;
use crate::graph::compile::compile_document;
use crate::graph::validate::validate;

fn tools(_: &str) -> bool {
    false
}

fn task(id: &str, y: f64, extra: Value) -> Value {
    let mut data = json!({"description": format!("Do {id}"), "expected_output": "A result"});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    json!({"id": id, "type": "task", "position": {"x": 0, "y": y}, "data": data})
}

fn edge(id: &str, source: &str, target: &str) -> Value {
    json!({"id": id, "source": source, "target": target})
}

/// One agent performing `tasks`, plus `context_edges`.
fn graph(tasks: Vec<Value>, context_edges: Vec<Value>) -> Value {
    let mut nodes = vec![
        json!({"id": "a", "type": "agent", "data": {"role": "R", "goal": "G", "backstory": "B"}}),
    ];
    let mut edges: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap_or_default();
            edge(&format!("a-{id}"), "a", id)
        })
        .collect();
    nodes.extend(tasks);
    edges.extend(context_edges);
    json!({"nodes": nodes, "edges": edges})
}

#[test]
fn an_explicit_context_keeps_the_order_of_its_edges() {
    // CrewAI `context=[t2, t1]`: t2's output comes first although t1 runs first.
    let document = graph(
        vec![
            task("t1", 0.0, json!({})),
            task("t2", 100.0, json!({})),
            task("t3", 200.0, json!({})),
        ],
        vec![edge("c1", "t2", "t3"), edge("c2", "t1", "t3")],
    );
    let (spec, plan) =
        compile_document(&document, &tools, &OutboundPolicy::default()).expect("valid");
    let order: Vec<&str> = plan.tasks.iter().map(|t| t.node_id.as_str()).collect();
    assert_eq!(order, ["t1", "t2", "t3"]);
    assert_eq!(
        plan.tasks[2].context,
        Some(vec!["t2".to_string(), "t1".to_string()])
    );
    assert_eq!(spec.tasks[2].context, TaskContext::Tasks(vec![1, 0]));
}

#[test]
fn no_context_is_not_the_default_context() {
    let document = graph(
        vec![
            task("t1", 0.0, json!({})),
            task("t2", 100.0, json!({"no_context": true})),
            task("t3", 200.0, json!({"no_context": false})),
        ],
        vec![],
    );
    let (spec, plan) =
        compile_document(&document, &tools, &OutboundPolicy::default()).expect("valid");
    assert_eq!(plan.tasks[1].context, Some(vec![]), "CrewAI `context=[]`");
    assert_eq!(spec.tasks[1].context, TaskContext::Tasks(vec![]));
    assert_eq!(plan.tasks[2].context, None, "CrewAI's default context");
    assert_eq!(spec.tasks[2].context, TaskContext::Default);
}

#[test]
fn no_context_and_context_edges_together_are_an_error() {
    let document = graph(
        vec![
            task("t1", 0.0, json!({})),
            task("t2", 100.0, json!({"no_context": true})),
        ],
        vec![edge("c", "t1", "t2")],
    );
    let validation = validate(&document, &tools, &OutboundPolicy::default());
    let problem = validation
        .problems
        .iter()
        .find(|p| p.code == "conflicting_context")
        .unwrap_or_else(|| panic!("no conflicting_context in {:?}", validation.problems));
    assert_eq!(
        (problem.node_id.as_deref(), problem.field.as_deref()),
        (Some("t2"), Some("no_context"))
    );
    assert!(validation.plan.is_none());
}

#[test]
fn an_order_before_a_task_it_takes_context_from_is_crewais_future_task_error() {
    // `order` puts "write" first, but it takes context from "research".
    let mut research = task("research", 0.0, json!({"order": 2}));
    research["data"]["description"] = json!("Research {topic}");
    let mut write = task("write", 100.0, json!({"order": 1}));
    write["data"]["description"] = json!("Write about {topic}");
    let document = graph(vec![research, write], vec![edge("c", "research", "write")]);
    let validation = validate(&document, &tools, &OutboundPolicy::default());
    let problem = validation
        .problems
        .iter()
        .find(|p| p.code == "context_on_future_task")
        .unwrap_or_else(|| panic!("no context_on_future_task in {:?}", validation.problems));
    assert_eq!(
        problem.message,
        "Task 'Write about {topic}' has a context dependency on a future task 'Research {topic}', which is not allowed."
    );
    assert_eq!(
        (problem.node_id.as_deref(), problem.field.as_deref()),
        (Some("write"), Some("order"))
    );
    assert!(validation.plan.is_none(), "not silently reordered");
}

#[test]
fn orders_that_agree_with_the_context_or_are_missing_are_fine() {
    let document = graph(
        vec![
            task("t1", 0.0, json!({"order": 1})),
            task("t2", 100.0, json!({"order": 1})),
            task("t3", 200.0, json!({"order": 3})),
            task("t4", -100.0, json!({})),
        ],
        vec![
            edge("c1", "t1", "t3"),
            edge("c2", "t2", "t1"),
            edge("c3", "t4", "t2"),
        ],
    );
    let validation = validate(&document, &tools, &OutboundPolicy::default());
    assert!(validation.is_valid(), "{:?}", validation.problems);
    let plan = validation.plan.expect("plan");
    let order: Vec<&str> = plan.tasks.iter().map(|t| t.node_id.as_str()).collect();
    assert_eq!(order, ["t4", "t2", "t1", "t3"]);
}
