//! MLflow export against a real MLflow tracking server (the pinned release from
//! `scripts/ensure-mlflow`): an ended execution becomes a run with its params, metrics,
//! tags, status and a linked trace; an export waits while MLflow is down and lands once
//! when it is back; an answer lost after `runs/create` makes no second run.

use std::time::Duration;

use crewgraph_tests::TestApi;
use crewgraph_tests::app::{TestProcess, api_env, api_listening};
use crewgraph_tests::http::{body, empty, post, send, signed_up};
use crewgraph_tests::mlflow::{LossyProxy, MlflowApi, MlflowServer, free_port};
use crewgraph_tests::pipeline::{
    ALLOW_LOOPBACK_LLM, create_graph, database, graph_calling, kickoff, one_task_graph,
    spawn_worker, wait_for_status,
};
use crewgraph_tests::scripted_llm::{FaultKind, Rule, Script, ScriptedLlm, Usage};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(90);

/// What both binaries get: MLflow at `uri`, retries a second or two apart.
fn mlflow_vars(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MLFLOW_TRACKING_URI", uri.to_string()),
        ("CREWGRAPH_MLFLOW_RETRY_BASE_SECS", "1".into()),
        ("CREWGRAPH_MLFLOW_RETRY_MAX_SECS", "2".into()),
        (ALLOW_LOOPBACK_LLM.0, ALLOW_LOOPBACK_LLM.1.into()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

struct Product {
    api: TestApi,
    _worker: TestProcess,
    token: String,
}

async fn start_product(database_url: &str, llm: &ScriptedLlm, mlflow_uri: &str) -> Product {
    let vars = mlflow_vars(mlflow_uri);
    let env = borrowed(&vars);
    let api = api_listening(TestProcess::start(
        "crewgraph-api",
        &[],
        &api_env(database_url, &env),
    ))
    .await;
    let worker = spawn_worker(database_url, &llm.openai_base_url(), &env).await;
    let token = signed_up(
        &api,
        &format!("mlflow-{}@example.com", uuid::Uuid::new_v4()),
    )
    .await;
    Product {
        api,
        _worker: worker,
        token,
    }
}

/// One agent, two tasks (`first` then `second`): per-task series have steps 0 and 1.
fn two_task_graph() -> Value {
    let mut document = one_task_graph();
    let nodes = document["nodes"].as_array_mut().expect("nodes");
    nodes.push(
        json!({"id": "t2", "type": "task", "data": {"name": "second",
        "description": "Then answer {question} again", "expected_output": "One sentence."}}),
    );
    document["nodes"][1]["data"]["name"] = json!("first");
    let edges = document["edges"].as_array_mut().expect("edges");
    edges.push(json!({"id": "e2", "source": "a", "target": "t2"}));
    edges.push(json!({"id": "e3", "source": "t", "target": "t2"}));
    document
}

fn execution_id(execution: &Value) -> String {
    execution["id"].as_str().expect("id").to_string()
}

async fn get_execution(product: &Product, id: &str) -> Value {
    body(
        send(
            &product.api,
            reqwest::Method::GET,
            &format!("/api/v1/executions/{id}"),
            &product.token,
            None,
        )
        .await,
    )
    .await
}

/// Polls the execution until its `mlflow` export is `state`.
async fn wait_for_export(product: &Product, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
    loop {
        let execution = get_execution(product, id).await;
        if execution["mlflow"]["state"] == state {
            return execution["mlflow"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the export of {id} is not {state}: {}",
            execution["mlflow"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn param<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["params"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn metric(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["key"] == key)
        .and_then(|m| m["value"].as_f64())
}

#[tokio::test]
async fn a_succeeded_execution_becomes_a_finished_run_with_params_metrics_tags_and_a_linked_trace()
{
    let server = MlflowServer::shared().await;
    let db = database().await;
    let llm = ScriptedLlm::start(Script::new(vec![
        Rule::text("Thought: I know it.\nFinal Answer: 42").usage(Usage {
            prompt_tokens: 30,
            completion_tokens: 7,
            cached_tokens: 0,
        }),
    ]))
    .await;
    let product = start_product(&db.url, &llm, &server.uri()).await;
    let graph = create_graph(&product.api, &product.token, two_task_graph()).await;
    let secret_question = "what is the SECRET-INPUT-4711?";
    let execution = kickoff(
        &product.api,
        &product.token,
        &graph,
        json!({"question": secret_question}),
    )
    .await;
    let id = execution_id(&execution);
    wait_for_status(
        &product.api,
        &product.token,
        &id,
        Some("succeeded"),
        RUN_TIMEOUT,
    )
    .await;
    let export = wait_for_export(&product, &id, "exported").await;
    let (experiment_id, run_id) = (
        export["experiment_id"].as_str().expect("experiment id"),
        export["run_id"].as_str().expect("run id"),
    );
    assert_eq!(
        export["url"],
        format!(
            "{}/#/experiments/{experiment_id}/runs/{run_id}",
            server.uri()
        )
    );
    assert_eq!(export["last_error"], Value::Null);

    let mlflow = MlflowApi::new(server.uri());
    let experiment = mlflow
        .get(
            "/api/2.0/mlflow/experiments/get",
            &[("experiment_id", experiment_id)],
        )
        .await;
    let name = experiment["experiment"]["name"].as_str().expect("name");
    assert!(
        name.starts_with("crewgraph/ws-") && name.ends_with("/G"),
        "{name}"
    );
    let run = mlflow.run(run_id).await;
    assert_eq!(run["info"]["status"], "FINISHED");
    let started = execution_time(&get_execution(&product, &id).await, "started_at");
    let finished = execution_time(&get_execution(&product, &id).await, "finished_at");
    assert_eq!(run["info"]["start_time"].as_i64(), Some(started));
    assert_eq!(run["info"]["end_time"].as_i64(), Some(finished));
    assert_eq!(tag(&run, "crewgraph.execution_id"), Some(id.as_str()));
    assert_eq!(tag(&run, "crewgraph.graph_id"), Some(graph.as_str()));
    assert_eq!(tag(&run, "crewgraph.status"), Some("succeeded"));
    assert_eq!(param(&run, "process"), Some("sequential"));
    assert_eq!(param(&run, "agent_count"), Some("1"));
    assert_eq!(param(&run, "task_count"), Some("2"));
    assert_eq!(param(&run, "models"), Some("openai/gpt-4o-mini"));
    assert_eq!(param(&run, "graph_version"), Some("1"));
    assert_eq!(metric(&run, "task_count"), Some(2.0));
    assert_eq!(metric(&run, "llm_calls"), Some(2.0));
    assert_eq!(metric(&run, "prompt_tokens"), Some(60.0));
    assert_eq!(metric(&run, "completion_tokens"), Some(14.0));
    let per_task = mlflow.metric_history(run_id, "task.prompt_tokens").await;
    assert_eq!(per_task, vec![(0, 30.0), (1, 30.0)]);
    let everything = run.to_string();
    for private in ["SECRET-INPUT-4711", "@example.com", "Final Answer", "42\""] {
        assert!(!everything.contains(private), "{private} in the run: {run}");
    }

    let traces = mlflow.traces_of_run(experiment_id, run_id).await;
    assert_eq!(traces.len(), 1, "one trace linked to the run: {traces:?}");
    let trace = &traces[0];
    assert_eq!(trace["state"], "OK", "{trace}");
    let trace_id = trace["trace_id"].as_str().expect("trace id");
    let spans = trace_spans(&mlflow, trace_id).await;
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    for expected in [
        "crew G",
        "task first",
        "task second",
        "invoke_agent Answerer",
        "chat gpt-4o-mini",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let spans_text = Value::Array(spans.clone()).to_string();
    assert!(
        spans_text.contains("gen_ai.usage.input_tokens"),
        "{spans_text}"
    );
    assert!(
        !spans_text.contains("SECRET-INPUT-4711"),
        "no content without capture"
    );
}

fn execution_time(execution: &Value, field: &str) -> i64 {
    let text = execution[field].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_millis()
}

/// A trace's spans, as MLflow stored them.
async fn trace_spans(mlflow: &MlflowApi, trace_id: &str) -> Vec<Value> {
    let body = mlflow
        .get("/api/3.0/mlflow/traces/get", &[("trace_id", trace_id)])
        .await;
    body["trace"]["spans"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn failed_and_cancelled_executions_become_failed_and_killed_runs() {
    let server = MlflowServer::shared().await;
    let db = database().await;
    let llm = ScriptedLlm::start(Script::new(vec![Rule::fault(FaultKind::Unauthorized)])).await;
    let product = start_product(&db.url, &llm, &server.uri()).await;
    let graph = create_graph(&product.api, &product.token, one_task_graph()).await;
    let failed = kickoff(
        &product.api,
        &product.token,
        &graph,
        json!({"question": "q"}),
    )
    .await;
    let failed = execution_id(&failed);
    wait_for_status(
        &product.api,
        &product.token,
        &failed,
        Some("failed"),
        RUN_TIMEOUT,
    )
    .await;
    let mlflow = MlflowApi::new(server.uri());
    let export = wait_for_export(&product, &failed, "exported").await;
    let run = mlflow.run(export["run_id"].as_str().expect("run id")).await;
    assert_eq!(run["info"]["status"], "FAILED");
    let end_code = get_execution(&product, &failed).await["error"]["code"].clone();
    assert_eq!(tag(&run, "crewgraph.end_code"), end_code.as_str());
    assert_eq!(tag(&run, "crewgraph.status"), Some("failed"));

    // Cancelled while running (its model answers slowly): the worker ends it.
    let slow = ScriptedLlm::start(Script::new(vec![
        Rule::text("Final Answer: late").latency_ms(30_000),
    ]))
    .await;
    let slow_graph = create_graph(
        &product.api,
        &product.token,
        graph_calling(&slow.openai_base_url()),
    )
    .await;
    let cancelled = kickoff(
        &product.api,
        &product.token,
        &slow_graph,
        json!({"question": "c"}),
    )
    .await;
    let cancelled = execution_id(&cancelled);
    wait_for_status(
        &product.api,
        &product.token,
        &cancelled,
        Some("running"),
        RUN_TIMEOUT,
    )
    .await;
    let response = post(
        &product.api,
        &format!("/api/v1/executions/{cancelled}/cancel"),
        Some(&product.token),
        empty(),
    )
    .await;
    assert_eq!(response.status(), 200);
    wait_for_status(
        &product.api,
        &product.token,
        &cancelled,
        Some("cancelled"),
        RUN_TIMEOUT,
    )
    .await;
    let export = wait_for_export(&product, &cancelled, "exported").await;
    let run = mlflow.run(export["run_id"].as_str().expect("run id")).await;
    assert_eq!(run["info"]["status"], "KILLED");
    assert_eq!(tag(&run, "crewgraph.status"), Some("cancelled"));
}

#[tokio::test]
async fn an_export_waits_while_mlflow_is_down_and_lands_exactly_once_when_it_is_back() {
    let port = free_port();
    let uri = format!("http://127.0.0.1:{port}");
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let product = start_product(&db.url, &llm, &uri).await;
    let graph = create_graph(&product.api, &product.token, one_task_graph()).await;
    let execution = kickoff(
        &product.api,
        &product.token,
        &graph,
        json!({"question": "q"}),
    )
    .await;
    let id = execution_id(&execution);
    wait_for_status(
        &product.api,
        &product.token,
        &id,
        Some("succeeded"),
        RUN_TIMEOUT,
    )
    .await;

    // Nothing listens: the export is retried, and says why it waits.
    let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
    let waiting = loop {
        let export = get_execution(&product, &id).await["mlflow"].clone();
        assert_eq!(export["state"], "pending", "{export}");
        if export["attempts"].as_i64().unwrap_or(0) >= 3 {
            break export;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retried: {export}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = waiting["last_error"].as_str().expect("last error");
    assert!(error.contains("MLflow"), "{error}");
    assert_eq!(waiting["run_id"], Value::Null);

    let server = MlflowServer::start_on(port).await;
    let export = wait_for_export(&product, &id, "exported").await;
    assert!(export["attempts"].as_i64().unwrap_or(0) > 3, "{export}");
    let experiment_id = export["experiment_id"].as_str().expect("experiment id");
    let mlflow = MlflowApi::new(server.uri());
    let runs = mlflow.runs_of_execution(experiment_id, &id).await;
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    assert_eq!(runs[0]["info"]["status"], "FINISHED");
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_to_runs_create_makes_no_second_run() {
    let server = MlflowServer::shared().await;
    let proxy = LossyProxy::start(server.port).await;
    let db = database().await;
    let llm = ScriptedLlm::start(Script::default()).await;
    let product = start_product(&db.url, &llm, &proxy.uri()).await;
    let graph = create_graph(&product.api, &product.token, one_task_graph()).await;
    let execution = kickoff(
        &product.api,
        &product.token,
        &graph,
        json!({"question": "q"}),
    )
    .await;
    let id = execution_id(&execution);
    wait_for_status(
        &product.api,
        &product.token,
        &id,
        Some("succeeded"),
        RUN_TIMEOUT,
    )
    .await;
    let export = wait_for_export(&product, &id, "exported").await;
    assert_eq!(
        proxy.lost.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the proxy lost the answer to runs/create"
    );
    assert!(export["attempts"].as_i64().unwrap_or(0) >= 2, "{export}");
    let mlflow = MlflowApi::new(server.uri());
    let runs = mlflow
        .runs_of_execution(export["experiment_id"].as_str().expect("experiment"), &id)
        .await;
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    assert_eq!(
        runs[0]["info"]["run_id"].as_str(),
        export["run_id"].as_str()
    );
}
