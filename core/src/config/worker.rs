//! The worker: concurrency, time limits, recovery, retention, and the operator's
//! fallback LLM endpoint; plus the per-user execution limit the API enforces.

use secrecy::SecretString;

use super::reader::Reader;

pub const DEFAULT_WORKER_CONCURRENCY: usize = 64;
const MAX_WORKER_CONCURRENCY: usize = 100_000;
/// A century: longer is "forever", which is what leaving the variable unset means.
const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Seconds an execution may run before it fails with `timeout`.
    pub execution_timeout_secs: u64,
    /// A running execution whose heartbeat is older than this is recovered.
    pub lost_after_secs: u64,
    /// Seconds a stopping worker lets running crews finish before handing them back.
    pub shutdown_grace_secs: u64,
    /// Claims of one execution before a lost worker fails it (`worker_lost`).
    pub max_attempts: i32,
    /// Days finished executions are kept; `None` keeps them forever.
    pub retention_days: Option<u32>,
    /// Operator fallback for models whose owner has no stored key for the provider: an
    /// OpenAI-compatible base URL (the Quickstart points it at `scripted-llm`).
    pub fallback_llm_base_url: Option<String>,
    pub fallback_llm_api_key: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct ExecutionLimits {
    /// Queued plus running executions one user may have.
    pub max_active_per_user: i64,
}

/// The worker section and the execution limits, read in the order operators know from
/// the problem list (the limit sits between the time limits and the fallback).
pub(super) fn read(reader: &mut Reader<'_>) -> (WorkerConfig, ExecutionLimits) {
    let concurrency = reader
        .parse_ranged(
            "CREWGRAPH_WORKER_CONCURRENCY",
            DEFAULT_WORKER_CONCURRENCY,
            1,
            MAX_WORKER_CONCURRENCY,
        )
        .unwrap_or(DEFAULT_WORKER_CONCURRENCY);
    let execution_timeout_secs = reader
        .parse_ranged(
            "CREWGRAPH_EXECUTION_TIMEOUT_SECS",
            1800u64,
            1,
            7 * 24 * 3600,
        )
        .unwrap_or(1800);
    let lost_after_secs = reader
        .parse_ranged("CREWGRAPH_WORKER_LOST_AFTER_SECS", 30u64, 2, 3600)
        .unwrap_or(30);
    let shutdown_grace_secs = reader
        .parse_ranged("CREWGRAPH_WORKER_SHUTDOWN_GRACE_SECS", 30u64, 0, 3600)
        .unwrap_or(30);
    let max_attempts = reader
        .parse_ranged("CREWGRAPH_EXECUTION_MAX_ATTEMPTS", 3i32, 1, 100)
        .unwrap_or(3);
    let max_active_per_user = reader
        .parse_ranged("CREWGRAPH_MAX_ACTIVE_EXECUTIONS", 100i64, 1, 1_000_000)
        .unwrap_or(100);
    let worker = WorkerConfig {
        concurrency,
        execution_timeout_secs,
        lost_after_secs,
        shutdown_grace_secs,
        max_attempts,
        fallback_llm_base_url: read_fallback_base_url(reader),
        fallback_llm_api_key: reader
            .get("CREWGRAPH_FALLBACK_LLM_API_KEY")
            .map(SecretString::from),
        retention_days: reader.parse_optional("CREWGRAPH_RETENTION_DAYS", 1u32, MAX_RETENTION_DAYS),
    };
    (
        worker,
        ExecutionLimits {
            max_active_per_user,
        },
    )
}

fn read_fallback_base_url(reader: &mut Reader<'_>) -> Option<String> {
    let raw = reader.get("CREWGRAPH_FALLBACK_LLM_BASE_URL")?;
    match url::Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Some(raw.trim().trim_end_matches('/').to_string())
        }
        _ => {
            reader.problem(
                "CREWGRAPH_FALLBACK_LLM_BASE_URL",
                "must be an http:// or https:// URL".into(),
            );
            None
        }
    }
}
