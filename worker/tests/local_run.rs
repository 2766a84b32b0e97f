//! `crewgraph-worker run`: the real binary against an in-process scripted LLM, with no
//! database and no CREWGRAPH_* configuration.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crewgraph_tests::app::{TestProcess, binary_path};
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use serde_json::{Value, json};

/// A hello-world crew: one agent with the `hello_world` tool, one task about `{topic}`.
fn hello_graph() -> Value {
    json!({
        "nodes": [
            {"id": "greeter", "type": "agent", "position": {"x": 0, "y": 0},
             "data": {"role": "Greeter", "goal": "Greet people about {topic}",
                      "backstory": "Friendly.", "llm": "openai/gpt-4o-mini"}},
            {"id": "greet", "type": "task", "position": {"x": 300, "y": 0},
             "data": {"description": "Say hello to Ada about {topic}",
                      "expected_output": "A greeting"}},
            {"id": "hello", "type": "tool", "data": {"tool": "hello_world"}}
        ],
        "edges": [
            {"id": "e1", "source": "greeter", "target": "greet"},
            {"id": "e2", "source": "hello", "target": "greeter"}
        ]
    })
}

/// Writes `value` to a fresh temporary file and returns its path.
fn temp_json(name: &str, value: &Value) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "crewgraph-local-run-{}-{name}.json",
        std::process::id()
    ));
    std::fs::write(&path, value.to_string()).expect("write temp file");
    path
}

/// Runs `crewgraph-worker run ...` to its end with exactly `env` (nothing inherited).
async fn run_worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(binary_path("crewgraph-worker"));
    command.arg("run").args(args).env_clear().kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("crewgraph-worker run finishes")
        .expect("run crewgraph-worker")
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_hello_world_graph_prints_its_events_then_the_result() {
    let server = ScriptedLlm::start(
        serde_json::from_value::<Script>(json!({
            "rules": [
                {"when": {"last_message_contains": "Hello, Ada!"},
                 "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: Ada was greeted."},
                 "usage": {"prompt_tokens": 30, "completion_tokens": 6}},
                {"when": {"last_message_contains": "Say hello to Ada about tea"},
                 "reply": {"text": "Thought: I should greet Ada\nAction: hello_world\nAction Input: {\"name\": \"Ada\"}"},
                 "usage": {"prompt_tokens": 20, "completion_tokens": 9}}
            ],
            "fallback": "error"
        }))
        .expect("script"),
    )
    .await;
    let graph = temp_json("hello", &hello_graph());
    let output = run_worker(
        &[
            "--graph",
            graph.to_str().expect("path"),
            "--inputs",
            r#"{"topic": "tea"}"#,
            "--base-url",
            &server.openai_base_url(),
        ],
        &[("OPENAI_API_KEY", "sk-local-run-test")],
    )
    .await;
    assert!(output.status.success(), "stderr: {}", stderr(&output));

    let lines = stdout_lines(&output);
    let (result, events) = lines.split_last().expect("output lines");
    let types: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .filter(|kind| *kind != "llm.delta")
        .collect();
    assert_eq!(
        types,
        [
            "execution.started",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "tool.started",
            "tool.completed",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
            "execution.succeeded",
        ]
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], json!(index + 1), "{event}");
        let ts = event["ts"].as_str().expect("ts");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "{ts} is not RFC 3339"
        );
        assert!(event["data"].is_object(), "{event}");
    }
    assert!(
        events.iter().any(|e| e["type"] == "llm.delta"),
        "streamed deltas are events too"
    );
    let tool_done = events
        .iter()
        .find(|e| e["type"] == "tool.completed")
        .expect("tool.completed");
    assert_eq!(tool_done["data"]["output"], "Hello, Ada!");
    assert_eq!(events[0]["data"]["inputs"], json!({"topic": "tea"}));

    assert_eq!(result["raw"], "Ada was greeted.");
    assert_eq!(result["tasks_output"][0]["task_id"], "greet");
    assert_eq!(result["tasks_output"][0]["agent"], "Greeter");
    assert_eq!(result["token_usage"]["prompt_tokens"], 50);
    assert_eq!(result["token_usage"]["successful_requests"], 2);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].api_key.as_deref(),
        Some("sk-local-run-test"),
        "the key comes from OPENAI_API_KEY"
    );
    assert_eq!(requests[0].body["model"], "gpt-4o-mini");
    let _ = std::fs::remove_file(graph);
}

#[tokio::test]
async fn a_spec_file_runs_with_base_url_and_key_from_named_variables() {
    let server = ScriptedLlm::start(Script::default()).await;
    let spec = json!({
        "name": "spec crew",
        "agents": [{"id": "a", "role": "Writer", "goal": "Write", "backstory": "Brief.",
                    "llm": {"model": "openai/gpt-4o-mini", "stream": false}}],
        "tasks": [{"id": "t", "description": "Write about {subject}", "expected_output": "Text",
                   "agent": 0}]
    });
    let spec_path = temp_json("spec", &spec);
    let inputs_path = temp_json("inputs", &json!({"subject": "owls"}));
    let inputs = format!("@{}", inputs_path.display());
    let output = run_worker(
        &[
            "--spec",
            spec_path.to_str().expect("path"),
            "--inputs",
            &inputs,
            "--api-key-env",
            "MY_LLM_KEY",
        ],
        &[
            ("MY_LLM_KEY", "sk-named-variable"),
            ("OPENAI_API_KEY", "sk-not-this-one"),
            ("OPENAI_BASE_URL", &server.openai_base_url()),
        ],
    )
    .await;
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let lines = stdout_lines(&output);
    let result = lines.last().expect("result line");
    assert_eq!(result["raw"], "Echo: Write about owls");
    assert_eq!(
        lines[lines.len() - 2]["type"],
        "execution.succeeded",
        "the result follows the terminal event"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].api_key.as_deref(), Some("sk-named-variable"));
    let _ = std::fs::remove_file(spec_path);
    let _ = std::fs::remove_file(inputs_path);
}

