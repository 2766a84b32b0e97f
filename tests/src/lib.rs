//! The end-to-end test harness: a fresh database per test (cloned from a migrated
//! template), the real binaries started on free loopback ports, and a TCP proxy that can
//! cut the database away to test outages; and `scripted-llm`, the scripted LLM server that
//! stands in for OpenAI and Anthropic.

pub mod app;
pub mod database;
pub mod http;
pub mod mlflow;
pub mod pipeline;
pub mod proxy;
pub mod scripted_llm;

pub use app::{TestApi, spawn_api, spawn_api_with};
pub use database::TestDatabase;
pub use proxy::TcpProxy;
