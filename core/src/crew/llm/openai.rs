//! OpenAI Chat Completions (and every compatible server: Azure OpenAI, Ollama, vLLM,
//! `scripted-llm`), streamed or not, with native tool calls.

use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::connector::SamplingParams;
use super::endpoint::Endpoint;
use super::transport::{Failure, json_error, truncate};
use super::{ChatMessage, LlmClient, LlmError, LlmRequest, LlmResponse, Role, ToolCall};
use crate::crew::output::UsageMetrics;

pub struct OpenAiClient {
    /// The model string as configured.
    model: String,
    wire_model: String,
    params: SamplingParams,
    stream: bool,
    endpoint: Endpoint,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("model", &self.model)
            .field("wire_model", &self.wire_model)
            .field("stream", &self.stream)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl OpenAiClient {
    pub(crate) fn new(
        model: String,
        wire_model: String,
        params: SamplingParams,
        stream: bool,
        endpoint: Endpoint,
    ) -> Self {
        OpenAiClient {
            model,
            wire_model,
            params,
            stream,
            endpoint,
        }
    }

    fn body(&self, request: &LlmRequest) -> Result<Vec<u8>, LlmError> {
        let body = ChatRequest {
            model: &self.wire_model,
            messages: request.messages.iter().map(WireMessage::from).collect(),
            stop: &request.stop,
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            max_tokens: self.params.max_tokens,
            seed: self.params.seed,
            stream: self.stream,
            stream_options: self.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: request
                .tools
                .iter()
                .map(|tool| WireTool {
                    kind: "function",
                    function: WireFunction {
                        name: &tool.name,
                        description: &tool.description,
                        parameters: &tool.parameters,
                    },
                })
                .collect(),
        };
        serde_json::to_vec(&body)
            .map_err(|error| LlmError::BadRequest(format!("cannot encode the request: {error}")))
    }
}

#[async_trait::async_trait]
impl LlmClient for OpenAiClient {
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

impl OpenAiClient {
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
            let completion: ChatCompletion = endpoint.read_json(response).await?;
            return completion.into_response();
        }
        let mut events = endpoint.events(response);
        let mut content = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut usage = None;
        let mut finished = false;
        let mut done = false;
        while let Some(event) = events.next().await? {
            if event.data.trim() == "[DONE]" {
                done = true;
                break;
            }
            let chunk: ChatChunk = serde_json::from_str(&event.data)
                .map_err(|error| json_error("a streamed chunk is not valid JSON", &error))?;
            if let Some(error) = chunk.error {
                return Err(Failure::transient(LlmError::Unavailable(format!(
                    "the stream reported an error: {}",
                    truncate(&error.to_string())
                ))));
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            for choice in chunk.choices {
                finished |= choice.finish_reason.is_some();
                let Some(delta) = choice.delta else { continue };
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    on_delta(&text);
                    *delivered = true;
                    content.push_str(&text);
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    merge_tool_call_delta(&mut calls, call);
                }
            }
        }
        if !done && !finished {
            return Err(Failure::transient(LlmError::Unavailable(
                "the stream ended before the answer was complete".to_owned(),
            )));
        }
        Ok(LlmResponse {
            content,
            tool_calls: calls,
            usage: usage_metrics(usage),
        })
    }
}

/// Streamed tool calls arrive as pieces keyed by `index`: the first names the call, the
/// rest append to its arguments.
fn merge_tool_call_delta(calls: &mut Vec<ToolCall>, delta: ToolCallDelta) {
    let index = delta.index.unwrap_or(calls.len().saturating_sub(1));
    while calls.len() <= index {
        calls.push(ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
    }
    let call = &mut calls[index];
    if let Some(id) = delta.id {
        call.id = id;
    }
    if let Some(function) = delta.function {
        if let Some(name) = function.name {
            call.name.push_str(&name);
        }
        if let Some(arguments) = function.arguments {
            call.arguments.push_str(&arguments);
        }
    }
}

fn usage_metrics(usage: Option<WireUsage>) -> UsageMetrics {
    let mut metrics = UsageMetrics {
        successful_requests: 1,
        ..UsageMetrics::default()
    };
    if let Some(usage) = usage {
        metrics.prompt_tokens = usage.prompt_tokens;
        metrics.completion_tokens = usage.completion_tokens;
        metrics.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        metrics.cached_prompt_tokens = usage
            .prompt_tokens_details
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0);
    }
    metrics
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for WireMessage<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let content = if message.content.is_empty() && !message.tool_calls.is_empty() {
            None
        } else {
            Some(message.content.as_str())
        };
        WireMessage {
            role,
            content,
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| WireToolCall {
                    id: &call.id,
                    kind: "function",
                    function: WireCalledFunction {
                        name: &call.name,
                        arguments: &call.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCalledFunction<'a>,
}

#[derive(Serialize)]
struct WireCalledFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

impl ChatCompletion {
    fn into_response(self) -> Result<LlmResponse, Failure> {
        let Some(choice) = self.choices.into_iter().next() else {
            return Err(Failure::invalid("the answer has no choices"));
        };
        let tool_calls = choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect();
        Ok(LlmResponse {
            content: choice.message.content.unwrap_or_default(),
            tool_calls,
            usage: usage_metrics(self.usage),
        })
    }
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Deserialize)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseToolCall>>,
}

#[derive(Deserialize)]
struct ResponseToolCall {
    #[serde(default)]
    id: String,
    function: ResponseFunction,
}

#[derive(Deserialize)]
struct ResponseFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}
