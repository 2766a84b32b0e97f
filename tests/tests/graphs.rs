//! Graphs through HTTP: CRUD, optimistic concurrency, drafts, refusals that store nothing,
//! version history, duplicate, export/import, listing, owner scoping — and that what a
//! graph says about task context reaches the model when it runs.

use std::time::Duration;

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api, body, expect_error, get, post, send, signed_up, workspace};
use crewgraph_tests::pipeline::{create_graph, kickoff, spawn_worker, wait_for_status};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use reqwest::Method;
use serde_json::{Value, json};

fn valid_document() -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "agent", "position": {"x": 0, "y": 0},
             "data": {"role": "Greeter", "goal": "Greet", "backstory": "Kind", "llm": "openai/gpt-4o-mini"}},
            {"id": "h", "type": "tool", "data": {"tool": "hello_world"}},
            {"id": "t", "type": "task", "data": {"description": "Greet {name}", "expected_output": "A greeting"}}
        ],
        "edges": [
            {"id": "e1", "source": "h", "target": "a"},
            {"id": "e2", "source": "a", "target": "t"}
        ]
    })
}

/// Readable, but the task has no agent: a draft.
fn draft_document() -> Value {
    json!({
        "nodes": [{"id": "t", "type": "task", "data": {"description": "Greet", "expected_output": "Hi"}}],
        "edges": []
    })
}

