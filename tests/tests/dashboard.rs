//! Dashboards (`/api/v1/dashboard/...`, `/api/v1/admin/dashboard/...`): figures checked
//! against rows with known outcomes written straight into the metrics tables (exact
//! percentiles, bucket edges, time zones, ranking ties), against real executions run by a
//! worker (successes, failures and cancellations, compared with each execution's own
//! figures), scoping and refusals, and the query plans.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crewgraph_core::metrics::dashboard::{self, Scope, TimeRange};
use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{
    ADMIN_EMAIL, api_with_admin, body, expect_error, get, post, signed_up,
};
use crewgraph_tests::pipeline::{
    create_graph, kickoff, one_task_graph, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

/// A response's timestamp.
fn time(value: &Value) -> DateTime<Utc> {
    at(value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}")))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

/// One ended execution's figures, as the recorder would have written them.
#[derive(Clone)]
struct Row {
    user: Uuid,
    graph: Option<Uuid>,
    status: &'static str,
    end_code: Option<&'static str>,
    finished_at: &'static str,
    queue_wait_ms: Option<i64>,
    run_ms: Option<i64>,
    prompt: i64,
    completion: i64,
    cost_usd: f64,
    llm_calls: i32,
    llm_failures: i32,
    tool_calls: i32,
    model: &'static str,
    priced: bool,
}

impl Row {
    fn new(
        user: Uuid,
        graph: Option<Uuid>,
        status: &'static str,
        finished_at: &'static str,
    ) -> Row {
        Row {
            user,
            graph,
            status,
            end_code: match status {
                "succeeded" => None,
                "cancelled" => Some("cancelled"),
                _ => Some("llm_error"),
            },
            finished_at,
            queue_wait_ms: Some(5),
            run_ms: Some(1_000),
            prompt: 100,
            completion: 10,
            cost_usd: 0.25,
            llm_calls: 1,
            llm_failures: 0,
            tool_calls: 0,
            model: "openai/gpt-4o-mini",
            priced: true,
        }
    }

    fn code(mut self, code: &'static str) -> Row {
        self.end_code = Some(code);
        self
    }

    fn timings(mut self, queue_wait_ms: Option<i64>, run_ms: Option<i64>) -> Row {
        self.queue_wait_ms = queue_wait_ms;
        self.run_ms = run_ms;
        self
    }

    fn usage(mut self, prompt: i64, completion: i64, cost_usd: f64, llm_calls: i32) -> Row {
        self.prompt = prompt;
        self.completion = completion;
        self.cost_usd = cost_usd;
        self.llm_calls = llm_calls;
        self
    }

    fn model(mut self, model: &'static str, priced: bool) -> Row {
        self.model = model;
        self.priced = priced;
        self
    }
}

/// Writes rows into `execution_metrics` and `execution_model_usage`. The executions
/// they describe do not exist: foreign-key triggers are off for this session.
async fn insert(db: &TestDatabase, rows: &[Row]) {
    let mut conn = db.connect().await;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .expect("replica role");
    for row in rows {
        let id = Uuid::now_v7().to_string();
        let unpriced: Vec<String> = if row.priced {
            vec![]
        } else {
            vec![row.model.to_string()]
        };
        sqlx::query(
            "INSERT INTO execution_metrics (execution_id, user_id, graph_id, status, end_code, \
               created_at, started_at, finished_at, queue_wait_ms, run_ms, attempts, lost_count, \
               task_count, tasks_completed, llm_calls, llm_failures, successful_requests, \
               tool_calls, tool_failures, prompt_tokens, completion_tokens, \
               cached_prompt_tokens, total_tokens, cost_usd, models, unpriced_models) \
             VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6::timestamptz, $6::timestamptz, \
               $6::timestamptz, $7, $8, 1, 0, 1, 1, $9, $10, $9 - $10, $11, 0, $12, $13, 0, \
               $12 + $13, $14, ARRAY[$15], $16)",
        )
        .bind(&id)
        .bind(row.user.to_string())
        .bind(row.graph.map(|g| g.to_string()))
        .bind(row.status)
        .bind(row.end_code)
        .bind(row.finished_at)
        .bind(row.queue_wait_ms)
        .bind(row.run_ms)
        .bind(row.llm_calls)
        .bind(row.llm_failures)
        .bind(row.tool_calls)
        .bind(row.prompt)
        .bind(row.completion)
        .bind(row.cost_usd)
        .bind(row.model)
        .bind(&unpriced)
        .execute(&mut conn)
        .await
        .expect("insert execution_metrics");
        sqlx::query(
            "INSERT INTO execution_model_usage (execution_id, model, user_id, graph_id, \
               finished_at, llm_calls, llm_failures, successful_requests, prompt_tokens, \
               completion_tokens, cached_prompt_tokens, total_tokens, cost_usd, priced) \
             VALUES ($1::uuid, $2, $3::uuid, $4::uuid, $5::timestamptz, $6, $7, $6 - $7, $8, $9, \
               0, $8 + $9, $10, $11)",
        )
        .bind(&id)
        .bind(row.model)
        .bind(row.user.to_string())
        .bind(row.graph.map(|g| g.to_string()))
        .bind(row.finished_at)
        .bind(row.llm_calls)
        .bind(row.llm_failures)
        .bind(row.prompt)
        .bind(row.completion)
        .bind(row.cost_usd)
        .bind(row.priced)
        .execute(&mut conn)
        .await
        .expect("insert execution_model_usage");
    }
}

async fn user_id(api: &crewgraph_tests::TestApi, token: &str) -> Uuid {
    let me = body(get(api, "/api/v1/users/me", token).await).await;
    me["id"].as_str().expect("id").parse().expect("uuid")
}

async fn graph_id(api: &crewgraph_tests::TestApi, token: &str) -> Uuid {
    create_graph(api, token, one_task_graph())
        .await
        .parse()
        .expect("uuid")
}

/// GET `path` answered 200; its body.
async fn ok(api: &crewgraph_tests::TestApi, path: &str, token: &str) -> Value {
    let response = get(api, path, token).await;
    let status = response.status();
    let body = body(response).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// `percentile_cont`: linear interpolation between the sorted values.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

fn close(actual: &Value, expected: f64) -> bool {
    actual.as_f64().is_some_and(|a| (a - expected).abs() < 1e-9)
}

const RANGE: &str = "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z";

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Two tasks in order: `first` answered by `openai/gpt-4o-mini`, then `second` by
/// `second_model`.
fn two_step_graph(second_model: &str) -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "Starter", "goal": "Start",
             "backstory": "Quick.", "llm": "openai/gpt-4o-mini"}},
            {"id": "b", "type": "agent", "data": {"role": "Finisher", "goal": "Finish",
             "backstory": "Careful.", "llm": second_model}},
            {"id": "t1", "type": "task", "data": {"name": "first", "description": "Answer {question}",
             "expected_output": "One sentence."}},
            {"id": "t2", "type": "task", "data": {"name": "second", "description": "Check the answer",
             "expected_output": "One sentence."}}
        ],
        "edges": [
            {"id": "e1", "source": "a", "target": "t1"},
            {"id": "e2", "source": "b", "target": "t2"},
            {"id": "e3", "source": "t1", "target": "t2"}
        ]
    })
}

