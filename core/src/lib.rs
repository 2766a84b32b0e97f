//! crewgraph's domain: everything the API and the worker share and everything that can be
//! tested without HTTP (DESIGN §9).

pub mod auth;
pub mod config;
pub mod crew;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod executions;
pub mod fields;
pub mod graph;
pub mod graphs;
pub mod jobs;
pub mod metrics;
pub mod mlflow;
pub mod monitoring;
pub mod open_files;
pub mod outbound;
pub mod pagination;
pub mod shutdown;
pub mod telemetry;
pub mod templates;
pub mod threads;
pub mod webhooks;
pub mod workspaces;
