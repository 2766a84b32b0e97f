//! The `crewgraph-api` binary's start-up contract: bad configuration is reported whole,
//! with a non-zero exit, before anything else happens.

use std::process::Command;

fn api() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crewgraph-api"));
    // Nothing inherited, and a working directory without a `.env` file.
    command.env_clear().current_dir(std::env::temp_dir());
    command
}

#[test]
fn bad_configuration_exits_non_zero_naming_every_bad_variable() {
    let output = api()
        .env("DATABASE_URL", "mysql://user:hunter2@db/crewgraph")
        .env("CREWGRAPH_API_ADDR", "not-an-address")
        .env("CREWGRAPH_WORKER_CONCURRENCY", "-3")
        .env("CREWGRAPH_LOG_FORMAT", "yaml")
        .env("CREWGRAPH_JWT_SECRET", "too-short")
        .env("CREWGRAPH_ENCRYPTION_KEYS", "v1:AAAA")
        .env("CREWGRAPH_LLM_ALLOWED_HOSTS", "http://not-a-host")
        .output()
        .expect("run crewgraph-api");
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in [
        "DATABASE_URL",
        "CREWGRAPH_API_ADDR",
        "CREWGRAPH_WORKER_CONCURRENCY",
        "CREWGRAPH_LOG_FORMAT",
        "CREWGRAPH_JWT_SECRET",
        "CREWGRAPH_ENCRYPTION_KEYS",
        "CREWGRAPH_LLM_ALLOWED_HOSTS",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in:\n{stderr}"
        );
    }
    assert!(stderr.contains("7 problems"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "a secret leaked into the message:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing else ran");
}

#[test]
fn production_refuses_development_defaults() {
    let output = api()
        .env("CREWGRAPH_ENV", "production")
        .output()
        .expect("run crewgraph-api");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in [
        "DATABASE_URL",
        "CREWGRAPH_JWT_SECRET",
        "CREWGRAPH_ENCRYPTION_KEYS",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in:\n{stderr}"
        );
    }
}

#[test]
fn openapi_command_needs_no_configuration_or_database() {
    let output = api()
        .arg("openapi")
        .env("CREWGRAPH_ENV", "production")
        .output()
        .expect("run crewgraph-api openapi");
    assert!(output.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON document");
    assert!(spec["paths"]["/health"].is_object());
}