/// gpt-4o-mini priced; the other models are not.
struct PriceFile(std::path::PathBuf);

impl Drop for PriceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn price_file() -> PriceFile {
    let path = std::env::temp_dir().join(format!("dash-prices-{}.json", Uuid::new_v4()));
    std::fs::write(
        &path,
        r#"{"models": {"gpt-4o-mini": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}}"#,
    )
    .expect("write prices");
    PriceFile(path)
}

fn sum(executions: &[Value], pointer: &str) -> i64 {
    executions
        .iter()
        .map(|e| e.pointer(pointer).and_then(Value::as_i64).unwrap_or(0))
        .sum()
}

fn figures(executions: &[Value], pointer: &str) -> Vec<f64> {
    executions
        .iter()
        .filter_map(|e| e.pointer(pointer).and_then(Value::as_f64))
        .collect()
}

/// Real runs through a worker: two successes, a failure after a first task that spent
/// tokens, a cancel mid-run after a first task that spent tokens, and a cancel before the
/// run started; the dashboards must add up to what each execution reports about itself.
#[tokio::test]
async fn dashboards_add_up_the_figures_of_real_runs_that_succeeded_failed_and_were_cancelled() {
    let db = TestDatabase::migrated().await;
    let llm = ScriptedLlm::start(
        serde_json::from_value::<Script>(json!({"rules": [
            {"when": {"model": "broken-model"}, "reply": {"fault": "unauthorized"}},
            {"when": {"model": "slow-model"}, "reply": {"text": "Final Answer: late"},
             "latency_ms": 20000},
            {"reply": {"text": "Thought: I now can give a great answer\nFinal Answer: done"},
             "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 10}}
        ]}))
        .expect("script"),
    )
    .await;
    let (api, admin) = api_with_admin(&db).await;
    let started = Utc::now() - chrono::Duration::seconds(1);
    let ada = signed_up(&api, "real-runs@example.com").await;
    let bob = signed_up(&api, "real-other@example.com").await;
    let bob_id = user_id(&api, &bob).await;
    let ok_graph = create_graph(&api, &ada, one_task_graph()).await;
    let failing_graph = create_graph(&api, &ada, two_step_graph("openai/broken-model")).await;
    let slow_graph = create_graph(&api, &ada, two_step_graph("openai/slow-model")).await;
    let bobs_graph = create_graph(&api, &bob, one_task_graph()).await;
    let question = json!({"question": "q"});

    // Cancelled before any worker could start it.
    let queued = kickoff(&api, &ada, &slow_graph, question.clone()).await;
    let queued_id = queued["id"].as_str().expect("id").to_string();
    let cancelled = post(
        &api,
        &format!("/api/v1/executions/{queued_id}/cancel"),
        Some(&ada),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.status(), 200);

    let prices = price_file();
    let prices_path = prices.0.to_str().expect("utf-8 path");
    let _worker = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_PRICES_FILE", prices_path)],
    )
    .await;
    let mut ids = vec![queued_id];
    for (graph, status) in [
        (&ok_graph, "succeeded"),
        (&ok_graph, "succeeded"),
        (&failing_graph, "failed"),
    ] {
        let run = kickoff(&api, &ada, graph, question.clone()).await;
        let id = run["id"].as_str().expect("id").to_string();
        wait_for_status(&api, &ada, &id, Some(status), RUN_TIMEOUT).await;
        ids.push(id);
    }
    // Cancelled while its second task waits for the slow model.
    let slow = kickoff(&api, &ada, &slow_graph, question.clone()).await;
    let slow_id = slow["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !llm
        .requests()
        .iter()
        .any(|r| r.body["model"] == "slow-model")
    {
        assert!(Instant::now() < deadline, "the slow model was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancel = post(
        &api,
        &format!("/api/v1/executions/{slow_id}/cancel"),
        Some(&ada),
        json!({}),
    )
    .await;
    assert_eq!(cancel.status(), 200);
    wait_for_status(&api, &ada, &slow_id, Some("cancelled"), RUN_TIMEOUT).await;
    ids.push(slow_id.clone());
    let bobs_run = kickoff(&api, &bob, &bobs_graph, question.clone()).await;
    wait_for_status(
        &api,
        &bob,
        bobs_run["id"].as_str().expect("id"),
        Some("succeeded"),
        RUN_TIMEOUT,
    )
    .await;

    let mut executions = Vec::new();
    let mut model_figures = Vec::new();
    for id in &ids {
        executions.push(ok(&api, &format!("/api/v1/executions/{id}"), &ada).await);
        model_figures.push(ok(&api, &format!("/api/v1/executions/{id}/metrics"), &ada).await);
    }
    let failed = &executions[3];
    let mid_cancel = &executions[4];
    assert!(
        failed["usage"]["total_tokens"]
            .as_i64()
            .is_some_and(|t| t > 0),
        "{failed}"
    );
    assert!(
        mid_cancel["usage"]["total_tokens"]
            .as_i64()
            .is_some_and(|t| t > 0),
        "{mid_cancel}"
    );
    assert!(
        executions[0]["metrics"]["run_ms"].is_null(),
        "never started"
    );

    let to = Utc::now() + chrono::Duration::seconds(1);
    let range = format!(
        "from={}&to={}",
        started.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        to.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    let summary = ok(&api, &format!("/api/v1/dashboard/summary?{range}"), &ada).await;
    assert_eq!(
        (
            &summary["runs"],
            &summary["succeeded"],
            &summary["failed"],
            &summary["cancelled"]
        ),
        (&json!(5), &json!(2), &json!(1), &json!(2)),
        "{summary}"
    );
    assert!(close(&summary["success_rate"], 0.4));
    assert_eq!(
        summary["tokens"],
        json!({
            "prompt": sum(&executions, "/usage/prompt_tokens"),
            "completion": sum(&executions, "/usage/completion_tokens"),
            "cached_prompt": sum(&executions, "/usage/cached_prompt_tokens"),
            "total": sum(&executions, "/usage/total_tokens"),
        }),
        "the executions' own usage: {executions:#?}"
    );
    assert_eq!(summary["tokens"]["total"], 4 * 120, "four answered calls");
    for (field, pointer) in [
        ("llm_calls", "/metrics/llm_calls"),
        ("llm_failures", "/metrics/llm_failures"),
        ("tool_calls", "/metrics/tool_calls"),
        ("successful_requests", "/usage/successful_requests"),
    ] {
        assert_eq!(
            summary[field],
            sum(&executions, pointer),
            "{field}: {summary}"
        );
    }
    let cost: f64 = figures(&executions, "/metrics/cost_usd").iter().sum();
    assert!(cost > 0.0 && close(&summary["cost_usd"], cost), "{summary}");
    let run_ms = figures(&executions, "/metrics/run_ms");
    assert_eq!(
        run_ms.len(),
        4,
        "the queued-then-cancelled run has no run time"
    );
    assert!(
        close(&summary["run_ms"]["p50"], percentile(&run_ms, 0.5)),
        "{summary}"
    );
    assert!(close(&summary["run_ms"]["p95"], percentile(&run_ms, 0.95)));
    let waits = figures(&executions, "/metrics/queue_wait_ms");
    assert!(close(
        &summary["queue_wait_ms"]["p50"],
        percentile(&waits, 0.5)
    ));
    let mut unpriced: Vec<String> = executions
        .iter()
        .flat_map(|e| {
            e["metrics"]["unpriced_models"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    unpriced.sort();
    unpriced.dedup();
    assert!(!unpriced.is_empty());
    assert_eq!(summary["unpriced_models"], json!(unpriced));

    // Per graph: the slow graph's two cancellations.
    let slow_summary = ok(
        &api,
        &format!("/api/v1/dashboard/summary?{range}&graph_id={slow_graph}"),
        &ada,
    )
    .await;
    assert_eq!(
        (&slow_summary["runs"], &slow_summary["cancelled"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(
        slow_summary["tokens"]["total"],
        mid_cancel["usage"]["total_tokens"]
    );

    // Hour buckets hold exactly the runs that ended in them.
    let series = ok(
        &api,
        &format!("/api/v1/dashboard/timeseries?{range}&bucket=hour"),
        &ada,
    )
    .await;
    for bucket in series["buckets"].as_array().expect("buckets") {
        let start = time(&bucket["start"]);
        let inside: Vec<Value> = executions
            .iter()
            .filter(|e| {
                let finished = time(&e["finished_at"]);
                finished >= start && finished < start + chrono::Duration::hours(1)
            })
            .cloned()
            .collect();
        assert_eq!(bucket["runs"], inside.len(), "{bucket}");
        assert_eq!(bucket["total_tokens"], sum(&inside, "/usage/total_tokens"));
        let cancelled = inside.iter().filter(|e| e["status"] == "cancelled").count();
        assert_eq!(bucket["cancelled"], cancelled);
    }
    let in_buckets: i64 = series["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["runs"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(in_buckets, 5);

    // Rankings.
    let failing = ok(
        &api,
        &format!("/api/v1/dashboard/failing-graphs?{range}"),
        &ada,
    )
    .await;
    assert_eq!(
        failing["items"],
        json!([{"graph_id": failing_graph, "graph_name": "G", "failed": 1, "runs": 1, "failure_rate": 1.0}])
    );
    let codes = ok(&api, &format!("/api/v1/dashboard/end-codes?{range}"), &ada).await;
    assert_eq!(
        codes["items"],
        json!([{"code": "cancelled", "runs": 2}, {"code": failed["error"]["code"], "runs": 1}])
    );
    let models = ok(&api, &format!("/api/v1/dashboard/models?{range}"), &ada).await;
    let items = models["items"].as_array().expect("items");
    let mut expected_models: Vec<&str> = model_figures
        .iter()
        .flat_map(|f| f["models"].as_array().into_iter().flatten())
        .filter_map(|m| m["model"].as_str())
        .collect();
    expected_models.sort();
    expected_models.dedup();
    assert_eq!(items.len(), expected_models.len(), "{models}");
    for item in items {
        let of_model: Vec<Value> = model_figures
            .iter()
            .flat_map(|f| f["models"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["model"] == item["model"])
            .collect();
        assert_eq!(item["runs"], of_model.len(), "{item}");
        assert_eq!(item["llm_calls"], sum(&of_model, "/llm_calls"), "{item}");
        assert_eq!(
            item["llm_failures"],
            sum(&of_model, "/llm_failures"),
            "{item}"
        );
        assert_eq!(
            item["tokens"]["total"],
            sum(&of_model, "/tokens/total_tokens"),
            "{item}"
        );
        assert_eq!(item["priced"], of_model.iter().all(|m| m["priced"] == true));
    }
    assert_eq!(
        items[0]["model"], "openai/gpt-4o-mini",
        "the most calls: {models}"
    );
    let broken = items
        .iter()
        .find(|m| m["model"] == "openai/broken-model")
        .expect("broken model");
    assert!(
        broken["llm_failures"].as_i64().is_some_and(|n| n >= 1),
        "{broken}"
    );

    // Bob's run is his alone; an admin sees both.
    assert_eq!(
        ok(&api, &format!("/api/v1/dashboard/summary?{range}"), &bob).await["runs"],
        1
    );
    let everyone = ok(
        &api,
        &format!("/api/v1/admin/dashboard/summary?{range}"),
        &admin,
    )
    .await;
    assert_eq!(everyone["runs"], 6);
    assert_eq!(everyone["tokens"]["total"], 5 * 120);
    let only_bob = ok(
        &api,
        &format!("/api/v1/admin/dashboard/summary?{range}&user_id={bob_id}"),
        &admin,
    )
    .await;
    assert_eq!(only_bob["runs"], 1);
    expect_error(
        get(
            &api,
            &format!("/api/v1/dashboard/summary?graph_id={bobs_graph}"),
            &ada,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_summary_counts_every_outcome_with_exact_percentiles_tokens_and_cost_per_scope() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let ada = signed_up(&api, "ada@example.com").await;
    let bob = signed_up(&api, "bob@example.com").await;
    let (ada_id, bob_id) = (user_id(&api, &ada).await, user_id(&api, &bob).await);
    let (g1, g2, g3) = (
        graph_id(&api, &ada).await,
        graph_id(&api, &ada).await,
        graph_id(&api, &bob).await,
    );
    let ok_run = |graph, finished_at, run_ms, wait| {
        Row::new(ada_id, Some(graph), "succeeded", finished_at).timings(Some(wait), Some(run_ms))
    };
    insert(
        &db,
        &[
            // In range: `from` itself is included.
            ok_run(g1, "2026-03-01T00:00:00Z", 1_000, 10).usage(100, 20, 0.5, 2),
            ok_run(g1, "2026-03-02T10:00:00Z", 2_000, 20).usage(200, 30, 0.25, 1),
            ok_run(g1, "2026-03-03T10:00:00Z", 4_000, 40).usage(300, 40, 0.125, 3),
            ok_run(g1, "2026-03-04T10:00:00Z", 8_000, 80).model("ollama/llama3", false),
            Row::new(ada_id, Some(g2), "failed", "2026-03-05T10:00:00Z")
                .timings(Some(100), Some(500))
                .usage(50, 0, 0.0, 1),
            // Cancelled while queued: no timings, no usage.
            Row::new(ada_id, Some(g2), "cancelled", "2026-03-06T10:00:00Z")
                .timings(None, None)
                .usage(0, 0, 0.0, 0),
            // Out of range: just before `from`, and exactly `to` (excluded).
            ok_run(g1, "2026-02-28T23:59:59.999999Z", 9_999, 9),
            ok_run(g1, "2026-03-08T00:00:00Z", 9_999, 9),
            // Bob's.
            Row::new(bob_id, Some(g3), "succeeded", "2026-03-02T00:00:00Z")
                .usage(1_000, 100, 1.0, 4)
                .model("anthropic/claude-sonnet-4", true),
        ],
    )
    .await;

    let summary = ok(&api, &format!("/api/v1/dashboard/summary?{RANGE}"), &ada).await;
    assert_eq!(
        time(&summary["from"]),
        at("2026-03-01T00:00:00Z"),
        "{summary}"
    );
    assert_eq!(time(&summary["to"]), at("2026-03-08T00:00:00Z"));
    assert_eq!(
        (
            &summary["runs"],
            &summary["succeeded"],
            &summary["failed"],
            &summary["cancelled"]
        ),
        (&json!(6), &json!(4), &json!(1), &json!(1)),
        "{summary}"
    );
    assert!(close(&summary["success_rate"], 4.0 / 6.0), "{summary}");
    // The cancelled run never started: it has no run time or queue wait.
    let run_ms = [1_000.0, 2_000.0, 4_000.0, 8_000.0, 500.0];
    let waits = [10.0, 20.0, 40.0, 80.0, 100.0];
    assert!(close(&summary["run_ms"]["p50"], percentile(&run_ms, 0.5)));
    assert!(
        close(&summary["run_ms"]["p95"], percentile(&run_ms, 0.95)),
        "{summary}"
    );
    assert!(close(
        &summary["queue_wait_ms"]["p50"],
        percentile(&waits, 0.5)
    ));
    assert!(close(
        &summary["queue_wait_ms"]["p95"],
        percentile(&waits, 0.95)
    ));
    assert_eq!(
        summary["tokens"],
        json!({"prompt": 750, "completion": 100, "cached_prompt": 0, "total": 850})
    );
    assert!(close(&summary["cost_usd"], 0.5 + 0.25 + 0.125 + 0.25));
    assert_eq!(summary["llm_calls"], 2 + 1 + 3 + 1 + 1);
    assert_eq!(summary["successful_requests"], 2 + 1 + 3 + 1 + 1);
    assert_eq!(summary["unpriced_models"], json!(["ollama/llama3"]));

    // One graph.
    let g2_summary = ok(
        &api,
        &format!("/api/v1/dashboard/summary?{RANGE}&graph_id={g2}"),
        &ada,
    )
    .await;
    assert_eq!(g2_summary["runs"], 2);
    assert_eq!(g2_summary["success_rate"], 0.0);
    assert_eq!(g2_summary["run_ms"], json!({"p50": 500.0, "p95": 500.0}));
    assert_eq!(g2_summary["unpriced_models"], json!([]));
    // Another user's graph is not found; nor is one that does not exist.
    for graph in [g3, Uuid::now_v7()] {
        expect_error(
            get(
                &api,
                &format!("/api/v1/dashboard/summary?graph_id={graph}"),
                &ada,
            )
            .await,
            404,
            "not_found",
        )
        .await;
    }
    // No runs: no rate and no percentiles, rather than zeros.
    let empty = ok(
        &api,
        "/api/v1/dashboard/summary?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
        &ada,
    )
    .await;
    assert_eq!(empty["runs"], 0);
    assert_eq!(empty["success_rate"], Value::Null, "{empty}");
    assert_eq!(empty["run_ms"], json!({"p50": null, "p95": null}));
    assert_eq!(empty["tokens"]["total"], 0);
    assert_eq!(empty["cost_usd"], 0.0);

    // Bob sees only his own.
    let bobs = ok(&api, &format!("/api/v1/dashboard/summary?{RANGE}"), &bob).await;
    assert_eq!(bobs["runs"], 1);
    assert_eq!(bobs["tokens"]["total"], 1_100);

    // Admins see everyone, or one user; others are refused.
    let all = ok(
        &api,
        &format!("/api/v1/admin/dashboard/summary?{RANGE}"),
        &admin,
    )
    .await;
    assert_eq!(all["runs"], 7);
    assert_eq!(all["tokens"]["total"], 850 + 1_100);
    let only_bob = ok(
        &api,
        &format!("/api/v1/admin/dashboard/summary?{RANGE}&user_id={bob_id}"),
        &admin,
    )
    .await;
    assert_eq!(only_bob["runs"], 1);
    let ada_graph = ok(
        &api,
        &format!("/api/v1/admin/dashboard/summary?{RANGE}&graph_id={g1}"),
        &admin,
    )
    .await;
    assert_eq!(
        ada_graph["runs"], 4,
        "an admin may filter by anyone's graph"
    );
    for missing in [
        format!("user_id={}", Uuid::now_v7()),
        format!("graph_id={}", Uuid::now_v7()),
    ] {
        expect_error(
            get(
                &api,
                &format!("/api/v1/admin/dashboard/summary?{missing}"),
                &admin,
            )
            .await,
            404,
            "not_found",
        )
        .await;
    }
    for path in [
        "summary",
        "timeseries",
        "failing-graphs",
        "end-codes",
        "models",
    ] {
        expect_error(
            get(&api, &format!("/api/v1/admin/dashboard/{path}"), &ada).await,
            403,
            "forbidden",
        )
        .await;
        let anonymous = api
            .client
            .get(api.url(&format!("/api/v1/dashboard/{path}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(anonymous.status(), 401, "{path}");
    }
    let admin_own = ok(&api, &format!("/api/v1/dashboard/summary?{RANGE}"), &admin).await;
    assert_eq!(
        admin_own["runs"], 0,
        "an admin's own dashboard is their own runs ({ADMIN_EMAIL})"
    );
}

#[tokio::test]
async fn time_series_have_every_bucket_cut_at_the_time_zones_hours_and_midnights() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let ada = signed_up(&api, "series@example.com").await;
    let ada_id = user_id(&api, &ada).await;
    let graph = graph_id(&api, &ada).await;
    let run = |status, finished_at, run_ms| {
        Row::new(ada_id, Some(graph), status, finished_at).timings(Some(1), Some(run_ms))
    };
    insert(
        &db,
        &[
            run("succeeded", "2026-03-28T00:00:00Z", 1_000),
            run("failed", "2026-03-28T00:59:59Z", 3_000),
            run("succeeded", "2026-03-28T02:30:00Z", 2_000),
            // 00:30 on 30 March in Paris (summer time, UTC+2) but 29 March in UTC.
            run("cancelled", "2026-03-29T22:30:00Z", 4_000),
        ],
    )
    .await;
    let range = "from=2026-03-28T00:00:00Z&to=2026-04-01T00:00:00Z";

    let utc_days = ok(&api, &format!("/api/v1/dashboard/timeseries?{range}"), &ada).await;
    assert_eq!(utc_days["bucket"], "day");
    assert_eq!(utc_days["time_zone"], "UTC");
    let starts: Vec<DateTime<Utc>> = utc_days["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| time(&b["start"]))
        .collect();
    assert_eq!(
        starts,
        [
            at("2026-03-28T00:00:00Z"),
            at("2026-03-29T00:00:00Z"),
            at("2026-03-30T00:00:00Z"),
            at("2026-03-31T00:00:00Z")
        ]
    );
    let first = &utc_days["buckets"][0];
    assert_eq!(
        (
            &first["runs"],
            &first["succeeded"],
            &first["failed"],
            &first["cancelled"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(0)),
        "{first}"
    );
    assert_eq!(first["total_tokens"], 330);
    assert_eq!(first["run_ms_p50"], 2_000.0);
    assert_eq!(utc_days["buckets"][1]["cancelled"], 1);
    let empty = &utc_days["buckets"][2];
    assert_eq!(
        (
            &empty["runs"],
            &empty["total_tokens"],
            &empty["cost_usd"],
            &empty["run_ms_p50"]
        ),
        (&json!(0), &json!(0), &json!(0.0), &Value::Null),
        "empty buckets are zeros: {empty}"
    );

    // In Paris, days start at 23:00 UTC in winter and 22:00 UTC in summer; the first bucket
    // is the Paris day holding `from` (01:00 on 28 March).
    let paris = ok(
        &api,
        &format!("/api/v1/dashboard/timeseries?{range}&time_zone=Europe/Paris"),
        &ada,
    )
    .await;
    assert_eq!(paris["time_zone"], "Europe/Paris");
    let paris_days: Vec<(DateTime<Utc>, i64)> = paris["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| (time(&b["start"]), b["runs"].as_i64().expect("runs")))
        .collect();
    assert_eq!(
        paris_days,
        [
            (at("2026-03-27T23:00:00Z"), 3),
            (at("2026-03-28T23:00:00Z"), 0),
            (at("2026-03-29T22:00:00Z"), 1),
            (at("2026-03-30T22:00:00Z"), 0),
            (at("2026-03-31T22:00:00Z"), 0)
        ]
    );

    // Hours: 96 of them, the runs in theirs.
    let hours = ok(
        &api,
        &format!("/api/v1/dashboard/timeseries?{range}&bucket=hour&graph_id={graph}"),
        &ada,
    )
    .await;
    let buckets = hours["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 96);
    let runs: Vec<i64> = buckets
        .iter()
        .map(|b| b["runs"].as_i64().expect("runs"))
        .collect();
    assert_eq!(runs.iter().sum::<i64>(), 4);
    assert_eq!((runs[0], runs[1], runs[2], runs[46]), (2, 0, 1, 1));
    assert_eq!(time(&buckets[46]["start"]), at("2026-03-29T22:00:00Z"));

    // Admin: the same figures across users.
    let all = ok(
        &api,
        &format!("/api/v1/admin/dashboard/timeseries?{range}"),
        &admin,
    )
    .await;
    assert_eq!(all["buckets"][0]["runs"], 3);

    // Too many buckets, unknown zones, POSIX offsets, unknown bucket widths.
    let refused = expect_error(
        get(
            &api,
            "/api/v1/dashboard/timeseries?bucket=hour&from=2026-01-01T00:00:00Z&to=2026-03-25T08:00:01Z",
            &ada,
        )
        .await,
        422,
        "too_many_buckets",
    )
    .await;
    assert_eq!(refused["error"]["details"]["field"], "bucket");
    ok(
        &api,
        "/api/v1/dashboard/timeseries?bucket=hour&from=2026-01-01T00:00:00Z&to=2026-03-25T08:00:00Z",
        &ada,
    )
    .await;
    for zone in ["Mars/Olympus_Mons", "%2B02", "Europe/Paris%27"] {
        let refused = expect_error(
            get(
                &api,
                &format!("/api/v1/dashboard/timeseries?time_zone={zone}"),
                &ada,
            )
            .await,
            422,
            "invalid_time_zone",
        )
        .await;
        assert_eq!(refused["error"]["details"]["field"], "time_zone");
    }
    expect_error(
        get(&api, "/api/v1/dashboard/timeseries?bucket=week", &ada).await,
        400,
        "invalid_parameter",
    )
    .await;
}

#[tokio::test]
async fn failing_graphs_end_codes_and_models_are_ranked_and_paged_by_keyset() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let ada = signed_up(&api, "ranks@example.com").await;
    let bob = signed_up(&api, "other-ranks@example.com").await;
    let (ada_id, bob_id) = (user_id(&api, &ada).await, user_id(&api, &bob).await);
    let (g1, g2, g3) = (
        graph_id(&api, &ada).await,
        graph_id(&api, &ada).await,
        graph_id(&api, &ada).await,
    );
    let bobs_graph = graph_id(&api, &bob).await;
    let t = "2026-03-02T12:00:00Z";
    let failed = |graph, code| Row::new(ada_id, graph, "failed", t).code(code);
    let mut rows = vec![
        // g1: 3 failed of 4; g2 and g3: 1 failed each (a tie, broken by id); deleted
        // graphs (graph_id null): 2 failed.
        failed(Some(g1), "llm_error"),
        failed(Some(g1), "llm_error"),
        failed(Some(g1), "tool_error"),
        Row::new(ada_id, Some(g1), "succeeded", t).usage(10, 1, 0.0, 5),
        failed(Some(g2), "llm_error").model("anthropic/claude-sonnet-4", true),
        failed(Some(g3), "timeout").model("ollama/llama3", false),
        failed(None, "tool_error"),
        failed(None, "llm_error"),
        Row::new(ada_id, Some(g3), "cancelled", t),
        Row::new(bob_id, Some(bobs_graph), "failed", t).code("bob_only"),
    ];
    // A graph with only successes is not a failing graph.
    rows.push(Row::new(ada_id, Some(g2), "succeeded", t));
    insert(&db, &rows).await;

    let page = ok(
        &api,
        &format!("/api/v1/dashboard/failing-graphs?{RANGE}"),
        &ada,
    )
    .await;
    let items = page["items"].as_array().expect("items");
    let (low, high) = if g2 < g3 { (g2, g3) } else { (g3, g2) };
    let ranked: Vec<(Value, i64, i64)> = items
        .iter()
        .map(|i| {
            (
                i["graph_id"].clone(),
                i["failed"].as_i64().expect("n"),
                i["runs"].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            (json!(g1), 3, 4),
            (Value::Null, 2, 2),
            (json!(low), 1, 2),
            (json!(high), 1, 2),
        ],
        "{page}"
    );
    assert_eq!(items[0]["graph_name"], "G");
    assert_eq!(items[0]["failure_rate"], 0.75);
    assert_eq!(items[1]["graph_name"], Value::Null);
    assert_eq!(page["next_cursor"], Value::Null);

    // Page by one: the same order, each cursor leading to the next item.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/api/v1/dashboard/failing-graphs?{RANGE}&limit=1"),
            Some(c) => format!("/api/v1/dashboard/failing-graphs?{RANGE}&limit=1&cursor={c}"),
        };
        let page = ok(&api, &path, &ada).await;
        paged.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["graph_id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let all_ids: Vec<Value> = items.iter().map(|i| i["graph_id"].clone()).collect();
    assert_eq!(paged, all_ids);

    let codes = ok(&api, &format!("/api/v1/dashboard/end-codes?{RANGE}"), &ada).await;
    assert_eq!(
        codes["items"],
        json!([
            {"code": "llm_error", "runs": 4},
            {"code": "tool_error", "runs": 2},
            {"code": "cancelled", "runs": 1},
            {"code": "timeout", "runs": 1}
        ])
    );
    let first = ok(
        &api,
        &format!("/api/v1/dashboard/end-codes?{RANGE}&limit=2"),
        &ada,
    )
    .await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_string();
    let second = ok(
        &api,
        &format!("/api/v1/dashboard/end-codes?{RANGE}&limit=2&cursor={cursor}"),
        &ada,
    )
    .await;
    assert_eq!(
        second["items"],
        json!([{"code": "cancelled", "runs": 1}, {"code": "timeout", "runs": 1}])
    );
    assert_eq!(second["next_cursor"], Value::Null);
    // A cursor of one list is refused by another.
    let refused = expect_error(
        get(
            &api,
            &format!("/api/v1/dashboard/models?cursor={cursor}"),
            &ada,
        )
        .await,
        422,
        "invalid_cursor",
    )
    .await;
    assert_eq!(refused["error"]["details"]["field"], "cursor");
    expect_error(
        get(&api, "/api/v1/dashboard/end-codes?limit=0", &ada).await,
        422,
        "invalid_limit",
    )
    .await;

    let models = ok(&api, &format!("/api/v1/dashboard/models?{RANGE}"), &ada).await;
    let names: Vec<&str> = models["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["model"].as_str().expect("model"))
        .collect();
    assert_eq!(
        names,
        [
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4",
            "ollama/llama3"
        ]
    );
    let gpt = &models["items"][0];
    assert_eq!(gpt["runs"], 8, "{gpt}");
    assert_eq!(gpt["llm_calls"], 5 + 7);
    assert_eq!(gpt["tokens"]["total"], 11 + 7 * 110);
    assert!(close(&gpt["cost_usd"], 7.0 * 0.25));
    assert_eq!(gpt["priced"], true);
    assert_eq!(models["items"][2]["priced"], false);
    let g3_models = ok(
        &api,
        &format!("/api/v1/dashboard/models?{RANGE}&graph_id={g3}"),
        &ada,
    )
    .await;
    let g3_names: Vec<&str> = g3_models["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["model"].as_str().expect("model"))
        .collect();
    assert_eq!(
        g3_names,
        ["ollama/llama3", "openai/gpt-4o-mini"],
        "ties by name"
    );

    // Admin: everyone's failures, including Bob's graph and code.
    let everyone = ok(
        &api,
        &format!("/api/v1/admin/dashboard/end-codes?{RANGE}"),
        &admin,
    )
    .await;
    assert!(
        everyone["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["code"] == "bob_only"),
        "{everyone}"
    );
    let bobs = ok(
        &api,
        &format!("/api/v1/admin/dashboard/failing-graphs?{RANGE}&user_id={bob_id}"),
        &admin,
    )
    .await;
    assert_eq!(bobs["items"][0]["graph_id"], json!(bobs_graph));
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(1));
    let admin_models = ok(
        &api,
        &format!("/api/v1/admin/dashboard/models?{RANGE}"),
        &admin,
    )
    .await;
    assert_eq!(admin_models["items"][0]["runs"], 9);
}

#[tokio::test]
async fn ranges_that_are_empty_backwards_too_long_or_unstorable_are_422_naming_the_field() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let token = signed_up(&api, "ranges@example.com").await;
    let cases = [
        (
            "from=2026-03-02T00:00:00Z&to=2026-03-02T00:00:00Z",
            "invalid_range",
            "to",
        ),
        (
            "from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "invalid_range",
            "to",
        ),
        ("from=2999-01-01T00:00:00Z", "invalid_range", "to"),
        (
            "from=2024-01-01T00:00:00Z&to=2025-02-05T00:00:01Z",
            "range_too_long",
            "from",
        ),
        (
            "from=-4714-11-23T00:00:00Z&to=2026-01-01T00:00:00Z",
            "invalid_timestamp",
            "from",
        ),
    ];
    for (query, code, field) in cases {
        for path in [
            "summary",
            "timeseries",
            "failing-graphs",
            "end-codes",
            "models",
        ] {
            for (prefix, token) in [
                ("/api/v1/dashboard", &token),
                ("/api/v1/admin/dashboard", &admin),
            ] {
                let refused = expect_error(
                    get(&api, &format!("{prefix}/{path}?{query}"), token).await,
                    422,
                    code,
                )
                .await;
                assert_eq!(
                    refused["error"]["details"]["field"], field,
                    "{path}?{query}"
                );
            }
        }
    }
    // 400 days exactly is allowed; so is the default range.
    ok(
        &api,
        "/api/v1/dashboard/summary?from=2024-01-01T00:00:00Z&to=2025-02-04T00:00:00Z",
        &token,
    )
    .await;
    let default = ok(&api, "/api/v1/dashboard/summary", &token).await;
    let (from, to) = (time(&default["from"]), time(&default["to"]));
    assert_eq!(to - from, chrono::Duration::days(7));
    assert!((Utc::now() - to).num_seconds().abs() < 60);
}

/// The plan of `statement` on `conn`, one line per node.
async fn plan(conn: &sea_orm::DatabaseConnection, statement: Statement) -> String {
    let explain = Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("EXPLAIN {}", statement.sql),
        statement.values.expect("values").0,
    );
    let lines: Vec<String> = conn
        .query_all(explain)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get::<String>("", "QUERY PLAN").expect("plan line"))
        .collect();
    lines.join("\n")
}

/// A year of runs of 50 users (2 graphs each), analysed, so the planner weighs real
/// selectivities.
async fn fill_a_year(db: &TestDatabase) {
    let mut conn = db.connect().await;
    for sql in [
        "SET session_replication_role = replica",
        "INSERT INTO execution_metrics (execution_id, user_id, graph_id, status, end_code, \
           created_at, started_at, finished_at, queue_wait_ms, run_ms, attempts, lost_count, \
           task_count, tasks_completed, llm_calls, llm_failures, successful_requests, \
           tool_calls, tool_failures, prompt_tokens, completion_tokens, cached_prompt_tokens, \
           total_tokens, cost_usd, models, unpriced_models) \
         SELECT gen_random_uuid(), \
           ('00000000-0000-0000-0000-' || lpad((i % 50)::text, 12, '0'))::uuid, \
           ('00000000-0000-0000-0001-' || lpad((i % 100)::text, 12, '0'))::uuid, \
           CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, \
           CASE WHEN i % 10 = 0 THEN 'llm_error' END, \
           t, t, t, i % 300, 1000 + i % 9000, 1, 0, 1, 1, 2, 0, 2, 1, 0, 300, 50, 0, 350, 0.001, \
           ARRAY['openai/gpt-4o-mini'], ARRAY[]::text[] \
         FROM generate_series(1, 20000) AS i, \
           LATERAL (SELECT timestamptz '2026-03-08' - i * interval '30 minutes' AS t) AS times",
        "INSERT INTO execution_model_usage (execution_id, model, user_id, graph_id, finished_at, \
           llm_calls, llm_failures, successful_requests, prompt_tokens, completion_tokens, \
           cached_prompt_tokens, total_tokens, cost_usd, priced) \
         SELECT execution_id, 'openai/gpt-4o-mini', user_id, graph_id, finished_at, 2, 0, 2, \
           300, 50, 0, 350, 0.001, true FROM execution_metrics",
        "ANALYZE execution_metrics",
        "ANALYZE execution_model_usage",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
}

/// Every statement, for each kind of scope: with sequential scans switched off, a plan
/// that still reads a metrics table sequentially has no index for its range; and with a
/// year of data and the planner left alone, a week is read through an index, not by
/// scanning the year. (Which index — the scope's or `finished_at`'s — is the planner's
/// choice by cost: rows arrive in `finished_at` order, so the range index is often
/// cheapest for a short range; docs/metrics.md has the measurements.)
#[tokio::test]
async fn every_dashboard_statement_reads_its_range_through_an_index() {
    let db = TestDatabase::migrated().await;
    fill_a_year(&db).await;
    let mut options = ConnectOptions::new(db.url.clone());
    options.max_connections(1).min_connections(1);
    let conn = Database::connect(options).await.expect("connect");
    let to = at("2026-03-08T00:00:00Z");
    let range = TimeRange {
        from: to - chrono::Duration::days(7),
        to,
    };
    let user = Some(Uuid::parse_str("00000000-0000-0000-0000-000000000007").expect("uuid"));
    let graph = Some(Uuid::parse_str("00000000-0000-0000-0001-000000000007").expect("uuid"));
    let scope = |user_id, graph_id| Scope {
        user_id,
        graph_id,
        range,
    };
    let scopes = [
        ("one user", scope(user, None)),
        ("one user's graph", scope(user, graph)),
        ("everyone (admin)", scope(None, None)),
        ("any graph (admin)", scope(None, graph)),
    ];
    for (label, scope) in scopes {
        for (name, statement) in dashboard::statements(&scope).expect("statements") {
            conn.execute_unprepared("SET enable_seqscan = off")
                .await
                .expect("set");
            let forced = plan(&conn, statement.clone()).await;
            for table in ["execution_metrics", "execution_model_usage"] {
                assert!(
                    !forced.contains(&format!("Seq Scan on {table}")),
                    "{label} {name} scans {table}:\n{forced}"
                );
            }
            conn.execute_unprepared("RESET enable_seqscan")
                .await
                .expect("reset");
            let chosen = plan(&conn, statement).await;
            assert!(
                !chosen.contains("Seq Scan on execution_"),
                "{label} {name} scans a metrics table for a week:\n{chosen}"
            );
        }
    }
}
