//! Query parameters: timestamps PostgreSQL cannot store, and cursors that belong to
//! another list.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{api, body, expect_error, get, post, signed_up, workspace};
use crewgraph_tests::pipeline::{create_graph, kickoff, one_task_graph};
use serde_json::json;

#[tokio::test]
async fn timestamps_outside_what_postgresql_stores_are_422_naming_the_parameter() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "times@example.com").await;
    for parameter in ["created_after", "created_before"] {
        // One microsecond before PostgreSQL's earliest timestamptz (4714-11-24 BC).
        for too_early in ["-4714-11-23T00:00:00Z", "-4713-11-23T23:59:59.999999Z"] {
            let refused = expect_error(
                get(
                    &api,
                    &format!("/api/v1/executions?{parameter}={too_early}"),
                    &token,
                )
                .await,
                422,
                "invalid_timestamp",
            )
            .await;
            assert_eq!(refused["error"]["details"]["field"], parameter, "{refused}");
        }
        for storable in [
            "-4713-11-24T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let response = get(
                &api,
                &format!("/api/v1/executions?{parameter}={storable}"),
                &token,
            )
            .await;
            assert_eq!(response.status(), 200, "{parameter}={storable}");
        }
    }
}

/// `next_cursor` of the first page (of one item) of `path`.
async fn first_cursor(api: &crewgraph_tests::TestApi, token: &str, path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    let page = body(get(api, &format!("{path}{separator}limit=1"), token).await).await;
    page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{path} has a second page: {page}"))
        .to_string()
}

async fn assert_cursor_refused(
    api: &crewgraph_tests::TestApi,
    token: &str,
    path: &str,
    cursor: &str,
) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let refused = expect_error(
        get(api, &format!("{path}{separator}cursor={cursor}"), token).await,
        422,
        "invalid_cursor",
    )
    .await;
    assert_eq!(refused["error"]["details"]["field"], "cursor", "{refused}");
}

#[tokio::test]
async fn a_cursor_is_refused_by_every_other_list() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "cursors@example.com").await;
    let ws = workspace(&api, &token, "first").await;
    workspace(&api, &token, "second").await;
    for name in ["G1", "G2"] {
        let created = post(
            &api,
            &format!("/api/v1/workspaces/{ws}/graphs"),
            Some(&token),
            json!({"name": name}),
        )
        .await;
        assert_eq!(created.status(), 201);
    }
    let thread = body(
        post(
            &api,
            &format!("/api/v1/workspaces/{ws}/threads"),
            Some(&token),
            json!({"title": "T1"}),
        )
        .await,
    )
    .await["id"]
        .as_str()
        .expect("thread id")
        .to_string();
    post(
        &api,
        &format!("/api/v1/workspaces/{ws}/threads"),
        Some(&token),
        json!({"title": "T2"}),
    )
    .await;
    for content in ["one", "two"] {
        let created = post(
            &api,
            &format!("/api/v1/threads/{thread}/messages"),
            Some(&token),
            json!({"content": content}),
        )
        .await;
        assert_eq!(created.status(), 201);
    }
    let graph = create_graph(&api, &token, one_task_graph()).await;
    for _ in 0..2 {
        kickoff(&api, &token, &graph, json!({"question": "q"})).await;
    }

    let workspaces = "/api/v1/workspaces".to_string();
    let graphs = format!("/api/v1/workspaces/{ws}/graphs");
    let graphs_ascending = format!("/api/v1/workspaces/{ws}/graphs?sort=updated_asc");
    let threads = format!("/api/v1/workspaces/{ws}/threads");
    let messages = format!("/api/v1/threads/{thread}/messages");
    let executions = "/api/v1/executions".to_string();
    let templates = "/api/v1/templates".to_string();
    let lists = [
        &workspaces,
        &graphs,
        &graphs_ascending,
        &threads,
        &messages,
        &executions,
        &templates,
    ];
    // Id-keyed (workspaces, messages) and time-keyed (graphs both ways, threads,
    // executions) lists: each cursor works on its own list and nowhere else.
    for own in [
        &workspaces,
        &graphs,
        &graphs_ascending,
        &threads,
        &messages,
        &executions,
    ] {
        let cursor = first_cursor(&api, &token, own).await;
        let separator = if own.contains('?') { '&' } else { '?' };
        let next = get(
            &api,
            &format!("{own}{separator}limit=1&cursor={cursor}"),
            &token,
        )
        .await;
        assert_eq!(next.status(), 200, "{own} takes its own cursor");
        for other in lists.iter().filter(|l| **l != own) {
            assert_cursor_refused(&api, &token, other, &cursor).await;
        }
    }
}
