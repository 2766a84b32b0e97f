//! The foundation through real HTTP against the real `crewgraph-api` binary: probes, the
//! OpenAPI document, Swagger UI, JSON errors, request ids and graceful shutdown.

use std::time::Duration;

use crewgraph_tests::{TcpProxy, TestDatabase, spawn_api, spawn_api_with};
use serde_json::Value;

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts the DESIGN §6 error body and returns its `error` object.
async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "error content type was {content_type}"
    );
    let body = json(response).await;
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    body["error"].clone()
}

#[tokio::test]
async fn health_answers_and_ready_reports_an_unreachable_database() {
    // A port where nothing listens: the API must still start and answer /health.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let api = spawn_api_with(
        &format!("postgres://postgres@127.0.0.1:{closed_port}/crewgraph"),
        &[],
    )
    .await;

    let health = api.get("/health").await;
    assert_eq!(health.status(), 200);
    let body = json(health).await;
    assert_eq!(body["status"], "ok");

    let error = assert_error(api.get("/ready").await, 503, "database_unavailable").await;
    assert!(error["details"].is_object(), "{error}");
}

#[tokio::test]
async fn ready_is_ok_on_a_migrated_database() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api(&db).await;
    let ready = api.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let body = json(ready).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(
        body["migrations_applied"],
        crewgraph_migrations::migration_names().len()
    );
}

#[tokio::test]
async fn migrate_command_applies_every_migration_and_is_idempotent() {
    let db = TestDatabase::empty().await;
    for run in 0..2 {
        let status =
            tokio::process::Command::new(crewgraph_tests::app::binary_path("crewgraph-api"))
                .arg("migrate")
                .env_clear()
                .current_dir(std::env::temp_dir())
                .env("DATABASE_URL", &db.url)
                .stdout(std::process::Stdio::null())
                .status()
                .await
                .expect("run migrate");
        assert!(status.success(), "run {run}");
    }
    let conn = sea_orm::Database::connect(&db.url).await.expect("connect");
    let pending = crewgraph_migrations::pending_migrations(&conn)
        .await
        .expect("pending");
    assert!(pending.is_empty(), "{pending:?}");
}

