//! Builds the application (routes, middleware, state) and runs the server.

use crate::cors::Cors;
use std::net::SocketAddr;
use std::sync::Arc;

use crewgraph_core::auth::stream_tokens::StreamTokens;
use crewgraph_core::auth::tokens::AccessTokens;
use crewgraph_core::config::Config;
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::outbound::OutboundPolicy;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::CatchPanic;
use poem::{EndpointExt, Route, Server, get};
use poem_openapi::OpenApiService;
use sea_orm::DatabaseConnection;

use crate::error::{into_json_response, panic_response};
use crate::event_hub::EventHub;
use crate::middleware::{BodyLimit, RequestContext};
use crate::peer_close::PeerCloseAcceptor;
use crate::prometheus::{self, RequestMetrics};
use crate::routes;

pub const API_TITLE: &str = "crewgraph API";

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub access_tokens: Arc<AccessTokens>,
    pub tools: Arc<ToolRegistry>,
    /// The policy for LLM base URLs (`CREWGRAPH_LLM_ALLOWED_HOSTS`), for validation.
    pub llm_hosts: Arc<OutboundPolicy>,
    pub stream_tokens: Arc<StreamTokens>,
    pub events: Arc<EventHub>,
}

impl AppState {
    pub fn new(db: DatabaseConnection, config: Config) -> Self {
        // The API ends executions too (cancelling queued ones): it queues their exports.
        if let Err(e) = crewgraph_core::mlflow::install(&config.mlflow) {
            tracing::error!(error = %e, "MLflow export is off");
        }
        AppState {
            access_tokens: Arc::new(AccessTokens::new(&config.auth.jwt_secret)),
            tools: Arc::new(ToolRegistry::builtin()),
            llm_hosts: Arc::new(config.llm_outbound_policy()),
            stream_tokens: Arc::new(StreamTokens::new(&config.auth.jwt_secret)),
            events: EventHub::new(db.clone()),
            db,
            config: Arc::new(config),
        }
    }
}

pub fn openapi_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(routes::api(), API_TITLE, env!("CARGO_PKG_VERSION")).description(
        "The backend of a visual CrewAI graph builder: store crew graphs, validate them, \
         run them on workers and stream every step over server-sent events. \
         Errors always have the body `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    )
}

/// The OpenAPI document as JSON (served at `/openapi.json`, printed by `crewgraph-api openapi`).
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// The whole endpoint tree with its middleware, in the order that makes every error JSON
/// and every response carry a request id (and, for allowed origins, CORS headers).
pub fn app(state: AppState) -> impl poem::Endpoint {
    let service = openapi_service();
    let swagger = service.swagger_ui();
    let spec = service.spec_endpoint();
    let max_body_bytes = state.config.api.max_body_bytes;
    let cors = Cors::new(state.config.api.cors_origins.clone());
    let request_metrics = RequestMetrics::new(&service.spec());
    Route::new()
        .nest("/", service)
        .at("/openapi.json", spec)
        .nest("/docs", swagger)
        .at("/metrics", get(prometheus::metrics))
        .with(BodyLimit {
            limit: max_body_bytes,
        })
        .data(state)
        .catch_all_error(into_json_response)
        .with(CatchPanic::new().with_handler(panic_response))
        .with(request_metrics)
        .with(RequestContext)
        .with(cors)
}

/// A bound, not yet running server.
pub struct Application {
    acceptor: PeerCloseAcceptor<poem::listener::TcpAcceptor>,
    state: AppState,
}

impl Application {
    pub async fn bind(state: AppState) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(state.config.api.listen_addr)
            .into_acceptor()
            .await?;
        Ok(Self {
            acceptor: PeerCloseAcceptor(acceptor),
            state,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
    }

    /// Serves until SIGTERM/SIGINT, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                app(self.state),
                crewgraph_core::shutdown::signal(),
                Some(crewgraph_core::config::SHUTDOWN_GRACE),
            )
            .await
    }
}
