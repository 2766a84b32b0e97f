//! The end-to-end test harness: a fresh database per test (cloned from a migrated
//! template), the real binaries started on free loopback ports, and a TCP proxy that can
//! cut the database away to test outages.

pub mod app;
pub mod database;
pub mod http;
pub mod proxy;

pub use app::{TestApi, spawn_api, spawn_api_with};
pub use database::TestDatabase;
pub use proxy::TcpProxy;
