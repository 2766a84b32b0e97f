//! The tool repository over HTTP: `GET /api/v1/tools` and `POST /api/v1/tools/{name}/invoke`.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api, body, expect_error, get, post, signed_up};
use serde_json::json;

#[tokio::test]
async fn tools_are_listed_with_their_argument_schemas() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "lister@example.com").await;
    let response = get(&api, "/api/v1/tools", &token).await;
    assert_eq!(response.status(), 200);
    let list = body(response).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|tool| tool["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "calculator",
            "current_datetime",
            "hello_world",
            "http_fetch"
        ]
    );
    assert_eq!(list["items"][2]["args_schema"]["required"], json!(["name"]));
}

#[tokio::test]
async fn invoking_tools_runs_them_with_validated_arguments() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "invoker@example.com").await;

    let hello = post(
        &api,
        "/api/v1/tools/hello_world/invoke",
        Some(&token),
        json!({"args": {"name": "Ada"}}),
    )
    .await;
    assert_eq!(hello.status(), 200);
    let hello = body(hello).await;
    assert_eq!(hello["tool"], "hello_world");
    assert_eq!(hello["output"], "Hello, Ada!");
    assert!(hello["duration_ms"].is_u64(), "{hello}");

    let sum = post(
        &api,
        "/api/v1/tools/calculator/invoke",
        Some(&token),
        json!({"args": {"expression": "(1 + 2) * 14"}}),
    )
    .await;
    assert_eq!(sum.status(), 200);
    assert_eq!(body(sum).await["output"], "42");

    // A tool without required arguments may be invoked with no `args` at all.
    let now = post(
        &api,
        "/api/v1/tools/current_datetime/invoke",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(now.status(), 200);
    assert!(
        body(now).await["output"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[tokio::test]
async fn bad_arguments_are_422_naming_every_problem() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "badargs@example.com").await;

    let response = post(
        &api,
        "/api/v1/tools/hello_world/invoke",
        Some(&token),
        json!({"args": {"nom": "Ada"}}),
    )
    .await;
    let error = expect_error(response, 422, "invalid_tool_arguments").await;
    let details = &error["error"]["details"];
    assert_eq!(details["tool"], "hello_world");
    let problems: Vec<&str> = details["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|problem| problem.as_str().expect("text"))
        .collect();
    assert!(problems.contains(&"$.name: is required"), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("$.nom")),
        "{problems:?}"
    );

    let wrong_type = post(
        &api,
        "/api/v1/tools/calculator/invoke",
        Some(&token),
        json!({"args": {"expression": 42}}),
    )
    .await;
    let error = expect_error(wrong_type, 422, "invalid_tool_arguments").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("$.expression: expected string, got number")),
        "{error}"
    );

    let not_an_object = post(
        &api,
        "/api/v1/tools/calculator/invoke",
        Some(&token),
        json!({"args": "1 + 1"}),
    )
    .await;
    expect_error(not_an_object, 422, "invalid_tool_arguments").await;

    // The tool runs and fails: its own message, a distinct code.
    let division = post(
        &api,
        "/api/v1/tools/calculator/invoke",
        Some(&token),
        json!({"args": {"expression": "1 / 0"}}),
    )
    .await;
    let error = expect_error(division, 422, "tool_failed").await;
    assert_eq!(error["error"]["message"], "Division by zero");
    assert_eq!(error["error"]["details"]["tool"], "calculator");
}

#[tokio::test]
async fn unknown_tools_are_404_and_anonymous_callers_401() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "unknown@example.com").await;

    let unknown = post(
        &api,
        "/api/v1/tools/rm_rf/invoke",
        Some(&token),
        json!({"args": {}}),
    )
    .await;
    let error = expect_error(unknown, 404, "not_found").await;
    assert_eq!(error["error"]["message"], "tool `rm_rf` not found");

    let anonymous = post(
        &api,
        "/api/v1/tools/hello_world/invoke",
        None,
        json!({"args": {"name": "Ada"}}),
    )
    .await;
    expect_error(anonymous, 401, "unauthorized").await;
    let anonymous_list = api.get("/api/v1/tools").await;
    expect_error(anonymous_list, 401, "unauthorized").await;
}

#[tokio::test]
async fn http_fetch_refuses_loopback_addresses_with_a_clear_error() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "fetcher@example.com").await;
    // The API itself listens on loopback: a request there is what SSRF would try.
    let target = format!("{}/health", api.base_url);
    let response = post(
        &api,
        "/api/v1/tools/http_fetch/invoke",
        Some(&token),
        json!({"args": {"url": target}}),
    )
    .await;
    let error = expect_error(response, 422, "tool_failed").await;
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("refused to fetch")
            && message.contains("127.0.0.1 is not a public address"),
        "{message}"
    );

    let not_a_url = post(
        &api,
        "/api/v1/tools/http_fetch/invoke",
        Some(&token),
        json!({"args": {"url": "not a url"}}),
    )
    .await;
    let error = expect_error(not_a_url, 422, "invalid_tool_arguments").await;
    assert!(
        error["error"]["details"]["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("is not a URL")),
        "{error}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_tools_operations() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let spec = body(api.get("/openapi.json").await).await;
    let invoke = &spec["paths"]["/api/v1/tools/{name}/invoke"]["post"];
    assert_eq!(invoke["operationId"], "invoke_tool");
    assert_eq!(invoke["tags"], json!(["Tools"]));
    assert!(invoke["responses"]["422"].is_object(), "{invoke}");
    assert_eq!(
        spec["paths"]["/api/v1/tools"]["get"]["tags"],
        json!(["Tools"])
    );
    assert_eq!(
        spec["components"]["schemas"]["InvokeToolRequest"]["example"],
        json!({"args": {"name": "Ada"}})
    );
    assert_eq!(
        spec["components"]["schemas"]["ToolInvocation"]["example"]["output"],
        "Hello, Ada!"
    );
}
