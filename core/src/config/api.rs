//! The API's listen address and request limits.

use std::net::SocketAddr;

use super::reader::Reader;

pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen_addr: SocketAddr,
    pub max_body_bytes: usize,
}

pub(super) fn read(reader: &mut Reader<'_>) -> ApiConfig {
    let listen_addr = match reader.get("CREWGRAPH_API_ADDR") {
        Some(v) => v.trim().parse::<SocketAddr>().unwrap_or_else(|_| {
            reader.problem(
                "CREWGRAPH_API_ADDR",
                format!("must be an address like 127.0.0.1:8080, got `{v}`"),
            );
            default_api_addr()
        }),
        None => default_api_addr(),
    };
    let max_body_bytes = reader
        .parse_ranged(
            "CREWGRAPH_MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES,
            1_024,
            256 * 1024 * 1024,
        )
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    ApiConfig {
        listen_addr,
        max_body_bytes,
    }
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
