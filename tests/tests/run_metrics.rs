//! Run metrics kept in PostgreSQL: every end (succeeded, cancelled mid-run, cancelled
//! before it started, failed) records its figures, usage and estimated cost with it.

use std::time::{Duration, Instant};

use crewgraph_tests::TestApi;
use crewgraph_tests::app::spawn_api_with;
use crewgraph_tests::http::{JWT_SECRET, body, expect_error, get, post, signed_up};
use crewgraph_tests::pipeline::{
    create_graph, database, event_log, kickoff, one_task_graph, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn script(value: Value) -> Script {
    serde_json::from_value(value).expect("script")
}

/// A price file, removed when dropped.
struct PriceFile(std::path::PathBuf);

impl PriceFile {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PriceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// gpt-4o-mini priced at $1 / $2 / $0.50 per million input / output / cached tokens.
fn price_file() -> PriceFile {
    let path = std::env::temp_dir().join(format!("prices-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        r#"{"models": {"gpt-4o-mini": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}}"#,
    )
    .expect("write prices");
    PriceFile(path)
}

/// The sum of the `llm.completed` usage in an execution's event log.
fn logged_usage(log: &[Value]) -> (u64, u64, u64) {
    log.iter()
        .filter(|e| e["type"] == "llm.completed")
        .fold((0, 0, 0), |(p, c, k), e| {
            let usage = &e["data"]["usage"];
            (
                p + usage["prompt_tokens"].as_u64().unwrap_or(0),
                c + usage["completion_tokens"].as_u64().unwrap_or(0),
                k + usage["cached_prompt_tokens"].as_u64().unwrap_or(0),
            )
        })
}

async fn metrics_of(api: &TestApi, token: &str, id: &str) -> Value {
    let response = get(api, &format!("/api/v1/executions/{id}/metrics"), token).await;
    assert_eq!(response.status(), 200);
    body(response).await
}

async fn started_with_prices(db_url: &str, prices: &PriceFile) -> TestApi {
    let path = prices.path().to_str().expect("utf-8 path");
    spawn_api_with(
        db_url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_PRICES_FILE", path),
        ],
    )
    .await
}

#[tokio::test]
async fn a_succeeded_run_records_its_figures_usage_and_cost() {
    let db = database().await;
    let llm = ScriptedLlm::start(script(json!({"rules": [{
        "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: 42"},
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 10}
    }]})))
    .await;
    let prices = price_file();
    let api = started_with_prices(&db.url, &prices).await;
    let path = prices.path().to_str().expect("utf-8 path");
    let _worker = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_PRICES_FILE", path)],
    )
    .await;
    let token = signed_up(&api, "figures@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    assert!(execution["usage"].is_null() && execution["metrics"].is_null());
    let id = execution["id"].as_str().expect("id");
    let done = wait_for_status(&api, &token, id, Some("succeeded"), RUN_TIMEOUT).await;

    let usage = &done["usage"];
    assert_eq!(usage, &done["result"]["token_usage"], "{done}");
    assert_eq!(usage["prompt_tokens"], 100);
    assert_eq!(usage["completion_tokens"], 20);
    assert_eq!(usage["cached_prompt_tokens"], 10);
    let run = &done["metrics"];
    assert_eq!(run["llm_calls"], 1, "{run}");
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["retries"], 0);
    assert_eq!(run["task_count"], 1);
    assert_eq!(run["tasks_completed"], 1);
    assert!(run["queue_wait_ms"].as_i64().is_some_and(|ms| ms >= 0));
    assert!(run["run_ms"].as_i64().is_some_and(|ms| ms >= 0));
    // 90 uncached input, 10 cached, 20 output tokens.
    let expected = (90.0 * 1.0 + 10.0 * 0.5 + 20.0 * 2.0) / 1e6;
    let cost = run["cost_usd"].as_f64().expect("cost");
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
    assert_eq!(run["unpriced_models"], json!([]));

    let figures = metrics_of(&api, &token, id).await;
    assert_eq!(figures["usage"], *usage);
    let tasks = figures["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task_id"], "t");
    assert_eq!(tasks[0]["task_index"], 0);
    assert_eq!(tasks[0]["status"], "completed");
    assert_eq!(tasks[0]["agent_role"], "Answerer");
    assert_eq!(tasks[0]["llm_calls"], 1);
    assert_eq!(tasks[0]["tokens"]["total_tokens"], usage["total_tokens"]);
    assert!(tasks[0]["duration_ms"].as_i64().is_some());
    let models = figures["models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    assert!(models[0]["priced"].as_bool().expect("priced"));
    assert_eq!(models[0]["tokens"]["prompt_tokens"], 100);
}

