//! Anthropic Messages API, streamed or not, with native tool use.

use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connector::SamplingParams;
use super::endpoint::Endpoint;
use super::transport::{Failure, json_error, truncate};
use super::{ChatMessage, LlmClient, LlmError, LlmRequest, LlmResponse, Role, ToolCall};
use crate::crew::output::UsageMetrics;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; LiteLLM's default for Claude.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicClient {
    model: String,
    wire_model: String,
    params: SamplingParams,
    stream: bool,
    endpoint: Endpoint,
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("model", &self.model)
            .field("wire_model", &self.wire_model)
            .field("stream", &self.stream)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl AnthropicClient {
    pub(crate) fn new(
        model: String,
        wire_model: String,
        params: SamplingParams,
        stream: bool,
        endpoint: Endpoint,
    ) -> Self {
        AnthropicClient {
            model,
            wire_model,
            params,
            stream,
            endpoint,
        }
    }

    fn body(&self, request: &LlmRequest) -> Result<Vec<u8>, LlmError> {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let body = MessagesRequest {
            model: &self.wire_model,
            max_tokens: self.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: wire_messages(&request.messages),
            stop_sequences: &request.stop,
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            stream: self.stream,
            tools: request
                .tools
                .iter()
                .map(|tool| WireTool {
                    name: &tool.name,
                    description: &tool.description,
                    input_schema: &tool.parameters,
                })
                .collect(),
        };
        serde_json::to_vec(&body)
            .map_err(|error| LlmError::BadRequest(format!("cannot encode the request: {error}")))
    }
}

/// Anthropic takes only user and assistant turns: tool results are `tool_result` blocks
/// of a user turn, tool calls `tool_use` blocks of an assistant turn, and consecutive
/// messages of one role are merged into one turn.
fn wire_messages(messages: &[ChatMessage]) -> Vec<WireMessage> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => ("user", text_block(&message.content)),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.as_deref().unwrap_or_default(),
                    "content": message.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks = text_block(&message.content);
                for call in &message.tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
        };
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            let single_text = blocks.len() == 1 && blocks[0]["type"] == "text";
            let content = if single_text {
                blocks[0]["text"].take()
            } else {
                Value::Array(blocks)
            };
            WireMessage { role, content }
        })
        .collect()
}

fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

#[async_trait::async_trait]
impl LlmClient for AnthropicClient {
    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(
        &self,
        request: &LlmRequest,
        on_delta: &mut (dyn for<'d> FnMut(&'d str) + Send),
    ) -> Result<LlmResponse, LlmError> {
        let body = self.body(request)?;
        let mut budget = self.endpoint.retry_budget();
        loop {
            let mut delivered = false;
            let attempt = self.attempt(&body, &mut *on_delta, &mut delivered);
            let outcome = tokio::time::timeout(self.endpoint.request_timeout, attempt).await;
            if let ControlFlow::Break(result) =
                self.endpoint.settle(outcome, delivered, &mut budget).await
            {
                return result;
            }
        }
    }
}

