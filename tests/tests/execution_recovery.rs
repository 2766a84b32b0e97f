//! Workers dying, workers stopping, many workers, and the database going away — with
//! real processes: nothing runs twice at once, nothing stays `running`, no event is lost.

use std::time::{Duration, Instant};

use crewgraph_tests::TcpProxy;
use crewgraph_tests::http::{JWT_SECRET, api, body, get, post, signed_up};
use crewgraph_tests::pipeline::{
    assert_contiguous, create_graph, database, event_log, kickoff, one_task_graph, open_stream,
    read_to_end, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::spawn_api_with;
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn script(value: Value) -> Script {
    serde_json::from_value(value).expect("script")
}

/// The first model call takes 30 s (the worker is killed during it); later ones answer at once.
fn first_call_hangs() -> Script {
    script(json!({"rules": [
        {"times": 1, "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: too late"}, "latency_ms": 30000},
        {"reply": {"text": "Thought: I now can give a great answer\nFinal Answer: recovered"}}
    ]}))
}

async fn wait_for_requests(llm: &ScriptedLlm, count: usize) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while llm.requests().len() < count {
        assert!(
            Instant::now() < deadline,
            "the model was called {} times",
            llm.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the stored log of an execution has an event of `event_type`.
async fn wait_for_event(api: &crewgraph_tests::TestApi, token: &str, id: &str, event_type: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !event_log(api, token, id)
        .await
        .iter()
        .any(|e| e["type"] == event_type)
    {
        assert!(Instant::now() < deadline, "no {event_type} event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn started_attempts(log: &[Value]) -> Vec<i64> {
    log.iter()
        .filter(|e| e["type"] == "execution.started")
        .filter_map(|e| e["data"]["attempt"].as_i64())
        .collect()
}

#[tokio::test]
async fn a_killed_workers_execution_is_finished_by_another_worker() {
    let db = database().await;
    let llm = ScriptedLlm::start(first_call_hangs()).await;
    let api = api(&db).await;
    let fast_recovery = [("CREWGRAPH_WORKER_LOST_AFTER_SECS", "2")];
    let doomed = spawn_worker(&db.url, &llm.openai_base_url(), &fast_recovery).await;
    let token = signed_up(&api, "survivor@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    wait_for_requests(&llm, 1).await;
    // The first attempt's events up to its model call are stored.
    wait_for_event(&api, &token, id, "llm.started").await;

    doomed.signal("KILL");
    let _rescuer = spawn_worker(&db.url, &llm.openai_base_url(), &fast_recovery).await;
    let finished = wait_for_status(&api, &token, id, None, RUN_TIMEOUT).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["result"]["raw"], "recovered");
    assert_eq!(finished["attempt"], 2);
    let log = event_log(&api, &token, id).await;
    assert_eq!(started_attempts(&log), [1, 2]);
    let seqs: Vec<i64> = log.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>());
    let running = body(get(&api, "/api/v1/executions?status=running", &token).await).await;
    assert_eq!(running["items"], json!([]));
}

#[tokio::test]
async fn past_the_attempt_limit_a_lost_execution_fails_as_worker_lost() {
    let db = database().await;
    let llm = ScriptedLlm::start(first_call_hangs()).await;
    let api = api(&db).await;
    let settings = [
        ("CREWGRAPH_WORKER_LOST_AFTER_SECS", "2"),
        ("CREWGRAPH_EXECUTION_MAX_ATTEMPTS", "1"),
    ];
    let doomed = spawn_worker(&db.url, &llm.openai_base_url(), &settings).await;
    let token = signed_up(&api, "unlucky@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    wait_for_requests(&llm, 1).await;
    doomed.signal("KILL");
    let _reaper = spawn_worker(&db.url, &llm.openai_base_url(), &settings).await;

    let mut stream = open_stream(&api, &token, id, None).await;
    let events = read_to_end(&mut stream, RUN_TIMEOUT).await;
    assert_contiguous(&events);
    let last = events.last().expect("events");
    assert_eq!(last.event.as_deref(), Some("execution.failed"));
    assert_eq!(last.data["data"]["code"], "worker_lost");
    let finished = wait_for_status(&api, &token, id, Some("failed"), RUN_TIMEOUT).await;
    assert_eq!(finished["error"]["code"], "worker_lost");
    assert_eq!(llm.requests().len(), 1, "never run again");
}

#[tokio::test]
async fn two_workers_run_two_hundred_kickoffs_each_exactly_once() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_MAX_ACTIVE_EXECUTIONS", "1000"),
        ],
    )
    .await;
    let _first = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let _second = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "busy@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let mut ids = Vec::new();
    for n in 0..200 {
        let execution = kickoff(
            &api,
            &token,
            &graph,
            json!({"question": format!("number {n}")}),
        )
        .await;
        ids.push(execution["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let finished = wait_for_status(&api, &token, id, None, RUN_TIMEOUT).await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
        assert_eq!(finished["attempt"], 1);
    }
    let mut conn = db.connect().await;
    let started: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT execution_id, count(*) FROM execution_events WHERE type = 'execution.started' GROUP BY execution_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("started counts");
    assert_eq!(started.len(), 200);
    assert!(
        started.iter().all(|(_, count)| *count == 1),
        "an execution started twice"
    );
    // One model call per execution, each with its own question.
    let requests = llm.requests();
    assert_eq!(requests.len(), 200);
    let mut questions: Vec<String> = requests
        .iter()
        .map(|r| {
            r.body["messages"][1]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    questions.sort();
    questions.dedup();
    assert_eq!(questions.len(), 200);
    let workers: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT worker_id FROM executions")
            .fetch_all(&mut conn)
            .await
            .expect("workers");
    assert!(!workers.is_empty());
    let leftover: i64 = sqlx::query_scalar("SELECT count(*) FROM fang_tasks")
        .fetch_one(&mut conn)
        .await
        .expect("tasks");
    assert_eq!(leftover, 0, "finished executions leave no queue task");
}

#[tokio::test]
async fn a_stream_continues_without_gaps_across_a_database_outage() {
    let db = database().await;
    let llm = ScriptedLlm::start(script(json!({"rules": [{
        "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: an answer that streams for a few seconds in small chunks"},
        "chunk_chars": 4, "chunk_delay_ms": 100
    }]})))
    .await;
    let postgres = TcpProxy::start(crewgraph_tests::database::server_addr()).await;
    let via_proxy = postgres.url_via(&db.url);
    let api = spawn_api_with(&via_proxy, &[("CREWGRAPH_JWT_SECRET", JWT_SECRET)]).await;
    let _worker = spawn_worker(&via_proxy, &llm.openai_base_url(), &[]).await;
    let token = signed_up(&api, "outage@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");

    let mut stream = open_stream(&api, &token, id, None).await;
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &crewgraph_tests::pipeline::SseEvent| e.event.as_deref() == Some("llm.delta"))
    {
        events.push(
            tokio::time::timeout(RUN_TIMEOUT, stream.next_event())
                .await
                .expect("event in time")
                .expect("stream open"),
        );
    }
    // Every connection to PostgreSQL (the API's pool and listener, the worker's) is cut,
    // and new ones are refused for a while, as during a restart.
    postgres.cut().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.restore();
    events.extend(read_to_end(&mut stream, RUN_TIMEOUT).await);
    assert_contiguous(&events);
    assert_eq!(
        events.last().and_then(|e| e.event.as_deref()),
        Some("execution.succeeded")
    );
    let log = event_log(&api, &token, id).await;
    let streamed: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(streamed, log);
}

#[tokio::test]
async fn a_stopping_worker_finishes_its_crews_or_hands_them_back() {
    let db = database().await;
    let llm = ScriptedLlm::start(first_call_hangs()).await;
    let api = api(&db).await;
    let stopping = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_WORKER_SHUTDOWN_GRACE_SECS", "1")],
    )
    .await;
    let token = signed_up(&api, "handback@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    wait_for_requests(&llm, 1).await;

    let mut stopping = stopping;
    stopping.signal("TERM");
    assert_eq!(stopping.wait_exit(Duration::from_secs(20)).await, Some(0));
    let handed_back = wait_for_status(&api, &token, id, Some("queued"), RUN_TIMEOUT).await;
    assert_eq!(handed_back["attempt"], 1, "one claim so far");

    // Even a worker that tolerates no lost run takes it: a hand-back is not a loss.
    let _next = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_EXECUTION_MAX_ATTEMPTS", "1")],
    )
    .await;
    let finished = wait_for_status(&api, &token, id, Some("succeeded"), RUN_TIMEOUT).await;
    assert_eq!(finished["result"]["raw"], "recovered");
    assert_eq!(finished["attempt"], 2, "every claim is a new attempt");
    let log = event_log(&api, &token, id).await;
    assert_eq!(started_attempts(&log), [1, 2]);
    let terminal = log
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("execution.succeeded" | "execution.failed" | "execution.cancelled")
            )
        })
        .count();
    assert_eq!(terminal, 1, "exactly one terminal event");
}

