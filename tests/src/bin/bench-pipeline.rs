//! `bench-pipeline`: the execution pipeline's figures beside DESIGN §7's targets, measured
//! with the real release binaries, PostgreSQL on loopback and an in-process scripted-llm.
//!
//!   cargo build --release --bins && target/release/bench-pipeline [section ...]
//!
//! Sections: `pickup`, `fanout` (1,000 and 10,000 SSE clients), `throughput`,
//! `concurrency` (1,000 crews in flight against a 2 s model). Default: all. Every loop is
//! bounded in count and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crewgraph_core::crew::events::RuntimeEvent;
use crewgraph_core::events::{self, EventBatch};
use crewgraph_tests::app::TestProcess;
use crewgraph_tests::http::{JWT_SECRET, signed_up};
use crewgraph_tests::pipeline::{
    SseReader, create_graph, kickoff, one_task_graph, open_stream, read_to_end, spawn_worker,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::{TestApi, TestDatabase, spawn_api_with};
use serde_json::{Value, json};
use sqlx::Connection as _;
use uuid::Uuid;

const QUIET_API: &str = "warn,crewgraph_api=info";
const QUIET_WORKER: &str = "warn,crewgraph_worker::work=info";

#[tokio::main]
async fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    println!(
        "bench-pipeline on {} cores, {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        Utc::now().format("%Y-%m-%d")
    );
    if run("pickup") {
        pickup().await;
    }
    if run("fanout") {
        fanout(1_000).await;
        fanout(10_000).await;
    }
    if run("throughput") {
        throughput(5_000).await;
    }
    if run("concurrency") {
        concurrency(8_000).await;
    }
}

async fn api(db: &TestDatabase, extra: &[(&str, &str)]) -> TestApi {
    let mut env = vec![
        ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
        ("CREWGRAPH_MAX_ACTIVE_EXECUTIONS", "1000000"),
        ("RUST_LOG", QUIET_API),
    ];
    env.extend_from_slice(extra);
    spawn_api_with(&db.url, &env).await
}

