//! Signed webhooks end to end: the real API and worker, PostgreSQL, `scripted-llm`, and a
//! receiver on loopback started by each test. Signatures are checked here independently,
//! with hmac/sha2, exactly as docs/webhooks.md tells receivers to.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crewgraph_tests::http::{JWT_SECRET, api, body, expect_error, get, post, send, signed_up};
use crewgraph_tests::pipeline::{
    create_graph, database, kickoff, one_task_graph, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::{TestApi, TestDatabase, spawn_api_with};
use hmac::{Hmac, Mac};
use poem::http::{HeaderMap, StatusCode, Uri};
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The operator allow-list entry that lets webhooks reach this test's receiver.
const ALLOW_LOOPBACK_WEBHOOKS: (&str, &str) = ("CREWGRAPH_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1");
/// Quick retries for tests: 1 s, then 2 s.
const FAST_RETRIES: [(&str, &str); 2] = [
    ("CREWGRAPH_WEBHOOK_MAX_ATTEMPTS", "3"),
    ("CREWGRAPH_WEBHOOK_BACKOFF_SECS", "1"),
];

// ---- the receiver's side: what docs/webhooks.md shows ----

#[derive(Debug, PartialEq)]
enum Refused {
    Malformed,
    BadSignature,
    TooOld,
}

/// Verifies `X-Crewgraph-Signature` (`t=<unix>,v1=<hex>`) over the raw body: HMAC-SHA256
/// keyed with the secret's text, of `"<t>.<body>"`, compared in constant time, and `t`
/// within `tolerance` seconds of `now`.
fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), Refused> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or(Refused::Malformed)?;
    let valid = signatures.iter().any(|signature| {
        let Ok(expected) = hex::decode(signature) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if !valid {
        return Err(Refused::BadSignature);
    }
    if (now - t).abs() > tolerance {
        return Err(Refused::TooOld);
    }
    Ok(())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- a receiver on loopback ----

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    /// Statuses to answer, in order; then 200.
    script: Mutex<VecDeque<u16>>,
    /// Answer this when the script is used up (200 if unset).
    always: Option<u16>,
    received: Mutex<Vec<Received>>,
}

struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

#[handler]
async fn receive(
    state: Data<&Arc<ReceiverState>>,
    headers: &HeaderMap,
    uri: &Uri,
    body: Vec<u8>,
) -> poem::Response {
    state.received.lock().expect("lock").push(Received {
        path: uri.path().to_string(),
        headers: headers.clone(),
        body,
    });
    let scripted = state.script.lock().expect("lock").pop_front();
    let status = scripted.or(state.always).unwrap_or(200);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // A redirect points elsewhere on this receiver: a sender that followed it would show.
    poem::Response::builder()
        .status(status)
        .header("Location", "/redirected")
        .body("receiver says no")
}

impl Receiver {
    async fn start(script: &[u16], always: Option<u16>) -> Receiver {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.iter().copied().collect()),
            always,
            received: Mutex::default(),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the receiver");
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .expect("address");
        let app = Route::new()
            .at("/*path", poem::post(receive))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Receiver { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver got {} requests, not {count}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---- helpers ----

async fn api_allowing(db: &TestDatabase, extra: &[(&str, &str)]) -> TestApi {
    let mut env = vec![
        ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
        ALLOW_LOOPBACK_WEBHOOKS,
    ];
    env.extend_from_slice(extra);
    spawn_api_with(&db.url, &env).await
}

/// Creates a webhook (on `graph`, or on none) and returns (id, secret).
async fn create_webhook(
    api: &TestApi,
    token: &str,
    graph: Option<&str>,
    spec: Value,
) -> (String, String) {
    let path = match graph {
        Some(graph) => format!("/api/v1/graphs/{graph}/webhooks"),
        None => "/api/v1/webhooks".to_string(),
    };
    let response = post(api, &path, Some(token), spec).await;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let created = body(response).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, secret)
}

/// The deliveries at `path`, polled until `done` holds for them.
async fn deliveries_until(
    api: &TestApi,
    token: &str,
    path: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let response = get(api, path, token).await;
        assert_eq!(response.status(), 200);
        let items = body(response).await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries at {path} never got there: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_with_status(items: &[Value], count: usize, status: &str) -> bool {
    items.len() == count && items.iter().all(|d| d["status"] == status)
}

/// `one_task_graph` with a second task (`t2`) for the same agent, after the first.
fn two_task_graph() -> Value {
    let mut document = one_task_graph();
    document["nodes"][1]["data"]["order"] = json!(1);
    let nodes = document["nodes"].as_array_mut().expect("nodes");
    nodes.push(json!({"id": "t2", "type": "task", "data": {"name": "check",
        "description": "Check the answer", "expected_output": "One sentence.", "order": 2}}));
    let edges = document["edges"].as_array_mut().expect("edges");
    edges.push(json!({"id": "e2", "source": "a", "target": "t2"}));
    document
}

fn id_of(execution: &Value) -> String {
    execution["id"].as_str().expect("execution id").to_string()
}

// ---- the tests ----

#[tokio::test]
async fn deliveries_are_signed_verifiable_and_report_task_and_terminal_events() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[], None).await;
    let api = api_allowing(&db, &[]).await;
    let worker = spawn_worker(&db.url, &llm.openai_base_url(), &[ALLOW_LOOPBACK_WEBHOOKS]).await;
    let token = signed_up(&api, "hooks@example.com").await;
    let graph = create_graph(&api, &token, two_task_graph()).await;
    let spec = json!({"url": receiver.url("/tasks"),
                      "events": ["task.completed", "execution.succeeded"],
                      "description": "tasks too"});
    let (tasks_hook, tasks_secret) = create_webhook(&api, &token, Some(&graph), spec).await;
    let (ends_hook, ends_secret) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/ends")}),
    )
    .await;

    // The secret is shown once: no read answers with it.
    for path in [
        format!("/api/v1/webhooks/{tasks_hook}"),
        format!("/api/v1/graphs/{graph}/webhooks"),
        "/api/v1/webhooks".to_string(),
    ] {
        let text = get(&api, &path, &token).await.text().await.expect("text");
        assert!(
            !text.contains(&tasks_secret) && !text.contains(&ends_secret),
            "{text}"
        );
        assert!(!text.contains("\"secret\""), "{text}");
    }
    let ends = body(get(&api, &format!("/api/v1/webhooks/{ends_hook}"), &token).await).await;
    assert_eq!(
        ends["events"],
        json!([
            "execution.succeeded",
            "execution.failed",
            "execution.cancelled"
        ]),
        "the default events are the ends of a run"
    );

    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let execution_id = id_of(&execution);
    wait_for_status(&api, &token, &execution_id, Some("succeeded"), TIMEOUT).await;
    let received = receiver.wait_for(4).await;
    let deliveries = deliveries_until(
        &api,
        &token,
        &format!("/api/v1/executions/{execution_id}/webhook-deliveries"),
        |items| all_with_status(items, 4, "delivered"),
    )
    .await;
    assert_eq!(receiver.received().len(), 4, "each delivery sent once");

    let mut events: Vec<(String, String)> = Vec::new();
    for request in &received {
        let secret = if request.path == "/tasks" {
            &tasks_secret
        } else {
            &ends_secret
        };
        let signature = request.header("x-crewgraph-signature");
        assert_eq!(
            verify_signature(secret, signature, &request.body, now(), 300),
            Ok(()),
            "{signature}"
        );
        let payload = request.json();
        assert_eq!(
            request.header("x-crewgraph-delivery"),
            payload["delivery_id"]
        );
        assert_eq!(request.header("x-crewgraph-event"), payload["event"]);
        assert_eq!(request.header("content-type"), "application/json");
        assert!(
            request
                .header("user-agent")
                .starts_with("crewgraph-webhooks/")
        );
        assert_eq!(payload["execution"]["id"], execution_id.as_str());
        assert_eq!(payload["execution"]["graph_id"], graph.as_str());
        assert!(payload["execution"].get("inputs").is_none(), "{payload}");
        let event = payload["event"].as_str().expect("event").to_string();
        if event == "task.completed" {
            let task = payload["task"]["task_id"].as_str().unwrap_or_default();
            assert!(task == "t" || task == "t2", "{payload}");
            assert!(
                payload["task"]["raw"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty())
            );
            events.push((request.path.clone(), format!("{event} {task}")));
            continue;
        } else {
            assert_eq!(event, "execution.succeeded");
            assert_eq!(payload["execution"]["status"], "succeeded");
            assert!(
                payload["execution"]["result"]["raw"].is_string(),
                "{payload}"
            );
        }
        events.push((request.path.clone(), event));
    }
    events.sort();
    assert_eq!(
        events,
        [
            ("/ends".to_string(), "execution.succeeded".to_string()),
            ("/tasks".to_string(), "execution.succeeded".to_string()),
            ("/tasks".to_string(), "task.completed t".to_string()),
            ("/tasks".to_string(), "task.completed t2".to_string()),
        ]
    );

    // Replays: the same request later than the tolerance is refused, and so is a `t`
    // moved forward without re-signing; another webhook's secret does not verify.
    let request = &received[0];
    let signature = request.header("x-crewgraph-signature").to_string();
    let t: i64 = signature
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t");
    let (wrong, right) = if request.path == "/tasks" {
        (&ends_secret, &tasks_secret)
    } else {
        (&tasks_secret, &ends_secret)
    };
    assert_eq!(
        verify_signature(right, &signature, &request.body, t + 301, 300),
        Err(Refused::TooOld)
    );
    assert_eq!(
        verify_signature(right, &signature, &request.body, t + 299, 300),
        Ok(())
    );
    let moved = signature.replace(&format!("t={t}"), &format!("t={}", t + 301));
    assert_eq!(
        verify_signature(right, &moved, &request.body, t + 301, 300),
        Err(Refused::BadSignature)
    );
    assert_eq!(
        verify_signature(wrong, &signature, &request.body, t, 300),
        Err(Refused::BadSignature)
    );
    let mut altered = request.body.clone();
    altered.push(b' ');
    assert_eq!(
        verify_signature(right, &signature, &altered, t, 300),
        Err(Refused::BadSignature)
    );

    // Every delivery shows its one attempt, and the body it sent.
    for delivery in &deliveries {
        let attempts = delivery["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "{delivery}");
        assert_eq!(attempts[0]["number"], 1);
        assert_eq!(attempts[0]["status_code"], 200);
        assert!(attempts[0]["latency_ms"].as_i64().is_some_and(|ms| ms >= 0));
        assert!(attempts[0].get("error").is_none_or(Value::is_null));
        assert_eq!(delivery["payload"]["delivery_id"], delivery["id"]);
        assert!(delivery["delivered_at"].is_string());
    }
    let logs = [api.logs(), worker.logs()].concat().join("\n");
    assert!(!logs.contains(&tasks_secret) && !logs.contains(&ends_secret));
}

#[tokio::test]
async fn failing_attempts_are_retried_with_the_same_body_and_delivered_once() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[307, 500], None).await;
    let api = api_allowing(&db, &[]).await;
    let mut worker_env = vec![ALLOW_LOOPBACK_WEBHOOKS];
    worker_env.extend_from_slice(&FAST_RETRIES);
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &worker_env).await;
    let token = signed_up(&api, "retry@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let (hook, secret) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    wait_for_status(&api, &token, &id_of(&execution), Some("succeeded"), TIMEOUT).await;

    let deliveries = deliveries_until(
        &api,
        &token,
        &format!("/api/v1/webhooks/{hook}/deliveries"),
        |items| all_with_status(items, 1, "delivered"),
    )
    .await;
    let delivery = &deliveries[0];
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{delivery}");
    assert_eq!(attempts[0]["status_code"], 307);
    assert_eq!(
        attempts[0]["error"],
        "HTTP 307 (redirects are not followed)"
    );
    assert_eq!(attempts[1]["status_code"], 500);
    assert_eq!(attempts[1]["error"], "HTTP 500: receiver says no");
    assert_eq!(attempts[2]["status_code"], 200);
    assert_eq!(delivery["attempt_count"], 3);
    assert!(delivery["last_error"].is_null());

    let received = receiver.received();
    assert_eq!(received.len(), 3, "two failed attempts, one delivered");
    assert!(
        received.iter().all(|r| r.path == "/hook"),
        "no redirect was followed"
    );
    assert!(
        received.windows(2).all(|w| w[0].body == w[1].body),
        "a retry sends the same body"
    );
    for request in &received {
        assert_eq!(request.header("x-crewgraph-delivery"), delivery["id"]);
        assert_eq!(
            verify_signature(
                &secret,
                request.header("x-crewgraph-signature"),
                &request.body,
                now(),
                300
            ),
            Ok(())
        );
    }
}

