//! The script: which reply answers which request (docs/development.md, "scripted-llm").

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;

use super::Api;
use super::request::RequestView;

/// Rules tried in order; the first whose `when` matches and whose `times` is not used up
/// answers. `Script::default()` answers everything in echo mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub fallback: Fallback,
    /// Added to every reply (the CLI's `--latency-ms`).
    #[serde(default)]
    pub latency_ms: u64,
}

impl Script {
    pub fn new(rules: Vec<Rule>) -> Self {
        Script {
            rules,
            ..Script::default()
        }
    }

    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The first rule that matches and still has uses left; consumes one use.
    pub(crate) fn select(&self, request: &RequestView) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.when.matches(request) && rule.take_use())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// A deterministic ReAct final answer derived from the last user message.
    #[default]
    Echo,
    /// 500 naming the unmatched request.
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub when: When,
    /// How many requests this rule answers; unlimited when absent.
    #[serde(default)]
    pub times: Option<u32>,
    pub reply: Reply,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Characters per streamed chunk.
    #[serde(default)]
    pub chunk_chars: Option<usize>,
    #[serde(skip)]
    used: AtomicU32,
}

impl Rule {
    pub fn new(reply: Reply) -> Self {
        Rule {
            when: When::default(),
            times: None,
            reply,
            usage: None,
            latency_ms: 0,
            chunk_delay_ms: 0,
            chunk_chars: None,
            used: AtomicU32::new(0),
        }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Rule::new(Reply::Text { text: text.into() })
    }

    pub fn fault(fault: FaultKind) -> Self {
        Rule::new(Reply::Fault {
            fault,
            retry_after: None,
        })
    }

    pub fn rate_limit(retry_after: Option<u64>) -> Self {
        Rule::new(Reply::Fault {
            fault: FaultKind::RateLimit,
            retry_after,
        })
    }

    pub fn tool_calls(calls: &[(&str, &str)]) -> Self {
        Rule::new(Reply::ToolCalls {
            tool_calls: calls
                .iter()
                .map(|(name, arguments)| ScriptedToolCall {
                    name: (*name).to_owned(),
                    arguments: (*arguments).to_owned(),
                })
                .collect(),
        })
    }

    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn latency_ms(mut self, latency_ms: u64) -> Self {
        self.latency_ms = latency_ms;
        self
    }

    pub fn chunking(mut self, chunk_chars: usize, chunk_delay_ms: u64) -> Self {
        self.chunk_chars = Some(chunk_chars);
        self.chunk_delay_ms = chunk_delay_ms;
        self
    }

    fn take_use(&self) -> bool {
        match self.times {
            None => true,
            Some(times) => self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    (used < times).then_some(used + 1)
                })
                .is_ok(),
        }
    }
}

/// Every present condition must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    pub api: Option<Api>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system_contains: Option<String>,
    #[serde(default)]
    pub last_message_contains: Option<String>,
    #[serde(default)]
    pub any_message_contains: Option<String>,
    #[serde(default)]
    pub tools_offered: Vec<String>,
}

impl When {
    fn matches(&self, request: &RequestView) -> bool {
        self.api.is_none_or(|api| api == request.api)
            && self
                .model
                .as_deref()
                .is_none_or(|model| model == request.model)
            && self
                .system_contains
                .as_deref()
                .is_none_or(|needle| request.system.contains(needle))
            && self.last_message_contains.as_deref().is_none_or(|needle| {
                request
                    .messages
                    .last()
                    .is_some_and(|message| message.text.contains(needle))
            })
            && self.any_message_contains.as_deref().is_none_or(|needle| {
                request.system.contains(needle)
                    || request.messages.iter().any(|m| m.text.contains(needle))
            })
            && self
                .tools_offered
                .iter()
                .all(|tool| request.tools.iter().any(|offered| offered == tool))
    }
}

/// `{"text": ...}`, `{"tool_calls": [...]}` or `{"fault": ..., "retry_after": secs}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Text {
        text: String,
    },
    ToolCalls {
        tool_calls: Vec<ScriptedToolCall>,
    },
    Fault {
        fault: FaultKind,
        /// Seconds, sent as `Retry-After` with `rate_limit`.
        #[serde(default)]
        retry_after: Option<u64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedToolCall {
    pub name: String,
    /// A JSON text, sent as the model would.
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    RateLimit,
    ServerError,
    Unauthorized,
    ContextTooLong,
    BadRequest,
    Timeout,
    Malformed,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Reported as OpenAI `prompt_tokens_details.cached_tokens` / Anthropic
    /// `cache_read_input_tokens`.
    #[serde(default)]
    pub cached_tokens: u64,
}
