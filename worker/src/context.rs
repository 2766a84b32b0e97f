//! What every part of a worker shares.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crewgraph_core::config::EncryptionKeys;
use crewgraph_core::crew::llm::HttpLlmConnector;
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::executions::credentials::Fallback;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, Semaphore};

use crate::event_writer::EventWriter;
use crate::running::Running;

pub struct WorkerContext {
    /// `host-pid-random`: names this process on the executions it claims.
    pub worker_id: String,
    pub db: DatabaseConnection,
    pub writer: EventWriter,
    pub running: Arc<Running>,
    /// Free crew slots (`CREWGRAPH_WORKER_CONCURRENCY`).
    pub slots: Arc<Semaphore>,
    /// Rung by a queue notification: there may be work.
    pub wake: Notify,
    /// One pooled HTTP client for every provider call; credentials are per run owner.
    pub connector: HttpLlmConnector,
    pub keys: Arc<EncryptionKeys>,
    pub fallback: Fallback,
    pub tools: ToolRegistry,
    pub execution_timeout: Duration,
    pub lost_after: Duration,
    pub max_attempts: i32,
    /// What this worker knows of its own connection to the database.
    pub health: Mutex<Health>,
}

/// A worker that cannot reach the database for `lost_after` must assume its runs were
/// recovered by another worker (and stop them), and must not recover anyone else's runs
/// until it has been connected long enough for their owners to have heartbeated.
pub struct Health {
    pub last_heartbeat: Instant,
    pub connected_since: Option<Instant>,
}
