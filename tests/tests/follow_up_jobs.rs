//! Follow-up jobs on fang's worker pool, with real worker processes: the retention job
//! deletes old finished executions (and their events), keeps everything else, and is
//! scheduled once however many workers start.

use std::time::{Duration, Instant};

use crewgraph_tests::http::{api, get, signed_up};
use crewgraph_tests::pipeline::{
    create_graph, database, kickoff, one_task_graph, spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use serde_json::json;
use sqlx::Row as _;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn retention_deletes_old_finished_executions_with_their_events_and_nothing_else() {
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let api = api(&db).await;
    let token = signed_up(&api, "retention@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    let old = kickoff(&api, &token, &graph, json!({"question": "old"})).await;
    let recent = kickoff(&api, &token, &graph, json!({"question": "recent"})).await;
    let [old, recent] = [&old, &recent].map(|e| e["id"].as_str().expect("id").to_string());
    {
        let _worker = spawn_worker(&db.url, &llm.openai_base_url(), &[]).await;
        for id in [&old, &recent] {
            wait_for_status(&api, &token, id, Some("succeeded"), TIMEOUT).await;
        }
    }
    // Created long ago but never finished: kept. (Its queue task is taken away, so no
    // worker runs it meanwhile.)
    let pending = kickoff(&api, &token, &graph, json!({"question": "pending"})).await;
    let pending = pending["id"].as_str().expect("id").to_string();
    let mut sql = db.connect().await;
    sqlx::query(
        "UPDATE executions SET created_at = now() - interval '5 days', \
           finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE now() - interval '3 days' END \
         WHERE id = ANY($1::uuid[])",
    )
    .bind(vec![
        uuid::Uuid::parse_str(&old).expect("uuid"),
        uuid::Uuid::parse_str(&pending).expect("uuid"),
    ])
    .execute(&mut sql)
    .await
    .expect("age executions");
    sqlx::query(
        "DELETE FROM fang_tasks WHERE id = (SELECT queue_task_id FROM executions WHERE id = $1::uuid)",
    )
    .bind(&pending)
    .execute(&mut sql)
    .await
    .expect("hold the pending run back");

    let retention = [
        ("CREWGRAPH_RETENTION_DAYS", "1"),
        ("CREWGRAPH_WORKER_CONCURRENCY", "1"),
    ];
    let _first = spawn_worker(&db.url, &llm.openai_base_url(), &retention).await;
    let _second = spawn_worker(&db.url, &llm.openai_base_url(), &retention).await;

    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = get(&api, &format!("/api/v1/executions/{old}"), &token)
            .await
            .status();
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old execution was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events_of = |id: String| {
        sqlx::query("SELECT count(*) AS n FROM execution_events WHERE execution_id = $1::uuid")
            .bind(id)
    };
    let left: i64 = events_of(old.clone())
        .fetch_one(&mut sql)
        .await
        .expect("count")
        .get("n");
    assert_eq!(left, 0, "the old execution's events went with it");
    let kept: i64 = events_of(recent.clone())
        .fetch_one(&mut sql)
        .await
        .expect("count")
        .get("n");
    assert!(kept > 0, "the recent execution keeps its events");
    assert_eq!(
        get(&api, &format!("/api/v1/executions/{recent}"), &token)
            .await
            .status(),
        200
    );
    let unfinished = sqlx::query("SELECT status FROM executions WHERE id = $1::uuid")
        .bind(&pending)
        .fetch_one(&mut sql)
        .await
        .expect("an unfinished execution is never swept");
    assert_eq!(unfinished.get::<String, _>("status"), "queued");

    // fang holds the hourly sweep once, scheduled ahead, however many workers started; the
    // start-up sweeps ran and were removed (none failed).
    let rows = sqlx::query(
        "SELECT state::text AS state, scheduled_at > now() AS ahead, metadata \
         FROM fang_tasks WHERE task_type = 'crewgraph_follow_up'",
    )
    .fetch_all(&mut sql)
    .await
    .expect("fang tasks");
    let periodic: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<serde_json::Value, _>("metadata")["periodic"] == true)
        .collect();
    assert_eq!(periodic.len(), 1, "one hourly sweep across two workers");
    assert_eq!(periodic[0].get::<String, _>("state"), "new");
    assert!(periodic[0].get::<bool, _>("ahead"));
    assert!(
        rows.iter().all(|r| r.get::<String, _>("state") != "failed"),
        "no sweep failed"
    );
}
