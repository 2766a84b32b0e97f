//! Database failures as clients see them: a session PostgreSQL ends in the middle of a
//! query (a restart, an operator) is a 503 `database_unavailable`, never a 500.

use std::time::{Duration, Instant};

use crewgraph_tests::http::{api, body, post, signed_up};
use crewgraph_tests::pipeline::{create_graph, database, one_task_graph};
use serde_json::json;

#[tokio::test]
async fn a_session_ended_mid_query_is_a_503_not_a_500() {
    let db = database().await;
    let api = api(&db).await;
    let token = signed_up(&api, "restart@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;

    // Hold the user's row, so the kickoff's query waits in the database...
    let mut holder = db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM users WHERE email = $1 FOR UPDATE")
        .bind("restart@example.com")
        .execute(&mut holder)
        .await
        .expect("lock the user");
    let kickoff = {
        let (api, token, graph) = (&api, token.clone(), graph.clone());
        async move {
            post(
                api,
                &format!("/api/v1/graphs/{graph}/executions"),
                Some(&token),
                json!({"inputs": {"question": "q"}}),
            )
            .await
        }
    };
    let terminate = async {
        // ...and end that session while it waits, as a restart would.
        let mut admin = db.connect().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ended: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                   AND query LIKE '%FOR NO KEY UPDATE%'",
            )
            .fetch_all(&mut admin)
            .await
            .expect("terminate");
            if ended.contains(&true) {
                return;
            }
            assert!(Instant::now() < deadline, "the kickoff never waited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (response, ()) = tokio::join!(kickoff, terminate);
    let status = response.status();
    let error = body(response).await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"]["code"], "database_unavailable");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
}
