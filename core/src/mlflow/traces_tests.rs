use chrono::{Duration, TimeZone as _};
use serde_json::json;

use super::*;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms)
        .single()
        .expect("time")
}

fn event(seq: i64, event_type: &str, data: Value) -> StoredEvent {
    StoredEvent {
        execution_id: Uuid::nil(),
        seq,
        event_type: event_type.into(),
        data,
        created_at: at(seq * 10),
    }
}

fn run_events() -> Vec<StoredEvent> {
    let who = json!({"task_id": "t1", "agent_role": "Writer"});
    let with = |extra: Value| {
        let mut data = who.clone();
        for (k, v) in extra.as_object().expect("object") {
            data[k] = v.clone();
        }
        data
    };
    vec![
        event(1, "execution.queued", json!({"inputs": {"secret": "x"}})),
        event(
            2,
            "execution.started",
            json!({"crew_name": "c", "inputs": {}}),
        ),
        event(
            3,
            "task.started",
            with(json!({"name": "write", "description": "d"})),
        ),
        event(
            4,
            "agent.started",
            with(json!({"task_prompt": "PROMPT TEXT"})),
        ),
        event(
            5,
            "llm.started",
            with(json!({"call_id": "c1", "model": "openai/gpt-4o-mini",
                        "messages": [{"role": "user", "content": "PROMPT TEXT"}]})),
        ),
        event(
            6,
            "llm.completed",
            json!({"call_id": "c1", "agent_role": "Writer", "model": "openai/gpt-4o-mini",
                   "response": "COMPLETION TEXT",
                   "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                             "cached_prompt_tokens": 0, "successful_requests": 1}}),
        ),
        event(
            7,
            "tool.started",
            with(json!({"tool_name": "search", "tool_args": {"q": "ARGS"}})),
        ),
        event(
            8,
            "tool.failed",
            with(json!({"tool_name": "search", "tool_args": {}, "error": "ERROR TEXT"})),
        ),
        event(9, "agent.completed", with(json!({"output": "OUT"}))),
        event(10, "task.completed", json!({"task_id": "t1", "output": {}})),
        event(11, "execution.succeeded", json!({"output": {}})),
    ]
}

fn root() -> TraceRoot<'static> {
    TraceRoot {
        execution_id: Uuid::nil(),
        crew_name: "c",
        status: "succeeded",
        end_code: None,
        start: at(15),
        end: at(120),
    }
}

fn by_role(spans: &[SpanNode], role: SpanRole) -> &SpanNode {
    spans.iter().find(|s| s.role == role).expect("span")
}

#[test]
fn spans_nest_crew_task_agent_and_calls_with_their_events_times() {
    let spans = build_spans(&root(), &run_events(), false);
    assert_eq!(spans.len(), 5);
    let crew = &spans[0];
    let task = by_role(&spans, SpanRole::Task);
    let agent = by_role(&spans, SpanRole::Agent);
    let llm = by_role(&spans, SpanRole::LlmCall);
    let tool = by_role(&spans, SpanRole::ToolCall);
    assert_eq!(crew.parent, None);
    assert_eq!(task.parent, Some(crew.span_id));
    assert_eq!(agent.parent, Some(task.span_id));
    assert_eq!(llm.parent, Some(agent.span_id));
    assert_eq!(tool.parent, Some(agent.span_id));
    assert_eq!((crew.start, crew.end), (at(15), at(120)));
    assert_eq!((task.start, task.end), (at(30), at(100)));
    assert_eq!((llm.start, llm.end), (at(50), at(60)));
    assert_eq!(task.name, "task write");
    assert_eq!(llm.name, "chat gpt-4o-mini");
    assert_eq!(
        llm.attribute("gen_ai.request.model"),
        Some(&"gpt-4o-mini".into())
    );
    assert_eq!(
        llm.attribute("gen_ai.provider.name"),
        Some(&"openai".into())
    );
    assert_eq!(
        llm.attribute("gen_ai.usage.input_tokens"),
        Some(&12i64.into())
    );
    assert_eq!(
        llm.attribute("gen_ai.usage.output_tokens"),
        Some(&3i64.into())
    );
    assert_eq!(tool.attribute("gen_ai.tool.name"), Some(&"search".into()));
    assert_eq!(tool.error.as_deref(), Some("failed"));
    assert!(crew.error.is_none() && llm.error.is_none());
}

#[test]
fn no_text_from_the_run_without_content_capture_and_all_of_it_with() {
    let show = |spans: &[SpanNode]| format!("{spans:?}");
    let without = show(&build_spans(&root(), &run_events(), false));
    for secret in [
        "PROMPT TEXT",
        "COMPLETION TEXT",
        "ARGS",
        "ERROR TEXT",
        "secret",
    ] {
        assert!(!without.contains(secret), "{secret} leaked: {without}");
    }
    let with = build_spans(&root(), &run_events(), true);
    let llm = by_role(&with, SpanRole::LlmCall);
    let input = format!("{:?}", llm.attribute("gen_ai.input.messages"));
    assert!(input.contains("PROMPT TEXT"), "{input}");
    let output = format!("{:?}", llm.attribute("gen_ai.output.messages"));
    assert!(output.contains("COMPLETION TEXT"), "{output}");
    let tool = by_role(&with, SpanRole::ToolCall);
    assert_eq!(tool.error.as_deref(), Some("ERROR TEXT"));
}

#[test]
fn ids_are_the_same_on_every_build_and_spans_left_open_end_with_the_run() {
    let mut events = run_events();
    events.truncate(6); // lost after the LLM call: task and agent never ended
    let failed = TraceRoot {
        status: "failed",
        end_code: Some("worker_lost"),
        ..root()
    };
    let first = build_spans(&failed, &events, false);
    let again = build_spans(&failed, &events, false);
    let ids = |spans: &[SpanNode]| spans.iter().map(|s| s.span_id).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again));
    let task = by_role(&first, SpanRole::Task);
    assert_eq!(task.end, at(120));
    assert_eq!(task.error.as_deref(), Some("interrupted"));
    assert_eq!(first[0].error.as_deref(), Some("failed: worker_lost"));
    assert!(first.iter().all(|s| s.end >= s.start));
    assert!(at(0) + Duration::milliseconds(1) > at(0));
}
