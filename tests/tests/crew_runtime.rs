//! The crew runtime end to end over real HTTP: `run_crew` → the OpenAI client →
//! `scripted-llm` on loopback. Asserts what the model received, the events, the outputs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crewgraph_core::crew::llm::{HttpLlmConnector, StaticCredentials};
use crewgraph_core::crew::tools::ToolRegistry;
use crewgraph_core::crew::{
    AgentSpec, CrewSpec, EventSink, LlmSpec, Process, RunDeps, RunError, RuntimeEvent, TaskContext,
    TaskSpec, ToolCalling, run_crew,
};
use crewgraph_core::outbound::OutboundPolicy;
use crewgraph_tests::scripted_llm::{Script, ScriptedLlm};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Events(Mutex<Vec<RuntimeEvent>>);

impl EventSink for Events {
    fn emit(&self, event: RuntimeEvent) {
        self.0.lock().expect("events").push(event);
    }
}

impl Events {
    fn all(&self) -> Vec<RuntimeEvent> {
        self.0.lock().expect("events").clone()
    }

    /// Event types, without the streamed deltas.
    fn types(&self) -> Vec<&'static str> {
        self.all()
            .iter()
            .map(RuntimeEvent::type_name)
            .filter(|name| *name != "llm.delta")
            .collect()
    }
}

fn script(value: Value) -> Script {
    serde_json::from_value(value).expect("script")
}

fn deps(server: &ScriptedLlm) -> RunDeps {
    let credentials = StaticCredentials::new(
        Some(server.openai_base_url()),
        Some(SecretString::from("sk-test-crew")),
    );
    // `scripted-llm` on loopback is this test's own endpoint, as the fallback is the operator's.
    let policy = OutboundPolicy::default().trusting(Some(&server.openai_base_url()));
    let connector = HttpLlmConnector::new(Arc::new(credentials)).expect("connector");
    RunDeps {
        connector: Arc::new(connector.with_policy(policy)),
        tools: ToolRegistry::builtin(),
    }
}

fn agent(role: &str, model: &str) -> AgentSpec {
    serde_json::from_value(json!({
        "id": role.to_lowercase(),
        "role": role,
        "goal": format!("Do {role} work"),
        "backstory": format!("You are a careful {role}."),
        "llm": LlmSpec::model(model),
    }))
    .expect("agent")
}

fn task(id: &str, description: &str, expected_output: &str, agent: Option<usize>) -> TaskSpec {
    serde_json::from_value(json!({
        "id": id,
        "description": description,
        "expected_output": expected_output,
        "agent": agent,
    }))
    .expect("task")
}

fn crew(agents: Vec<AgentSpec>, tasks: Vec<TaskSpec>) -> CrewSpec {
    CrewSpec {
        name: Some("test crew".into()),
        process: Process::Sequential,
        agents,
        tasks,
        manager_llm: None,
        max_rpm: None,
        cache: true,
    }
}

fn inputs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const NO_TOOLS: &str = "\nTo give my best complete final answer to the task respond using the exact following format:\n\nThought: I now can give a great answer\nFinal Answer: Your final answer must be the great and the most complete as possible, it must be outcome described.\n\nI MUST use these formats, my job depends on it!";
const BEGIN: &str = "\n\nBegin! This is VERY important to you, use the tools available and give your best Final Answer, your job depends on it!\n\nThought:";
const CRITERIA: &str = "\n\nThis is the expected criteria for your final answer: ";
const NOT_SUMMARY: &str =
    "\nyou MUST return the actual complete content as the final answer, not a summary.";

