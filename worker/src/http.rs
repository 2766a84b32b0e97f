//! The worker's own small HTTP port (`CREWGRAPH_WORKER_HTTP_ADDR`): `GET /metrics` for
//! Prometheus and `GET /health` for orchestrators (and `crewgraph-worker health`, the
//! image's HEALTHCHECK). It serves until the worker has stopped, so a draining worker
//! answers 503 while its crews finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crewgraph_core::config::MonitoringConfig;
use crewgraph_core::monitoring::{self, Scraped};
use poem::http::{StatusCode, header};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, Server, get, handler};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::running::Running;

/// How long `/health` waits for the database before calling it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server lets a last scrape finish once the worker has stopped.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the port reports on: the worker's parts, not the whole context (the context's
/// last handle ends the event writer, which must not wait for the HTTP server).
#[derive(Clone)]
pub struct HttpState {
    pub db: DatabaseConnection,
    pub running: Arc<Running>,
    pub slots: Arc<Semaphore>,
    pub concurrency: usize,
    /// Cancelled when the worker stops claiming: it is draining.
    pub stopping: CancellationToken,
    pub metrics_token: Option<SecretString>,
}

/// A bound port, served by [`HttpPort::serve`].
pub struct HttpPort {
    acceptor: TcpAcceptor,
}

impl HttpPort {
    /// Binds the configured address; `None` when the port is `off`.
    pub async fn bind(config: &MonitoringConfig) -> anyhow::Result<Option<HttpPort>> {
        let Some(addr) = config.worker_http_addr else {
            return Ok(None);
        };
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|e| anyhow::anyhow!("CREWGRAPH_WORKER_HTTP_ADDR {addr}: {e}"))?;
        Ok(Some(HttpPort { acceptor }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
    }

    /// Serves until `stopped` is cancelled.
    pub fn serve(
        self,
        state: HttpState,
        stopped: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let app = Route::new()
            .at("/metrics", get(metrics))
            .at("/health", get(health))
            .data(state)
            .catch_all_error(|error: poem::Error| async move {
                let status = error.status();
                let code = if status == StatusCode::NOT_FOUND {
                    "not_found"
                } else if status == StatusCode::METHOD_NOT_ALLOWED {
                    "method_not_allowed"
                } else {
                    "bad_request"
                };
                error_response(
                    status,
                    code,
                    "this port serves GET /metrics and GET /health",
                )
            });
        tokio::spawn(async move {
            let served = Server::new_with_acceptor(self.acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move { stopped.cancelled().await },
                    Some(HTTP_SHUTDOWN_GRACE),
                )
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the worker's HTTP port failed");
            }
        })
    }
}

/// The stable error body of the API (`{"error": {"code", "message"}}`).
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

#[handler]
async fn metrics(request: &Request, state: Data<&HttpState>) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !monitoring::scrape_allowed(state.metrics_token.as_ref(), authorization) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint requires `Authorization: Bearer <CREWGRAPH_METRICS_TOKEN>`",
        );
    }
    let mut scraped = Scraped::default();
    monitoring::database_facts(&state.db, &mut scraped).await;
    let running = i64::try_from(state.running.len()).unwrap_or(i64::MAX);
    let busy = state
        .concurrency
        .saturating_sub(state.slots.available_permits());
    scraped.gauge(
        "crewgraph_worker_crews_running",
        "Crews this worker is running now.",
        running,
    );
    scraped.gauge(
        "crewgraph_worker_crew_slots",
        "Crews this worker may run at once (CREWGRAPH_WORKER_CONCURRENCY).",
        i64::try_from(state.concurrency).unwrap_or(i64::MAX),
    );
    scraped.gauge(
        "crewgraph_worker_crew_slots_in_use",
        "Crew slots taken, by running crews and claims being started.",
        i64::try_from(busy).unwrap_or(i64::MAX),
    );
    scraped.gauge(
        "crewgraph_worker_draining",
        "1 while this worker is stopping (no new claims).",
        i64::from(state.stopping.is_cancelled()),
    );
    let body = monitoring::metrics().render(scraped);
    Response::builder()
        .content_type(monitoring::CONTENT_TYPE)
        .body(body)
}

/// 200 when the database answers and the worker is not draining; 503 otherwise.
#[handler]
async fn health(state: Data<&HttpState>) -> Response {
    let database_ok = matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let draining = state.stopping.is_cancelled();
    let healthy = database_ok && !draining;
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "database": if database_ok { "ok" } else { "unreachable" },
        "draining": draining,
        "running": state.running.len(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `crewgraph-worker health`: asks the local worker's `/health`; `Err` says why it is not
/// healthy (or did not answer).
pub async fn check(config: &MonitoringConfig) -> Result<(), String> {
    let Some(mut addr) = config.worker_http_addr else {
        return Err("the worker's HTTP port is off (CREWGRAPH_WORKER_HTTP_ADDR=off)".into());
    };
    // A worker listening on every interface answers on loopback too.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT * 2)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .map_err(|e| format!("no answer from http://{addr}/health: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("unhealthy ({status}): {body}"))
    }
}
