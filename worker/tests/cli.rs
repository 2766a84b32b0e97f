//! The `crewgraph-worker` binary's life cycle: configuration errors, the schema check,
//! ready, and a clean exit on SIGTERM.

use std::time::Duration;

use crewgraph_tests::TestDatabase;
use crewgraph_tests::app::TestProcess;

#[test]
fn bad_configuration_exits_non_zero_naming_every_bad_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crewgraph-worker"))
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("CREWGRAPH_ENV", "production")
        .env("CREWGRAPH_WORKER_CONCURRENCY", "lots")
        .env("CREWGRAPH_RETENTION_DAYS", "0")
        .output()
        .expect("run crewgraph-worker");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in [
        "DATABASE_URL",
        "CREWGRAPH_ENCRYPTION_KEYS",
        "CREWGRAPH_WORKER_CONCURRENCY",
        "CREWGRAPH_RETENTION_DAYS",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("CREWGRAPH_JWT_SECRET"),
        "the worker does not use the JWT secret:\n{stderr}"
    );
}

#[tokio::test]
async fn worker_reports_ready_and_exits_cleanly_on_sigterm() {
    let db = TestDatabase::migrated().await;
    let mut worker = TestProcess::start("crewgraph-worker", &[], &[("DATABASE_URL", &db.url)]);
    let ready = worker
        .wait_for_log(Duration::from_secs(30), |l| {
            l["message"] == "crewgraph-worker ready"
        })
        .await;
    assert!(
        ready.is_some(),
        "worker never became ready:\n{}",
        worker.logs().join("\n")
    );
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(20)).await, Some(0));
    assert!(
        worker
            .json_logs()
            .iter()
            .any(|l| l["message"] == "crewgraph-worker stopped"),
        "{}",
        worker.logs().join("\n")
    );
}

#[tokio::test]
async fn worker_refuses_an_unmigrated_database() {
    let db = TestDatabase::empty().await;
    let mut worker = TestProcess::start("crewgraph-worker", &[], &[("DATABASE_URL", &db.url)]);
    assert_eq!(worker.wait_exit(Duration::from_secs(30)).await, Some(1));
    let logs = worker.logs().join("\n");
    assert!(logs.contains("crewgraph-api migrate"), "{logs}");
}
