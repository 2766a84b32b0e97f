//! The outbound address policy for LLM base URLs, end to end: a graph (or a stored key)
//! cannot make the worker call loopback, link-local or private addresses unless the
//! operator allows the host in `CREWGRAPH_LLM_ALLOWED_HOSTS`; validation says so on the
//! node; and what an endpoint answers never comes back as its raw body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crewgraph_tests::http::{JWT_SECRET, body, expect_error, post, signed_up};
use crewgraph_tests::pipeline::{
    create_graph, database, event_log, graph_calling, kickoff, one_task_graph, spawn_worker,
    wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use crewgraph_tests::{TestApi, TestDatabase, spawn_api_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const ALLOWED_HOSTS: &str = "CREWGRAPH_LLM_ALLOWED_HOSTS";
/// Text only the target's raw body holds: it must never reach an error or an event.
const RAW_MARKER: &str = "INTERNAL-ONLY-BODY-7f3a";

/// A TCP server on loopback that counts connections and answers each with `response`.
struct Recorder {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start(response: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 8192];
                    let _ = socket.read(&mut buffer).await;
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Recorder { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An HTTP 400 (not retried) with `body`.
fn bad_request(body: &str) -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn api_allowing(db: &TestDatabase, hosts: &str) -> TestApi {
    spawn_api_with(
        &db.url,
        &[("CREWGRAPH_JWT_SECRET", JWT_SECRET), (ALLOWED_HOSTS, hosts)],
    )
    .await
}

/// Runs a graph to its end; returns the finished execution and its event log as text.
async fn run_to_end(api: &TestApi, token: &str, document: Value) -> (Value, String) {
    let graph = create_graph(api, token, document).await;
    let execution = kickoff(api, token, &graph, json!({"question": "q"})).await;
    let id = execution["id"].as_str().expect("id");
    let finished = wait_for_status(api, token, id, None, RUN_TIMEOUT).await;
    let log = serde_json::to_string(&event_log(api, token, id).await).expect("log");
    (finished, log)
}

#[tokio::test]
async fn without_an_allow_list_the_worker_refuses_loopback_and_metadata_addresses_unseen() {
    let db = database().await;
    let fallback = ScriptedLlm::start(Script::default()).await;
    let target = Recorder::start(bad_request(RAW_MARKER)).await;
    // The API allows them (a misconfiguration): the worker is the last line and refuses.
    let api = api_allowing(&db, "127.0.0.1,169.254.169.254").await;
    let _worker = spawn_worker(&db.url, &fallback.openai_base_url(), &[]).await;
    let token = signed_up(&api, "ssrf@example.com").await;

    for base_url in [
        format!("http://{}/v1", target.addr),
        "http://169.254.169.254/latest".to_string(),
    ] {
        let started = std::time::Instant::now();
        let (finished, log) = run_to_end(&api, &token, graph_calling(&base_url)).await;
        assert_eq!(finished["status"], "failed", "{finished}");
        assert_eq!(
            finished["error"]["code"], "llm_address_refused",
            "{finished}"
        );
        let message = finished["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("CREWGRAPH_LLM_ALLOWED_HOSTS"),
            "the error says how to allow it: {message}"
        );
        assert!(!log.contains(RAW_MARKER), "{log}");
        // A refusal is immediate: no connect time-out, no retries.
        assert!(started.elapsed() < Duration::from_secs(8), "{base_url}");
    }
    assert_eq!(target.connections(), 0, "no request may reach the target");
    assert!(fallback.requests().is_empty(), "nothing went elsewhere");

    // A stored key's base URL is the user's choice too.
    let stored = post(
        &api,
        "/api/v1/api-keys",
        Some(&token),
        json!({"name": "local", "provider": "openai", "secret": "sk-user-key-000000",
               "base_url": format!("http://{}/v1", target.addr)}),
    )
    .await;
    assert_eq!(stored.status(), 201);
    let (finished, _) = run_to_end(&api, &token, one_task_graph()).await;
    assert_eq!(
        finished["error"]["code"], "llm_address_refused",
        "{finished}"
    );
    assert_eq!(target.connections(), 0, "no request may reach the target");
}

#[tokio::test]
async fn an_allowed_host_is_called_and_its_error_body_is_reduced_to_the_provider_message() {
    let db = database().await;
    let fallback = ScriptedLlm::start(Script::default()).await;
    let structured = Recorder::start(bad_request(&format!(
        r#"{{"error":{{"message":"the model is overloaded","type":"x"}},"debug":"{RAW_MARKER}"}}"#
    )))
    .await;
    let raw = Recorder::start(bad_request(&format!("<html>{RAW_MARKER}</html>"))).await;
    let allowed = format!("{},{}", structured.addr, raw.addr);
    let api = api_allowing(&db, &allowed).await;
    let _worker = spawn_worker(
        &db.url,
        &fallback.openai_base_url(),
        &[(ALLOWED_HOSTS, &allowed)],
    )
    .await;
    let token = signed_up(&api, "allowed@example.com").await;

    let (finished, log) = run_to_end(
        &api,
        &token,
        graph_calling(&format!("http://{}/v1", structured.addr)),
    )
    .await;
    assert_eq!(finished["error"]["code"], "llm_bad_request", "{finished}");
    let message = finished["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the model is overloaded"), "{message}");
    assert!(!message.contains(RAW_MARKER), "{message}");
    assert!(
        log.contains("the model is overloaded"),
        "llm.failed says why"
    );
    assert!(!log.contains(RAW_MARKER), "{log}");
    assert_eq!(structured.connections(), 1);

    let (finished, log) = run_to_end(
        &api,
        &token,
        graph_calling(&format!("http://{}/v1", raw.addr)),
    )
    .await;
    assert_eq!(finished["error"]["code"], "llm_bad_request", "{finished}");
    let message = finished["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains(RAW_MARKER), "{message}");
    assert!(!log.contains(RAW_MARKER), "{log}");
    assert_eq!(raw.connections(), 1);
}

/// (code, node_id, field) of every problem in a validation body.
fn problems(result: &Value) -> Vec<(String, String, String)> {
    result["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let text = |name: &str| p[name].as_str().unwrap_or_default().to_string();
            (text("code"), text("node_id"), text("field"))
        })
        .collect()
}

/// The problems `POST /api/v1/graphs/validate` finds in a graph calling `base_url`.
async fn validation_problems(
    api: &TestApi,
    token: &str,
    base_url: &str,
) -> Vec<(String, String, String)> {
    let response = post(
        api,
        "/api/v1/graphs/validate",
        Some(token),
        json!({"document": graph_calling(base_url)}),
    )
    .await;
    problems(&body(response).await)
}

#[tokio::test]
async fn validation_flags_refused_base_urls_on_the_node_unless_the_host_is_allowed() {
    let db = database().await;
    let strict = spawn_api_with(&db.url, &[("CREWGRAPH_JWT_SECRET", JWT_SECRET)]).await;
    let token = signed_up(&strict, "validator@example.com").await;
    let flagged = (
        "base_url_not_allowed".to_string(),
        "m".to_string(),
        "base_url".to_string(),
    );
    for url in [
        "http://127.0.0.1:5432",
        "http://169.254.169.254",
        "http://localhost:11434/v1",
        "http://[::1]:8000/v1",
        "http://10.0.0.7/v1",
    ] {
        assert_eq!(
            validation_problems(&strict, &token, url).await,
            vec![flagged.clone()],
            "{url}"
        );
    }
    let public = validation_problems(&strict, &token, "https://api.groq.com/openai/v1").await;
    assert_eq!(public, []);

    // The node form check says the same.
    let node = body(
        post(
            &strict,
            "/api/v1/node-types/llm/validate",
            Some(&token),
            json!({"id": "m", "data": {"model": "openai/gpt-4o", "base_url": "http://127.0.0.1:5432"}}),
        )
        .await,
    )
    .await;
    assert_eq!(node["valid"], false, "{node}");
    assert_eq!(problems(&node), vec![flagged.clone()]);

    // A run of such a graph is refused at kickoff.
    let graph = create_graph(&strict, &token, graph_calling("http://127.0.0.1:5432")).await;
    let refused_run = post(
        &strict,
        &format!("/api/v1/graphs/{graph}/executions"),
        Some(&token),
        json!({"inputs": {"question": "q"}}),
    )
    .await;
    let refused_run = expect_error(refused_run, 422, "graph_invalid").await;
    assert_eq!(
        refused_run["error"]["details"]["problems"][0]["code"],
        "base_url_not_allowed"
    );

    // With the host (or host:port) allowed, the same URLs are fine.
    let allowing = api_allowing(&db, "127.0.0.1:5432, localhost").await;
    let token = signed_up(&allowing, "operator@example.com").await;
    for (url, expected) in [
        ("http://127.0.0.1:5432", Vec::new()),
        ("http://localhost:11434/v1", Vec::new()),
        ("http://127.0.0.1:6379", vec![flagged.clone()]),
    ] {
        assert_eq!(
            validation_problems(&allowing, &token, url).await,
            expected,
            "{url}"
        );
    }
}
