//! The HTTP LLM clients (OpenAI Chat Completions, Anthropic Messages, Azure) against
//! `scripted-llm` over real loopback HTTP: streaming, usage, tools, retries, time-outs and
//! error classification.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crewgraph_core::crew::LlmSpec;
use crewgraph_core::crew::llm::{
    ChatMessage, HttpLlmConnector, HttpLlmOptions, LlmClient, LlmConnector as _, LlmError,
    LlmRequest, LlmResponse, StaticCredentials, ToolDefinition,
};
use crewgraph_core::outbound::OutboundPolicy;
use crewgraph_tests::app::TestProcess;
use crewgraph_tests::scripted_llm::{
    Api, Fallback, FaultKind, Rule, Script, ScriptedLlm, Usage, When,
};
use secrecy::SecretString;
use serde_json::json;

const API_KEY: &str = "sk-test-4f9a2c7e1b";

fn fast_retries() -> HttpLlmOptions {
    HttpLlmOptions {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        idle_timeout: Duration::from_secs(5),
        ..HttpLlmOptions::default()
    }
}

async fn connect_with(
    base_url: String,
    spec: LlmSpec,
    options: HttpLlmOptions,
) -> Arc<dyn LlmClient> {
    // `scripted-llm` on loopback is this test's own endpoint, as the fallback is the operator's.
    let policy = OutboundPolicy::default().trusting(Some(&base_url));
    let credentials = StaticCredentials::new(Some(base_url), Some(SecretString::from(API_KEY)));
    let connector = HttpLlmConnector::with_options(Arc::new(credentials), options)
        .expect("connector")
        .with_policy(policy);
    connector.connect(&spec).await.expect("connects")
}

async fn connect(server: &ScriptedLlm, model: &str, stream: bool) -> Arc<dyn LlmClient> {
    let mut spec = LlmSpec::model(model);
    spec.stream = stream;
    connect_with(server.openai_base_url(), spec, fast_retries()).await
}

fn ask(text: &str) -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::system("You are Researcher. Curious.\nYour personal goal is: find"),
            ChatMessage::user(text),
        ],
        stop: Vec::new(),
        tools: Vec::new(),
    }
}

/// Calls the client and returns the deltas it streamed with the result.
async fn call(
    client: &dyn LlmClient,
    request: &LlmRequest,
) -> (Vec<String>, Result<LlmResponse, LlmError>) {
    let mut deltas = Vec::new();
    let result = client
        .complete(request, &mut |delta: &str| deltas.push(delta.to_owned()))
        .await;
    (deltas, result)
}

fn hello_world_tool() -> ToolDefinition {
    ToolDefinition {
        name: "hello_world".to_owned(),
        description: "Greets someone by name".to_owned(),
        parameters: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
    }
}

#[tokio::test]
async fn openai_streaming_deltas_arrive_in_order_and_concatenate_to_the_text() {
    let text = "Thought: I now can give a great answer\nFinal Answer: forty-two, ünïcode included";
    let server = ScriptedLlm::start(Script::new(vec![Rule::text(text).chunking(5, 1)])).await;
    let client = connect(&server, "openai/gpt-4o-mini", true).await;

    let (deltas, result) = call(client.as_ref(), &ask("What is the answer?")).await;

    let response = result.expect("answer");
    let expected: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(5)
        .map(|chunk| chunk.iter().collect())
        .collect();
    assert_eq!(
        deltas, expected,
        "deltas in order, as the server chunked them"
    );
    assert_eq!(deltas.concat(), text);
    assert_eq!(response.content, text);
    let body = &server.requests()[0].body;
    assert_eq!(
        body["model"], "gpt-4o-mini",
        "the provider prefix is not sent"
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn usage_is_counted_with_cached_tokens_streamed_and_not() {
    let usage = Usage {
        prompt_tokens: 12,
        completion_tokens: 5,
        cached_tokens: 4,
    };
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::text("Final Answer: 42").usage(usage),
    ]))
    .await;
    for stream in [true, false] {
        let client = connect(&server, "gpt-4o-mini", stream).await;
        let (_, result) = call(client.as_ref(), &ask("count")).await;
        let usage = result.expect("answer").usage;
        assert_eq!(usage.prompt_tokens, 12, "stream={stream}");
        assert_eq!(usage.completion_tokens, 5, "stream={stream}");
        assert_eq!(usage.total_tokens, 17, "stream={stream}");
        assert_eq!(usage.cached_prompt_tokens, 4, "stream={stream}");
        assert_eq!(usage.successful_requests, 1, "stream={stream}");
    }
}

