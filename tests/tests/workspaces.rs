//! Workspaces through HTTP: CRUD, pagination, validation and owner scoping.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api, body, expect_error, get, post, send, signed_up};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn workspaces_crud_is_scoped_to_their_owner() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let ada = signed_up(&api, "ada@example.com").await;
    let bob = signed_up(&api, "bob@example.com").await;

    let created = post(
        &api,
        "/api/v1/workspaces",
        Some(&ada),
        json!({"name": "Research", "description": "reports"}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = body(created).await;
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/workspaces/{id}");

    let duplicate = post(
        &api,
        "/api/v1/workspaces",
        Some(&ada),
        json!({"name": "research"}),
    )
    .await;
    expect_error(duplicate, 409, "name_taken").await;
    // Names are per user: Bob may use the same one.
    assert_eq!(
        post(
            &api,
            "/api/v1/workspaces",
            Some(&bob),
            json!({"name": "Research"})
        )
        .await
        .status(),
        201
    );

    let renamed = send(
        &api,
        Method::PATCH,
        &path,
        &ada,
        Some(json!({"name": "Reports", "description": null})),
    )
    .await;
    let renamed = body(renamed).await;
    assert_eq!(renamed["name"], "Reports");
    assert!(renamed["description"].is_null());
    assert_eq!(body(get(&api, &path, &ada).await).await["name"], "Reports");

    // Bob cannot see, change or delete Ada's workspace: 404, not 403.
    expect_error(get(&api, &path, &bob).await, 404, "not_found").await;
    expect_error(
        send(&api, Method::PATCH, &path, &bob, Some(json!({"name": "x"}))).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        send(&api, Method::DELETE, &path, &bob, None).await,
        404,
        "not_found",
    )
    .await;
    let bobs = body(get(&api, "/api/v1/workspaces", &bob).await).await;
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(1));

    assert_eq!(
        send(&api, Method::DELETE, &path, &ada, None).await.status(),
        204
    );
    expect_error(get(&api, &path, &ada).await, 404, "not_found").await;
}

#[tokio::test]
async fn workspaces_paginate_and_validate() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "pager@example.com").await;
    for n in 0..5 {
        let response = post(
            &api,
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": format!("w{n}")}),
        )
        .await;
        assert_eq!(response.status(), 201);
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/workspaces?limit=2".to_string();
    loop {
        let page = body(get(&api, &path, &token).await).await;
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|w| w["name"].as_str().expect("name").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/workspaces?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, vec!["w0", "w1", "w2", "w3", "w4"]);

    expect_error(
        post(
            &api,
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": "   "}),
        )
        .await,
        422,
        "invalid_name",
    )
    .await;
    let long = "d".repeat(2001);
    expect_error(
        post(
            &api,
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": "x", "description": long}),
        )
        .await,
        400,
        "malformed_body",
    )
    .await;
    expect_error(
        get(&api, "/api/v1/workspaces/not-a-uuid", &token).await,
        400,
        "invalid_parameter",
    )
    .await;
    let anonymous = api
        .client
        .get(api.url("/api/v1/workspaces"))
        .send()
        .await
        .expect("GET");
    expect_error(anonymous, 401, "unauthorized").await;
}
