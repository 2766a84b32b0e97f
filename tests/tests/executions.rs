//! The execution pipeline end to end: the real API, real worker processes, PostgreSQL
//! and `scripted-llm` — kickoff, SSE, the stored log, errors and stream tokens.

use crewgraph_core::executions::queue_task::TASK_TYPE;
use std::time::Duration;

use crewgraph_tests::http::{JWT_SECRET, api, body, expect_error, get, post, send, signed_up};
use crewgraph_tests::pipeline::{
    ALLOW_LOOPBACK_LLM, assert_contiguous, create_graph, database, event_log, graph_calling,
    kickoff, one_task_graph, open_stream, read_to_end, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::{TestApi, TestDatabase, spawn_api_with};
use reqwest::Method;
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The API for graphs that call `scripted-llm` on loopback through their own base URL.
async fn api_allowing_loopback_llm(db: &TestDatabase) -> TestApi {
    spawn_api_with(
        &db.url,
        &[("CREWGRAPH_JWT_SECRET", JWT_SECRET), ALLOW_LOOPBACK_LLM],
    )
    .await
}

#[tokio::test]
async fn a_kickoff_runs_to_success_with_every_event_in_order_over_sse_and_in_the_log() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "runner@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;

    let response = post(
        &api,
        &format!("/api/v1/graphs/{graph}/executions"),
        Some(&token),
        json!({"inputs": {"question": "what is 6 times 7?"}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let execution = body(response).await;
    let id = execution["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/api/v1/executions/{id}"));
    assert_eq!(
        execution["events_url"],
        format!("/api/v1/executions/{id}/events")
    );
    assert!(matches!(
        execution["status"].as_str(),
        Some("queued" | "running" | "succeeded")
    ));

    let mut stream = open_stream(&api, &token, &id, None).await;
    let events = read_to_end(&mut stream, RUN_TIMEOUT).await;
    assert_contiguous(&events);
    let types: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    let without_deltas: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| *t != "llm.delta")
        .collect();
    assert_eq!(
        without_deltas,
        [
            "execution.queued",
            "execution.started",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
            "execution.succeeded"
        ]
    );
    // Streamed chunks arrive between llm.started and llm.completed and add up to the reply.
    let first_delta = types
        .iter()
        .position(|t| *t == "llm.delta")
        .expect("a delta");
    let completed = types
        .iter()
        .position(|t| *t == "llm.completed")
        .expect("completed");
    assert!(
        first_delta
            > types
                .iter()
                .position(|t| *t == "llm.started")
                .expect("started")
    );
    let streamed: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("llm.delta"))
        .map(|e| e.data["data"]["chunk"].as_str().expect("chunk"))
        .collect();
    assert!(
        types[first_delta..completed]
            .iter()
            .all(|t| *t == "llm.delta")
    );
    assert_eq!(
        streamed,
        events[completed].data["data"]["response"]
            .as_str()
            .expect("response")
    );
    assert_eq!(events[1].data["data"]["attempt"], 1);
    for event in &events {
        assert_eq!(event.data["execution_id"], id.as_str());
        assert!(event.data["ts"].is_string());
    }

    // The stored log holds the same events.
    let log = event_log(&api, &token, &id).await;
    let streamed_envelopes: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(log, streamed_envelopes);

    // The terminal event is committed with the status: no waiting needed.
    let finished = body(get(&api, &format!("/api/v1/executions/{id}"), &token).await).await;
    assert_eq!(finished["status"], "succeeded");
    let raw = finished["result"]["raw"].as_str().expect("raw");
    assert!(raw.starts_with("Echo: Answer what is 6 times 7?"), "{raw}");
    assert_eq!(finished["result"]["tasks_output"][0]["task_id"], "t");
    assert_eq!(finished["usage"]["successful_requests"], 1);
    assert_eq!(finished["attempt"], 1);
    assert_eq!(finished["last_event_seq"], events.len());
    assert!(finished["started_at"].is_string() && finished["finished_at"].is_string());
    assert_eq!(llm.requests().len(), 1);

    // A finished execution streams its whole log again, then ends.
    let mut replay = open_stream(&api, &token, &id, None).await;
    assert_eq!(read_to_end(&mut replay, RUN_TIMEOUT).await, events);
    let mut tail = open_stream(&api, &token, &id, Some(events.len() as i64 - 2)).await;
    let tail_events = read_to_end(&mut tail, RUN_TIMEOUT).await;
    assert_eq!(tail_events, events[events.len() - 2..].to_vec());
    // Resuming after the terminal event (EventSource reconnecting) gets 204, on which a
    // browser's EventSource stops reconnecting.
    for resume in [
        ("Last-Event-ID", events.len().to_string()),
        ("Last-Event-ID", (events.len() + 5).to_string()),
    ] {
        let after_end = api
            .client
            .get(api.url(&format!("/api/v1/executions/{id}/events")))
            .bearer_auth(&token)
            .header(resume.0, resume.1)
            .send()
            .await
            .expect("resume");
        assert_eq!(after_end.status(), 204);
        assert_eq!(after_end.bytes().await.expect("body").len(), 0);
    }
    let by_query = api
        .client
        .get(api.url(&format!(
            "/api/v1/executions/{id}/events?after={}",
            events.len()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("resume");
    assert_eq!(by_query.status(), 204);

    let listed = body(
        get(
            &api,
            &format!("/api/v1/executions?graph_id={graph}&status=succeeded"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let none = body(get(&api, "/api/v1/executions?status=failed", &token).await).await;
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn kickoff_refuses_invalid_graphs_missing_inputs_and_too_many_runs_storing_nothing() {
    let db = database().await;
    let api = crewgraph_tests::spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", crewgraph_tests::http::JWT_SECRET),
            ("CREWGRAPH_MAX_ACTIVE_EXECUTIONS", "2"),
        ],
    )
    .await;
    let token = signed_up(&api, "refused@example.com").await;
    let other = signed_up(&api, "other@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let kickoff_path = format!("/api/v1/graphs/{graph}/executions");

    let missing = expect_error(
        post(&api, &kickoff_path, Some(&token), json!({"inputs": {}})).await,
        422,
        "missing_inputs",
    )
    .await;
    assert_eq!(missing["error"]["details"]["missing"], json!(["question"]));
    expect_error(
        post(
            &api,
            &kickoff_path,
            Some(&other),
            json!({"inputs": {"question": "x"}}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let draft = create_graph(
        &api,
        &token,
        json!({"nodes": [{"id": "t", "type": "task", "data": {"description": "d", "expected_output": "e"}}], "edges": []}),
    )
    .await;
    let invalid = expect_error(
        post(
            &api,
            &format!("/api/v1/graphs/{draft}/executions"),
            Some(&token),
            json!({"inputs": {}}),
        )
        .await,
        422,
        "graph_invalid",
    )
    .await;
    assert_eq!(
        invalid["error"]["details"]["problems"][0]["code"],
        "missing_agent_in_task"
    );
    let not_a_map = expect_error(
        post(
            &api,
            &kickoff_path,
            Some(&token),
            json!({"inputs": "question"}),
        )
        .await,
        422,
        "invalid_type",
    )
    .await;
    assert_eq!(not_a_map["error"]["details"]["field"], "inputs");
    let listed = body(get(&api, "/api/v1/executions", &token).await).await;
    assert_eq!(listed["items"], json!([]), "refused kickoffs store nothing");

    // No worker runs here: two stay queued, the third is over the limit.
    for _ in 0..2 {
        kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    }
    expect_error(
        post(
            &api,
            &kickoff_path,
            Some(&token),
            json!({"inputs": {"question": "q"}}),
        )
        .await,
        429,
        "too_many_active_executions",
    )
    .await;
    let listed = body(get(&api, "/api/v1/executions", &token).await).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    // The queued runs hold fang tasks that fang's own queue API can fetch and read.
    let mut queue = fang::AsyncQueue::builder()
        .uri(db.url.clone())
        .max_pool_size(1_u32)
        .build();
    queue.connect().await.expect("fang connects");
    let task = fang::AsyncQueueable::fetch_and_touch_task(&queue, Some(TASK_TYPE.to_string()))
        .await
        .expect("fetch")
        .expect("a task");
    let runnable: Box<dyn fang::AsyncRunnable> =
        serde_json::from_value(task.metadata.clone()).expect("fang reads our metadata");
    assert_eq!(runnable.task_type(), TASK_TYPE);
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    let execution_id = task.metadata["execution_id"]
        .as_str()
        .expect("execution id");
    assert!(ids.contains(&execution_id));
}

#[tokio::test]
async fn stream_tokens_open_one_execution_for_eventsource_clients() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "browser@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let first = kickoff(&api, &token, &graph, json!({"question": "one"})).await;
    let second = kickoff(&api, &token, &graph, json!({"question": "two"})).await;
    let first_id = first["id"].as_str().expect("id");
    let second_id = second["id"].as_str().expect("id");

    let issued = post(
        &api,
        &format!("/api/v1/executions/{first_id}/stream-token"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(issued.status(), 201);
    let issued = body(issued).await;
    let stream_token = issued["token"].as_str().expect("token");
    let events_url = issued["events_url"].as_str().expect("events_url");
    // No Authorization header: the token in the URL is the credential.
    let response = api
        .client
        .get(api.url(events_url))
        .send()
        .await
        .expect("GET");
    if response.status() != 200 {
        panic!("{}", response.text().await.unwrap_or_default());
    }
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut reader = crewgraph_tests::pipeline::SseReader::new(response);
    let events = read_to_end(&mut reader, RUN_TIMEOUT).await;
    assert_eq!(
        events.last().and_then(|e| e.event.as_deref()),
        Some("execution.succeeded")
    );

    // The token opens that execution only, and is not an access token.
    let other = api
        .client
        .get(api.url(&format!(
            "/api/v1/executions/{second_id}/events?token={stream_token}"
        )))
        .send()
        .await
        .expect("GET");
    expect_error(other, 401, "unauthorized").await;
    let as_access = api
        .client
        .get(api.url(&format!("/api/v1/executions/{first_id}")))
        .bearer_auth(stream_token)
        .send()
        .await
        .expect("GET");
    expect_error(as_access, 401, "unauthorized").await;
    let anonymous = api
        .client
        .get(api.url(&format!("/api/v1/executions/{first_id}/events")))
        .send()
        .await
        .expect("GET");
    expect_error(anonymous, 401, "unauthorized").await;
    // Someone else's execution is not found, token or not.
    let mallory = signed_up(&api, "mallory@example.com").await;
    expect_error(
        post(
            &api,
            &format!("/api/v1/executions/{first_id}/stream-token"),
            Some(&mallory),
            json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        send(
            &api,
            Method::GET,
            &format!("/api/v1/executions/{first_id}/events"),
            &mallory,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let bad_last_id = api
        .client
        .get(api.url(&format!("/api/v1/executions/{first_id}/events")))
        .bearer_auth(&token)
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .expect("GET");
    expect_error(bad_last_id, 400, "invalid_last_event_id").await;
}

#[tokio::test]
async fn the_hello_world_template_runs_its_tool_without_a_provider_key() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "demo@example.com").await;
    let ws = crewgraph_tests::http::workspace(&api, &token, "Demo").await;
    let graph = body(
        post(
            &api,
            "/api/v1/templates/00000000-0000-7000-8000-000000000001/instantiate",
            Some(&token),
            json!({"workspace_id": ws}),
        )
        .await,
    )
    .await;
    let execution = kickoff(
        &api,
        &token,
        graph["id"].as_str().expect("graph id"),
        json!({"name": "Ada"}),
    )
    .await;
    let id = execution["id"].as_str().expect("id");
    let mut stream = open_stream(&api, &token, id, None).await;
    let events = read_to_end(&mut stream, RUN_TIMEOUT).await;
    assert_contiguous(&events);
    let tool = events
        .iter()
        .find(|e| e.event.as_deref() == Some("tool.completed"))
        .expect("the hello_world tool ran");
    assert_eq!(tool.data["data"]["tool_name"], "hello_world");
    assert_eq!(tool.data["data"]["tool_args"], json!({"name": "Ada"}));
    assert_eq!(tool.data["data"]["output"], "Hello, Ada!");
    let finished = wait_for_status(&api, &token, id, Some("succeeded"), RUN_TIMEOUT).await;
    assert_eq!(finished["result"]["raw"], "Hello, Ada!");
    assert_eq!(finished["usage"]["successful_requests"], 2);
}

#[tokio::test]
async fn hostile_model_output_and_endpoints_cannot_break_the_worker_or_steal_keys() {
    let db = database().await;
    // The operator's fallback endpoint, and a second server a graph points at itself.
    let fallback = ScriptedLlm::start(Script::default()).await;
    let chosen = ScriptedLlm::start(
        serde_json::from_value(json!({"rules": [{"reply": {
            "text": "Thought: I now can give a great answer\nFinal Answer: nul \u{0} inside"
        }}]}))
        .expect("script"),
    )
    .await;
    let api = api_allowing_loopback_llm(&db).await;
    let _worker = spawn_worker(
        &db.url,
        &fallback.openai_base_url(),
        &[
            (
                "CREWGRAPH_FALLBACK_LLM_API_KEY",
                "sk-operator-secret-key-0123456789",
            ),
            ALLOW_LOOPBACK_LLM,
        ],
    )
    .await;
    let token = signed_up(&api, "hostile@example.com").await;
    let document = graph_calling(&chosen.openai_base_url());
    let graph = create_graph(&api, &token, document).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    let finished = wait_for_status(&api, &token, id, None, RUN_TIMEOUT).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(
        finished["result"]["raw"], "nul  inside",
        "U+0000 dropped, not fatal"
    );
    let request = &chosen.requests()[0];
    assert!(
        request
            .api_key
            .as_deref()
            .is_none_or(|key| !key.contains("operator-secret")),
        "the operator's key must not go to a graph's own endpoint"
    );
    // The worker still runs crews (through the fallback, with the operator's key).
    let plain = create_graph(&api, &token, one_task_graph()).await;
    let next = kickoff(&api, &token, &plain, json!({"question": "still alive?"})).await;
    let done = wait_for_status(
        &api,
        &token,
        next["id"].as_str().expect("id"),
        None,
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(
        fallback.requests()[0].api_key.as_deref(),
        Some("sk-operator-secret-key-0123456789")
    );
}

#[tokio::test]
async fn runs_use_the_owners_stored_provider_key_decrypted_by_the_worker() {
    let db = database().await;
    let fallback = ScriptedLlm::start(Script::default()).await;
    let provider = ScriptedLlm::start(Script::default()).await;
    let api = api_allowing_loopback_llm(&db).await;
    let worker = spawn_worker(&db.url, &fallback.openai_base_url(), &[ALLOW_LOOPBACK_LLM]).await;
    let token = signed_up(&api, "keyholder@example.com").await;
    // The newest openai key is used by default; an llm node can name another one.
    for (name, secret) in [
        ("older", "sk-user-older-key-0000000000"),
        ("newer", "sk-user-newer-key-1111111111"),
    ] {
        let stored = post(
            &api,
            "/api/v1/api-keys",
            Some(&token),
            json!({"name": name, "provider": "openai", "secret": secret,
                   "base_url": provider.openai_base_url()}),
        )
        .await;
        assert_eq!(stored.status(), 201);
    }
    let keys = body(get(&api, "/api/v1/api-keys", &token).await).await;
    let older_id = keys["items"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "older")
        .and_then(|k| k["id"].as_str())
        .expect("older key id")
        .to_string();

    let graph = create_graph(&api, &token, one_task_graph()).await;
    let first = kickoff(&api, &token, &graph, json!({"question": "one"})).await;
    let done = wait_for_status(
        &api,
        &token,
        first["id"].as_str().expect("id"),
        None,
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let mut named = one_task_graph();
    named["nodes"][0]["data"]
        .as_object_mut()
        .expect("data")
        .remove("llm");
    named["nodes"].as_array_mut().expect("nodes").push(json!({
        "id": "m", "type": "llm", "data": {"model": "openai/gpt-4o-mini", "api_key_id": older_id}
    }));
    named["edges"]
        .as_array_mut()
        .expect("edges")
        .push(json!({"id": "e-m", "source": "m", "target": "a"}));
    let named_graph = create_graph(&api, &token, named).await;
    let second = kickoff(&api, &token, &named_graph, json!({"question": "two"})).await;
    let done = wait_for_status(
        &api,
        &token,
        second["id"].as_str().expect("id"),
        None,
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let keys_used: Vec<Option<String>> = provider
        .requests()
        .iter()
        .map(|r| r.api_key.clone())
        .collect();
    assert_eq!(
        keys_used,
        [
            Some("sk-user-newer-key-1111111111".to_string()),
            Some("sk-user-older-key-0000000000".to_string())
        ]
    );
    assert!(
        fallback.requests().is_empty(),
        "a stored key wins over the fallback"
    );
    // The plaintext key is in no event.
    for run in [&first, &second] {
        let log = event_log(&api, &token, run["id"].as_str().expect("id")).await;
        let text = serde_json::to_string(&log).expect("log");
        assert!(!text.contains("sk-user-"), "a key leaked into the events");
    }
    let logs = worker.logs().join("\n") + &api.logs().join("\n");
    assert!(!logs.contains("sk-user-"), "a key leaked into the logs");
}
