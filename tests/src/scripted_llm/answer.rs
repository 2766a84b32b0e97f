//! The answer a request gets, before it is written in one API's format.

use super::request::RequestView;
use super::script::{Fallback, FaultKind, Reply, Rule, Script, ScriptedToolCall, Usage};

const DEFAULT_CHUNK_CHARS: usize = 16;
const ECHO_PREFIX: &str = "Thought: I now can give a great answer\nFinal Answer: ";

pub(crate) enum Answer {
    Text {
        text: String,
        /// The stop sequence the text was cut at.
        stopped_at: Option<String>,
        usage: Usage,
    },
    ToolCalls {
        calls: Vec<ScriptedToolCall>,
        usage: Usage,
    },
    Fault {
        kind: FaultKind,
        retry_after: Option<u64>,
    },
    /// `fallback: error` and nothing matched.
    Unmatched { description: String },
}

pub(crate) struct Plan {
    pub answer: Answer,
    pub latency_ms: u64,
    pub chunk_chars: usize,
    pub chunk_delay_ms: u64,
}

impl Plan {
    pub fn for_request(script: &Script, request: &RequestView) -> Plan {
        match script.select(request) {
            Some(rule) => Plan::from_rule(script, rule, request),
            None => Plan {
                answer: match script.fallback {
                    Fallback::Echo => text_answer(echo_text(request), None, request),
                    Fallback::Error => Answer::Unmatched {
                        description: describe(request),
                    },
                },
                latency_ms: script.latency_ms,
                chunk_chars: DEFAULT_CHUNK_CHARS,
                chunk_delay_ms: 0,
            },
        }
    }

    fn from_rule(script: &Script, rule: &Rule, request: &RequestView) -> Plan {
        let answer = match &rule.reply {
            Reply::Text { text } => text_answer(text.clone(), rule.usage, request),
            Reply::ToolCalls { tool_calls } => {
                let completion: u64 = tool_calls
                    .iter()
                    .map(|call| words(&call.arguments) + 1)
                    .sum();
                Answer::ToolCalls {
                    calls: tool_calls.clone(),
                    usage: rule.usage.unwrap_or(Usage {
                        prompt_tokens: request.prompt_words().max(1),
                        completion_tokens: completion,
                        cached_tokens: 0,
                    }),
                }
            }
            Reply::Fault { fault, retry_after } => Answer::Fault {
                kind: *fault,
                retry_after: *retry_after,
            },
        };
        Plan {
            answer,
            latency_ms: script.latency_ms + rule.latency_ms,
            chunk_chars: rule.chunk_chars.unwrap_or(DEFAULT_CHUNK_CHARS).max(1),
            chunk_delay_ms: rule.chunk_delay_ms,
        }
    }
}

/// Cuts the text at the earliest stop sequence, as providers do.
fn text_answer(text: String, usage: Option<Usage>, request: &RequestView) -> Answer {
    let cut = request
        .stop
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()).map(|at| (at, stop)))
        .min_by_key(|(at, _)| *at);
    let (text, stopped_at) = match cut {
        Some((at, stop)) => (text[..at].to_owned(), Some(stop.clone())),
        None => (text, None),
    };
    let usage = usage.unwrap_or(Usage {
        prompt_tokens: request.prompt_words().max(1),
        completion_tokens: words(&text).max(1),
        cached_tokens: 0,
    });
    Answer::Text {
        text,
        stopped_at,
        usage,
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Echo mode speaks CrewAI's ReAct protocol deterministically: when the prompt offers
/// tools and none was used yet, it uses the first one (every argument set to the last
/// capitalised word of the task, e.g. `Ada` in "Greet Ada"); after an observation it
/// answers with that observation; otherwise it answers with the task itself.
fn echo_text(request: &RequestView) -> String {
    let user = request.last_user_text();
    let subject = user
        .lines()
        .find_map(|line| line.split_once("Current Task:").map(|(_, task)| task))
        .or_else(|| user.lines().find(|line| !line.trim().is_empty()))
        .unwrap_or("nothing")
        .trim();
    let subject: String = subject.chars().take(120).collect();
    if let Some(observation) = last_observation(request) {
        return format!("Thought: I now know the final answer\nFinal Answer: {observation}");
    }
    if let Some((tool, arguments)) = first_offered_tool(&request.system) {
        let word = subject
            .split(|c: char| !c.is_alphanumeric())
            .rfind(|w| w.chars().next().is_some_and(char::is_uppercase))
            .unwrap_or("world");
        let input: serde_json::Map<String, serde_json::Value> = arguments
            .into_iter()
            .map(|name| (name, serde_json::Value::String(word.to_string())))
            .collect();
        return format!(
            "Thought: I should use the {tool} tool\nAction: {tool}\nAction Input: {}",
            serde_json::Value::Object(input)
        );
    }
    format!("{ECHO_PREFIX}Echo: {subject}")
}

/// The result of the last tool use, as CrewAI appends it (`...\nObservation: <result>`).
fn last_observation(request: &RequestView) -> Option<String> {
    request.messages.iter().rev().find_map(|message| {
        message
            .text
            .rsplit_once("Observation:")
            .map(|(_, after)| {
                after
                    .trim()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .filter(|observation| !observation.is_empty())
    })
}

/// The first tool of CrewAI's ReAct tool list (`Tool Name: x` / `Tool Arguments: {'a': ...}`)
/// and its argument names.
fn first_offered_tool(system: &str) -> Option<(String, Vec<String>)> {
    let mut lines = system.lines();
    let name = lines
        .by_ref()
        .find_map(|line| line.strip_prefix("Tool Name: "))?
        .trim()
        .to_string();
    let arguments_line = lines.find_map(|line| line.strip_prefix("Tool Arguments: "))?;
    let mut arguments = Vec::new();
    let mut rest = arguments_line;
    // Top-level keys of the Python dict repr: `'key': {`.
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('\'') else { break };
        let key = &after[..end];
        let tail = &after[end + 1..];
        if tail.starts_with(": {")
            && !arguments.iter().any(|a| a == key)
            && key != "description"
            && key != "type"
        {
            arguments.push(key.to_string());
        }
        rest = tail;
    }
    Some((name, arguments))
}

fn describe(request: &RequestView) -> String {
    let last: String = request
        .messages
        .last()
        .map(|m| m.text.chars().take(200).collect())
        .unwrap_or_default();
    format!(
        "scripted-llm: no rule matched the {:?} request for model {:?} (last message: {:?})",
        request.api, request.model, last
    )
}

/// Splits text into chunks of `size` characters (never inside a UTF-8 character).
pub(crate) fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (at, _) in text.char_indices() {
        if count == size {
            pieces.push(&text[start..at]);
            start = at;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}
