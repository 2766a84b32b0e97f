//! One test per validation code, plus ordering.

use serde_json::{Value, json};

use crate::graph::problems::Severity;
use crate::graph::validate::{Process, Validation, validate};
use crate::outbound::OutboundPolicy;

fn known_tools(name: &str) -> bool {
    matches!(name, "hello_world" | "calculator")
}

fn check(document: Value) -> Validation {
    validate(&document, &known_tools, &OutboundPolicy::default())
}

fn codes(validation: &Validation) -> Vec<&'static str> {
    validation.problems.iter().map(|p| p.code).collect()
}

fn agent(id: &str) -> Value {
    json!({"id": id, "type": "agent", "data": {"role": "Researcher {topic}", "goal": "Find facts", "backstory": "Curious"}})
}

fn task(id: &str, y: f64) -> Value {
    json!({"id": id, "type": "task", "position": {"x": 0, "y": y},
           "data": {"description": format!("Do {id}"), "expected_output": "A result"}})
}

fn edge(id: &str, source: &str, target: &str) -> Value {
    json!({"id": id, "source": source, "target": target})
}

fn valid_graph() -> Value {
    json!({
        "nodes": [agent("a1"), task("t1", 0.0), task("t2", 100.0),
                  {"id": "h", "type": "tool", "data": {"tool": "hello_world"}},
                  {"id": "c", "type": "crew", "data": {"process": "sequential"}}],
        "edges": [edge("e1", "a1", "t1"), edge("e2", "a1", "t2"), edge("e3", "t1", "t2"), edge("e4", "h", "a1")]
    })
}

#[test]
fn a_valid_graph_has_a_plan() {
    let validation = check(valid_graph());
    assert!(validation.is_valid(), "{:?}", validation.problems);
    let plan = validation.plan.expect("plan");
    assert_eq!(plan.process, Process::Sequential);
    let order: Vec<&str> = plan.tasks.iter().map(|t| t.node_id.as_str()).collect();
    assert_eq!(order, vec!["t1", "t2"]);
    assert_eq!(plan.tasks[0].agent.as_deref(), Some("a1"));
    assert_eq!(
        plan.tasks[0].context, None,
        "no incoming task edge: CrewAI's default context"
    );
    assert_eq!(plan.tasks[1].context, Some(vec!["t1".to_string()]));
    assert_eq!(plan.tasks[1].tools, vec!["hello_world"]);
    assert_eq!(plan.inputs, vec!["topic"]);
}

