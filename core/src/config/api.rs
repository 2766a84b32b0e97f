//! The API's listen address and request limits.

use std::net::SocketAddr;

use super::reader::Reader;

pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen_addr: SocketAddr,
    pub max_body_bytes: usize,
    /// Browser origins allowed to call the API from another origin (`CREWGRAPH_CORS_ORIGINS`).
    pub cors_origins: CorsOrigins,
}

/// Which other origins' pages may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Development's default: front-end dev servers on this machine, any port
    /// (`http://localhost:5173`, `http://127.0.0.1:3000`, `http://[::1]:8000`).
    LocalDevServers,
    /// Exactly these `scheme://host[:port]` origins (none: production's default).
    Exact(Vec<String>),
}

impl CorsOrigins {
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Exact(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            CorsOrigins::LocalDevServers => url::Url::parse(origin).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
                    && url.path() == "/"
                    && origin.trim_end_matches('/') == url.origin().ascii_serialization()
            }),
        }
    }
}

fn read_cors_origins(reader: &mut Reader<'_>, production: bool) -> CorsOrigins {
    let Some(raw) = reader.get("CREWGRAPH_CORS_ORIGINS") else {
        return if production {
            CorsOrigins::Exact(Vec::new())
        } else {
            CorsOrigins::LocalDevServers
        };
    };
    let mut origins = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match url::Url::parse(entry) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.username().is_empty() =>
            {
                origins.push(url.origin().ascii_serialization());
            }
            _ => {
                reader.problem(
                    "CREWGRAPH_CORS_ORIGINS",
                    format!(
                        "must list origins like https://app.example.com or http://localhost:5173 \
                         (scheme, host and port only), got `{entry}`"
                    ),
                );
                return CorsOrigins::Exact(Vec::new());
            }
        }
    }
    CorsOrigins::Exact(origins)
}

pub(super) fn read(reader: &mut Reader<'_>, production: bool) -> ApiConfig {
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
    let cors_origins = read_cors_origins(reader, production);
    ApiConfig {
        listen_addr,
        max_body_bytes,
        cors_origins,
    }
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
