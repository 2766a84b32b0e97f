//! The crewgraph HTTP API: thin handlers over `crewgraph-core`.

pub mod auth;
pub mod cors;
pub mod error;
pub mod event_hub;
pub mod json_body;
pub mod middleware;
pub mod peer_close;
pub mod prometheus;
pub mod routes;
pub mod startup;