#[tokio::test]
async fn graphs_are_created_read_replaced_with_versions_and_scoped_to_their_owner() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let ada = signed_up(&api, "ada@example.com").await;
    let bob = signed_up(&api, "bob@example.com").await;
    let ws = workspace(&api, &ada, "Crews").await;

    let created = post(
        &api,
        &format!("/api/v1/workspaces/{ws}/graphs"),
        Some(&ada),
        json!({"name": "Greeter", "document": valid_document()}),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let created = body(created).await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["valid"], true);
    assert_eq!(created["document"], valid_document());
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/graphs/{id}");

    let read = get(&api, &path, &ada).await;
    assert_eq!(read.headers()["etag"], "\"1\"");
    assert_eq!(body(read).await["name"], "Greeter");

    // A draft with errors is stored, marked invalid with its problems.
    let replaced = api
        .client
        .put(api.url(&path))
        .bearer_auth(&ada)
        .header("If-Match", "\"1\"")
        .json(&json!({"document": draft_document()}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(replaced.status(), 200);
    assert_eq!(replaced.headers()["etag"], "\"2\"");
    let replaced = body(replaced).await;
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["valid"], false);
    assert_eq!(replaced["problems"][0]["code"], "missing_agent_in_task");

    // A stale write is refused with the current version; nothing changes.
    let stale = send(
        &api,
        Method::PUT,
        &path,
        &ada,
        Some(json!({"document": valid_document(), "version": 1})),
    )
    .await;
    let stale = expect_error(stale, 409, "version_conflict").await;
    assert_eq!(stale["error"]["details"]["current_version"], 2);
    // Without a version the write is refused too (428), and nothing changes.
    expect_error(
        send(
            &api,
            Method::PUT,
            &path,
            &ada,
            Some(json!({"document": valid_document()})),
        )
        .await,
        428,
        "precondition_required",
    )
    .await;
    // A document that is not a graph is refused with the JSON path of each problem.
    let unreadable = send(
        &api,
        Method::PUT,
        &path,
        &ada,
        Some(json!({"version": 2, "document": {"nodes": [{"id": "x", "type": "robot"}, 7], "edges": {}}})),
    )
    .await;
    let unreadable = expect_error(unreadable, 422, "invalid_graph_document").await;
    let paths: Vec<&str> = unreadable["error"]["details"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert_eq!(paths, ["$.edges", "$.nodes[0].type", "$.nodes[1]"]);
    let stored = body(get(&api, &path, &ada).await).await;
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["document"], draft_document());

    // Rename keeps the version; history lists both versions, newest first.
    let renamed = send(
        &api,
        Method::PATCH,
        &path,
        &ada,
        Some(json!({"name": "Greeter v2", "description": "says hi"})),
    )
    .await;
    let renamed = body(renamed).await;
    assert_eq!(renamed["name"], "Greeter v2");
    assert_eq!(renamed["version"], 2);
    let versions = body(get(&api, &format!("{path}/versions"), &ada).await).await;
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(numbers, [2, 1]);
    let first = body(get(&api, &format!("{path}/versions/1"), &ada).await).await;
    assert_eq!(first["document"], valid_document());
    expect_error(
        get(&api, &format!("{path}/versions/9"), &ada).await,
        404,
        "not_found",
    )
    .await;

    // Restoring version 1 makes version 3 with its document.
    let restored = send(
        &api,
        Method::POST,
        &format!("{path}/versions/1/restore"),
        &ada,
        None,
    )
    .await;
    assert_eq!(restored.status(), 200);
    let restored = body(restored).await;
    assert_eq!(restored["version"], 3);
    assert_eq!(restored["valid"], true);
    assert_eq!(restored["document"], valid_document());

    // Bob sees none of it: 404 everywhere, never 403.
    for (method, p) in [
        (Method::GET, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, format!("{path}/versions")),
        (Method::GET, format!("{path}/versions/1")),
        (Method::GET, format!("{path}/export")),
        (Method::POST, format!("{path}/validate")),
        (Method::POST, format!("{path}/duplicate")),
        (Method::GET, format!("/api/v1/workspaces/{ws}/graphs")),
    ] {
        let response = send(&api, method.clone(), &p, &bob, Some(json!({}))).await;
        expect_error(response, 404, "not_found").await;
    }
    expect_error(
        send(
            &api,
            Method::PUT,
            &path,
            &bob,
            Some(json!({"document": valid_document(), "version": 3})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let bobs_ws = workspace(&api, &bob, "Mine").await;
    expect_error(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&bob),
            json!({"name": "intruder"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Nor can Ada duplicate into Bob's workspace.
    expect_error(
        post(
            &api,
            &format!("{path}/duplicate"),
            Some(&ada),
            json!({"workspace_id": bobs_ws}),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    assert_eq!(
        send(&api, Method::DELETE, &path, &ada, None).await.status(),
        204
    );
    expect_error(get(&api, &path, &ada).await, 404, "not_found").await;
}

#[tokio::test]
async fn if_match_header_controls_concurrent_writers() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "cc@example.com").await;
    let ws = workspace(&api, &token, "W").await;
    let created = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&token),
            json!({"name": "G"}),
        )
        .await,
    )
    .await;
    assert_eq!(created["document"], json!({"nodes": [], "edges": []}));
    assert_eq!(created["valid"], false, "an empty graph has no task");
    let path = format!("/api/v1/graphs/{}", created["id"].as_str().expect("id"));

    // Two writers read version 1; both send If-Match: "1"; exactly one wins.
    let put = |document: Value| {
        api.client
            .put(api.url(&path))
            .bearer_auth(&token)
            .header("If-Match", "W/\"1\"")
            .json(&json!({ "document": document }))
            .send()
    };
    let (first, second) = tokio::join!(put(valid_document()), put(draft_document()));
    let mut statuses = [
        first.expect("PUT").status().as_u16(),
        second.expect("PUT").status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let stored = body(get(&api, &path, &token).await).await;
    assert_eq!(stored["version"], 2);

    let bad = api
        .client
        .put(api.url(&path))
        .bearer_auth(&token)
        .header("If-Match", "yesterday")
        .json(&json!({ "document": valid_document() }))
        .send()
        .await
        .expect("PUT");
    expect_error(bad, 400, "invalid_if_match").await;
    let any = api
        .client
        .put(api.url(&path))
        .bearer_auth(&token)
        .header("If-Match", "*")
        .json(&json!({ "document": valid_document() }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(any.status(), 200);
    assert_eq!(any.headers()["etag"], "\"3\"");
}

#[tokio::test]
async fn graphs_list_by_update_time_with_name_filter_and_pages() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "lister@example.com").await;
    let ws = workspace(&api, &token, "W").await;
    let mut ids = Vec::new();
    for name in ["alpha", "beta", "Alphabet", "gamma", "ALPHA two"] {
        let created = body(
            post(
                &api,
                &format!("/api/v1/workspaces/{ws}/graphs"),
                Some(&token),
                json!({"name": name, "document": valid_document()}),
            )
            .await,
        )
        .await;
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    // Touch "beta" so it becomes the most recently updated.
    send(
        &api,
        Method::PATCH,
        &format!("/api/v1/graphs/{}", ids[1]),
        &token,
        Some(json!({"description": "touched"})),
    )
    .await;

    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|g| g["name"].as_str().expect("name").to_string())
            .collect()
    };
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/workspaces/{ws}/graphs?limit=2");
    loop {
        let page = body(get(&api, &path, &token).await).await;
        assert!(
            page["items"][0].get("document").is_none(),
            "lists are light"
        );
        seen.extend(names(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/v1/workspaces/{ws}/graphs?limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(seen, ["beta", "ALPHA two", "gamma", "Alphabet", "alpha"]);

    let ascending = body(
        get(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs?sort=updated_asc&name=alpha"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(names(&ascending), ["alpha", "Alphabet", "ALPHA two"]);
    // `%` and `_` are literal in the filter.
    let literal = body(
        get(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs?name=%25"),
            &token,
        )
        .await,
    )
    .await;
    assert!(names(&literal).is_empty());
    expect_error(
        get(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs?sort=sideways"),
            &token,
        )
        .await,
        400,
        "invalid_parameter",
    )
    .await;
    expect_error(
        get(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs?cursor=%21%21"),
            &token,
        )
        .await,
        422,
        "invalid_cursor",
    )
    .await;
}

#[tokio::test]
async fn duplicate_export_and_import_round_trip() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "porter@example.com").await;
    let ws = workspace(&api, &token, "W").await;
    let other_ws = workspace(&api, &token, "Other").await;
    let created = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&token),
            json!({"name": "Original", "description": "d", "document": valid_document()}),
        )
        .await,
    )
    .await;
    let path = format!("/api/v1/graphs/{}", created["id"].as_str().expect("id"));

    let copy = post(&api, &format!("{path}/duplicate"), Some(&token), json!({})).await;
    assert_eq!(copy.status(), 201);
    let copy = body(copy).await;
    assert_eq!(copy["name"], "Original (copy)");
    assert_eq!(copy["version"], 1);
    assert_eq!(copy["document"], valid_document());
    assert_ne!(copy["id"], created["id"]);
    let moved = body(
        post(
            &api,
            &format!("{path}/duplicate"),
            Some(&token),
            json!({"name": "Elsewhere", "workspace_id": other_ws}),
        )
        .await,
    )
    .await;
    assert_eq!(moved["workspace_id"], other_ws.as_str());

    let export = body(get(&api, &format!("{path}/export"), &token).await).await;
    assert_eq!(export["format"], "crewgraph.graph");
    assert_eq!(export["format_version"], 1);
    assert_eq!(export["name"], "Original");
    let imported = post(
        &api,
        &format!("/api/v1/workspaces/{other_ws}/graphs/import"),
        Some(&token),
        export.clone(),
    )
    .await;
    assert_eq!(imported.status(), 201);
    let imported = body(imported).await;
    assert_eq!(imported["document"], valid_document());
    assert_eq!(imported["description"], "d");
    assert_eq!(imported["valid"], true);

    let mut wrong = export.clone();
    wrong["format"] = json!("something.else");
    wrong["document"] = json!("nope");
    let refused = expect_error(
        post(
            &api,
            &format!("/api/v1/workspaces/{other_ws}/graphs/import"),
            Some(&token),
            wrong,
        )
        .await,
        422,
        "invalid_export",
    )
    .await;
    let paths: Vec<&str> = refused["error"]["details"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert_eq!(paths, ["$.format", "$.document"]);
    // Nothing extra was stored by the refused import.
    let listed = body(
        get(
            &api,
            &format!("/api/v1/workspaces/{other_ws}/graphs"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn oversized_and_malformed_bodies_store_nothing() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "big@example.com").await;
    let ws = workspace(&api, &token, "W").await;
    let graphs_path = format!("/api/v1/workspaces/{ws}/graphs");
    // Over the 1 MiB document limit but under the 2 MiB body limit: 413 graph_too_large.
    let filler = "x".repeat(1_100_000);
    let mut big = valid_document();
    big["nodes"][0]["data"]["backstory"] = json!(filler);
    let refused = expect_error(
        post(
            &api,
            &graphs_path,
            Some(&token),
            json!({"name": "Big", "document": big}),
        )
        .await,
        413,
        "graph_too_large",
    )
    .await;
    assert_eq!(refused["error"]["details"]["limit_bytes"], 1_048_576);
    // Over the body limit: 413 payload_too_large.
    let huge = "y".repeat(2_200_000);
    expect_error(
        post(
            &api,
            &graphs_path,
            Some(&token),
            json!({"name": "Huge", "document": {"nodes": [], "edges": [], "blob": huge}}),
        )
        .await,
        413,
        "payload_too_large",
    )
    .await;
    let malformed = api
        .client
        .post(api.url(&graphs_path))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\": \"broken\", \"document\": {")
        .send()
        .await
        .expect("POST");
    expect_error(malformed, 400, "malformed_body").await;
    expect_error(
        post(
            &api,
            &graphs_path,
            Some(&token),
            json!({"name": "", "document": valid_document()}),
        )
        .await,
        422,
        "invalid_name",
    )
    .await;
    let listed = body(get(&api, &graphs_path, &token).await).await;
    assert_eq!(listed["items"], json!([]));
}

/// One task node of the context graph; its answer is `out-{id}`.
fn context_task(id: &str, y: i64, extra: Value) -> Value {
    let mut data = json!({"description": format!("Do {id}"), "expected_output": "A word"});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    json!({"id": id, "type": "task", "position": {"x": 0, "y": y}, "data": data})
}

#[tokio::test]
async fn the_authors_context_order_and_no_context_reach_the_model() {
    let db = TestDatabase::migrated().await;
    let rules: Vec<Value> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|id| {
            json!({"when": {"last_message_contains": format!("Current Task: Do {id}")},
                   "reply": {"text": format!("Thought: I now can give a great answer\nFinal Answer: out-{id}")}})
        })
        .collect();
    let script: Script =
        serde_json::from_value(json!({"rules": rules, "fallback": "error"})).expect("script");
    let llm = ScriptedLlm::start(script).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "context-run@example.com").await;
    // t3: CrewAI `context=[t2, t1]` (the order of its incoming edges); t4: `context=[]`.
    let document = json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "Worker", "goal": "Work", "backstory": "Busy",
             "llm": "openai/gpt-4o-mini"}},
            context_task("t1", 0, json!({})), context_task("t2", 10, json!({})),
            context_task("t3", 20, json!({})), context_task("t4", 30, json!({"no_context": true}))
        ],
        "edges": [
            {"id": "e1", "source": "a", "target": "t1"}, {"id": "e2", "source": "a", "target": "t2"},
            {"id": "e3", "source": "a", "target": "t3"}, {"id": "e4", "source": "a", "target": "t4"},
            {"id": "c1", "source": "t2", "target": "t3"}, {"id": "c2", "source": "t1", "target": "t3"}
        ]
    });
    let graph = create_graph(&api, &token, document).await;
    let execution = kickoff(&api, &token, &graph, json!({})).await;
    let id = execution["id"].as_str().expect("id");
    let done = wait_for_status(&api, &token, id, None, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let prompt_of = |task: &str| {
        llm.requests()
            .iter()
            .filter_map(|r| {
                r.body["messages"].as_array()?.last()?["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .find(|content| content.contains(&format!("Current Task: Do {task}")))
            .unwrap_or_else(|| panic!("no request for {task}"))
    };
    assert!(
        prompt_of("t3").contains(
            "\n\nThis is the context you're working with:\nout-t2\n\n----------\n\nout-t1\n"
        ),
        "t3 gets t2's output first: {}",
        prompt_of("t3")
    );
    assert!(
        !prompt_of("t4").contains("This is the context you're working with"),
        "t4 has no context: {}",
        prompt_of("t4")
    );
}
