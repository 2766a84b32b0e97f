//! What a rule looks at, read once from an OpenAI or Anthropic request body.

use serde_json::Value;

use super::Api;

pub(crate) struct MessageView {
    pub role: String,
    pub text: String,
}

pub(crate) struct RequestView {
    pub api: Api,
    pub model: String,
    /// System text (OpenAI system messages, Anthropic `system`), joined.
    pub system: String,
    /// Non-system messages in order.
    pub messages: Vec<MessageView>,
    pub tools: Vec<String>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

impl RequestView {
    pub fn read(api: Api, body: &Value) -> RequestView {
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let stream = body["stream"].as_bool().unwrap_or(false);
        let mut system = String::new();
        let mut messages = Vec::new();
        if let Api::Anthropic = api {
            system = text_of(&body["system"]);
        }
        for message in body["messages"].as_array().into_iter().flatten() {
            let role = message["role"].as_str().unwrap_or_default().to_owned();
            let text = text_of(&message["content"]);
            if role == "system" {
                if !system.is_empty() {
                    system.push('\n');
                }
                system.push_str(&text);
            } else {
                messages.push(MessageView { role, text });
            }
        }
        let tools = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tool| {
                tool["function"]["name"]
                    .as_str()
                    .or_else(|| tool["name"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        let stop_field = match api {
            Api::OpenAi => &body["stop"],
            Api::Anthropic => &body["stop_sequences"],
        };
        let stop = match stop_field {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        RequestView {
            api,
            model,
            system,
            messages,
            tools,
            stop,
            stream,
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
        }
    }

    /// The text of the last user message (what echo mode answers).
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.text.as_str())
            .unwrap_or_default()
    }

    /// Deterministic prompt size: words in every message.
    pub fn prompt_words(&self) -> u64 {
        let words = |text: &str| text.split_whitespace().count() as u64;
        words(&self.system) + self.messages.iter().map(|m| words(&m.text)).sum::<u64>()
    }
}

/// Text of a content field: a string, or the text of its blocks (text, tool results).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => {
            let parts: Vec<String> = blocks
                .iter()
                .map(|block| match block {
                    Value::String(text) => text.clone(),
                    _ => match block["text"].as_str() {
                        Some(text) => text.to_owned(),
                        None => text_of(&block["content"]),
                    },
                })
                .filter(|text| !text.is_empty())
                .collect();
            parts.join("\n")
        }
        _ => String::new(),
    }
}
