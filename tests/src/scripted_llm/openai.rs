//! Answers in OpenAI Chat Completions format (JSON and SSE chunks).

use serde_json::{Value, json};

use super::answer::{Answer, Plan, chunks};
use super::request::RequestView;
use super::script::{FaultKind, Usage};
use super::{Rendered, RenderedBody};

pub(crate) fn render(plan: &Plan, request: &RequestView, api_key: &str, id: u64) -> Rendered {
    match &plan.answer {
        Answer::Text { text, usage: u, .. } => {
            if request.stream {
                let mut events = vec![chunk(
                    request,
                    id,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )];
                for piece in chunks(text, plan.chunk_chars) {
                    events.push(chunk(request, id, json!({ "content": piece }), None));
                }
                events.push(chunk(request, id, json!({}), Some("stop")));
                Rendered::sse(finish_stream(events, request, id, u))
            } else {
                let message = json!({"role": "assistant", "content": text});
                Rendered::json(200, completion(request, id, message, "stop", u))
            }
        }
        Answer::ToolCalls { calls, usage: u } => {
            if request.stream {
                let mut events = vec![chunk(
                    request,
                    id,
                    json!({"role": "assistant", "content": null}),
                    None,
                )];
                for (index, call) in calls.iter().enumerate() {
                    let head = json!({"tool_calls": [{
                        "index": index, "id": format!("call_{id}_{index}"), "type": "function",
                        "function": {"name": call.name, "arguments": ""}}]});
                    events.push(chunk(request, id, head, None));
                    for piece in chunks(&call.arguments, plan.chunk_chars) {
                        let delta = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
                        events.push(chunk(request, id, delta, None));
                    }
                }
                events.push(chunk(request, id, json!({}), Some("tool_calls")));
                Rendered::sse(finish_stream(events, request, id, u))
            } else {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| {
                        json!({"id": format!("call_{id}_{index}"), "type": "function",
                               "function": {"name": call.name, "arguments": call.arguments}})
                    })
                    .collect();
                let message =
                    json!({"role": "assistant", "content": null, "tool_calls": tool_calls});
                Rendered::json(200, completion(request, id, message, "tool_calls", u))
            }
        }
        Answer::Fault { kind, retry_after } => fault(*kind, *retry_after, request, api_key),
        Answer::Unmatched { description } => error(500, "server_error", "unmatched", description),
    }
}

fn fault(
    kind: FaultKind,
    retry_after: Option<u64>,
    request: &RequestView,
    api_key: &str,
) -> Rendered {
    match kind {
        FaultKind::RateLimit => {
            let mut rendered = error(
                429,
                "requests",
                "rate_limit_exceeded",
                &format!(
                    "Rate limit reached for {} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                    request.model
                ),
            );
            rendered.retry_after = retry_after;
            rendered
        }
        FaultKind::ServerError => error(
            500,
            "server_error",
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        // Echoes the key it was given, so that clients are tested for redaction.
        FaultKind::Unauthorized => error(
            401,
            "invalid_request_error",
            "invalid_api_key",
            &format!(
                "Incorrect API key provided: {api_key}. You can find your API key at https://platform.openai.com/account/api-keys."
            ),
        ),
        FaultKind::ContextTooLong => error(
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
        ),
        FaultKind::BadRequest => error(
            400,
            "invalid_request_error",
            "invalid_value",
            "Invalid value for 'temperature': expected a number between 0 and 2.",
        ),
        FaultKind::Timeout => Rendered::hang(),
        FaultKind::Malformed => {
            if request.stream {
                Rendered::sse(vec![
                    "data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\"delta\": \n\n".to_owned(),
                ])
            } else {
                Rendered::json_text(
                    200,
                    "{\"id\": \"chatcmpl-broken\", \"choices\": [".to_owned(),
                )
            }
        }
    }
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> Rendered {
    Rendered::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

fn completion(
    request: &RequestView,
    id: u64,
    message: Value,
    finish: &str,
    usage: &Usage,
) -> Value {
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": request.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_json(usage),
    })
}

fn chunk(request: &RequestView, id: u64, delta: Value, finish: Option<&str>) -> String {
    let body = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": request.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {body}\n\n")
}

fn finish_stream(
    mut events: Vec<String>,
    request: &RequestView,
    id: u64,
    usage: &Usage,
) -> Vec<String> {
    if request.include_usage {
        let body = json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": request.model,
            "choices": [],
            "usage": usage_json(usage),
        });
        events.push(format!("data: {body}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

impl Rendered {
    pub(crate) fn json(status: u16, body: Value) -> Rendered {
        Rendered::json_text(status, body.to_string())
    }

    pub(crate) fn json_text(status: u16, body: String) -> Rendered {
        Rendered {
            status,
            content_type: "application/json",
            retry_after: None,
            body: RenderedBody::Whole(body),
        }
    }

    pub(crate) fn sse(events: Vec<String>) -> Rendered {
        Rendered {
            status: 200,
            content_type: "text/event-stream",
            retry_after: None,
            body: RenderedBody::Chunks(events),
        }
    }

    pub(crate) fn hang() -> Rendered {
        Rendered {
            status: 200,
            content_type: "application/json",
            retry_after: None,
            body: RenderedBody::Hang,
        }
    }
}