#[tokio::test]
async fn sequential_crew_passes_context_streams_and_sums_usage() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Research AI"},
             "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: Facts about AI"},
             "usage": {"prompt_tokens": 11, "completion_tokens": 5}, "chunk_chars": 3},
            {"when": {"last_message_contains": "Write about AI"},
             "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: An article"},
             "usage": {"prompt_tokens": 13, "completion_tokens": 7}, "chunk_chars": 3},
            {"when": {"last_message_contains": "Review the article"},
             "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: Approved"},
             "usage": {"prompt_tokens": 17, "completion_tokens": 2}, "chunk_chars": 3}
        ],
        "fallback": "error"
    })))
    .await;
    let spec = crew(
        vec![
            agent("Researcher", "openai/gpt-4o-mini"),
            agent("Writer", "openai/gpt-4o-mini"),
        ],
        vec![
            task("t1", "Research {topic}", "Facts", Some(0)),
            task("t2", "Write about {topic}", "An article", Some(1)),
            task("t3", "Review the article", "A verdict", Some(1)),
        ],
    );
    let events = Events::default();
    let output = run_crew(
        &spec,
        &inputs(json!({"topic": "AI"})),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("the crew runs");

    assert_eq!(output.raw, "Approved");
    let raws: Vec<&str> = output.tasks_output.iter().map(|t| t.raw.as_str()).collect();
    assert_eq!(raws, ["Facts about AI", "An article", "Approved"]);
    assert_eq!(output.tasks_output[0].agent, "Researcher");
    assert_eq!(
        output.tasks_output[0].summary.as_deref(),
        Some("Research AI...")
    );
    assert_eq!(output.token_usage.prompt_tokens, 41);
    assert_eq!(output.token_usage.completion_tokens, 14);
    assert_eq!(output.token_usage.total_tokens, 55);
    assert_eq!(output.token_usage.successful_requests, 3);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        messages(&requests[0].body),
        vec![
            (
                "system".to_string(),
                format!(
                    "You are Researcher. You are a careful Researcher.\nYour personal goal is: Do Researcher work{NO_TOOLS}"
                )
            ),
            (
                "user".to_string(),
                format!("\nCurrent Task: Research AI{CRITERIA}Facts{NOT_SUMMARY}{BEGIN}")
            ),
        ]
    );
    assert_eq!(requests[0].body["stop"], json!(["\nObservation:"]));
    // Default context: every earlier output, joined with CrewAI's divider.
    assert_eq!(
        messages(&requests[1].body)[1].1,
        format!(
            "\nCurrent Task: Write about AI{CRITERIA}An article{NOT_SUMMARY}\n\nThis is the context you're working with:\nFacts about AI{BEGIN}"
        )
    );
    assert_eq!(
        messages(&requests[2].body)[1].1,
        format!(
            "\nCurrent Task: Review the article{CRITERIA}A verdict{NOT_SUMMARY}\n\nThis is the context you're working with:\nFacts about AI\n\n----------\n\nAn article{BEGIN}"
        )
    );

    assert_eq!(
        events.types(),
        [
            "execution.started",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
        ]
    );
    // Streamed deltas arrive in order between started and completed, and sum to the text.
    let all = events.all();
    let mut deltas: std::collections::HashMap<String, String> = Default::default();
    let mut open: Option<String> = None;
    for event in &all {
        match event {
            RuntimeEvent::LlmStarted { call_id, .. } => open = Some(call_id.clone()),
            RuntimeEvent::LlmDelta { call_id, chunk, .. } => {
                assert_eq!(open.as_ref(), Some(call_id), "a delta outside its call");
                deltas.entry(call_id.clone()).or_default().push_str(chunk);
            }
            RuntimeEvent::LlmCompleted {
                call_id,
                response,
                usage,
                ..
            } => {
                assert_eq!(deltas.get(call_id), Some(response));
                assert_eq!(
                    usage.total_tokens,
                    usage.prompt_tokens + usage.completion_tokens
                );
                open = None;
            }
            _ => {}
        }
    }
    let chunk_count = all
        .iter()
        .filter(|e| matches!(e, RuntimeEvent::LlmDelta { .. }))
        .count();
    assert!(
        chunk_count > 10,
        "text was streamed in small chunks ({chunk_count})"
    );
}

