//! `scripted-llm`: an OpenAI- and Anthropic-compatible HTTP server on loopback, driven by a
//! [`Script`]. Tests, benchmarks and the no-key demo replace real LLM providers with it.
//!
//! Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
//! `GET /health`. Every request is recorded (unless recording is off) for assertions.

mod answer;
mod anthropic;
mod openai;
mod request;
mod script;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{HeaderMap, StatusCode};
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{Body, EndpointExt, Response, Route, Server, get, handler, post};
use serde::Deserialize;
use tokio::task::JoinHandle;

pub use script::{Fallback, FaultKind, Reply, Rule, Script, ScriptedToolCall, Usage, When};

use answer::Plan;
use request::RequestView;

/// Pending connections the listener queues before the kernel drops SYNs.
const LISTEN_BACKLOG: u32 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Api {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub api: Api,
    pub body: serde_json::Value,
    pub received_at: Instant,
    /// The API key the client sent (`Authorization: Bearer`, `api-key` or `x-api-key`).
    pub api_key: Option<String>,
    /// The query string (Azure sends `api-version` there).
    pub query: Option<String>,
}

/// A running server; stops when dropped.
pub struct ScriptedLlm {
    addr: SocketAddr,
    state: Arc<ServerState>,
    server: JoinHandle<()>,
}

struct ServerState {
    script: Script,
    record: bool,
    requests: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
}

impl ScriptedLlm {
    /// Binds 127.0.0.1 on a free port.
    pub async fn start(script: Script) -> ScriptedLlm {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        ScriptedLlm::start_at(addr, script, true)
            .await
            .expect("bind scripted-llm on loopback")
    }

    /// Binds `addr`. With `record` off nothing is kept per request (long benchmarks).
    pub async fn start_at(
        addr: SocketAddr,
        script: Script,
        record: bool,
    ) -> std::io::Result<ScriptedLlm> {
        // A long accept backlog: benchmarks open 1,000 connections at once, and with
        // `TcpListener::bind`'s 1024 some SYNs are dropped and retried a second later.
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        let state = Arc::new(ServerState {
            script,
            record,
            requests: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let app = Route::new()
            .at("/v1/chat/completions", post(chat_completions))
            // Azure OpenAI's path: the deployment is in the URL.
            .at(
                "/openai/deployments/:deployment/chat/completions",
                post(chat_completions),
            )
            .at("/v1/messages", post(messages))
            .at("/health", get(health))
            .data(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = Server::new_with_acceptor(acceptor).run(app).await {
                eprintln!("scripted-llm stopped: {error}");
            }
        });
        Ok(ScriptedLlm {
            addr,
            state,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    /// Runs until the server fails (the binary's main loop).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What a handler decided to send, before it becomes an HTTP response.
pub(crate) struct Rendered {
    status: u16,
    content_type: &'static str,
    retry_after: Option<u64>,
    body: RenderedBody,
}

pub(crate) enum RenderedBody {
    Whole(String),
    /// SSE events, sent one by one (with the rule's chunk delay between them).
    Chunks(Vec<String>),
    /// Sends these pieces, then drops the connection.
    Cut(Vec<String>),
    /// Accepts the request and never answers.
    Hang,
}

#[handler]
async fn chat_completions(
    state: Data<&Arc<ServerState>>,
    headers: &HeaderMap,
    uri: &poem::http::Uri,
    body: Vec<u8>,
) -> Response {
    answer(&state, Api::OpenAi, headers, uri, &body).await
}

#[handler]
async fn messages(
    state: Data<&Arc<ServerState>>,
    headers: &HeaderMap,
    uri: &poem::http::Uri,
    body: Vec<u8>,
) -> Response {
    answer(&state, Api::Anthropic, headers, uri, &body).await
}

#[handler]
fn health() -> &'static str {
    "ok"
}

async fn answer(
    state: &ServerState,
    api: Api,
    headers: &HeaderMap,
    uri: &poem::http::Uri,
    body: &[u8],
) -> Response {
    let received_at = Instant::now();
    let body: serde_json::Value = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(error) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(
                    serde_json::json!({"error": {"message": format!("scripted-llm: the body is not JSON: {error}"),
                                                 "type": "invalid_request_error"}})
                    .to_string(),
                );
        }
    };
    let api_key = api_key(headers);
    let view = RequestView::read(api, &body);
    if state.record {
        let recorded = RecordedRequest {
            api,
            body,
            received_at,
            api_key: api_key.clone(),
            query: uri.query().map(str::to_owned),
        };
        if let Ok(mut requests) = state.requests.lock() {
            requests.push(recorded);
        }
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let plan = Plan::for_request(&state.script, &view);
    let rendered = match api {
        Api::OpenAi => openai::render(&plan, &view, api_key.as_deref().unwrap_or(""), id),
        Api::Anthropic => anthropic::render(&plan, &view, id),
    };
    if plan.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    respond(rendered, plan.chunk_delay_ms).await
}

async fn respond(rendered: Rendered, chunk_delay_ms: u64) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::OK))
        .content_type(rendered.content_type);
    if let Some(seconds) = rendered.retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    match rendered.body {
        RenderedBody::Whole(body) => builder.body(body),
        RenderedBody::Chunks(events) if chunk_delay_ms == 0 => builder
            .header("cache-control", "no-cache")
            .body(events.concat()),
        RenderedBody::Chunks(events) => {
            let delay = Duration::from_millis(chunk_delay_ms);
            let stream = futures::StreamExt::then(
                futures::stream::iter(events.into_iter().enumerate()),
                move |(index, event)| async move {
                    if index > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, std::io::Error>(event)
                },
            );
            builder
                .header("cache-control", "no-cache")
                .body(Body::from_bytes_stream(stream))
        }
        RenderedBody::Cut(pieces) => {
            // Promising more bytes than are sent makes the server drop the connection
            // mid-body, as a failing provider or proxy does.
            let promised = pieces.iter().map(String::len).sum::<usize>() + 1024;
            let pieces = pieces.into_iter().map(Ok::<_, std::io::Error>);
            builder
                .header("content-length", promised.to_string())
                .body(Body::from_bytes_stream(futures::stream::iter(pieces)))
        }
        RenderedBody::Hang => {
            std::future::pending::<()>().await;
            builder.body(())
        }
    }
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    header("authorization")
        .map(|value| value.trim_start_matches("Bearer ").to_owned())
        .or_else(|| header("x-api-key"))
        .or_else(|| header("api-key"))
}
