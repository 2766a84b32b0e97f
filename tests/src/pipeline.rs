//! Helpers for execution-pipeline tests: real worker processes, an SSE client, graphs
//! that run against `scripted-llm`, and waiting for states.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::app::TestProcess;
use crate::http::{body, post, send, workspace};
use crate::{TestApi, TestDatabase};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// For tests whose graphs or stored keys point at `scripted-llm` on loopback on purpose:
/// the operator allow-list entry that lets the API's validation and the worker accept
/// it (without it both refuse loopback base URLs; the fallback needs no entry).
pub const ALLOW_LOOPBACK_LLM: (&str, &str) = ("CREWGRAPH_LLM_ALLOWED_HOSTS", "127.0.0.1");

/// Starts `crewgraph-worker work` against `database_url`, with models that have no stored
/// key sent to `llm_base_url` (an OpenAI-compatible base URL, e.g. `scripted-llm`'s).
pub async fn spawn_worker(
    database_url: &str,
    llm_base_url: &str,
    env: &[(&str, &str)],
) -> TestProcess {
    let mut vars = vec![
        ("DATABASE_URL", database_url),
        ("CREWGRAPH_FALLBACK_LLM_BASE_URL", llm_base_url),
    ];
    vars.extend_from_slice(env);
    let mut process = TestProcess::start("crewgraph-worker", &["work"], &vars);
    let ready = process
        .wait_for_log(START_TIMEOUT, |line| {
            line["message"] == "crewgraph-worker ready"
        })
        .await;
    assert!(
        ready.is_some(),
        "crewgraph-worker did not start; its output:\n{}",
        process.logs().join("\n")
    );
    process
}

/// The base URL of a started worker's own HTTP port (`/metrics`, `/health`), from its
/// "crewgraph-worker ready" log line.
pub fn worker_http_url(worker: &TestProcess) -> String {
    let ready = worker
        .json_logs()
        .into_iter()
        .find(|line| line["message"] == "crewgraph-worker ready")
        .expect("the worker logged that it is ready");
    let addr = ready["http_addr"]
        .as_str()
        .expect("the ready line names the worker's HTTP address");
    format!("http://{addr}")
}

/// One agent, one task `Answer {question}` (no tools): one LLM call per run.
pub fn one_task_graph() -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "Answerer", "goal": "Answer questions",
             "backstory": "Brief and exact.", "llm": "openai/gpt-4o-mini"}},
            {"id": "t", "type": "task", "data": {"name": "answer", "description": "Answer {question}",
             "expected_output": "One sentence."}}
        ],
        "edges": [{"id": "e", "source": "a", "target": "t"}]
    })
}

/// `one_task_graph` with its agent on an llm node calling `base_url`.
pub fn graph_calling(base_url: &str) -> Value {
    let mut document = one_task_graph();
    document["nodes"][0]["data"]
        .as_object_mut()
        .expect("data")
        .remove("llm");
    document["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "m", "type": "llm",
                     "data": {"model": "openai/gpt-4o-mini", "base_url": base_url}}));
    document["edges"]
        .as_array_mut()
        .expect("edges")
        .push(json!({"id": "e-m", "source": "m", "target": "a"}));
    document
}

/// Creates a workspace and a graph; returns the graph id.
pub async fn create_graph(api: &TestApi, token: &str, document: Value) -> String {
    let ws = workspace(api, token, &format!("ws-{}", uuid::Uuid::new_v4())).await;
    let created = post(
        api,
        &format!("/api/v1/workspaces/{ws}/graphs"),
        Some(token),
        json!({"name": "G", "document": document}),
    )
    .await;
    assert_eq!(created.status(), 201);
    body(created).await["id"]
        .as_str()
        .expect("graph id")
        .to_string()
}

/// Kicks off a run and returns the execution body (asserting 202).
pub async fn kickoff(api: &TestApi, token: &str, graph_id: &str, inputs: Value) -> Value {
    let response = post(
        api,
        &format!("/api/v1/graphs/{graph_id}/executions"),
        Some(token),
        json!({ "inputs": inputs }),
    )
    .await;
    let status = response.status();
    let execution = body(response).await;
    assert_eq!(status, 202, "{execution}");
    execution
}

/// Polls until the execution has `status` (or any terminal status when `None`).
pub async fn wait_for_status(
    api: &TestApi,
    token: &str,
    execution_id: &str,
    status: Option<&str>,
    timeout: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let execution = body(
            send(
                api,
                reqwest::Method::GET,
                &format!("/api/v1/executions/{execution_id}"),
                token,
                None,
            )
            .await,
        )
        .await;
        let current = execution["status"].as_str().unwrap_or_default().to_string();
        let done = match status {
            Some(wanted) => current == wanted,
            None => matches!(current.as_str(), "succeeded" | "failed" | "cancelled"),
        };
        if done {
            return execution;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "execution {execution_id} is {current}, not {status:?}: {execution}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The stored event log of an execution (all of it).
pub async fn event_log(api: &TestApi, token: &str, execution_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = body(
            send(
                api,
                reqwest::Method::GET,
                &format!("/api/v1/executions/{execution_id}/log?after={after}&limit=1000"),
                token,
                None,
            )
            .await,
        )
        .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        events.extend(items);
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return events,
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

/// Reads server-sent events from a response, one at a time.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: Value::Null,
                };
                let mut data = String::new();
                let mut is_event = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_string());
                        is_event = true;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim().to_string());
                        is_event = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                        is_event = true;
                    }
                }
                if is_event {
                    event.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return Some(event);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

/// Opens the event stream of an execution with a bearer token (and `Last-Event-ID`).
pub async fn open_stream(
    api: &TestApi,
    token: &str,
    execution_id: &str,
    last_event_id: Option<i64>,
) -> SseReader {
    let mut request = api
        .client
        .get(api.url(&format!("/api/v1/executions/{execution_id}/events")))
        .bearer_auth(token)
        .timeout(Duration::from_secs(120));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("open event stream");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    SseReader::new(response)
}

/// Every event until the stream ends.
pub async fn read_to_end(reader: &mut SseReader, timeout: Duration) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, reader.next_event()).await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return events,
            Err(_) => panic!("the stream did not end in time; got {events:?}"),
        }
    }
}

/// The seqs of events, checked to be 1..=n with no gap or duplicate.
pub fn assert_contiguous(events: &[SseEvent]) {
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e.data["seq"].as_i64().expect("seq"))
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "events are not exactly 1..n");
    for event in events {
        assert_eq!(
            event.id.as_deref(),
            Some(event.data["seq"].to_string().as_str())
        );
        assert_eq!(event.event.as_deref(), event.data["type"].as_str());
    }
}

/// A database for pipeline tests.
pub async fn database() -> TestDatabase {
    TestDatabase::migrated().await
}