#[tokio::test]
async fn an_invalid_graph_exits_non_zero_listing_every_problem() {
    let server = ScriptedLlm::start(Script::default()).await;
    let mut graph = hello_graph();
    graph["nodes"][0]["data"]["role"] = json!("");
    graph["edges"]
        .as_array_mut()
        .expect("edges")
        .push(json!({"id": "e9", "source": "greet", "target": "ghost"}));
    let graph_path = temp_json("invalid", &graph);
    let output = run_worker(
        &[
            "--graph",
            graph_path.to_str().expect("path"),
            "--inputs",
            r#"{"topic": "tea"}"#,
            "--base-url",
            &server.openai_base_url(),
        ],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(65),
        "stderr: {}",
        stderr(&output)
    );
    let message = stderr(&output);
    assert!(message.contains("is invalid (2 error(s)"), "{message}");
    assert!(message.contains("dangling_edge (edge e9"), "{message}");
    assert!(message.contains("(node greeter, field role"), "{message}");
    assert!(
        output.stdout.is_empty(),
        "no event for a graph that cannot run"
    );
    assert!(server.requests().is_empty());
    let _ = std::fs::remove_file(graph_path);
}

#[tokio::test]
async fn a_missing_input_exits_non_zero_before_any_llm_request() {
    let server = ScriptedLlm::start(Script::default()).await;
    let graph_path = temp_json("missing-input", &hello_graph());
    let output = run_worker(
        &[
            "--graph",
            graph_path.to_str().expect("path"),
            "--inputs",
            r#"{"subject": "tea"}"#,
            "--base-url",
            &server.openai_base_url(),
        ],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(65),
        "stderr: {}",
        stderr(&output)
    );
    let message = stderr(&output);
    assert!(message.contains("missing input(s): topic"), "{message}");
    assert!(output.stdout.is_empty());
    assert!(
        server.requests().is_empty(),
        "no model is called for a run that cannot fill its placeholders"
    );
    let _ = std::fs::remove_file(graph_path);
}

#[tokio::test]
async fn unreadable_inputs_and_run_failures_exit_non_zero_with_a_message() {
    let server = ScriptedLlm::start(
        serde_json::from_value::<Script>(json!({
            "rules": [{"reply": {"fault": "unauthorized"}}]
        }))
        .expect("script"),
    )
    .await;
    let graph_path = temp_json("failures", &hello_graph());
    let graph = graph_path.to_str().expect("path");
    let base_url = server.openai_base_url();

    let not_an_object = run_worker(&["--graph", graph, "--inputs", "[1]"], &[]).await;
    assert_eq!(not_an_object.status.code(), Some(2));
    assert!(stderr(&not_an_object).contains("--inputs must be a JSON object, not an array"));

    let no_key_variable = run_worker(
        &[
            "--graph",
            graph,
            "--inputs",
            r#"{"topic":"x"}"#,
            "--api-key-env",
            "NOPE",
        ],
        &[],
    )
    .await;
    assert_eq!(no_key_variable.status.code(), Some(2));
    assert!(stderr(&no_key_variable).contains("NOPE is not set"));

    let refused = run_worker(
        &[
            "--graph",
            graph,
            "--inputs",
            r#"{"topic":"x"}"#,
            "--base-url",
            &base_url,
        ],
        &[("OPENAI_API_KEY", "sk-refused-secret")],
    )
    .await;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "stderr: {}",
        stderr(&refused)
    );
    let message = stderr(&refused);
    assert!(message.contains("the run failed ("), "{message}");
    assert!(!message.contains("sk-refused-secret"), "{message}");
    let events = stdout_lines(&refused);
    assert_eq!(
        events.last().expect("events")["type"],
        "execution.failed",
        "a failed run ends with its terminal event and prints no result"
    );
    let _ = std::fs::remove_file(graph_path);
}

#[tokio::test]
async fn ctrl_c_cancels_the_run() {
    let server = ScriptedLlm::start(
        serde_json::from_value::<Script>(json!({"rules": [{"reply": {"fault": "timeout"}}]}))
            .expect("script"),
    )
    .await;
    let graph_path = temp_json("cancel", &hello_graph());
    let base_url = server.openai_base_url();
    let mut process = TestProcess::start(
        "crewgraph-worker",
        &[
            "run",
            "--graph",
            graph_path.to_str().expect("path"),
            "--inputs",
            r#"{"topic": "tea"}"#,
            "--base-url",
            &base_url,
        ],
        &[("OPENAI_API_KEY", "sk-test")],
    );
    let started = process
        .wait_for_log(Duration::from_secs(30), |line| {
            line["type"] == "llm.started"
        })
        .await;
    assert!(started.is_some(), "{}", process.logs().join("\n"));
    for _ in 0..100 {
        if !server.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests().len(), 1, "the model call is in flight");
    process.signal("INT");
    assert_eq!(process.wait_exit(Duration::from_secs(5)).await, Some(130));
    let cancelled = process
        .wait_for_log(Duration::from_secs(2), |line| {
            line["type"] == "execution.cancelled"
        })
        .await;
    assert!(cancelled.is_some(), "{}", process.logs().join("\n"));
    assert_eq!(server.requests().len(), 1, "no call after the cancel");
    let _ = std::fs::remove_file(graph_path);
}