#[tokio::test]
async fn react_tool_call_appends_the_observation_as_crewai_does() {
    let action = "Thought: I should greet\nAction: hello_world\nAction Input: {\"name\": \"Ada\"}";
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Observation: Hello, Ada!"},
             "reply": {"text": "Thought: I now know the final answer\nFinal Answer: I said hello"}},
            {"when": {"last_message_contains": "Current Task"}, "times": 1,
             "reply": {"text": format!("{action}\nObservation: the model must not write this")}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut greeter = agent("Greeter", "openai/gpt-4o-mini");
    greeter.tools = vec!["hello_world".into()];
    let spec = crew(
        vec![greeter],
        vec![task("t1", "Greet Ada", "A greeting", Some(0))],
    );
    let events = Events::default();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "I said hello");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = messages(&requests[0].body);
    assert!(first[0].1.contains("You ONLY have access to the following tools, and should NEVER make up tools that are not listed here:\n\nTool Name: hello_world\nTool Arguments: {'name': {'description': 'Who to greet', 'type': 'str'}}\nTool Description: Greets someone by name. Use it to say hello.\n\nIMPORTANT"));
    assert!(
        first[0]
            .1
            .contains("only one name of [hello_world], just the name")
    );
    let second = messages(&requests[1].body);
    assert_eq!(second.len(), 4);
    assert_eq!(second[2], ("assistant".into(), "Hello, Ada!".into()));
    assert_eq!(
        second[3],
        (
            "assistant".into(),
            format!("{action}\nObservation: Hello, Ada!")
        )
    );
    assert_eq!(
        events.types(),
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
        ]
    );
    let completed = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            RuntimeEvent::ToolCompleted {
                tool_args,
                output,
                from_cache,
                ..
            } => Some((tool_args, output, from_cache)),
            _ => None,
        })
        .expect("tool.completed");
    assert_eq!(
        completed,
        (json!({"name": "Ada"}), "Hello, Ada!".to_string(), false)
    );
}

#[tokio::test]
async fn native_tool_calls_feed_results_back_as_tool_messages() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Hello, Ada!"},
             "reply": {"text": "Thought: done\nFinal Answer: greeted Ada"}},
            {"when": {"tools_offered": ["hello_world"], "last_message_contains": "Current Task"}, "times": 1,
             "reply": {"tool_calls": [{"name": "hello_world", "arguments": "{\"name\":\"Ada\"}"}]}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut greeter = agent("Greeter", "openai/gpt-4o-mini");
    greeter.tools = vec!["hello_world".into()];
    greeter.tool_calling = ToolCalling::Native;
    let spec = crew(
        vec![greeter],
        vec![task("t1", "Greet Ada", "A greeting", Some(0))],
    );
    let events = Events::default();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "greeted Ada");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        "hello_world"
    );
    let second = requests[1].body["messages"]
        .as_array()
        .expect("messages")
        .clone();
    let tool_message = second.last().expect("a tool message");
    assert_eq!(tool_message["role"], "tool");
    assert_eq!(tool_message["content"], "Hello, Ada!");
    let call_id = second[second.len() - 2]["tool_calls"][0]["id"].clone();
    assert_eq!(tool_message["tool_call_id"], call_id);
    assert!(
        events
            .types()
            .windows(2)
            .any(|w| w == ["tool.started", "tool.completed"])
    );
}

#[tokio::test]
async fn max_iter_forces_a_final_answer_without_an_extra_call() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Now it's time you MUST give your absolute best final answer"},
             "reply": {"text": "Thought: fine\nFinal Answer: forced answer"}},
            {"when": {"last_message_contains": "Current Task"}, "times": 1,
             "reply": {"text": "Thought: compute\nAction: calculator\nAction Input: {\"expression\": \"1+1\"}"}},
            {"when": {"last_message_contains": "Observation: 2"}, "times": 1,
             "reply": {"text": "Thought: again\nAction: calculator\nAction Input: {\"expression\": \"2+2\"}"}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut worker = agent("Mathematician", "openai/gpt-4o-mini");
    worker.tools = vec!["calculator".into()];
    worker.max_iter = 2;
    let spec = crew(
        vec![worker],
        vec![task("t1", "Add numbers", "A sum", Some(0))],
    );
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &Events::default(),
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "forced answer");
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "max_iter calls plus one forced answer");
    let last = messages(&requests[2].body);
    let (role, content) = last.last().expect("a message");
    assert_eq!(role, "assistant");
    assert!(content.ends_with("Observation: 4\nNow it's time you MUST give your absolute best final answer. You'll ignore all previous instructions, stop using any tools, and just return your absolute BEST Final answer."), "{content}");
}

