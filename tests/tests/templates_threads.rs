//! Templates (built-ins valid, admin-only writes, instantiate) and threads with messages.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{
    api, api_with_admin, body, expect_error, get, post, send, signed_up, workspace,
};
use reqwest::Method;
use serde_json::{Value, json};

fn greeter() -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "agent", "data": {"role": "Greeter", "goal": "Greet", "backstory": "Kind"}},
            {"id": "t", "type": "task", "data": {"description": "Greet {name}", "expected_output": "Hi"}}
        ],
        "edges": [{"id": "e", "source": "a", "target": "t"}]
    })
}

#[tokio::test]
async fn builtin_templates_are_valid_and_instantiate_into_graphs() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "user@example.com").await;
    let ws = workspace(&api, &token, "W").await;
    let listed = body(get(&api, "/api/v1/templates", &token).await).await;
    let slugs: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["slug"].as_str().expect("slug"))
        .collect();
    assert_eq!(
        slugs,
        ["hello-world", "research-and-write", "hierarchical-team"]
    );
    for template in listed["items"].as_array().expect("items") {
        assert_eq!(template["builtin"], true);
        let check = body(
            post(
                &api,
                "/api/v1/graphs/validate",
                Some(&token),
                json!({"document": template["document"]}),
            )
            .await,
        )
        .await;
        assert_eq!(check["valid"], true, "{}: {check}", template["slug"]);
        assert_eq!(
            check["problems"],
            json!([]),
            "{}: no warnings either",
            template["slug"]
        );
    }
    let hierarchical = &listed["items"][2];
    let check = body(
        post(
            &api,
            "/api/v1/graphs/validate",
            Some(&token),
            json!({"document": hierarchical["document"]}),
        )
        .await,
    )
    .await;
    assert_eq!(check["plan"]["process"], "hierarchical");

    let hello_id = listed["items"][0]["id"].as_str().expect("id");
    let graph = post(
        &api,
        &format!("/api/v1/templates/{hello_id}/instantiate"),
        Some(&token),
        json!({"workspace_id": ws}),
    )
    .await;
    assert_eq!(graph.status(), 201);
    let graph = body(graph).await;
    assert_eq!(graph["name"], "Hello world");
    assert_eq!(graph["valid"], true);
    assert_eq!(graph["document"], listed["items"][0]["document"]);
    assert_eq!(graph["workspace_id"], ws.as_str());

    let other = signed_up(&api, "other@example.com").await;
    expect_error(
        post(
            &api,
            &format!("/api/v1/templates/{hello_id}/instantiate"),
            Some(&other),
            json!({"workspace_id": ws}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn only_admins_write_templates_and_unpublished_ones_stay_hidden() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let user = signed_up(&api, "user@example.com").await;

    expect_error(
        post(
            &api,
            "/api/v1/templates",
            Some(&user),
            json!({"name": "Mine", "document": greeter()}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let created = post(
        &api,
        "/api/v1/templates",
        Some(&admin),
        json!({"name": "Greeter Deluxe!", "document": greeter()}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = body(created).await;
    assert_eq!(created["slug"], "greeter-deluxe");
    assert_eq!(created["published"], false);
    let path = format!("/api/v1/templates/{}", created["id"].as_str().expect("id"));

    // Unpublished: invisible to users (404), visible to admins.
    expect_error(get(&api, &path, &user).await, 404, "not_found").await;
    let user_list = body(get(&api, "/api/v1/templates", &user).await).await;
    assert_eq!(user_list["items"].as_array().map(Vec::len), Some(3));
    let admin_list = body(get(&api, "/api/v1/templates", &admin).await).await;
    assert_eq!(admin_list["items"].as_array().map(Vec::len), Some(4));

    for (method, suffix) in [
        (Method::PATCH, ""),
        (Method::DELETE, ""),
        (Method::POST, "/publish"),
        (Method::POST, "/unpublish"),
    ] {
        let response = send(
            &api,
            method,
            &format!("{path}{suffix}"),
            &user,
            Some(json!({"name": "x"})),
        )
        .await;
        expect_error(response, 403, "forbidden").await;
    }
    let published =
        body(send(&api, Method::POST, &format!("{path}/publish"), &admin, None).await).await;
    assert_eq!(published["published"], true);
    assert_eq!(
        body(get(&api, &path, &user).await).await["name"],
        "Greeter Deluxe!"
    );

    // Templates must be valid graphs; a slug is unique.
    let invalid = expect_error(
        send(
            &api,
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"document": {"nodes": [], "edges": []}})),
        )
        .await,
        422,
        "graph_invalid",
    )
    .await;
    assert_eq!(
        invalid["error"]["details"]["problems"][0]["code"],
        "no_task"
    );
    expect_error(
        post(
            &api,
            "/api/v1/templates",
            Some(&admin),
            json!({"name": "Again", "slug": "greeter-deluxe", "document": greeter()}),
        )
        .await,
        409,
        "slug_taken",
    )
    .await;
    expect_error(
        post(
            &api,
            "/api/v1/templates",
            Some(&admin),
            json!({"name": "Bad", "slug": "Bad Slug", "document": greeter()}),
        )
        .await,
        422,
        "invalid_slug",
    )
    .await;
    let renamed = body(
        send(
            &api,
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"name": "Greeter", "description": "short"})),
        )
        .await,
    )
    .await;
    assert_eq!(renamed["name"], "Greeter");
    assert_eq!(renamed["description"], "short");
    assert_eq!(
        send(&api, Method::DELETE, &path, &admin, None)
            .await
            .status(),
        204
    );
    expect_error(get(&api, &path, &admin).await, 404, "not_found").await;
}

#[tokio::test]
async fn threads_hold_messages_oldest_first_and_are_scoped() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let ada = signed_up(&api, "ada@example.com").await;
    let bob = signed_up(&api, "bob@example.com").await;
    let ws = workspace(&api, &ada, "W").await;
    let graph = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&ada),
            json!({"name": "G", "document": greeter()}),
        )
        .await,
    )
    .await;
    let graph_id = graph["id"].as_str().expect("graph id");

    let thread = post(
        &api,
        &format!("/api/v1/workspaces/{ws}/threads"),
        Some(&ada),
        json!({"title": "Chat", "graph_id": graph_id}),
    )
    .await;
    assert_eq!(thread.status(), 201);
    let thread = body(thread).await;
    assert_eq!(thread["graph_id"], graph_id);
    let path = format!("/api/v1/threads/{}", thread["id"].as_str().expect("id"));
    // A bound thread's user messages start runs (execution tests cover that); unbind it
    // to test plain message storage.
    let unbound = body(
        send(
            &api,
            Method::PATCH,
            &path,
            &ada,
            Some(json!({"graph_id": null})),
        )
        .await,
    )
    .await;
    assert!(unbound["graph_id"].is_null());

    let mut ids = Vec::new();
    for (n, role) in ["user", "assistant", "user", "system", "user"]
        .iter()
        .enumerate()
    {
        let created = post(
            &api,
            &format!("{path}/messages"),
            Some(&ada),
            json!({"role": role, "content": format!("message {n}")}),
        )
        .await;
        assert_eq!(created.status(), 201);
        let created = body(created).await;
        assert_eq!(created["role"], *role);
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let defaulted = body(
        post(
            &api,
            &format!("{path}/messages"),
            Some(&ada),
            json!({"content": "no role given"}),
        )
        .await,
    )
    .await;
    assert_eq!(defaulted["role"], "user");

    let mut contents = Vec::new();
    let mut page_path = format!("{path}/messages?limit=4");
    loop {
        let page = body(get(&api, &page_path, &ada).await).await;
        contents.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|m| m["content"].as_str().expect("content").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => page_path = format!("{path}/messages?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        contents,
        [
            "message 0",
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "no role given"
        ]
    );

    let one = body(get(&api, &format!("{path}/messages/{}", ids[1]), &ada).await).await;
    assert_eq!(one["content"], "message 1");
    assert_eq!(
        send(
            &api,
            Method::DELETE,
            &format!("{path}/messages/{}", ids[1]),
            &ada,
            None
        )
        .await
        .status(),
        204
    );
    expect_error(
        get(&api, &format!("{path}/messages/{}", ids[1]), &ada).await,
        404,
        "not_found",
    )
    .await;

    // Bob: 404 for the thread, its messages, and posting into it.
    expect_error(get(&api, &path, &bob).await, 404, "not_found").await;
    expect_error(
        get(&api, &format!("{path}/messages"), &bob).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        get(&api, &format!("{path}/messages/{}", ids[0]), &bob).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        post(
            &api,
            &format!("{path}/messages"),
            Some(&bob),
            json!({"content": "hi"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        send(
            &api,
            Method::DELETE,
            &format!("{path}/messages/{}", ids[0]),
            &bob,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Nor can Bob bind his thread to Ada's graph.
    let bobs_ws = workspace(&api, &bob, "B").await;
    expect_error(
        post(
            &api,
            &format!("/api/v1/workspaces/{bobs_ws}/threads"),
            Some(&bob),
            json!({"title": "steal", "graph_id": graph_id}),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // Empty content is refused and stores nothing.
    expect_error(
        post(
            &api,
            &format!("{path}/messages"),
            Some(&ada),
            json!({"content": "   "}),
        )
        .await,
        422,
        "invalid_content",
    )
    .await;

    let rebound = body(
        send(
            &api,
            Method::PATCH,
            &path,
            &ada,
            Some(json!({"title": "Renamed", "graph_id": graph_id})),
        )
        .await,
    )
    .await;
    assert_eq!(rebound["title"], "Renamed");
    assert_eq!(rebound["graph_id"], graph_id, "bound again");
    let listed = body(get(&api, &format!("/api/v1/workspaces/{ws}/threads"), &ada).await).await;
    assert_eq!(listed["items"][0]["title"], "Renamed");
    assert_eq!(
        send(&api, Method::DELETE, &path, &ada, None).await.status(),
        204
    );
    expect_error(get(&api, &path, &ada).await, 404, "not_found").await;
}