#[tokio::test]
async fn a_run_cancelled_mid_way_keeps_the_usage_its_calls_spent() {
    let db = database().await;
    // The first call (with usage) uses a tool; the call after the observation hangs.
    let llm = ScriptedLlm::start(script(json!({"rules": [
        {"reply": {"text": "Thought: greet\nAction: hello_world\nAction Input: {\"name\": \"Ada\"}"},
         "times": 1, "usage": {"prompt_tokens": 120, "completion_tokens": 14}},
        {"reply": {"text": "Final Answer: late"}, "latency_ms": 20000}
    ]})))
    .await;
    let api = crewgraph_tests::http::api(&db).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "cancelled-usage@example.com").await;
    let mut document = one_task_graph();
    document["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "h", "type": "tool", "data": {"tool": "hello_world"}}));
    document["edges"]
        .as_array_mut()
        .expect("edges")
        .push(json!({"id": "e-h", "source": "h", "target": "a"}));
    let graph = create_graph(&api, &token, document).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while llm.requests().len() < 2 {
        if Instant::now() > deadline {
            let log = event_log(&api, &token, id).await;
            panic!("the retry was never sent: {log:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = get(&api, &format!("/api/v1/executions/{id}/metrics"), &token).await;
    expect_error(running, 409, "execution_not_ended").await;
    let cancel = post(
        &api,
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(cancel.status(), 200);
    let done = wait_for_status(&api, &token, id, Some("cancelled"), RUN_TIMEOUT).await;

    let log = event_log(&api, &token, id).await;
    let (prompt, completion, cached) = logged_usage(&log);
    assert_eq!(
        (prompt, completion, cached),
        (120, 14, 0),
        "the log's usage"
    );
    assert_eq!(done["usage"]["prompt_tokens"], 120, "{done}");
    assert_eq!(done["usage"]["completion_tokens"], 14);
    assert_eq!(done["usage"]["successful_requests"], 1);
    let run = &done["metrics"];
    assert_eq!(run["llm_calls"], 2, "{run}");
    assert_eq!(run["tool_calls"], 1);
    assert_eq!(run["tool_failures"], 0);
    assert_eq!(run["tasks_completed"], 0);
    // No price table: the model is unpriced and costs nothing.
    assert_eq!(run["cost_usd"], 0.0);
    assert_eq!(run["unpriced_models"].as_array().map(Vec::len), Some(1));
    let figures = metrics_of(&api, &token, id).await;
    assert_eq!(figures["tasks"][0]["status"], "interrupted");
    assert_eq!(figures["tasks"][0]["tokens"]["prompt_tokens"], 120);
    assert_eq!(figures["tasks"][0]["tool_calls"], 1);
    assert!(!figures["models"][0]["priced"].as_bool().expect("priced"));

    let other = signed_up(&api, "someone-else@example.com").await;
    let theirs = get(&api, &format!("/api/v1/executions/{id}/metrics"), &other).await;
    expect_error(theirs, 404, "not_found").await;
}

#[tokio::test]
async fn a_run_cancelled_before_it_started_and_a_failed_run_are_recorded_too() {
    let db = database().await;
    let api = crewgraph_tests::http::api(&db).await;
    let token = signed_up(&api, "ends@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    // No worker yet: the run stays queued and is cancelled before it starts.
    let queued = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let queued_id = queued["id"].as_str().expect("id");
    let cancel = post(
        &api,
        &format!("/api/v1/executions/{queued_id}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    let cancelled = body(cancel).await;
    assert_eq!(cancelled["status"], "cancelled");
    let run = &cancelled["metrics"];
    assert_eq!(run["llm_calls"], 0, "{cancelled}");
    assert_eq!(run["attempts"], 0);
    assert!(run["queue_wait_ms"].is_null() && run["run_ms"].is_null());
    assert_eq!(cancelled["usage"]["total_tokens"], 0);
    let figures = metrics_of(&api, &token, queued_id).await;
    assert_eq!(figures["tasks"][0]["status"], "not_started");

    // A model that refuses the key: the run fails, its failed call counted.
    let llm = ScriptedLlm::start(script(
        json!({"rules": [{"reply": {"fault": "unauthorized"}}]}),
    ))
    .await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let failing = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let failing_id = failing["id"].as_str().expect("id");
    let failed = wait_for_status(&api, &token, failing_id, Some("failed"), RUN_TIMEOUT).await;
    let run = &failed["metrics"];
    assert!(
        run["llm_failures"].as_i64().is_some_and(|n| n >= 1),
        "{failed}"
    );
    assert_eq!(run["llm_calls"], run["llm_failures"]);
    assert_eq!(run["attempts"], 1);
    assert_eq!(failed["usage"]["total_tokens"], 0);
    let figures = metrics_of(&api, &token, failing_id).await;
    let task_status = figures["tasks"][0]["status"].as_str().expect("status");
    assert!(
        ["failed", "interrupted"].contains(&task_status),
        "{figures}"
    );
}