#[tokio::test]
async fn a_receiver_that_always_fails_is_given_up_after_the_limit_and_it_shows() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[], Some(500)).await;
    let api = api_allowing(&db, &[]).await;
    let mut worker_env = vec![ALLOW_LOOPBACK_WEBHOOKS];
    worker_env.extend_from_slice(&FAST_RETRIES);
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &worker_env).await;
    let token = signed_up(&api, "giveup@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let (hook, _) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/down")}),
    )
    .await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let execution_id = id_of(&execution);
    wait_for_status(&api, &token, &execution_id, Some("succeeded"), TIMEOUT).await;

    let path = format!("/api/v1/executions/{execution_id}/webhook-deliveries");
    let deliveries = deliveries_until(&api, &token, &path, |items| {
        all_with_status(items, 1, "failed")
    })
    .await;
    let delivery = &deliveries[0];
    assert_eq!(delivery["attempt_count"], 3);
    assert!(delivery["next_attempt_at"].is_null());
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 500")),
        "{delivery}"
    );
    let attempts = delivery["attempts"].as_array().expect("attempts");
    let numbers: Vec<i64> = attempts
        .iter()
        .filter_map(|a| a["number"].as_i64())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(attempts.iter().all(|a| a["status_code"] == 500));
    let by_webhook =
        body(get(&api, &format!("/api/v1/webhooks/{hook}/deliveries"), &token).await).await;
    assert_eq!(by_webhook["items"][0]["status"], "failed");
    assert_eq!(by_webhook["items"][0]["id"], delivery["id"]);
    // Given up means no further attempt.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn webhooks_belong_to_their_owner_and_the_address_policy_holds_at_creation() {
    let db = database().await;
    let api = api(&db).await; // no allow-list: loopback receivers are refused
    let owner = signed_up(&api, "owner@example.com").await;
    let other = signed_up(&api, "other@example.com").await;
    let graph = create_graph(&api, &owner, one_task_graph()).await;
    let hooks = format!("/api/v1/graphs/{graph}/webhooks");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
    ] {
        let refused = expect_error(
            post(&api, &hooks, Some(&owner), json!({"url": url})).await,
            422,
            "url_not_allowed",
        )
        .await;
        assert_eq!(refused["error"]["details"]["field"], "url", "{url}");
    }
    let unknown = expect_error(
        post(
            &api,
            &hooks,
            Some(&owner),
            json!({"url": "https://hooks.example.com/x", "events": ["task.started"]}),
        )
        .await,
        422,
        "invalid_events",
    )
    .await;
    assert_eq!(unknown["error"]["details"]["field"], "events");
    assert_eq!(
        unknown["error"]["details"]["unknown"],
        json!(["task.started"])
    );
    expect_error(
        post(
            &api,
            &hooks,
            Some(&owner),
            json!({"url": "ftp://hooks.example.com/"}),
        )
        .await,
        422,
        "invalid_url",
    )
    .await;

    let public = json!({"url": "https://hooks.example.com/crewgraph"});
    let (hook, secret) = create_webhook(&api, &owner, Some(&graph), public.clone()).await;
    let (loose, _) = create_webhook(&api, &owner, None, public.clone()).await;
    let loose_body = body(get(&api, &format!("/api/v1/webhooks/{loose}"), &owner).await).await;
    assert!(loose_body["graph_id"].is_null());

    // Another user sees none of it.
    let it = format!("/api/v1/webhooks/{hook}");
    for (method, path, payload) in [
        (Method::GET, it.clone(), None),
        (Method::PATCH, it.clone(), Some(json!({"enabled": false}))),
        (Method::DELETE, it.clone(), None),
        (Method::POST, format!("{it}/rotate-secret"), Some(json!({}))),
        (Method::GET, format!("{it}/deliveries"), None),
        (Method::GET, hooks.clone(), None),
        (Method::POST, hooks.clone(), Some(public.clone())),
    ] {
        let response = send(&api, method.clone(), &path, &other, payload).await;
        expect_error(response, 404, "not_found").await;
    }
    let theirs = create_graph(&api, &other, one_task_graph()).await;
    let refused = expect_error(
        post(
            &api,
            &format!("/api/v1/graphs/{theirs}/executions"),
            Some(&other),
            json!({"inputs": {"question": "q"}, "webhook_ids": [hook]}),
        )
        .await,
        422,
        "unknown_webhooks",
    )
    .await;
    assert_eq!(refused["error"]["details"]["field"], "webhook_ids");
    assert_eq!(refused["error"]["details"]["unknown"], json!([hook]));
    let listed = body(get(&api, "/api/v1/executions", &other).await).await;
    assert_eq!(
        listed["items"],
        json!([]),
        "a refused kickoff stores nothing"
    );

    // The owner changes, rotates and deletes it.
    let changed = send(
        &api,
        Method::PATCH,
        &it,
        &owner,
        Some(json!({"events": ["execution.failed"], "enabled": false,
                                   "description": null})),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let changed = body(changed).await;
    assert_eq!(changed["events"], json!(["execution.failed"]));
    assert_eq!(changed["enabled"], false);
    let rotated = body(
        post(
            &api,
            &format!("{it}/rotate-secret"),
            Some(&owner),
            json!({}),
        )
        .await,
    )
    .await;
    let new_secret = rotated["secret"].as_str().expect("a new secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let listed = body(get(&api, "/api/v1/webhooks", &owner).await).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    let deleted = send(&api, Method::DELETE, &it, &owner, None).await;
    assert_eq!(deleted.status(), 204);
    expect_error(get(&api, &it, &owner).await, 404, "not_found").await;
}

#[tokio::test]
async fn kickoffs_name_extra_webhooks_and_a_queued_run_keeps_the_webhooks_it_started_with() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[], None).await;
    let api = api_allowing(&db, &[]).await;
    let token = signed_up(&api, "kickoff@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let (extra, _) =
        create_webhook(&api, &token, None, json!({"url": receiver.url("/extra")})).await;

    // No worker yet: both runs stay queued; one is cancelled before it starts (the API
    // records that end, and its delivery with it).
    let cancelled = post(
        &api,
        &format!("/api/v1/graphs/{graph}/executions"),
        Some(&token),
        json!({"inputs": {"question": "q"}, "webhook_ids": [extra]}),
    )
    .await;
    assert_eq!(cancelled.status(), 202);
    let cancelled = id_of(&body(cancelled).await);
    let response = post(
        &api,
        &format!("/api/v1/executions/{cancelled}/cancel"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let queued = post(
        &api,
        &format!("/api/v1/graphs/{graph}/executions"),
        Some(&token),
        json!({"inputs": {"question": "q"}, "webhook_ids": [extra]}),
    )
    .await;
    assert_eq!(queued.status(), 202);
    let queued = id_of(&body(queued).await);
    // Added after those kickoffs: it hears of later runs only.
    let (late, _) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/late")}),
    )
    .await;

    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[ALLOW_LOOPBACK_WEBHOOKS]).await;
    wait_for_status(&api, &token, &queued, Some("succeeded"), TIMEOUT).await;
    let later = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    let later = id_of(&later);
    wait_for_status(&api, &token, &later, Some("succeeded"), TIMEOUT).await;

    let extra_deliveries = deliveries_until(
        &api,
        &token,
        &format!("/api/v1/webhooks/{extra}/deliveries"),
        |items| all_with_status(items, 2, "delivered"),
    )
    .await;
    let mut seen: Vec<(String, String)> = extra_deliveries
        .iter()
        .map(|d| {
            (
                d["execution_id"].as_str().unwrap_or_default().to_string(),
                d["event"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (cancelled.clone(), "execution.cancelled".to_string()),
        (queued.clone(), "execution.succeeded".to_string()),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "the named webhook hears of the runs that named it"
    );
    let late_deliveries = deliveries_until(
        &api,
        &token,
        &format!("/api/v1/webhooks/{late}/deliveries"),
        |items| all_with_status(items, 1, "delivered"),
    )
    .await;
    assert_eq!(late_deliveries[0]["execution_id"], later.as_str());
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/late").count(),
        1,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "/extra").count(),
        2,
        "{paths:?}"
    );
}

#[tokio::test]
async fn the_worker_checks_the_receivers_address_again_when_it_delivers() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[], None).await;
    // The API allows loopback receivers; the worker (the one that connects) does not.
    let api = api_allowing(&db, &[]).await;
    let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &FAST_RETRIES).await;
    let token = signed_up(&api, "rebind@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let (hook, _) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    wait_for_status(&api, &token, &id_of(&execution), Some("succeeded"), TIMEOUT).await;

    let deliveries = deliveries_until(
        &api,
        &token,
        &format!("/api/v1/webhooks/{hook}/deliveries"),
        |items| all_with_status(items, 1, "failed"),
    )
    .await;
    let attempts = deliveries[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3);
    for attempt in attempts {
        assert!(attempt["status_code"].is_null());
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("refused by the address policy: 127.0.0.1"),
            "{error}"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn rotate_keys_re_encrypts_webhook_secrets_and_deliveries_still_sign_with_them() {
    use base64::Engine as _;
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let old = format!("v1:{}", key(1));
    let both = format!("v2:{},v1:{}", key(2), key(1));
    let only_new = format!("v2:{}", key(2));
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let receiver = Receiver::start(&[], None).await;
    let api = api_allowing(&db, &[("CREWGRAPH_ENCRYPTION_KEYS", &old)]).await;
    let token = signed_up(&api, "rotate@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let (_, secret) = create_webhook(
        &api,
        &token,
        Some(&graph),
        json!({"url": receiver.url("/hook")}),
    )
    .await;

    let output = tokio::process::Command::new(crewgraph_tests::app::binary_path("crewgraph-api"))
        .arg("rotate-keys")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", &db.url)
        .env("CREWGRAPH_ENCRYPTION_KEYS", &both)
        .env("CREWGRAPH_LOG_FORMAT", "json")
        .output()
        .await
        .expect("run rotate-keys");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("webhook secrets re-encrypted") && stdout.contains("\"rotated\":1"),
        "{stdout}"
    );
    assert!(!stdout.contains(&secret));

    // The worker holds the new key only: the secret opens with it, unchanged.
    let _worker = spawn_worker(
        &db.url,
        &llm.openai_base_url(),
        &[
            ALLOW_LOOPBACK_WEBHOOKS,
            ("CREWGRAPH_ENCRYPTION_KEYS", &only_new),
        ],
    )
    .await;
    let execution = kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    wait_for_status(&api, &token, &id_of(&execution), Some("succeeded"), TIMEOUT).await;
    let received = receiver.wait_for(1).await;
    assert_eq!(
        verify_signature(
            &secret,
            received[0].header("x-crewgraph-signature"),
            &received[0].body,
            now(),
            300
        ),
        Ok(())
    );
}