impl AnthropicClient {
    /// One attempt; `delivered` turns true once a delta was handed to `on_delta`.
    async fn attempt(
        &self,
        body: &[u8],
        on_delta: &mut (dyn FnMut(&str) + Send),
        delivered: &mut bool,
    ) -> Result<LlmResponse, Failure> {
        let endpoint = &self.endpoint;
        let response = endpoint.post(body).await?;
        if !self.stream {
            let message: MessageResponse = endpoint.read_json(response).await?;
            return Ok(message.into_response());
        }
        let mut events = endpoint.events(response);
        let mut content = String::new();
        // Content blocks by index; only tool_use blocks are kept.
        let mut tools: Vec<(usize, ToolCall)> = Vec::new();
        let mut usage = WireUsage::default();
        let mut stopped = false;
        while let Some(event) = events.next().await? {
            let event: StreamEvent = serde_json::from_str(&event.data)
                .map_err(|error| json_error("a streamed event is not valid JSON", &error))?;
            match event {
                StreamEvent::MessageStart { message } => usage = message.usage,
                StreamEvent::ContentBlockStart {
                    index,
                    content_block,
                } => {
                    if let ContentBlock::ToolUse { id, name, .. } = content_block {
                        let call = ToolCall {
                            id,
                            name,
                            arguments: String::new(),
                        };
                        tools.push((index, call));
                    }
                }
                StreamEvent::ContentBlockDelta { index, delta } => match delta {
                    BlockDelta::TextDelta { text } if !text.is_empty() => {
                        on_delta(&text);
                        *delivered = true;
                        content.push_str(&text);
                    }
                    BlockDelta::InputJsonDelta { partial_json } => {
                        if let Some((_, call)) = tools.iter_mut().find(|(i, _)| *i == index) {
                            call.arguments.push_str(&partial_json);
                        }
                    }
                    _ => {}
                },
                StreamEvent::MessageDelta { usage: delta_usage } => {
                    if let Some(output) = delta_usage.and_then(|u| u.output_tokens) {
                        usage.output_tokens = Some(output);
                    }
                }
                StreamEvent::MessageStop => {
                    stopped = true;
                    break;
                }
                StreamEvent::Error { error } => return Err(stream_error(error)),
                StreamEvent::Other => {}
            }
        }
        if !stopped {
            return Err(Failure::transient(LlmError::Unavailable(
                "the stream ended before the answer was complete".to_owned(),
            )));
        }
        let tool_calls = tools
            .into_iter()
            .map(|(_, mut call)| {
                if call.arguments.trim().is_empty() {
                    call.arguments = "{}".to_owned();
                }
                call
            })
            .collect();
        Ok(LlmResponse {
            content,
            tool_calls,
            usage: usage.metrics(),
        })
    }
}

fn stream_error(error: ErrorBody) -> Failure {
    let message = truncate(&format!("{}: {}", error.kind, error.message));
    match error.kind.as_str() {
        "overloaded_error" | "api_error" => Failure::transient(LlmError::Unavailable(message)),
        "rate_limit_error" => Failure::transient(LlmError::RateLimited(message)),
        "authentication_error" | "permission_error" => {
            Failure::fatal(LlmError::Authentication(message))
        }
        _ => Failure::fatal(LlmError::BadRequest(message)),
    }
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

#[derive(Serialize)]
struct WireMessage {
    role: &'static str,
    content: Value,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Anthropic counts cached input apart from `input_tokens`; the prompt is all of it.
    fn metrics(&self) -> UsageMetrics {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.unwrap_or(0) + cached + self.cache_creation_input_tokens.unwrap_or(0);
        let completion = self.output_tokens.unwrap_or(0);
        UsageMetrics {
            total_tokens: prompt + completion,
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            successful_requests: 1,
        }
    }
}

#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: WireUsage,
}

impl MessageResponse {
    fn into_response(self) -> LlmResponse {
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        for block in self.content {
            match block {
                ContentBlock::Text { text } => content.push_str(&text),
                ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                }),
                ContentBlock::Other => {}
            }
        }
        LlmResponse {
            content,
            tool_calls,
            usage: self.usage.metrics(),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping`, `content_block_stop` and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_turns_become_blocks_and_same_role_turns_merge() {
        let mut call = ChatMessage::assistant("");
        call.tool_calls.push(ToolCall {
            id: "toolu_1".into(),
            name: "hello_world".into(),
            arguments: r#"{"name":"Ada"}"#.into(),
        });
        let mut result = ChatMessage::new(Role::Tool, "Hello, Ada!");
        result.tool_call_id = Some("toolu_1".into());
        let messages = [
            ChatMessage::system("sys"),
            ChatMessage::user("hi"),
            call,
            result,
            ChatMessage::user("go on"),
        ];
        let wire = serde_json::to_value(wire_messages(&messages)).expect("json");
        assert_eq!(
            wire,
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "hello_world", "input": {"name": "Ada"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Hello, Ada!"},
                    {"type": "text", "text": "go on"}]},
            ])
        );
    }
}