#[test]
fn order_follows_edges_then_order_then_position() {
    let mut graph = valid_graph();
    graph["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(task("t0", 500.0));
    graph["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(task("t9", -100.0));
    graph["nodes"][6]["data"]["order"] = json!(5);
    for (i, t) in ["t0", "t9"].iter().enumerate() {
        graph["edges"]
            .as_array_mut()
            .expect("edges")
            .push(edge(&format!("x{i}"), "a1", t));
    }
    let plan = check(graph.clone()).plan.expect("plan");
    let order: Vec<&str> = plan.tasks.iter().map(|t| t.node_id.as_str()).collect();
    // t9 has order 5, which beats "no order"; then by position: t1 (y=0), after which t2
    // (y=100, waiting for t1) is ready and sits above t0 (y=500).
    assert_eq!(order, vec!["t9", "t1", "t2", "t0"]);
    assert_eq!(check(graph).plan.expect("plan"), plan, "deterministic");
}

fn assert_code(document: Value, code: &str, severity: Severity) {
    let validation = check(document);
    let problem = validation
        .problems
        .iter()
        .find(|p| p.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", codes(&validation)));
    assert_eq!(problem.severity, severity, "{code}");
    assert!(!problem.message.is_empty());
    if severity == Severity::Error {
        assert!(validation.plan.is_none(), "{code} must block the plan");
    }
}

#[test]
fn structural_codes() {
    assert_code(json!([1, 2]), "invalid_document", Severity::Error);
    assert_code(
        json!({"nodes": {"a": 1}}),
        "invalid_document",
        Severity::Error,
    );
    assert_code(
        json!({"nodes": [{"id": 5, "type": "task"}]}),
        "invalid_id",
        Severity::Error,
    );
    assert_code(
        json!({"nodes": [{"id": "x", "type": "robot"}]}),
        "unknown_node_type",
        Severity::Error,
    );
    assert_code(
        json!({"nodes": [agent("a"), agent("a")]}),
        "duplicate_node_id",
        Severity::Error,
    );
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e1", "a1", "t1"));
    assert_code(g, "duplicate_edge_id", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "a1", "ghost"));
    assert_code(g, "dangling_edge", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(json!({"id": "e9", "source": "a1"}));
    assert_code(g, "invalid_edge", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "t1", "t1"));
    assert_code(g, "self_loop", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "t1", "a1"));
    assert_code(g, "meaningless_edge", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "a1", "t1"));
    assert_code(g, "duplicate_edge", Severity::Warning);
    let mut g = valid_graph();
    g["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "c2", "type": "crew"}));
    assert_code(g, "multiple_crew_nodes", Severity::Error);
    assert_code(
        json!({"nodes": [agent("a")], "edges": []}),
        "no_task",
        Severity::Error,
    );
    let mut g = valid_graph();
    g["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(agent("lonely"));
    assert_code(g, "isolated_node", Severity::Warning);
    let nodes: Vec<Value> = (0..501).map(|i| agent(&format!("a{i}"))).collect();
    assert_code(json!({"nodes": nodes}), "too_many_nodes", Severity::Error);
    let edges: Vec<Value> = (0..2001)
        .map(|i| edge(&format!("e{i}"), "a", "b"))
        .collect();
    assert_code(
        json!({"nodes": [], "edges": edges}),
        "too_many_edges",
        Severity::Error,
    );
}

#[test]
fn field_codes() {
    let mut g = valid_graph();
    g["nodes"][0]["data"]["role"] = json!("");
    assert_code(g.clone(), "missing_field", Severity::Error);
    let problem = check(g)
        .problems
        .into_iter()
        .find(|p| p.code == "missing_field")
        .expect("problem");
    assert_eq!(
        (problem.node_id.as_deref(), problem.field.as_deref()),
        (Some("a1"), Some("role"))
    );
    assert_eq!(
        problem.message,
        "role must be provided either directly or through config"
    );
    let mut g = valid_graph();
    g["nodes"][0]["data"]["max_iter"] = json!(0);
    assert_code(g, "invalid_field", Severity::Error);
    let mut g = valid_graph();
    g["nodes"][0]["data"]["max_execution_time"] = json!(-1);
    assert_code(g, "invalid_max_execution_time", Severity::Error);
    let mut g = valid_graph();
    g["nodes"][1]["data"]["output_file"] = json!("../etc/passwd");
    assert_code(g, "invalid_output_file", Severity::Error);
    let mut g = valid_graph();
    g["nodes"][3]["data"]["tool"] = json!("rm_rf");
    assert_code(g, "unknown_tool", Severity::Error);
    let mut g = valid_graph();
    g["nodes"][4]["data"]["process"] = json!("parallel");
    assert_code(g, "invalid_field", Severity::Error);
}

#[test]
fn crewai_codes() {
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .retain(|e| e["id"] != "e2");
    assert_code(g, "missing_agent_in_task", Severity::Error);
    let mut g = valid_graph();
    g["nodes"].as_array_mut().expect("nodes").push(agent("a2"));
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "a2", "t1"));
    assert_code(g, "multiple_agents_for_task", Severity::Error);
    let mut g = valid_graph();
    g["nodes"][4]["data"]["process"] = json!("hierarchical");
    assert_code(g.clone(), "missing_manager_llm", Severity::Error);
    g["nodes"][4]["data"]["manager_llm"] = json!("openai/gpt-4o-mini");
    let hierarchical = check(g);
    assert!(hierarchical.is_valid(), "{:?}", hierarchical.problems);
    let mut g = valid_graph();
    g["nodes"][1]["data"]["async_execution"] = json!(true);
    g["nodes"][2]["data"]["async_execution"] = json!(true);
    assert_code(g.clone(), "async_task_count", Severity::Error);
    assert_code(g, "async_context_sequential", Severity::Error);
    let mut g = valid_graph();
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "t2", "t1"));
    assert_code(g, "task_context_cycle", Severity::Error);
    let mut g = valid_graph();
    g["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "l1", "type": "llm", "data": {"model": "openai/gpt-4o"}}));
    g["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "l2", "type": "llm", "data": {"model": "openai/gpt-4o"}}));
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e8", "l1", "a1"));
    g["edges"]
        .as_array_mut()
        .expect("edges")
        .push(edge("e9", "l2", "a1"));
    assert_code(g, "multiple_llms", Severity::Error);
}

#[test]
fn hierarchical_tasks_may_be_unassigned() {
    let g = json!({
        "nodes": [agent("a1"), task("t1", 0.0), {"id": "c", "type": "crew", "data": {"process": "hierarchical", "manager_llm": "openai/gpt-4o"}}],
        "edges": []
    });
    let validation = check(g);
    assert!(!codes(&validation).contains(&"missing_agent_in_task"));
    let plan = validation.plan.expect("warnings do not block");
    assert_eq!(plan.tasks[0].agent, None);
}
