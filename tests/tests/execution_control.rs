//! Reconnecting streams, cancellation and chat runs, with real processes.

use std::time::{Duration, Instant};

use crewgraph_tests::http::{api, body, expect_error, get, post, signed_up, workspace};
use crewgraph_tests::pipeline::{
    assert_contiguous, create_graph, database, event_log, kickoff, one_task_graph, open_stream,
    read_to_end, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn script(value: Value) -> Script {
    serde_json::from_value(value).expect("script")
}

/// A reply streamed in 5-character chunks 60 ms apart (about 2 s).
fn slow_stream() -> Script {
    script(json!({"rules": [{
        "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: the slow and steady answer, told in many small pieces"},
        "chunk_chars": 5, "chunk_delay_ms": 60
    }]}))
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_every_event_exactly_once() {
    let db = database().await;
    let llm = ScriptedLlm::start(slow_stream()).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "reconnect@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");

    let mut first = open_stream(&api, &token, id, None).await;
    let mut received = Vec::new();
    // Disconnect in the middle of the streamed reply.
    while received.len() < 7 {
        let event = tokio::time::timeout(RUN_TIMEOUT, first.next_event())
            .await
            .expect("event in time")
            .expect("stream open");
        received.push(event);
    }
    assert_eq!(
        received.last().and_then(|e| e.event.as_deref()),
        Some("llm.delta")
    );
    drop(first);
    let last_seen = received
        .last()
        .and_then(|e| e.data["seq"].as_i64())
        .expect("seq");
    let mut second = open_stream(&api, &token, id, Some(last_seen)).await;
    received.extend(read_to_end(&mut second, RUN_TIMEOUT).await);
    assert_contiguous(&received);
    assert_eq!(
        received.last().and_then(|e| e.event.as_deref()),
        Some("execution.succeeded")
    );
    let deltas = received
        .iter()
        .filter(|e| e.event.as_deref() == Some("llm.delta"))
        .count();
    assert!(
        deltas >= 3,
        "the slow reply came in several deltas, got {deltas}"
    );
    let log: Vec<Value> = event_log(&api, &token, id).await;
    let streamed: Vec<Value> = received.iter().map(|e| e.data.clone()).collect();
    assert_eq!(streamed, log);
    // `?after=` works like Last-Event-ID.
    let tail = body(
        get(
            &api,
            &format!("/api/v1/executions/{id}/log?after={}", log.len() - 1),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(tail["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_queued_execution_is_cancelled_at_once_and_never_runs() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let token = signed_up(&api, "queued@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "never"})).await;
    let id = execution["id"].as_str().expect("id");
    assert_eq!(execution["status"], "queued");

    let cancelled = post(
        &api,
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let cancelled = body(cancelled).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"]["code"], "cancelled");
    let log = event_log(&api, &token, id).await;
    let types: Vec<&str> = log.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["execution.queued", "execution.cancelled"]);
    let mut conn = db.connect().await;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM fang_tasks")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(tasks, 0, "its queue task is gone");
    // Cancelling again answers the same; a finished run cannot be cancelled.
    let again = body(
        post(
            &api,
            &format!("/api/v1/executions/{id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(again["status"], "cancelled");

    // A worker that starts now runs the next execution, not the cancelled one.
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let next = kickoff(&api, &token, &graph, json!({"question": "this one"})).await;
    let next_id = next["id"].as_str().expect("id");
    wait_for_status(&api, &token, next_id, Some("succeeded"), RUN_TIMEOUT).await;
    assert_eq!(llm.requests().len(), 1);
    let still = body(get(&api, &format!("/api/v1/executions/{id}"), &token).await).await;
    assert_eq!(still["status"], "cancelled");
    expect_error(
        post(
            &api,
            &format!("/api/v1/executions/{next_id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await,
        409,
        "execution_finished",
    )
    .await;
}

#[tokio::test]
async fn a_running_execution_stops_within_a_second_of_cancel() {
    let db = database().await;
    // The model takes 20 s to answer: the run is mid-call when it is cancelled.
    let llm = ScriptedLlm::start(script(
        json!({"rules": [{"reply": {"text": "Final Answer: late"}, "latency_ms": 20000}]}),
    ))
    .await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "canceller@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    wait_for_status(&api, &token, id, Some("running"), RUN_TIMEOUT).await;
    let deadline = Instant::now() + RUN_TIMEOUT;
    while llm.requests().is_empty() {
        assert!(Instant::now() < deadline, "the model was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    let response = post(
        &api,
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await["cancel_requested"], true);
    let finished = wait_for_status(&api, &token, id, Some("cancelled"), RUN_TIMEOUT).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(finished["error"]["code"], "cancelled");
    let log = event_log(&api, &token, id).await;
    assert_eq!(
        log.last().and_then(|e| e["type"].as_str()),
        Some("execution.cancelled")
    );
    assert!(!log.iter().any(|e| e["type"] == "execution.succeeded"));
    // No further model call after the cancel.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn a_message_to_a_bound_thread_runs_the_graph_and_gets_an_answer() {
    let db = database().await;
    let llm = ScriptedLlm::start(script(json!({"rules": [
        {"when": {"model": "broken-model"}, "reply": {"fault": "unauthorized"}},
        {"when": {"any_message_contains": "assistant: the first answer"}, "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: second answer, with history"}},
        {"reply": {"text": "Thought: I now can give a great answer\nFinal Answer: the first answer"}}
    ]}))).await;
    let api = api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "chatter@example.com").await;
    let chat_graph = json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "Assistant", "goal": "Help", "backstory": "Helpful.", "llm": "openai/gpt-4o-mini"}},
            {"id": "t", "type": "task", "data": {"description": "Reply to: {message}\nPreviously:\n{history}", "expected_output": "A reply."}}
        ],
        "edges": [{"id": "e", "source": "a", "target": "t"}]
    });
    let graph = create_graph(&api, &token, chat_graph.clone()).await;
    let ws = workspace(&api, &token, "Chats").await;
    let thread = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/threads"),
            Some(&token),
            json!({"title": "Chat", "graph_id": graph}),
        )
        .await,
    )
    .await;
    let thread_path = format!("/api/v1/threads/{}", thread["id"].as_str().expect("id"));

    let sent = post(
        &api,
        &format!("{thread_path}/messages"),
        Some(&token),
        json!({"content": "Hello crew"}),
    )
    .await;
    assert_eq!(sent.status(), 201);
    let sent = body(sent).await;
    let execution_id = sent["execution_id"]
        .as_str()
        .expect("the message started a run")
        .to_string();
    let finished =
        wait_for_status(&api, &token, &execution_id, Some("succeeded"), RUN_TIMEOUT).await;
    assert_eq!(finished["thread_id"], thread["id"]);
    assert_eq!(finished["inputs"]["message"], "Hello crew");
    let messages = wait_for_messages(&api, &token, &thread_path, 2).await;
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], "the first answer");
    assert_eq!(messages[1]["execution_id"], execution_id.as_str());
    assert_eq!(messages[0]["execution_id"], execution_id.as_str());

    // The second message's run sees the thread's history.
    let second = body(
        post(
            &api,
            &format!("{thread_path}/messages"),
            Some(&token),
            json!({"content": "And then?"}),
        )
        .await,
    )
    .await;
    let second_id = second["execution_id"].as_str().expect("run").to_string();
    let finished = wait_for_status(&api, &token, &second_id, Some("succeeded"), RUN_TIMEOUT).await;
    assert_eq!(
        finished["inputs"]["history"],
        "user: Hello crew\nassistant: the first answer"
    );
    let messages = wait_for_messages(&api, &token, &thread_path, 4).await;
    assert_eq!(messages[3]["content"], "second answer, with history");

    // A failing run shows in the thread too.
    let mut broken = chat_graph;
    broken["nodes"][0]["data"]["llm"] = json!("openai/broken-model");
    let broken_graph = create_graph(&api, &token, broken).await;
    let failing = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/threads"),
            Some(&token),
            json!({"title": "Broken", "graph_id": broken_graph}),
        )
        .await,
    )
    .await;
    let failing_path = format!("/api/v1/threads/{}", failing["id"].as_str().expect("id"));
    let sent = body(
        post(
            &api,
            &format!("{failing_path}/messages"),
            Some(&token),
            json!({"content": "Hi"}),
        )
        .await,
    )
    .await;
    let failed = wait_for_status(
        &api,
        &token,
        sent["execution_id"].as_str().expect("run"),
        Some("failed"),
        RUN_TIMEOUT,
    )
    .await;
    assert_eq!(failed["error"]["code"], "llm_authentication");
    let messages = wait_for_messages(&api, &token, &failing_path, 2).await;
    assert_eq!(messages[1]["role"], "system");
    assert!(
        messages[1]["content"]
            .as_str()
            .expect("content")
            .starts_with("The run failed:")
    );

    // A thread bound to a graph that needs other inputs refuses the message, storing nothing.
    let needs_more = create_graph(&api, &token, one_task_graph()).await;
    let strict = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/threads"),
            Some(&token),
            json!({"title": "Strict", "graph_id": needs_more}),
        )
        .await,
    )
    .await;
    let strict_path = format!("/api/v1/threads/{}", strict["id"].as_str().expect("id"));
    expect_error(
        post(
            &api,
            &format!("{strict_path}/messages"),
            Some(&token),
            json!({"content": "Hi"}),
        )
        .await,
        422,
        "missing_inputs",
    )
    .await;
    let none = body(get(&api, &format!("{strict_path}/messages"), &token).await).await;
    assert_eq!(none["items"], json!([]));
}

async fn wait_for_messages(
    api: &crewgraph_tests::TestApi,
    token: &str,
    thread_path: &str,
    count: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let page = body(get(api, &format!("{thread_path}/messages"), token).await).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= count {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "only {} messages: {items:?}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_idle_stream_gets_a_keep_alive_comment_every_15_seconds() {
    let db = database().await;
    let api = api(&db).await;
    let token = signed_up(&api, "idle@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    // No worker: the execution stays queued and the stream stays quiet.
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    let mut stream = open_stream(&api, &token, id, None).await;
    let replayed = stream.next_event().await.expect("the queued event");
    assert_eq!(replayed.event.as_deref(), Some("execution.queued"));
    let started = Instant::now();
    let quiet = tokio::time::timeout(Duration::from_secs(17), stream.next_event()).await;
    assert!(quiet.is_err(), "no event should arrive: {quiet:?}");
    assert!(
        stream.comments >= 1,
        "no keep-alive comment in {:?}",
        started.elapsed()
    );
}
