//! Prometheus `/metrics` on the API and on the worker's own port, scraped after a real
//! run: the counters moved, the histogram has the route template, no label carries an
//! id; the worker's `/health` and `crewgraph-worker health`; the optional scrape token.

use std::collections::BTreeMap;
use std::time::Duration;

use crewgraph_tests::TcpProxy;
use crewgraph_tests::app::TestProcess;
use crewgraph_tests::http::{JWT_SECRET, api, body, expect_error, signed_up};
use crewgraph_tests::pipeline::{
    create_graph, database, kickoff, one_task_graph, open_stream, read_to_end, spawn_worker,
    wait_for_status, worker_http_url,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::spawn_api_with;
use serde_json::json;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const KICKOFF_ROUTE: &str = "/api/v1/graphs/{id}/executions";
const TOKEN: &str = "a-scrape-token-for-the-tests";

/// One sample of the text exposition: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format (0.0.4): comments skipped, label values unescaped.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value = value.parse::<f64>().expect("a numeric value");
            let Some((name, labels)) = series.split_once('{') else {
                return Sample {
                    name: series.to_string(),
                    labels: BTreeMap::new(),
                    value,
                };
            };
            let labels = labels.strip_suffix('}').expect("labels end with }");
            Sample {
                name: name.to_string(),
                labels: parse_labels(labels),
                value,
            }
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The value of the one sample with this name and these labels (others may differ).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Any UUID-shaped run of characters (8-4-4-4-12 hex digits).
fn contains_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    (0..bytes.len()).any(|start| {
        let mut at = start;
        shape.iter().enumerate().all(|(i, len)| {
            let group = bytes.get(at..at + len);
            let hex = group.is_some_and(|g| g.iter().all(u8::is_ascii_hexdigit));
            at += len;
            let dash = i == shape.len() - 1 || bytes.get(at) == Some(&b'-');
            at += 1;
            hex && dash
        })
    })
}

async fn scrape(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("scrape")
}

async fn scrape_text(url: &str) -> String {
    let response = scrape(url, None).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("metrics text")
}

