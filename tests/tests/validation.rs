//! Validation through HTTP: every problem code, the plan, stored-graph validation, node
//! types and single-node validation.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api, body, expect_error, get, post, signed_up, workspace};
use serde_json::{Value, json};

fn agent(id: &str) -> Value {
    json!({"id": id, "type": "agent", "data": {"role": format!("Agent {id}"), "goal": "g", "backstory": "b"}})
}

fn task(id: &str, y: i64) -> Value {
    json!({"id": id, "type": "task", "position": {"x": 0, "y": y},
           "data": {"description": format!("Task {id} about {{topic}}"), "expected_output": "out"}})
}

fn edge(id: &str, source: &str, target: &str) -> Value {
    json!({"id": id, "source": source, "target": target})
}

/// A valid graph plus extra nodes and edges.
fn graph_with(extra_nodes: Vec<Value>, extra_edges: Vec<Value>) -> Value {
    let mut nodes = vec![agent("a"), task("t", 0)];
    nodes.extend(extra_nodes);
    let mut edges = vec![edge("e-a-t", "a", "t")];
    edges.extend(extra_edges);
    json!({"nodes": nodes, "edges": edges})
}

fn with_data(mut node: Value, key: &str, value: Value) -> Value {
    node["data"][key] = value;
    node
}

/// (code, document) for every code reported with a 200 (the document is readable).
fn readable_cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "dangling_edge",
            graph_with(vec![], vec![edge("x", "a", "ghost")]),
        ),
        ("self_loop", graph_with(vec![], vec![edge("x", "t", "t")])),
        (
            "meaningless_edge",
            graph_with(vec![], vec![edge("x", "t", "a")]),
        ),
        (
            "duplicate_edge",
            graph_with(vec![], vec![edge("x", "a", "t")]),
        ),
        (
            "multiple_crew_nodes",
            graph_with(
                vec![
                    json!({"id": "c1", "type": "crew"}),
                    json!({"id": "c2", "type": "crew"}),
                ],
                vec![],
            ),
        ),
        (
            "multiple_llms",
            graph_with(
                vec![
                    json!({"id": "l1", "type": "llm", "data": {"model": "openai/gpt-4o"}}),
                    json!({"id": "l2", "type": "llm", "data": {"model": "openai/gpt-4o-mini"}}),
                ],
                vec![edge("x1", "l1", "a"), edge("x2", "l2", "a")],
            ),
        ),
        ("no_task", json!({"nodes": [agent("a")], "edges": []})),
        (
            "isolated_node",
            graph_with(
                vec![json!({"id": "h", "type": "tool", "data": {"tool": "hello_world"}})],
                vec![],
            ),
        ),
        (
            "task_context_cycle",
            graph_with(
                vec![task("t2", 10)],
                vec![
                    edge("x1", "a", "t2"),
                    edge("x2", "t", "t2"),
                    edge("x3", "t2", "t"),
                ],
            ),
        ),
        (
            "missing_field",
            json!({"nodes": [with_data(agent("a"), "goal", json!("  ")), task("t", 0)], "edges": [edge("e", "a", "t")]}),
        ),
        (
            "invalid_field",
            json!({"nodes": [with_data(agent("a"), "max_iter", json!(0)), task("t", 0)], "edges": [edge("e", "a", "t")]}),
        ),
        (
            "invalid_max_execution_time",
            json!({"nodes": [with_data(agent("a"), "max_execution_time", json!(-5)), task("t", 0)], "edges": [edge("e", "a", "t")]}),
        ),
        (
            "invalid_output_file",
            json!({"nodes": [agent("a"), with_data(task("t", 0), "output_file", json!("../etc/passwd"))], "edges": [edge("e", "a", "t")]}),
        ),
        (
            "unknown_tool",
            graph_with(
                vec![json!({"id": "h", "type": "tool", "data": {"tool": "teleport"}})],
                vec![edge("x", "h", "a")],
            ),
        ),
        (
            "missing_agent_in_task",
            json!({"nodes": [task("t", 0)], "edges": []}),
        ),
        (
            "multiple_agents_for_task",
            graph_with(vec![agent("b")], vec![edge("x", "b", "t")]),
        ),
        (
            "missing_manager_llm",
            graph_with(
                vec![json!({"id": "c", "type": "crew", "data": {"process": "hierarchical"}})],
                vec![],
            ),
        ),
        (
            "async_task_count",
            json!({"nodes": [agent("a"), task("t", 0),
                             with_data(task("t2", 10), "async_execution", json!(true)),
                             with_data(task("t3", 20), "async_execution", json!(true))],
                   "edges": [edge("e1", "a", "t"), edge("e2", "a", "t2"), edge("e3", "a", "t3")]}),
        ),
        (
            "conflicting_context",
            json!({"nodes": [agent("a"), task("t1", 0), with_data(task("t2", 10), "no_context", json!(true))],
                   "edges": [edge("e1", "a", "t1"), edge("e2", "a", "t2"), edge("c", "t1", "t2")]}),
        ),
        (
            "context_on_future_task",
            json!({"nodes": [agent("a"), with_data(task("t1", 0), "order", json!(2)),
                             with_data(task("t2", 10), "order", json!(1))],
                   "edges": [edge("e1", "a", "t1"), edge("e2", "a", "t2"), edge("c", "t1", "t2")]}),
        ),
        (
            "async_context_sequential",
            json!({"nodes": [agent("a"), with_data(task("t1", 0), "async_execution", json!(true)),
                             with_data(task("t2", 10), "async_execution", json!(true)), task("t3", 20)],
                   "edges": [edge("e1", "a", "t1"), edge("e2", "a", "t2"), edge("e3", "a", "t3"),
                             edge("c", "t1", "t2")]}),
        ),
    ]
}