#[tokio::test]
async fn non_streaming_answers_without_deltas_and_sends_only_set_parameters() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::text("Final Answer: plain")])).await;
    let mut spec = LlmSpec::model("openai/gpt-4o");
    spec.stream = false;
    spec.temperature = Some(0.2);
    spec.seed = Some(7);
    let client = connect_with(server.openai_base_url(), spec, fast_retries()).await;

    let (deltas, result) = call(client.as_ref(), &ask("plain please")).await;

    assert_eq!(result.expect("answer").content, "Final Answer: plain");
    assert!(deltas.is_empty(), "no deltas without streaming: {deltas:?}");
    let recorded = &server.requests()[0];
    assert_eq!(recorded.api, Api::OpenAi);
    assert_eq!(recorded.api_key.as_deref(), Some(API_KEY));
    let body = &recorded.body;
    assert_eq!(body["stream"], false);
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["seed"], 7);
    for absent in ["stream_options", "top_p", "max_tokens", "stop", "tools"] {
        assert!(
            body.get(absent).is_none(),
            "{absent} must not be sent: {body}"
        );
    }
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are Researcher. Curious.\nYour personal goal is: find"},
            {"role": "user", "content": "plain please"},
        ])
    );
}

#[tokio::test]
async fn stop_sequences_are_sent_and_cut_the_answer() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::text(
        "Thought: use the tool\nAction: hello_world\nAction Input: {\"name\": \"Ada\"}\nObservation: made up",
    )]))
    .await;
    let client = connect(&server, "gpt-4o-mini", true).await;
    let mut request = ask("greet Ada");
    request.stop = vec!["\nObservation:".to_owned()];

    let (_, result) = call(client.as_ref(), &request).await;

    assert_eq!(
        result.expect("answer").content,
        "Thought: use the tool\nAction: hello_world\nAction Input: {\"name\": \"Ada\"}"
    );
    assert_eq!(server.requests()[0].body["stop"], json!(["\nObservation:"]));
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_retried_after_waiting() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::rate_limit(Some(1)).times(1),
        Rule::text("Final Answer: after the wait"),
    ]))
    .await;
    let client = connect(&server, "gpt-4o-mini", true).await;
    let started = Instant::now();

    let (_, result) = call(client.as_ref(), &ask("hurry")).await;

    assert_eq!(
        result.expect("retried").content,
        "Final Answer: after the wait"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one 429, then one success");
    let waited = requests[1].received_at - requests[0].received_at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::fault(FaultKind::ServerError).times(1),
        Rule::text("Final Answer: second time lucky"),
    ]))
    .await;
    let client = connect(&server, "gpt-4o-mini", false).await;

    let (_, result) = call(client.as_ref(), &ask("again")).await;

    assert_eq!(
        result.expect("retried").content,
        "Final Answer: second time lucky"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_three_retries() {
    let server = ScriptedLlm::start(Script::default().with_fallback(Fallback::Error)).await;
    let client = connect(&server, "gpt-4o-mini", true).await;

    let (_, result) = call(client.as_ref(), &ask("anyone?")).await;

    match result {
        Err(LlmError::Unavailable(message)) => {
            assert!(message.contains("no rule matched"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        server.requests().len(),
        4,
        "the first attempt and 3 retries"
    );
}

#[tokio::test]
async fn unauthorized_is_an_authentication_error_without_the_key() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::fault(FaultKind::Unauthorized)])).await;
    let client = connect(&server, "gpt-4o-mini", true).await;

    let (_, result) = call(client.as_ref(), &ask("let me in")).await;

    let error = result.expect_err("401");
    let LlmError::Authentication(message) = &error else {
        panic!("expected Authentication, got {error:?}");
    };
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(message.contains("[REDACTED]"), "{message}");
    assert!(!error.to_string().contains(API_KEY), "{error}");
    assert!(!format!("{error:?}").contains(API_KEY), "{error:?}");
    assert_eq!(server.requests().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn context_too_long_and_bad_requests_are_classified() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::fault(FaultKind::ContextTooLong).when(When {
            last_message_contains: Some("long".into()),
            ..When::default()
        }),
        Rule::fault(FaultKind::BadRequest),
    ]))
    .await;
    for model in ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-latest"] {
        let client = connect(&server, model, true).await;
        let (_, long) = call(client.as_ref(), &ask("a very long conversation")).await;
        assert!(
            matches!(long, Err(LlmError::ContextTooLong(_))),
            "{model}: {long:?}"
        );
        let (_, bad) = call(client.as_ref(), &ask("bad")).await;
        assert!(
            matches!(bad, Err(LlmError::BadRequest(_))),
            "{model}: {bad:?}"
        );
    }
    assert_eq!(server.requests().len(), 4, "4xx answers are not retried");
}