async fn worker(db: &TestDatabase, llm: &ScriptedLlm, concurrency: &str) -> TestProcess {
    spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[
            ("CREWGRAPH_WORKER_CONCURRENCY", concurrency),
            ("RUST_LOG", QUIET_WORKER),
        ],
    )
    .await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn ts(event: &Value) -> DateTime<Utc> {
    event["ts"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("event ts")
}

/// Kickoff → `execution.started` on an idle worker (database timestamps of the two
/// events: the queued event is written in the kickoff transaction).
async fn pickup() {
    let db = TestDatabase::migrated().await;
    let llm = ScriptedLlm::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Script::default(),
        false,
    )
    .await
    .expect("scripted-llm");
    let api = api(&db, &[]).await;
    let _worker = worker(&db, &llm, "64").await;
    let token = signed_up(&api, "pickup@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let mut latencies = Vec::new();
    for n in 0..320 {
        let execution = kickoff(&api, &token, &graph, json!({"question": n})).await;
        let id = execution["id"].as_str().expect("id");
        let mut stream = open_stream(&api, &token, id, None).await;
        let events = read_to_end(&mut stream, Duration::from_secs(30)).await;
        let queued = ts(&events[0].data);
        let started = ts(&events[1].data);
        assert_eq!(events[1].data["type"], "execution.started");
        if n >= 20 {
            latencies.push((started - queued).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        // An idle worker: wait until it has recorded the end of this run.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latencies = sorted(latencies);
    println!(
        "pickup: kickoff → execution.started over {} runs on an idle worker: p50 {:.2} ms (target ≤ 5), p99 {:.2} ms (target ≤ 25), max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}

/// Event commit → SSE client, with `clients` streams open on one API process.
async fn fanout(clients: usize) {
    let db = TestDatabase::migrated().await;
    let api = api(&db, &[]).await;
    let token = signed_up(&api, &format!("fanout{clients}@example.com")).await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    // No worker: the execution stays queued while the bench writes its events.
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let id = Uuid::parse_str(execution["id"].as_str().expect("id")).expect("uuid");
    let api = Arc::new(api);
    let connected = Arc::new(AtomicUsize::new(0));
    let opened = Instant::now();
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let api = api.clone();
        let token = token.clone();
        let connected = connected.clone();
        readers.push(tokio::spawn(async move {
            let mut stream: Option<SseReader> = None;
            for _ in 0..20 {
                let response = api
                    .client
                    .get(api.url(&format!("/api/v1/executions/{id}/events")))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(300))
                    .send()
                    .await;
                if let Ok(response) = response
                    && response.status() == 200
                {
                    stream = Some(SseReader::new(response));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(mut stream) = stream else {
                return Vec::new();
            };
            let mut latencies = Vec::new();
            let mut first = true;
            while let Some(event) = stream.next_event().await {
                if first {
                    connected.fetch_add(1, Ordering::Relaxed);
                    first = false;
                    continue; // the replayed execution.queued
                }
                let received = Utc::now();
                let seq = event.data["seq"].as_i64().unwrap_or(0);
                latencies.push((
                    seq,
                    (received - ts(&event.data)).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                ));
            }
            latencies
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = connected.load(Ordering::Relaxed);
    println!(
        "fanout: {ready}/{clients} SSE clients connected in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    let sea = sea_orm::Database::connect(db.url.clone())
        .await
        .expect("connect");
    let rounds = 40;
    for n in 0..rounds {
        let event = if n + 1 == rounds {
            RuntimeEvent::ExecutionCancelled {
                reason: "benchmark over".into(),
            }
        } else {
            RuntimeEvent::LlmDelta {
                call_id: "bench".into(),
                agent_role: "bench".into(),
                chunk: format!("chunk {n}"),
            }
        };
        events::append(
            &sea,
            &[EventBatch {
                execution_id: id,
                attempt: None,
                events: vec![event],
            }],
        )
        .await
        .expect("append");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut all = Vec::new();
    let mut fastest: std::collections::HashMap<i64, f64> = std::collections::HashMap::new();
    for reader in readers {
        if let Ok(Ok(latencies)) = tokio::time::timeout(Duration::from_secs(120), reader).await {
            for (seq, latency) in latencies {
                let best = fastest.entry(seq).or_insert(f64::MAX);
                *best = best.min(latency);
                all.push(latency);
            }
        }
    }
    let expected = ready * rounds;
    let all = sorted(all);
    let fastest = sorted(fastest.into_values().collect());
    println!(
        "fanout: {clients} clients: first client to receive each event p50 {:.2} ms, p99 {:.2} ms (the hub's own latency)",
        percentile(&fastest, 0.5),
        percentile(&fastest, 0.99)
    );
    println!(
        "fanout: {clients} clients, {} of {expected} deliveries: event commit → client p50 {:.2} ms (target ≤ 5 with 10,000), p99 {:.2} ms, max {:.2} ms",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
}

async fn count_status(db: &TestDatabase, status: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM executions WHERE status = $1")
        .bind(status)
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// Kicks off `n` runs from 16 concurrent clients, each its own user with its own graph
/// (as many users would); returns kickoffs per second.
async fn enqueue(api: &Arc<TestApi>, users: &[(String, String)], n: usize) -> f64 {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (token, graph) in users {
        let (api, next) = (api.clone(), next.clone());
        let (token, graph) = (token.clone(), graph.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                kickoff(&api, &token, &graph, json!({"question": "q"})).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn users(api: &TestApi, db: &TestDatabase, label: &str) -> Vec<(String, String)> {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut users = Vec::new();
    for n in 0..16 {
        // One client registers many users here: not what the rate limits are for.
        sqlx::query("DELETE FROM rate_limit_counters")
            .execute(&mut conn)
            .await
            .expect("reset rate limits");
        let token = signed_up(api, &format!("{label}{n}@example.com")).await;
        let graph = create_graph(api, &token, one_task_graph()).await;
        users.push((token, graph));
    }
    users
}

/// Drains the queue with one worker; returns (crews per second, peak worker RSS in MiB,
/// idle RSS in MiB).
async fn drain(
    db: &TestDatabase,
    llm: &ScriptedLlm,
    concurrency: &str,
    n: i64,
    limit: Duration,
) -> (f64, f64, f64) {
    let worker = worker(db, llm, concurrency).await;
    let pid = worker.pid();
    let idle = rss_mib(pid);
    let started = Instant::now();
    let mut peak = idle;
    loop {
        peak = peak.max(rss_mib(pid));
        let done = count_status(db, "succeeded").await;
        if done >= n || started.elapsed() > limit {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT min(started_at), max(finished_at) FROM executions WHERE status = 'succeeded'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("span");
            let span = match (first, last) {
                (Some(first), Some(last)) => (last - first).num_milliseconds() as f64 / 1000.0,
                _ => f64::NAN,
            };
            return (done as f64 / span, peak, idle);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One-task crews per second through one worker against an instant model.
async fn throughput(n: usize) {
    let db = TestDatabase::migrated().await;
    let llm = ScriptedLlm::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Script::default(),
        false,
    )
    .await
    .expect("scripted-llm");
    let api = Arc::new(api(&db, &[]).await);
    let users = users(&api, &db, "throughput").await;
    let kickoffs = enqueue(&api, &users, n).await;
    println!(
        "throughput: {n} kickoffs through the API at {kickoffs:.0} per second (16 concurrent clients, one user each)"
    );
    for concurrency in ["64", "256"] {
        let (rate, peak, _) =
            drain(&db, &llm, concurrency, n as i64, Duration::from_secs(300)).await;
        println!(
            "throughput: one worker (concurrency {concurrency}) ran {n} one-task crews at {rate:.0} crews/s (target ≥ 1,000), peak RSS {peak:.0} MiB"
        );
        // Run the same set again for the next setting.
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query("TRUNCATE execution_events")
            .execute(&mut conn)
            .await
            .expect("truncate");
        sqlx::query("DELETE FROM executions")
            .execute(&mut conn)
            .await
            .expect("delete");
        drop(conn);
        enqueue(&api, &users, n).await;
    }
}

/// RSS of one worker with 1,000 crews in flight against a model that takes 2 s.
async fn concurrency(n: usize) {
    let db = TestDatabase::migrated().await;
    let script = Script {
        latency_ms: 2_000,
        ..Script::default()
    };
    let llm = ScriptedLlm::start_at("127.0.0.1:0".parse().expect("addr"), script, false)
        .await
        .expect("scripted-llm");
    let api = Arc::new(api(&db, &[]).await);
    let users = users(&api, &db, "inflight").await;
    enqueue(&api, &users, n).await;
    let (rate, peak, idle) = drain(&db, &llm, "1000", n as i64, Duration::from_secs(300)).await;
    println!(
        "concurrency: one worker, 1,000 crews in flight against a 2 s model: {rate:.0} crews/s (target ≥ 450), RSS idle {idle:.0} MiB, peak {peak:.0} MiB (target ≤ 200)"
    );
}