/// (code, document, JSON path) for every code that makes a document unreadable (422).
fn unreadable_cases() -> Vec<(&'static str, Value, &'static str)> {
    let many_nodes: Vec<Value> = (0..501).map(|i| task(&format!("t{i}"), i)).collect();
    let many_edges: Vec<Value> = (0..2001)
        .map(|i| edge(&format!("e{i}"), "a", "t"))
        .collect();
    vec![
        (
            "invalid_document",
            json!({"nodes": "many", "edges": []}),
            "$.nodes",
        ),
        (
            "too_many_nodes",
            json!({"nodes": many_nodes, "edges": []}),
            "$.nodes",
        ),
        (
            "too_many_edges",
            json!({"nodes": [agent("a"), task("t", 0)], "edges": many_edges}),
            "$.edges",
        ),
        (
            "invalid_id",
            json!({"nodes": [{"id": 5, "type": "task"}], "edges": []}),
            "$.nodes[0].id",
        ),
        (
            "unknown_node_type",
            json!({"nodes": [{"id": "r", "type": "robot"}], "edges": []}),
            "$.nodes[0].type",
        ),
        (
            "invalid_edge",
            json!({"nodes": [task("t", 0)], "edges": [{"id": "e", "source": "t"}]}),
            "$.edges[0].target",
        ),
    ]
}

