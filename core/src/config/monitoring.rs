//! Prometheus: the worker's own HTTP port (`/metrics`, `/health`) and the optional
//! bearer token that `/metrics` then requires (on the API and on workers).

use std::net::SocketAddr;

use secrecy::SecretString;

use super::reader::Reader;

pub const DEFAULT_WORKER_HTTP_ADDR: &str = "127.0.0.1:9091";
/// A guessable token protects nothing.
const MIN_METRICS_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct MonitoringConfig {
    /// Where a worker serves `/metrics` and `/health`; `None`: `off`, no port.
    pub worker_http_addr: Option<SocketAddr>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
}

pub(super) fn read(reader: &mut Reader<'_>) -> MonitoringConfig {
    let worker_http_addr = match reader.get("CREWGRAPH_WORKER_HTTP_ADDR") {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
        Some(v) => match v.trim().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                reader.problem(
                    "CREWGRAPH_WORKER_HTTP_ADDR",
                    format!("must be an address like 0.0.0.0:9091, or `off`, got `{v}`"),
                );
                None
            }
        },
        None => Some(default_worker_http_addr()),
    };
    let metrics_token = match reader.get("CREWGRAPH_METRICS_TOKEN") {
        Some(token) if token.trim().len() < MIN_METRICS_TOKEN_LEN => {
            reader.problem(
                "CREWGRAPH_METRICS_TOKEN",
                format!("must be at least {MIN_METRICS_TOKEN_LEN} characters"),
            );
            None
        }
        Some(token) => Some(SecretString::from(token.trim().to_string())),
        None => None,
    };
    MonitoringConfig {
        worker_http_addr,
        metrics_token,
    }
}

fn default_worker_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9091))
}