#[tokio::test]
async fn a_silent_provider_times_out_within_the_configured_time() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::fault(FaultKind::Timeout)])).await;
    let mut spec = LlmSpec::model("gpt-4o-mini");
    spec.timeout = Some(0.5);
    let client = connect_with(server.openai_base_url(), spec, fast_retries()).await;
    let started = Instant::now();

    let (_, result) = call(client.as_ref(), &ask("hello?")).await;

    let elapsed = started.elapsed();
    assert!(matches!(result, Err(LlmError::Timeout(_))), "{result:?}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn a_stream_that_goes_silent_hits_the_idle_timeout() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::text("Final Answer: slow").chunking(4, 2_000),
    ]))
    .await;
    let options = HttpLlmOptions {
        idle_timeout: Duration::from_millis(300),
        ..fast_retries()
    };
    let client = connect_with(
        server.openai_base_url(),
        LlmSpec::model("gpt-4o-mini"),
        options,
    )
    .await;
    let started = Instant::now();

    let (_, result) = call(client.as_ref(), &ask("slowly")).await;

    assert!(matches!(result, Err(LlmError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_stream_cut_after_a_delta_is_not_retried_but_a_cut_before_any_is() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::fault(FaultKind::Disconnect)])).await;
    for model in ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-latest"] {
        let before = server.requests().len();
        let client = connect(&server, model, true).await;
        let (deltas, result) = call(client.as_ref(), &ask("go on")).await;
        assert!(!deltas.is_empty(), "{model}: deltas were handed on");
        assert!(
            matches!(result, Err(LlmError::Unavailable(_))),
            "{model}: {result:?}"
        );
        assert_eq!(
            server.requests().len() - before,
            1,
            "{model}: not retried after a delta"
        );

        let before = server.requests().len();
        let client = connect(&server, model, false).await;
        let (_, result) = call(client.as_ref(), &ask("go on")).await;
        assert!(
            matches!(result, Err(LlmError::Unavailable(_))),
            "{model}: {result:?}"
        );
        assert_eq!(
            server.requests().len() - before,
            4,
            "{model}: nothing was delivered, so the cut is retried 3 times"
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_invalid_responses() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::fault(FaultKind::Malformed)])).await;
    for model in ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-latest"] {
        for stream in [true, false] {
            let client = connect(&server, model, stream).await;
            let (_, result) = call(client.as_ref(), &ask("garble")).await;
            assert!(
                matches!(result, Err(LlmError::InvalidResponse(_))),
                "{model} stream={stream}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn openai_native_tool_calls_streamed_and_not() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::tool_calls(&[("hello_world", r#"{"name":"Ada"}"#)])
            .when(When {
                tools_offered: vec!["hello_world".into()],
                ..When::default()
            })
            .chunking(3, 0),
    ]))
    .await;
    for stream in [true, false] {
        let client = connect(&server, "openai/gpt-4o-mini", stream).await;
        let mut request = ask("greet Ada");
        request.tools = vec![hello_world_tool()];

        let (deltas, result) = call(client.as_ref(), &request).await;

        let response = result.expect("tool call");
        assert!(deltas.is_empty(), "tool calls are not text deltas");
        assert_eq!(response.tool_calls.len(), 1, "stream={stream}");
        let call = &response.tool_calls[0];
        assert_eq!(call.name, "hello_world");
        assert_eq!(call.arguments, r#"{"name":"Ada"}"#, "stream={stream}");
        assert!(!call.id.is_empty());
    }
    let body = &server.requests()[0].body;
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "hello_world");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["name"])
    );
}

#[tokio::test]
async fn anthropic_native_tool_calls_streamed_and_not() {
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::tool_calls(&[("hello_world", r#"{"name":"Ada"}"#)])
            .when(When {
                api: Some(Api::Anthropic),
                tools_offered: vec!["hello_world".into()],
                ..When::default()
            })
            .chunking(4, 0),
    ]))
    .await;
    for stream in [true, false] {
        let client = connect(&server, "anthropic/claude-3-5-sonnet-latest", stream).await;
        let mut request = ask("greet Ada");
        request.tools = vec![hello_world_tool()];

        let (_, result) = call(client.as_ref(), &request).await;

        let response = result.expect("tool call");
        assert_eq!(response.tool_calls.len(), 1, "stream={stream}");
        let call = &response.tool_calls[0];
        assert_eq!(call.name, "hello_world");
        let arguments: serde_json::Value =
            serde_json::from_str(&call.arguments).expect("arguments are JSON");
        assert_eq!(arguments, json!({"name": "Ada"}), "stream={stream}");
        assert!(call.id.starts_with("toolu_"));
    }
    let body = &server.requests()[0].body;
    assert_eq!(body["tools"][0]["name"], "hello_world");
    assert_eq!(
        body["tools"][0]["input_schema"]["required"],
        json!(["name"])
    );
}