/// `POST /api/v1/graphs/validate` with this document; the answer's body.
async fn validated(api: &crewgraph_tests::TestApi, token: &str, document: &Value) -> Value {
    body(
        post(
            api,
            "/api/v1/graphs/validate",
            Some(token),
            json!({ "document": document }),
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn every_validation_code_is_reported_over_http() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "validator@example.com").await;
    for (code, document) in readable_cases() {
        let response = post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": document}),
        )
        .await;
        assert_eq!(response.status(), 200, "{code}");
        let result = body(response).await;
        let codes: Vec<&str> = result["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter_map(|p| p["code"].as_str())
            .collect();
        assert!(codes.contains(&code), "{code} not in {codes:?}");
        let warning_only = matches!(code, "duplicate_edge" | "isolated_node");
        assert_eq!(result["valid"], warning_only, "{code}: {result}");
        assert_eq!(result["plan"].is_object(), warning_only, "{code}");
    }
    for (code, document, path) in unreadable_cases() {
        let response = post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": document}),
        )
        .await;
        let refused = expect_error(response, 422, "invalid_graph_document").await;
        let problems = refused["error"]["details"]["problems"]
            .as_array()
            .expect("problems")
            .clone();
        assert!(
            problems
                .iter()
                .any(|p| p["code"] == code && p["path"] == path),
            "{code} at {path} not in {problems:?}"
        );
    }
    // Duplicate ids make a document unreadable too (React Flow cannot render it).
    let duplicate_nodes = json!({"nodes": [task("t", 0), task("t", 1)], "edges": []});
    let refused = expect_error(
        post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": duplicate_nodes}),
        )
        .await,
        422,
        "invalid_graph_document",
    )
    .await;
    assert_eq!(
        refused["error"]["details"]["problems"][0]["code"],
        "duplicate_node_id"
    );
    let duplicate_edges = graph_with(vec![task("t2", 5)], vec![edge("e-a-t", "a", "t2")]);
    let refused = expect_error(
        post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": duplicate_edges}),
        )
        .await,
        422,
        "invalid_graph_document",
    )
    .await;
    assert_eq!(
        refused["error"]["details"]["problems"][0]["code"],
        "duplicate_edge_id"
    );
}

#[tokio::test]
async fn a_valid_graph_validates_with_its_plan_and_stored_graphs_validate_too() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "planner@example.com").await;
    let document = json!({
        "nodes": [agent("a"), task("second", 0), task("first", 50),
                  {"id": "h", "type": "tool", "data": {"tool": "hello_world"}}],
        "edges": [edge("e1", "a", "first"), edge("e2", "a", "second"),
                  edge("e3", "first", "second"), edge("e4", "h", "a")]
    });
    let result = validated(&api, &token, &document).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["problems"], json!([]));
    let plan = &result["plan"];
    assert_eq!(plan["process"], "sequential");
    let order: Vec<&str> = plan["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["node_id"].as_str().expect("id"))
        .collect();
    assert_eq!(order, ["first", "second"]);
    assert_eq!(plan["tasks"][1]["context"], json!(["first"]));
    assert!(
        plan["tasks"][0].get("context").is_none_or(Value::is_null),
        "default context"
    );
    assert_eq!(plan["tasks"][0]["tools"], json!(["hello_world"]));
    assert_eq!(plan["agents"][0]["tools"], json!(["hello_world"]));
    assert_eq!(plan["inputs"], json!(["topic"]));

    let ws = workspace(&api, &token, "W").await;
    let created = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&token),
            json!({"name": "G", "document": document}),
        )
        .await,
    )
    .await;
    let stored = body(
        post(
            &api,
            &format!(
                "/api/v1/graphs/{}/validate",
                created["id"].as_str().expect("id")
            ),
            Some(&token),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(stored["plan"], result["plan"]);
    let oversized = json!({"nodes": [with_data(agent("a"), "backstory", json!("z".repeat(1_100_000)))], "edges": []});
    expect_error(
        post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": oversized}),
        )
        .await,
        413,
        "graph_too_large",
    )
    .await;
}