#[tokio::test]
async fn malformed_tool_calls_recover() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Observation: Hello, Ada!"},
             "reply": {"text": "Final Answer: recovered"}},
            {"when": {"last_message_contains": "don't exist"}, "times": 1,
             "reply": {"text": "Thought: retry\nAction: Hello World\nAction Input: {'name': 'Ada'"}},
            {"when": {"last_message_contains": "Current Task"}, "times": 1,
             "reply": {"text": "Thought: search\nAction: search_web\nAction Input: {\"q\": \"x\"}"}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut greeter = agent("Greeter", "openai/gpt-4o-mini");
    greeter.tools = vec!["hello_world".into()];
    let spec = crew(
        vec![greeter],
        vec![task("t1", "Greet Ada", "A greeting", Some(0))],
    );
    let events = Events::default();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "recovered");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let observation = &messages(&requests[1].body)[2].1;
    assert!(observation.starts_with("I encountered an error: Action 'search_web' don't exist, these are the only available Actions:\nTool Name: hello_world\n"), "{observation}");
    assert!(observation.contains("\nMoving on then. I MUST either use a tool (use one at time) OR give my best final answer not both at the same time."));
    let tool_events: Vec<(String, &'static str)> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            RuntimeEvent::ToolFailed { tool_name, .. } => Some((tool_name.clone(), "failed")),
            RuntimeEvent::ToolCompleted {
                tool_name,
                tool_args,
                ..
            } => {
                assert_eq!(tool_args, &json!({"name": "Ada"}));
                Some((tool_name.clone(), "completed"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        tool_events,
        [
            ("search_web".to_string(), "failed"),
            ("hello_world".to_string(), "completed")
        ]
    );
}

#[tokio::test]
async fn hierarchical_manager_delegates_to_the_task_agent() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"model": "gpt-4o", "last_message_contains": "Observation: A haiku about Rust"},
             "reply": {"text": "Thought: done\nFinal Answer: Manager says: A haiku about Rust"}},
            {"when": {"model": "gpt-4o", "last_message_contains": "Current Task"}, "times": 1,
             "reply": {"text": "Thought: delegate\nAction: Delegate work to coworker\nAction Input: {\"task\": \"Write a haiku\", \"context\": \"It is about Rust\", \"coworker\": \"writer\"}"}},
            {"when": {"model": "gpt-4o-mini", "system_contains": "You are Writer."},
             "reply": {"text": "Thought: I now can give a great answer\nFinal Answer: A haiku about Rust"}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut spec = crew(
        vec![
            agent("Researcher", "openai/gpt-4o-mini"),
            agent("Writer", "openai/gpt-4o-mini"),
        ],
        vec![task("t1", "Produce a poem", "A poem", Some(1))],
    );
    spec.process = Process::Hierarchical;
    spec.manager_llm = Some(LlmSpec::model("openai/gpt-4o"));
    let events = Events::default();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "Manager says: A haiku about Rust");
    assert_eq!(output.tasks_output[0].agent, "Crew Manager");

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let manager_system = &messages(&requests[0].body)[0].1;
    assert!(manager_system.starts_with("You are Crew Manager. You are a seasoned manager with a knack for getting the best out of your team.\nYou are also known for"));
    // A task with an agent delegates only to that agent.
    assert!(manager_system.contains(
        "Tool Description: Delegate a specific task to one of the following coworkers: Writer\n"
    ));
    assert!(
        manager_system
            .contains("only one name of [Delegate work to coworker, Ask question to coworker]")
    );
    let writer_user = &messages(&requests[1].body)[1].1;
    assert_eq!(
        writer_user,
        &format!(
            "\nCurrent Task: Write a haiku{CRITERIA}Your best answer to your coworker asking you this, accounting for the context shared.{NOT_SUMMARY}\n\nThis is the context you're working with:\nIt is about Rust{BEGIN}"
        )
    );
    let delegated = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            RuntimeEvent::AgentDelegated {
                from_role,
                to_role,
                task,
                ..
            } => Some((from_role, to_role, task)),
            _ => None,
        })
        .expect("agent.delegated");
    assert_eq!(
        delegated,
        (
            "Crew Manager".into(),
            "Writer".into(),
            "Write a haiku".into()
        )
    );
    assert_eq!(
        events.types(),
        [
            "execution.started",
            "task.started",
            "agent.started",
            "llm.started",
            "llm.completed",
            "tool.started",
            "agent.delegated",
            "agent.started",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "tool.completed",
            "llm.started",
            "llm.completed",
            "agent.completed",
            "task.completed",
        ]
    );
}