#[tokio::test]
async fn anthropic_streams_text_and_counts_usage() {
    let text = "Thought: I now can give a great answer\nFinal Answer: Claude says hi";
    let server = ScriptedLlm::start(Script::new(vec![
        Rule::text(text)
            .when(When {
                api: Some(Api::Anthropic),
                model: Some("claude-3-5-sonnet-latest".into()),
                ..When::default()
            })
            .usage(Usage {
                prompt_tokens: 30,
                completion_tokens: 9,
                cached_tokens: 10,
            })
            .chunking(6, 0),
    ]))
    .await;
    let client = connect(&server, "anthropic/claude-3-5-sonnet-latest", true).await;

    let (deltas, result) = call(client.as_ref(), &ask("hi Claude")).await;

    let response = result.expect("answer");
    assert!(deltas.len() > 5, "{deltas:?}");
    assert_eq!(deltas.concat(), text);
    assert_eq!(response.content, text);
    assert_eq!(response.usage.prompt_tokens, 30);
    assert_eq!(response.usage.cached_prompt_tokens, 10);
    assert_eq!(response.usage.completion_tokens, 9);
    assert_eq!(response.usage.total_tokens, 39);
}

#[tokio::test]
async fn anthropic_request_moves_system_and_stop_and_sets_max_tokens() {
    let server = ScriptedLlm::start(Script::default()).await;
    let client = connect(&server, "anthropic/claude-3-5-sonnet-latest", false).await;
    let mut request = ask("Current Task: say hello");
    request
        .messages
        .push(ChatMessage::assistant("Thought: hmm"));
    request
        .messages
        .push(ChatMessage::user("Observation: nothing"));
    request.stop = vec!["\nObservation:".to_owned()];

    let (_, result) = call(client.as_ref(), &request).await;

    assert_eq!(
        result.expect("echo").content,
        "Thought: I now know the final answer\nFinal Answer: nothing",
        "echo mode answers with the last observation"
    );
    let recorded = &server.requests()[0];
    assert_eq!(recorded.api, Api::Anthropic);
    assert_eq!(recorded.api_key.as_deref(), Some(API_KEY));
    let body = &recorded.body;
    assert_eq!(body["model"], "claude-3-5-sonnet-latest");
    assert_eq!(
        body["system"],
        "You are Researcher. Curious.\nYour personal goal is: find"
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Current Task: say hello"},
            {"role": "assistant", "content": "Thought: hmm"},
            {"role": "user", "content": "Observation: nothing"},
        ])
    );
    assert_eq!(body["stop_sequences"], json!(["\nObservation:"]));
    assert_eq!(body["max_tokens"], 4096);
    assert!(body.get("stop").is_none());
}

#[tokio::test]
async fn azure_sends_the_api_key_header_and_api_version() {
    let server = ScriptedLlm::start(Script::new(vec![Rule::text("Final Answer: azure")])).await;
    let client = connect_with(
        format!("http://{}", server.addr()),
        LlmSpec::model("azure/my-gpt4o"),
        fast_retries(),
    )
    .await;

    let (_, result) = call(client.as_ref(), &ask("hi Azure")).await;

    assert_eq!(result.expect("answer").content, "Final Answer: azure");
    let recorded = &server.requests()[0];
    assert_eq!(recorded.api_key.as_deref(), Some(API_KEY));
    assert_eq!(recorded.query.as_deref(), Some("api-version=2024-10-21"));
}

#[tokio::test]
async fn the_scripted_llm_binary_starts_and_answers() {
    let mut process = TestProcess::start("scripted-llm", &["--addr", "127.0.0.1:0"], &[]);
    let listening = process
        .wait_for_log(Duration::from_secs(10), |line| {
            line["message"] == "scripted-llm listening"
        })
        .await
        .expect("scripted-llm logs its address");
    let addr = listening["addr"].as_str().expect("addr").to_owned();

    let health = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health");
    assert!(health.status().is_success());
    let client = connect_with(
        format!("http://{addr}/v1"),
        LlmSpec::model("gpt-4o-mini"),
        fast_retries(),
    )
    .await;
    let (deltas, result) = call(client.as_ref(), &ask("Current Task: say hi")).await;
    let content = result.expect("echo answer").content;
    assert_eq!(
        content,
        "Thought: I now can give a great answer\nFinal Answer: Echo: say hi"
    );
    assert_eq!(deltas.concat(), content);
}