#[tokio::test]
async fn migrate_flag_applies_migrations_before_serving() {
    let db = TestDatabase::empty().await;
    let api = crewgraph_tests::app::spawn_api_with_args(&db.url, &["--migrate"], &[]).await;
    assert_eq!(api.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn ready_names_pending_migrations_on_an_unmigrated_database() {
    let db = TestDatabase::empty().await;
    let api = spawn_api(&db).await;
    let error = assert_error(api.get("/ready").await, 503, "migrations_pending").await;
    let pending: Vec<String> =
        serde_json::from_value(error["details"]["pending"].clone()).expect("pending list");
    assert_eq!(pending, crewgraph_migrations::migration_names());
    // The probe is read-only: it must not have created sea-orm's bookkeeping table.
    let mut conn = db.connect().await;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('seaql_migrations') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert!(!exists, "/ready wrote to the database");
}

#[tokio::test]
async fn ready_follows_a_database_outage_without_a_restart() {
    let db = TestDatabase::migrated().await;
    let proxy = TcpProxy::start(crewgraph_tests::database::server_addr()).await;
    let api = spawn_api_with(&proxy.url_via(&db.url), &[]).await;
    let pid = api.process.pid();

    assert_eq!(api.get("/ready").await.status(), 200);

    proxy.cut().await;
    assert_error(api.get("/ready").await, 503, "database_unavailable").await;
    assert_eq!(api.get("/health").await.status(), 200, "liveness stays up");

    proxy.restore();
    let mut status = 0;
    for _ in 0..50 {
        status = api.get("/ready").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "ready again once the database is back");
    assert_eq!(api.process.pid(), pid, "same process, no restart");
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api(&db).await;
    let response = api.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec = json(response).await;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        spec["openapi"]
    );
    for path in ["/health", "/ready"] {
        let operation = &spec["paths"][path]["get"];
        assert!(operation["operationId"].is_string(), "{path}: {operation}");
        assert!(operation["responses"]["200"].is_object(), "{path}");
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());

    // The served document is the one the `openapi` command prints (used by CI and clients).
    let printed = std::process::Command::new(crewgraph_tests::app::binary_path("crewgraph-api"))
        .arg("openapi")
        .env_clear()
        .output()
        .expect("run crewgraph-api openapi");
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("printed JSON");
    assert_eq!(printed, spec);
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api(&db).await;
    let response = api.get("/docs").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("body");
    assert!(html.contains("Swagger UI"), "{html:.200}");
    assert!(
        html.contains("openapi.json") || html.contains("spec"),
        "{html:.400}"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api(&db).await;
    assert_error(api.get("/no/such/route").await, 404, "not_found").await;
    assert_error(api.get("/api/v1/nothing-here").await, 404, "not_found").await;
    let response = api
        .client
        .delete(api.url("/health"))
        .send()
        .await
        .expect("DELETE");
    assert_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_announced_or_streamed() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api_with(&db.url, &[("CREWGRAPH_MAX_BODY_BYTES", "4096")]).await;

    let announced = api
        .client
        .post(api.url("/api/v1/anything"))
        .header("content-type", "application/json")
        .body(vec![b' '; 10_000])
        .send()
        .await
        .expect("POST");
    let error = assert_error(announced, 413, "payload_too_large").await;
    assert_eq!(error["details"]["limit_bytes"], 4096);

    // Chunked: no Content-Length, so the limit must hold while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1_000])).collect();
    let streamed = api
        .client
        .post(api.url("/api/v1/anything"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util_stream(chunks)))
        .send()
        .await
        .expect("POST chunked");
    assert_error(streamed, 413, "payload_too_large").await;
}

fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_appear_in_the_logs() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api(&db).await;

    let kept = api
        .client
        .get(api.url("/health"))
        .header("x-request-id", "client-chosen-id-42")
        .send()
        .await
        .expect("GET");
    assert_eq!(kept.headers()["x-request-id"], "client-chosen-id-42");

    let made = api.get("/health").await;
    let made_id = made.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(uuid::Uuid::parse_str(&made_id).is_ok(), "{made_id}");

    // A header that could forge log lines is replaced, not echoed.
    let replaced = api
        .client
        .get(api.url("/health"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .expect("GET");
    assert_ne!(replaced.headers()["x-request-id"], "bad id with spaces");

    // Errors carry the id too.
    let not_found = api
        .client
        .get(api.url("/missing"))
        .header("x-request-id", "error-path-id")
        .send()
        .await
        .expect("GET");
    assert_eq!(not_found.status(), 404);
    assert_eq!(not_found.headers()["x-request-id"], "error-path-id");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = api.process.json_logs();
    let access = logs
        .iter()
        .find(|l| {
            l["message"] == "request completed" && l["span"]["request_id"] == "client-chosen-id-42"
        })
        .unwrap_or_else(|| panic!("no access log line for the request: {logs:#?}"));
    assert_eq!(access["span"]["method"], "GET");
    assert_eq!(access["span"]["path"], "/health");
    assert_eq!(access["status"], 200);
    assert!(access["latency_us"].is_u64(), "{access}");
    let error_line = logs
        .iter()
        .find(|l| l["span"]["request_id"] == "error-path-id")
        .expect("error request logged");
    assert_eq!(error_line["status"], 404);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let db = TestDatabase::migrated().await;
    let proxy = TcpProxy::start(crewgraph_tests::database::server_addr()).await;
    let mut api = spawn_api_with(&proxy.url_via(&db.url), &[]).await;
    assert_eq!(api.get("/ready").await.status(), 200, "warm the pool");

    // Slow the database down so /ready is still running when SIGTERM arrives.
    proxy.set_latency(Duration::from_millis(150));
    let in_flight = tokio::spawn({
        let client = api.client.clone();
        let url = api.url("/ready");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.process.signal("TERM");

    let response = in_flight
        .await
        .expect("join")
        .expect("in-flight request answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        api.process.wait_exit(Duration::from_secs(20)).await,
        Some(0)
    );
    let logs = api.process.json_logs();
    assert!(
        logs.iter().any(|l| l["message"] == "crewgraph-api stopped"),
        "{logs:#?}"
    );
}
