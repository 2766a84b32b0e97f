//! Connections and file descriptors: closed event streams are released at once, and both
//! binaries raise their open-file limit at start-up.

use std::time::Duration;

use crewgraph_tests::app::{TestProcess, api_env, api_listening};
use crewgraph_tests::http::{JWT_SECRET, api, signed_up};
use crewgraph_tests::pipeline::{create_graph, kickoff, one_task_graph};
use crewgraph_tests::{TestApi, TestDatabase};

const STREAMS: usize = 20;

/// Server-side TCP sockets of the API's port, by state (`/proc/net/tcp` hex codes:
/// 01 established, 08 close-wait), not counting the listening socket.
fn server_sockets(api: &TestApi) -> Vec<String> {
    let port = api
        .base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port of the API");
    let pid = api.process.pid();
    let mut states = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state != "0A" {
                states.push((*state).to_string());
            }
        }
    }
    states
}

async fn wait_for_sockets(api: &TestApi, at_most: usize, timeout: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let sockets = server_sockets(api);
        if sockets.len() <= at_most || tokio::time::Instant::now() > deadline {
            return sockets;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_closed_event_stream_is_released_at_once() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let token = signed_up(&api, "streams@example.com").await;
    let graph = create_graph(&api, &token, one_task_graph()).await;
    // No worker: the execution stays queued and its stream idle after the first event.
    let execution = kickoff(&api, &token, &graph, serde_json::json!({"question": "q"})).await;
    let events_url = api.url(&format!(
        "/api/v1/executions/{}/events",
        execution["id"].as_str().expect("id")
    ));
    let baseline = server_sockets(&api).len();

    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        // A client per stream, so dropping the response closes its connection.
        let client = reqwest::Client::new();
        let response = client
            .get(&events_url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("open stream");
        assert_eq!(response.status(), 200);
        let mut reader = crewgraph_tests::pipeline::SseReader::new(response);
        let first = reader.next_event().await.expect("the queued event");
        assert_eq!(first.event.as_deref(), Some("execution.queued"));
        streams.push((client, reader));
    }
    let open = server_sockets(&api);
    assert!(
        open.len() >= baseline + STREAMS,
        "every stream holds a connection: {open:?}"
    );

    drop(streams);
    // Well before the 15 s keep-alive would find the dead sockets.
    let left = wait_for_sockets(&api, baseline, Duration::from_secs(2)).await;
    assert!(
        left.len() <= baseline,
        "closed streams still hold {} sockets ({left:?}); baseline {baseline}",
        left.len() - baseline
    );
    assert!(
        !left.iter().any(|state| state == "08"),
        "sockets left in CLOSE_WAIT: {left:?}"
    );

    // The API still streams to new clients.
    let response = reqwest::Client::new()
        .get(&events_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("open stream");
    let mut reader = crewgraph_tests::pipeline::SseReader::new(response);
    assert!(reader.next_event().await.is_some());
}

/// The soft and hard "Max open files" of a process.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

const LOW_SOFT_LIMIT: u64 = 256;

#[tokio::test]
async fn both_binaries_raise_their_open_file_limit_to_the_hard_limit() {
    let (_, hard) = open_file_limits(std::process::id());
    assert!(
        hard > LOW_SOFT_LIMIT,
        "this test needs a hard open-file limit above {LOW_SOFT_LIMIT} (it is {hard})"
    );
    let db = TestDatabase::migrated().await;

    let env = [("CREWGRAPH_JWT_SECRET", JWT_SECRET)];
    let api = api_listening(TestProcess::start_with_open_file_limit(
        "crewgraph-api",
        &[],
        &api_env(&db.url, &env),
        LOW_SOFT_LIMIT,
    ))
    .await;
    assert_eq!(open_file_limits(api.process.pid()), (hard, hard));
    let logged = api
        .process
        .json_logs()
        .into_iter()
        .find(|l| l["message"] == "open file limit raised")
        .unwrap_or_else(|| panic!("no log line: {:?}", api.process.logs()));
    assert_eq!(logged["from"], LOW_SOFT_LIMIT);
    assert_eq!(logged["to"], hard);

    let mut worker = TestProcess::start_with_open_file_limit(
        "crewgraph-worker",
        &["work"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("CREWGRAPH_FALLBACK_LLM_BASE_URL", "http://127.0.0.1:9/v1"),
        ],
        LOW_SOFT_LIMIT,
    );
    let ready = worker
        .wait_for_log(Duration::from_secs(30), |l| {
            l["message"] == "crewgraph-worker ready"
        })
        .await;
    assert!(ready.is_some(), "worker: {:?}", worker.logs());
    assert_eq!(open_file_limits(worker.pid()), (hard, hard));
    assert!(
        worker
            .json_logs()
            .iter()
            .any(|l| l["message"] == "open file limit raised" && l["to"] == hard),
        "{:?}",
        worker.logs()
    );
}