#[tokio::test]
async fn the_plan_keeps_the_authors_context_order_no_context_and_refuses_future_context() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "context@example.com").await;
    // CrewAI `context=[t2, t1]` for t3 (the order of its incoming edges), `context=[]` for t4.
    let document = json!({
        "nodes": [agent("a"), task("t1", 0), task("t2", 10), task("t3", 20),
                  with_data(task("t4", 30), "no_context", json!(true))],
        "edges": [edge("e1", "a", "t1"), edge("e2", "a", "t2"), edge("e3", "a", "t3"),
                  edge("e4", "a", "t4"), edge("c1", "t2", "t3"), edge("c2", "t1", "t3")]
    });
    let result = validated(&api, &token, &document).await;
    assert_eq!(result["valid"], true, "{result}");
    let tasks = &result["plan"]["tasks"];
    assert_eq!(tasks[2]["node_id"], "t3");
    assert_eq!(tasks[2]["context"], json!(["t2", "t1"]));
    assert_eq!(tasks[3]["context"], json!([]), "no context");
    assert!(
        tasks[0].get("context").is_none_or(Value::is_null),
        "default context"
    );

    let future = json!({
        "nodes": [agent("a"), with_data(task("t1", 0), "order", json!(2)),
                  with_data(task("t2", 10), "order", json!(1))],
        "edges": [edge("e1", "a", "t1"), edge("e2", "a", "t2"), edge("c", "t1", "t2")]
    });
    let result = validated(&api, &token, &future).await;
    assert_eq!(result["valid"], false, "{result}");
    let problems = result["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{result}");
    let problem = &problems[0];
    assert_eq!(problem["code"], "context_on_future_task");
    assert_eq!(problem["severity"], "error");
    assert_eq!(
        problem["message"],
        "Task 'Task t2 about {topic}' has a context dependency on a future task 'Task t1 about {topic}', which is not allowed."
    );
    assert_eq!(
        (&problem["node_id"], &problem["field"]),
        (&json!("t2"), &json!("order"))
    );
}

#[tokio::test]
async fn node_types_describe_forms_and_single_nodes_validate() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "forms@example.com").await;
    let catalogue = body(get(&api, "/api/v1/node-types", &token).await).await;
    let kinds: Vec<&str> = catalogue["node_types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| t["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["agent", "task", "tool", "llm", "crew"]);
    let agent_type = &catalogue["node_types"][0];
    assert_eq!(
        agent_type["schema"]["required"],
        json!(["role", "goal", "backstory"])
    );
    assert_eq!(
        agent_type["schema"]["properties"]["max_iter"]["default"],
        25
    );
    assert_eq!(agent_type["connects_to"], json!(["task"]));
    let tool_type = &catalogue["node_types"][2];
    let tool_names: Vec<&str> = catalogue["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert!(tool_names.contains(&"hello_world"));
    assert_eq!(
        tool_type["schema"]["properties"]["tool"]["enum"],
        json!(tool_names)
    );
    let hello = catalogue["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "hello_world")
        .expect("hello_world");
    assert_eq!(hello["args_schema"]["required"], json!(["name"]));
    let tools = body(get(&api, "/api/v1/tools", &token).await).await;
    assert_eq!(tools["items"], catalogue["tools"]);

    let checked = body(
        post(
            &api,
            "/api/v1/node-types/agent/validate",
            Some(&token),
            json!({"id": "a1", "data": {"role": "R", "goal": "", "max_rpm": "fast"}}),
        )
        .await,
    )
    .await;
    assert_eq!(checked["valid"], false);
    let problems: Vec<(String, String)> = checked["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap_or_default().to_string(),
                p["field"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("missing_field".to_string(), "goal".to_string()),
            ("missing_field".to_string(), "backstory".to_string()),
            ("invalid_field".to_string(), "max_rpm".to_string()),
        ]
    );
    assert_eq!(checked["problems"][0]["node_id"], "a1");
    let ok = body(
        post(
            &api,
            "/api/v1/node-types/tool/validate",
            Some(&token),
            json!({"data": {"tool": "hello_world"}}),
        )
        .await,
    )
    .await;
    assert_eq!(ok, json!({"valid": true, "problems": []}));
    let unknown = body(
        post(
            &api,
            "/api/v1/node-types/tool/validate",
            Some(&token),
            json!({"data": {"tool": "nope"}}),
        )
        .await,
    )
    .await;
    assert_eq!(unknown["problems"][0]["code"], "unknown_tool");
    expect_error(
        post(
            &api,
            "/api/v1/node-types/robot/validate",
            Some(&token),
            json!({"data": {}}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let not_an_object = expect_error(
        post(
            &api,
            "/api/v1/node-types/agent/validate",
            Some(&token),
            json!({"data": "role"}),
        )
        .await,
        422,
        "invalid_type",
    )
    .await;
    assert_eq!(not_an_object["error"]["details"]["field"], "data");
}