#[tokio::test]
async fn missing_inputs_fail_before_any_llm_call() {
    let server = ScriptedLlm::start(Script::default()).await;
    let spec = crew(
        vec![agent("Researcher", "openai/gpt-4o-mini")],
        vec![task("t1", "Research {topic}", "Facts", Some(0))],
    );
    let events = Events::default();
    let error = run_crew(
        &spec,
        &inputs(json!({"subject": "AI"})),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect_err("a missing input");
    assert_eq!(error.code(), "invalid_inputs");
    assert_eq!(
        error.to_string(),
        "Missing required template variable 'Template variable 'topic' not found in inputs dictionary' in description"
    );
    assert!(server.requests().is_empty());
    // The run's end (and its terminal event) is the caller's to record, from the Outcome.
    assert_eq!(events.types(), ["execution.started"]);
}

#[tokio::test]
async fn cancellation_stops_a_run_within_a_second() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [{"reply": {"text": "Final Answer: slow"}, "latency_ms": 30000}],
        "fallback": "error"
    })))
    .await;
    let spec = crew(
        vec![agent("Researcher", "openai/gpt-4o-mini")],
        vec![
            task("t1", "First", "x", Some(0)),
            task("t2", "Second", "y", Some(0)),
        ],
    );
    let cancel = CancellationToken::new();
    let events = Arc::new(Events::default());
    let run = {
        let (cancel, events, deps) = (cancel.clone(), events.clone(), deps(&server));
        tokio::spawn(
            async move { run_crew(&spec, &Map::new(), deps, events.as_ref(), cancel).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests().len(), 1, "the first call is in flight");
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .expect("stops within a second")
        .expect("joins");
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(result.map(|o| o.raw), Err(RunError::Cancelled));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests().len(), 1, "no call after the cancel");
    let types = events.types();
    assert_eq!(types.last(), Some(&"llm.started"));
    assert!(!types.contains(&"execution.failed"));
}

#[tokio::test]
async fn async_tasks_run_concurrently_and_feed_the_next_sync_task() {
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "Current Task: A"}, "reply": {"text": "Final Answer: out A"}, "latency_ms": 400},
            {"when": {"last_message_contains": "Current Task: B"}, "reply": {"text": "Final Answer: out B"}, "latency_ms": 400},
            {"when": {"last_message_contains": "Current Task: C"}, "reply": {"text": "Final Answer: out C"}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut a = task("a", "A", "x", Some(0));
    a.async_execution = true;
    let mut b = task("b", "B", "x", Some(0));
    b.async_execution = true;
    let mut c = task("c", "C", "x", Some(0));
    c.context = TaskContext::Default;
    let spec = crew(
        vec![agent("Researcher", "openai/gpt-4o-mini")],
        vec![a, b, c],
    );
    let started = Instant::now();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &Events::default(),
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert!(
        started.elapsed() < Duration::from_millis(750),
        "A and B overlapped"
    );
    let raws: Vec<&str> = output.tasks_output.iter().map(|t| t.raw.as_str()).collect();
    assert_eq!(raws, ["out A", "out B", "out C"]);
    let requests = server.requests();
    let c_prompt = &messages(&requests[2].body)[1].1;
    assert!(
        c_prompt.contains("This is the context you're working with:\nout A\n\n----------\n\nout B"),
        "{c_prompt}"
    );
}

#[tokio::test]
async fn repeated_calls_are_refused_and_the_crew_cache_answers_later_tasks() {
    let action = "Thought: add\nAction: calculator\nAction Input: {\"expression\": \"1+1\"}";
    let server = ScriptedLlm::start(script(json!({
        "rules": [
            {"when": {"last_message_contains": "I tried reusing the same input"},
             "reply": {"text": "Final Answer: stopped repeating"}},
            {"when": {"last_message_contains": "Observation: 2"},
             "reply": {"text": action}},
            {"when": {"last_message_contains": "Current Task"},
             "reply": {"text": action}}
        ],
        "fallback": "error"
    })))
    .await;
    let mut worker = agent("Mathematician", "openai/gpt-4o-mini");
    worker.tools = vec!["calculator".into()];
    let spec = crew(
        vec![worker],
        vec![
            task("t1", "Add once", "A sum", Some(0)),
            task("t2", "Add twice", "A sum", Some(0)),
        ],
    );
    let events = Events::default();
    let output = run_crew(
        &spec,
        &Map::new(),
        deps(&server),
        &events,
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(output.raw, "stopped repeating");
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(
        messages(&requests[2].body)[4].1,
        "I tried reusing the same input, I must stop using this action input. I'll try something else instead.\n\n"
    );
    let from_cache: Vec<bool> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            RuntimeEvent::ToolCompleted { from_cache, .. } => Some(*from_cache),
            _ => None,
        })
        .collect();
    // Task 1 runs the tool; task 2 gets the crew cache's answer.
    assert_eq!(from_cache, [false, true]);
}
