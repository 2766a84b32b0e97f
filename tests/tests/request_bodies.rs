//! Request bodies are held to their schema: a field of the wrong JSON type, or `null` where
//! the field cannot be cleared, is a 422 naming the field.

use crewgraph_tests::TestApi;
use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api_with_admin, body, expect_error, get, post, send, signed_up};
use crewgraph_tests::pipeline::one_task_graph;
use reqwest::Method;
use serde_json::{Value, json};

async fn created_id(api: &TestApi, token: &str, path: &str, request: Value) -> String {
    let response = post(api, path, Some(token), request.clone()).await;
    let status = response.status();
    let created = body(response).await;
    assert_eq!(status, 201, "{path} {request}: {created}");
    created["id"].as_str().expect("id").to_string()
}

/// Asserts a 422 `invalid_type` whose `details.field` is `field`.
async fn assert_refused(response: reqwest::Response, field: &str) {
    let refused = expect_error(response, 422, "invalid_type").await;
    assert_eq!(refused["error"]["details"]["field"], field, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{refused}");
}

#[tokio::test]
async fn text_fields_refuse_numbers_and_booleans_naming_the_field() {
    let db = TestDatabase::migrated().await;
    let (api, _admin) = api_with_admin(&db).await;
    let token = signed_up(&api, "types@example.com").await;
    let ws = created_id(&api, &token, "/api/v1/workspaces", json!({"name": "W"})).await;
    let thread = created_id(
        &api,
        &token,
        &format!("/api/v1/workspaces/{ws}/threads"),
        json!({"title": "T"}),
    )
    .await;

    let graphs = format!("/api/v1/workspaces/{ws}/graphs");
    let threads = format!("/api/v1/workspaces/{ws}/threads");
    let messages = format!("/api/v1/threads/{thread}/messages");
    let refusals = [
        ("/api/v1/workspaces", json!({"name": 12345}), "name"),
        (
            "/api/v1/workspaces",
            json!({"name": "W2", "description": true}),
            "description",
        ),
        (
            graphs.as_str(),
            json!({"name": 7, "document": one_task_graph()}),
            "name",
        ),
        (threads.as_str(), json!({"title": false}), "title"),
        (messages.as_str(), json!({"content": 42}), "content"),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "provider": "openai", "secret": 123456789}),
            "secret",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": 5, "password": "long enough pass"}),
            "email",
        ),
        // Not only text: any field of the wrong type is named.
        (
            graphs.as_str(),
            json!({"name": "G", "description": ["a"]}),
            "description",
        ),
    ];
    for (path, request, field) in refusals {
        assert_refused(post(&api, path, Some(&token), request).await, field).await;
    }
    assert_refused(
        send(
            &api,
            Method::PATCH,
            &format!("/api/v1/workspaces/{ws}"),
            &token,
            Some(json!({"name": 1.5})),
        )
        .await,
        "name",
    )
    .await;

    // Nothing was stored by the refused requests.
    let workspaces = body(get(&api, "/api/v1/workspaces", &token).await).await;
    let names: Vec<&Value> = workspaces["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| &w["name"])
        .collect();
    assert_eq!(names, vec!["W"]);
    let stored = body(get(&api, &graphs, &token).await).await;
    assert_eq!(stored["items"], json!([]));
    let keys = body(get(&api, "/api/v1/api-keys", &token).await).await;
    assert_eq!(keys["items"], json!([]));
}

async fn patch(api: &TestApi, token: &str, path: &str, request: Value) -> reqwest::Response {
    send(api, Method::PATCH, path, token, Some(request)).await
}

#[tokio::test]
async fn patch_null_clears_only_clearable_fields() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let token = signed_up(&api, "nulls@example.com").await;
    let ws = created_id(
        &api,
        &token,
        "/api/v1/workspaces",
        json!({"name": "W", "description": "d"}),
    )
    .await;
    let graph = created_id(
        &api,
        &token,
        &format!("/api/v1/workspaces/{ws}/graphs"),
        json!({"name": "G", "description": "d"}),
    )
    .await;
    let thread = created_id(
        &api,
        &token,
        &format!("/api/v1/workspaces/{ws}/threads"),
        json!({"title": "T", "graph_id": graph}),
    )
    .await;
    let key = created_id(
        &api,
        &token,
        "/api/v1/api-keys",
        json!({"name": "k", "provider": "openai", "secret": "sk-0123456789abcdef"}),
    )
    .await;
    let template = created_id(
        &api,
        &admin,
        "/api/v1/templates",
        json!({"name": "Tpl", "description": "d", "document": one_task_graph()}),
    )
    .await;
    let user_id = body(get(&api, "/api/v1/users/me", &token).await).await["id"]
        .as_str()
        .expect("user id")
        .to_string();

    let workspace = format!("/api/v1/workspaces/{ws}");
    let graph_path = format!("/api/v1/graphs/{graph}");
    let thread_path = format!("/api/v1/threads/{thread}");
    let key_path = format!("/api/v1/api-keys/{key}");
    let template_path = format!("/api/v1/templates/{template}");
    let user_path = format!("/api/v1/admin/users/{user_id}");
    let me = "/api/v1/users/me".to_string();
    // (caller, path, field that cannot be null)
    let required = [
        (&token, &workspace, "name"),
        (&token, &graph_path, "name"),
        (&token, &thread_path, "title"),
        (&token, &key_path, "name"),
        (&token, &key_path, "secret"),
        (&admin, &template_path, "name"),
        (&admin, &template_path, "document"),
        (&admin, &user_path, "role"),
        (&admin, &user_path, "is_active"),
        (&token, &me, "email"),
    ];
    for (caller, path, field) in required {
        assert_refused(
            patch(&api, caller, path, json!({ field: null })).await,
            field,
        )
        .await;
    }
    assert_eq!(
        body(get(&api, &workspace, &token).await).await["name"],
        "W",
        "a refused PATCH changes nothing"
    );

    // Documented as clearable: `null` clears.
    let clearable = [
        (&token, &workspace, "description"),
        (&token, &graph_path, "description"),
        (&token, &thread_path, "graph_id"),
        (&admin, &template_path, "description"),
        (&token, &me, "display_name"),
    ];
    for (caller, path, field) in clearable {
        let response = patch(&api, caller, path, json!({ field: null })).await;
        let status = response.status();
        let updated = body(response).await;
        assert_eq!(status, 200, "{path} {field}: {updated}");
        assert!(updated[field].is_null(), "{path} {field}: {updated}");
    }
}

#[tokio::test]
async fn the_openapi_document_marks_clearable_fields_nullable() {
    let db = TestDatabase::migrated().await;
    let api = crewgraph_tests::http::api(&db).await;
    let spec: Value = api
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("OpenAPI JSON");
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("UpdateWorkspaceRequest", "description"),
        ("UpdateGraphRequest", "description"),
        ("UpdateTemplateRequest", "description"),
        ("UpdateThreadRequest", "graph_id"),
        ("UpdateApiKeyRequest", "base_url"),
        ("UpdateMeRequest", "display_name"),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(property["nullable"], true, "{schema}.{field}: {property}");
    }
    for (schema, field) in [
        ("UpdateWorkspaceRequest", "name"),
        ("UpdateGraphRequest", "name"),
        ("UpdateThreadRequest", "title"),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_ne!(property["nullable"], true, "{schema}.{field}: {property}");
    }
}
