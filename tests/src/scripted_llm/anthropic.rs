//! Answers in Anthropic Messages format (JSON and SSE events).

use serde_json::{Value, json};

use super::Rendered;
use super::answer::{Answer, Plan, chunks};
use super::request::RequestView;
use super::script::{FaultKind, Usage};

pub(crate) fn render(plan: &Plan, request: &RequestView, id: u64) -> Rendered {
    match &plan.answer {
        Answer::Text {
            text,
            stopped_at,
            usage,
        } => {
            let stop_reason = if stopped_at.is_some() {
                "stop_sequence"
            } else {
                "end_turn"
            };
            if request.stream {
                let mut events = vec![message_start(request, id, usage)];
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                ));
                events.push(event("ping", json!({"type": "ping"})));
                for piece in chunks(text, plan.chunk_chars) {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                events.extend(message_end(stop_reason, stopped_at.as_deref(), usage));
                Rendered::sse(events)
            } else {
                let content = json!([{"type": "text", "text": text}]);
                Rendered::json(
                    200,
                    message(
                        request,
                        id,
                        content,
                        stop_reason,
                        stopped_at.as_deref(),
                        usage,
                    ),
                )
            }
        }
        Answer::ToolCalls { calls, usage } => {
            if request.stream {
                let mut events = vec![message_start(request, id, usage)];
                for (index, call) in calls.iter().enumerate() {
                    events.push(event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": index,
                               "content_block": {"type": "tool_use", "id": format!("toolu_{id}_{index}"),
                                                 "name": call.name, "input": {}}}),
                    ));
                    for piece in chunks(&call.arguments, plan.chunk_chars) {
                        events.push(event(
                            "content_block_delta",
                            json!({"type": "content_block_delta", "index": index,
                                   "delta": {"type": "input_json_delta", "partial_json": piece}}),
                        ));
                    }
                    events.push(event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": index}),
                    ));
                }
                events.extend(message_end("tool_use", None, usage));
                Rendered::sse(events)
            } else {
                let content: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| {
                        let input: Value =
                            serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                        json!({"type": "tool_use", "id": format!("toolu_{id}_{index}"),
                               "name": call.name, "input": input})
                    })
                    .collect();
                Rendered::json(
                    200,
                    message(request, id, Value::Array(content), "tool_use", None, usage),
                )
            }
        }
        Answer::Fault { kind, retry_after } => fault(*kind, *retry_after, request),
        Answer::Unmatched { description } => error(500, "api_error", description),
    }
}

fn fault(kind: FaultKind, retry_after: Option<u64>, request: &RequestView) -> Rendered {
    match kind {
        FaultKind::RateLimit => {
            let mut rendered = error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
            );
            rendered.retry_after = retry_after;
            rendered
        }
        FaultKind::ServerError => error(500, "api_error", "Internal server error"),
        FaultKind::Unauthorized => error(401, "authentication_error", "invalid x-api-key"),
        FaultKind::ContextTooLong => error(
            400,
            "invalid_request_error",
            "prompt is too long: 211042 tokens > 200000 maximum",
        ),
        FaultKind::BadRequest => error(400, "invalid_request_error", "temperature: range: 0..1"),
        FaultKind::Timeout => Rendered::hang(),
        FaultKind::Malformed => {
            if request.stream {
                Rendered::sse(vec![
                    "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\n\n"
                        .to_owned(),
                ])
            } else {
                Rendered::json_text(200, "{\"type\": \"message\", \"content\": [".to_owned())
            }
        }
    }
}

fn error(status: u16, kind: &str, message: &str) -> Rendered {
    Rendered::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn message(
    request: &RequestView,
    id: u64,
    content: Value,
    stop_reason: &str,
    stop_sequence: Option<&str>,
    usage: &Usage,
) -> Value {
    json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": usage.prompt_tokens.saturating_sub(usage.cached_tokens),
            "cache_read_input_tokens": usage.cached_tokens,
            "cache_creation_input_tokens": 0,
            "output_tokens": usage.completion_tokens,
        },
    })
}

fn message_start(request: &RequestView, id: u64, usage: &Usage) -> String {
    event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": format!("msg_{id}"), "type": "message", "role": "assistant",
        "model": request.model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {
            "input_tokens": usage.prompt_tokens.saturating_sub(usage.cached_tokens),
            "cache_read_input_tokens": usage.cached_tokens,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        }}}),
    )
}

fn message_end(stop_reason: &str, stop_sequence: Option<&str>, usage: &Usage) -> Vec<String> {
    vec![
        event(
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                   "usage": {"output_tokens": usage.completion_tokens}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}
