//! Cross-origin requests from a front end on another origin, over real HTTP: preflights
//! answered for allowed origins, every answer (errors too) readable by them, other origins
//! served without CORS headers (the browser keeps the answer from them) — never refused,
//! so same-origin pages such as the Swagger UI keep working.

use crewgraph_tests::http::api;
use crewgraph_tests::pipeline::database;
use crewgraph_tests::{TestApi, spawn_api_with};
use reqwest::Method;
use serde_json::Value;

const DEV_SERVER: &str = "http://localhost:5173";

async fn request(
    api: &TestApi,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut builder = api.client.request(method, api.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.send().await.expect("request")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_dev_server_on_another_port_can_call_the_api_in_development() {
    let db = database().await;
    let api = api(&db).await;

    let preflight = request(
        &api,
        Method::OPTIONS,
        "/api/v1/workspaces",
        &[
            ("origin", DEV_SERVER),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some(DEV_SERVER)
    );
    let methods = header(&preflight, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = header(&preflight, "access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.contains("authorization") && allowed.contains("last-event-id"),
        "{allowed}"
    );
    assert!(header(&preflight, "access-control-max-age").is_some());

    // An error answer is readable by the page, with its JSON body and request id.
    let unauthorized = request(
        &api,
        Method::GET,
        "/api/v1/workspaces",
        &[("origin", DEV_SERVER)],
    )
    .await;
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        header(&unauthorized, "access-control-allow-origin").as_deref(),
        Some(DEV_SERVER)
    );
    let exposed = header(&unauthorized, "access-control-expose-headers").unwrap_or_default();
    for name in ["etag", "location", "retry-after", "x-request-id"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert!(
        header(&unauthorized, "vary")
            .unwrap_or_default()
            .contains("origin")
    );
    let body: Value = unauthorized.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");

    // Another origin is served, without CORS headers.
    let foreign = request(
        &api,
        Method::GET,
        "/health",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(foreign.status(), 200);
    assert_eq!(header(&foreign, "access-control-allow-origin"), None);
    let foreign_preflight = request(
        &api,
        Method::OPTIONS,
        "/api/v1/workspaces",
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(
        header(&foreign_preflight, "access-control-allow-origin"),
        None
    );
}

#[tokio::test]
async fn configured_origins_only_and_same_origin_pages_are_never_refused() {
    let db = database().await;
    let app = "https://app.example.com";
    let api = spawn_api_with(&db.url, &[("CREWGRAPH_CORS_ORIGINS", app)]).await;

    let allowed = request(&api, Method::GET, "/health", &[("origin", app)]).await;
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some(app)
    );
    let dev = request(&api, Method::GET, "/health", &[("origin", DEV_SERVER)]).await;
    assert_eq!(
        header(&dev, "access-control-allow-origin"),
        None,
        "the dev default is replaced"
    );

    // The Swagger UI on the API's own origin posts with an Origin header: served as usual.
    let own_origin = api.base_url.trim_end_matches('/').to_string();
    let registered = request(
        &api,
        Method::POST,
        "/api/v1/auth/register",
        &[
            ("origin", own_origin.as_str()),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_ne!(registered.status(), 403);
    assert!(
        registered.status().is_client_error(),
        "an empty body is the client's mistake, not a refusal of the origin"
    );
}
