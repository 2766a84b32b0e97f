//! LLM providers over HTTP (reqwest): OpenAI Chat Completions (and every OpenAI-compatible
//! server: Ollama, vLLM, Azure OpenAI, `scripted-llm`) and Anthropic Messages, streamed or
//! not, with retries, time-outs and classified errors.
//!
//! The runtime only sees [`LlmClient`]; [`LlmConnector`] turns a [`LlmSpec`] into a client
//! (the worker's connector decrypts the owner's provider key just before use).

mod anthropic;
mod connector;
mod endpoint;
mod openai;
pub mod provider;
mod transport;

pub use anthropic::{ANTHROPIC_VERSION, AnthropicClient, DEFAULT_MAX_TOKENS};
pub use connector::{
    CredentialSource, Credentials, DEFAULT_AZURE_API_VERSION, EnvCredentials, HttpLlmClient,
    HttpLlmConnector, StaticCredentials,
};
pub use openai::OpenAiClient;
pub use provider::{ModelRoute, Provider};
pub use transport::{HttpLlmOptions, parse_retry_after, parse_retry_after_value};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crew::output::UsageMetrics;
use crate::crew::spec::LlmSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A native tool result.
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Native tool calls made by the assistant in this message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: which call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A tool offered for native function calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them (a JSON text, possibly malformed).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub messages: Vec<ChatMessage>,
    pub stop: Vec<String>,
    /// Offered for native function calling; empty for the ReAct protocol.
    pub tools: Vec<ToolDefinition>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// This call's usage (`successful_requests` = 1).
    pub usage: UsageMetrics,
}

/// Why a call failed, as a client can act on it. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("the provider rejected the credentials: {0}")]
    Authentication(String),
    #[error("the provider's rate limit was hit: {0}")]
    RateLimited(String),
    #[error("the conversation is longer than the model's context window: {0}")]
    ContextTooLong(String),
    #[error("the provider rejected the request: {0}")]
    BadRequest(String),
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the provider did not answer in time: {0}")]
    Timeout(String),
    #[error("the provider's answer could not be read: {0}")]
    InvalidResponse(String),
    #[error("the model is not configured: {0}")]
    Configuration(String),
    /// The base URL points where the outbound policy forbids ([`crate::outbound`]);
    /// nothing was sent.
    #[error("the model's base URL is not allowed: {0}")]
    AddressRefused(String),
}

impl LlmError {
    /// A stable code for events and execution errors.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Authentication(_) => "llm_authentication",
            LlmError::RateLimited(_) => "llm_rate_limited",
            LlmError::ContextTooLong(_) => "llm_context_too_long",
            LlmError::BadRequest(_) => "llm_bad_request",
            LlmError::Unavailable(_) => "llm_unavailable",
            LlmError::Timeout(_) => "llm_timeout",
            LlmError::InvalidResponse(_) => "llm_invalid_response",
            LlmError::Configuration(_) => "llm_configuration",
            LlmError::AddressRefused(_) => "llm_address_refused",
        }
    }
}

/// One configured model. `on_delta` receives streamed text chunks in order (never called
/// when the spec does not stream); their concatenation is `LlmResponse::content`.
#[async_trait::async_trait]
pub trait LlmClient: Send + Sync {
    /// The model string as configured (for events).
    fn model(&self) -> &str;

    ///
    /// The callback's lifetime is spelled out (`for<'d>`) because `async_trait` would
    /// otherwise name the elided one after the method, and an implementation could not
    /// hand it a chunk it owns.
    async fn complete(
        &self,
        request: &LlmRequest,
        on_delta: &mut (dyn for<'d> FnMut(&'d str) + Send),
    ) -> Result<LlmResponse, LlmError>;
}

/// Turns a spec into a client: resolves the provider, base URL and credentials.
#[async_trait::async_trait]
pub trait LlmConnector: Send + Sync {
    async fn connect(&self, spec: &LlmSpec) -> Result<Arc<dyn LlmClient>, LlmError>;
}