/// A run that ends while a heartbeat is under way is not a lost claim. Two runs, Y then X
/// (ids in that order); the test holds Y's row, so a heartbeat (its snapshot lists both)
/// waits on Y before it reaches X; meanwhile X is cancelled and its end recorded. When the
/// heartbeat reaches X, X is no longer running — because it ended, not because it was lost.
#[tokio::test]
async fn a_run_that_ends_during_a_heartbeat_is_not_reported_lost() {
    let db = database().await;
    let llm = ScriptedLlm::start(script(json!({"latency_ms": 60000}))).await;
    let api = api(&db).await;
    // A heartbeat every 2 s, each given 2 s to answer.
    let worker = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_WORKER_LOST_AFTER_SECS", "10")],
    )
    .await;
    let token = signed_up(&api, "heartbeat@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let held = kickoff(&api, &token, &graph, json!({"question": "y"})).await;
    let ending = kickoff(&api, &token, &graph, json!({"question": "x"})).await;
    let [held, ending] = [&held, &ending].map(|e| e["id"].as_str().expect("id").to_string());
    assert!(held < ending, "ids are time-ordered");
    wait_for_requests(&llm, 2).await;

    let mut holder = db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM executions WHERE id = $1::uuid FOR UPDATE")
        .bind(&held)
        .execute(&mut holder)
        .await
        .expect("hold the first run's row");
    let mut watcher = db.connect().await;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%jsonb_array_elements($2::jsonb) x%'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    post(
        &api,
        &format!("/api/v1/executions/{ending}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    wait_for_status(&api, &token, &ending, Some("cancelled"), RUN_TIMEOUT).await;
    sqlx::query("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release");
    // Let the heartbeat finish, then one more.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let false_alarms: Vec<String> = worker
        .logs()
        .into_iter()
        .filter(|line| line.contains("claim lost") || line.contains("heartbeat failed"))
        .collect();
    assert!(false_alarms.is_empty(), "{false_alarms:?}");
    let still = body(get(&api, &format!("/api/v1/executions/{held}"), &token).await).await;
    assert_eq!(still["status"], "running", "the held run goes on");
}