/// Scrapes until `ready` holds for the samples (gauges follow events asynchronously).
async fn scrape_until(url: &str, ready: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let samples = parse(&scrape_text(url).await);
        if ready(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics never got there: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_run_moves_the_api_and_worker_counters_with_route_templates_and_no_ids() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let email = "scraped@example.com";
    let token = signed_up(&api, email).await;
    let graph = create_graph(&api, &token, one_task_graph()).await;

    // No worker yet: the run waits in the queue, its stream stays open.
    let execution = kickoff(&api, &token, &graph, json!({"question": "6 times 7?"})).await;
    let id = execution["id"].as_str().expect("id").to_string();
    let mut stream = open_stream(&api, &token, &id, None).await;
    let waiting = scrape_until(&api.base_url, |s| {
        value(s, "crewgraph_sse_clients", &[]) == Some(1.0)
            && value(s, "crewgraph_queue_depth", &[]) == Some(1.0)
    })
    .await;
    assert!(value(&waiting, "crewgraph_queue_oldest_age_seconds", &[]).is_some_and(|v| v > 0.0));
    assert_eq!(value(&waiting, "crewgraph_database_up", &[]), Some(1.0));

    let worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    read_to_end(&mut stream, RUN_TIMEOUT).await;
    wait_for_status(&api, &token, &id, Some("succeeded"), RUN_TIMEOUT).await;
    let unknown = api.get(&format!("/api/v1/no-such-thing/{id}")).await;
    assert_eq!(unknown.status(), 404);

    assert_api_metrics(&api.base_url, email).await;
    let worker_url = worker_http_url(&worker);
    assert_worker_metrics(&worker_url).await;

    let health = reqwest::get(format!("{worker_url}/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let health = health.json::<serde_json::Value>().await.expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["draining"], false);
}

/// After one run: the kickoff counted under its template, with latency buckets; the
/// stream closed; the queue empty; no label carries an id or the user's email.
async fn assert_api_metrics(api_url: &str, email: &str) {
    let text = scrape_text(api_url).await;
    let samples = parse(&text);
    let kickoffs = value(
        &samples,
        "crewgraph_http_requests_total",
        &[
            ("method", "POST"),
            ("route", KICKOFF_ROUTE),
            ("status", "202"),
        ],
    );
    assert_eq!(kickoffs, Some(1.0), "{text}");
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == "crewgraph_http_request_duration_seconds_bucket"
                && s.labels.get("route").map(String::as_str) == Some(KICKOFF_ROUTE)
        })
        .collect();
    assert!(buckets.len() > 5, "{text}");
    assert!(
        buckets
            .iter()
            .any(|b| b.labels["le"] == "+Inf" && b.value == 1.0)
    );
    assert!(
        value(
            &samples,
            "crewgraph_http_requests_total",
            &[
                ("route", "/api/v1/executions/{id}/events"),
                ("status", "200")
            ],
        )
        .is_some(),
        "the SSE request is counted under its template"
    );
    assert_eq!(
        value(
            &samples,
            "crewgraph_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0),
        "an unknown path is one `unmatched` series"
    );
    for sample in &samples {
        for label in sample.labels.values() {
            assert!(
                !contains_uuid(label) && !label.contains(email),
                "a label carries an id or user data: {sample:?}"
            );
        }
    }
    let after = scrape_until(api_url, |s| {
        value(s, "crewgraph_sse_clients", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(value(&after, "crewgraph_queue_depth", &[]), Some(0.0));
    assert!(value(&after, "crewgraph_executions_running", &[]).is_some());
    assert!(value(&after, "crewgraph_db_pool_connections", &[]).is_some_and(|v| v >= 1.0));
}

/// After one run: the run's end, its LLM call and tokens, the worker's slots.
async fn assert_worker_metrics(worker_url: &str) {
    let text = scrape_text(worker_url).await;
    let samples = parse(&text);
    let succeeded = value(
        &samples,
        "crewgraph_executions_finished_total",
        &[("status", "succeeded"), ("code", "none")],
    );
    assert_eq!(succeeded, Some(1.0), "{text}");
    let calls = value(
        &samples,
        "crewgraph_llm_calls_total",
        &[("provider", "openai"), ("outcome", "completed")],
    );
    assert_eq!(calls, Some(1.0), "{text}");
    let prompt_tokens = value(
        &samples,
        "crewgraph_llm_tokens_total",
        &[("provider", "openai"), ("kind", "prompt")],
    );
    assert!(prompt_tokens.is_some_and(|t| t > 0.0), "{text}");
    assert_eq!(
        value(&samples, "crewgraph_worker_crew_slots", &[]),
        Some(64.0)
    );
    assert_eq!(value(&samples, "crewgraph_worker_draining", &[]), Some(0.0));
    assert!(value(&samples, "crewgraph_queue_depth", &[]).is_some());
    for sample in &samples {
        assert!(
            sample.labels.values().all(|l| !contains_uuid(l)),
            "{sample:?}"
        );
    }
}

#[tokio::test]
async fn a_metrics_token_refuses_scrapes_without_it_on_the_api_and_the_worker() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_METRICS_TOKEN", TOKEN),
        ],
    )
    .await;
    let worker = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[("CREWGRAPH_METRICS_TOKEN", TOKEN)],
    )
    .await;
    let worker_url = worker_http_url(&worker);
    for url in [api.base_url.as_str(), worker_url.as_str()] {
        let refused = scrape(url, None).await;
        assert_eq!(refused.status(), 401, "{url}");
        let refused = body(refused).await;
        assert_eq!(refused["error"]["code"], "unauthorized", "{url}: {refused}");
        let wrong = scrape(url, Some("not-the-scrape-token-at-all")).await;
        assert_eq!(wrong.status(), 401, "{url}");
        let allowed = scrape(url, Some(TOKEN)).await;
        assert_eq!(allowed.status(), 200, "{url}");
        let text = allowed.text().await.expect("text");
        assert!(text.contains("crewgraph_database_up 1"), "{url}: {text}");
    }
    // Refused scrapes are counted too, under the endpoint's own route.
    let text = scrape(&api.base_url, Some(TOKEN))
        .await
        .text()
        .await
        .expect("text");
    let refused = value(
        &parse(&text),
        "crewgraph_http_requests_total",
        &[("route", "/metrics"), ("status", "401")],
    );
    assert_eq!(refused, Some(2.0), "{text}");
    // Health stays open: orchestrators probe it without the token.
    let health = reqwest::get(format!("{worker_url}/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let unknown = reqwest::get(format!("{worker_url}/nothing-here"))
        .await
        .expect("404");
    expect_error(unknown, 404, "not_found").await;
}

/// `crewgraph-worker health` against a worker's port; its exit code.
async fn health_command(http_addr: &str) -> Option<i32> {
    let mut check = TestProcess::start(
        "crewgraph-worker",
        &["health"],
        &[("CREWGRAPH_WORKER_HTTP_ADDR", http_addr)],
    );
    check.wait_exit(Duration::from_secs(20)).await
}

#[tokio::test]
async fn health_answers_503_when_the_database_is_gone_and_the_health_command_follows() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let postgres = TcpProxy::start(crewgraph_tests::database::server_addr()).await;
    let worker = spawn_worker(&postgres.url_via(&db.url), &llm.openai_base_url(), &[]).await;
    let worker_url = worker_http_url(&worker);
    let http_addr = worker_url.trim_start_matches("http://").to_string();
    assert_eq!(health_command(&http_addr).await, Some(0));

    postgres.cut().await;
    let health = reqwest::get(format!("{worker_url}/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 503);
    let health = health.json::<serde_json::Value>().await.expect("JSON");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["database"], "unreachable");
    assert_eq!(health_command(&http_addr).await, Some(1));
    // Metrics still answer, saying the database did not.
    let text = scrape_text(&worker_url).await;
    assert!(text.contains("crewgraph_database_up 0"), "{text}");
    assert!(!text.contains("crewgraph_queue_depth"), "{text}");

    postgres.restore();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while reqwest::get(format!("{worker_url}/health"))
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing listening there: unhealthy too.
    drop(worker);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health_command(&http_addr).await, Some(1));
}

#[tokio::test]
async fn a_draining_worker_turns_unhealthy_while_its_crews_finish() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script {
        latency_ms: 3_000,
        ..Script::default()
    })
    .await;
    let api = api(&db).await;
    let mut worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
    let worker_url = worker_http_url(&worker);
    let token = signed_up(&api, "drain@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "slow?"})).await;
    let id = execution["id"].as_str().expect("id");
    wait_for_status(&api, &token, id, Some("running"), RUN_TIMEOUT).await;
    scrape_until(&worker_url, |s| {
        value(s, "crewgraph_worker_crews_running", &[]) == Some(1.0)
    })
    .await;

    worker.signal("TERM");
    let draining = scrape_until(&worker_url, |s| {
        value(s, "crewgraph_worker_draining", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&draining, "crewgraph_worker_crews_running", &[]),
        Some(1.0)
    );
    let health = reqwest::get(format!("{worker_url}/health"))
        .await
        .expect("health while draining");
    assert_eq!(health.status(), 503);
    let health = health.json::<serde_json::Value>().await.expect("JSON");
    assert_eq!(health["draining"], true);
    assert_eq!(health["database"], "ok");
    assert_eq!(worker.wait_exit(RUN_TIMEOUT).await, Some(0));
    wait_for_status(&api, &token, id, Some("succeeded"), RUN_TIMEOUT).await;
}

#[tokio::test]
async fn follow_up_jobs_are_reported_by_kind_and_state_and_only_when_due() {
    let db = database().await;
    let api = api(&db).await;
    let mut sql = db.connect().await;
    // No worker runs them here: the rows stay as written.
    sqlx::query(
        "INSERT INTO fang_tasks (metadata, task_type, state, scheduled_at) VALUES \
           ('{\"type\": \"WebhookDelivery\"}', 'crewgraph_follow_up', 'failed', now()), \
           ('{\"type\": \"WebhookDelivery\"}', 'crewgraph_follow_up', 'retried', now() + interval '1 hour'), \
           ('{\"type\": \"MlflowExport\"}', 'crewgraph_follow_up', 'new', now() - interval '1 minute'), \
           ('{\"type\": \"MlflowExport\"}', 'crewgraph_follow_up', 'new', now() - interval '1 minute'), \
           ('{\"type\": \"MlflowExport\"}', 'crewgraph_follow_up', 'in_progress', now()), \
           ('{\"type\": \"RetentionSweep\"}', 'crewgraph_follow_up', 'new', now() + interval '1 hour')",
    )
    .execute(&mut sql)
    .await
    .expect("insert jobs");
    let samples = parse(&scrape_text(&api.base_url).await);
    let jobs = |kind: &str, state: &str| {
        value(
            &samples,
            "crewgraph_follow_up_jobs",
            &[("kind", kind), ("state", state)],
        )
    };
    assert_eq!(jobs("WebhookDelivery", "failed"), Some(1.0));
    assert_eq!(jobs("WebhookDelivery", "retrying"), Some(1.0));
    assert_eq!(jobs("MlflowExport", "waiting"), Some(2.0));
    assert_eq!(jobs("MlflowExport", "running"), Some(1.0));
    assert_eq!(
        jobs("RetentionSweep", "waiting"),
        None,
        "a job scheduled for later is not backlog"
    );
    assert_eq!(value(&samples, "crewgraph_queue_depth", &[]), Some(0.0));
}

#[test]
fn the_test_parser_reads_escaped_labels_and_finds_uuids() {
    let samples =
        parse("# HELP x y\nx_total{a=\"b\\\"c\",route=\"/api/v1/graphs/{id}\"} 3\nplain 1.5\n");
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["a"], "b\"c");
    assert_eq!(samples[0].labels["route"], "/api/v1/graphs/{id}");
    assert_eq!(samples[1].value, 1.5);
    assert!(contains_uuid(
        "/api/v1/graphs/0195f0c2-7a1b-7c3d-8e4f-a1b2c3d4e5f6"
    ));
    assert!(!contains_uuid("/api/v1/graphs/{id}"));
}
