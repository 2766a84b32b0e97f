//! CrewAI 0.121.1's `CrewAgentParser` (crewai-reference.md §4): ReAct text into a final
//! answer or a tool action.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::crew::lenient_json::parse_lenient;
use crate::crew::prompts::{FINAL_ANSWER_FORMAT, FORMAT_WITHOUT_TOOLS};

pub const FINAL_ANSWER_ACTION: &str = "Final Answer:";
pub const MISSING_ACTION_AFTER_THOUGHT: &str = "I did it wrong. Invalid Format: I missed the 'Action:' after 'Thought:'. I will do right next, and don't use a tool I have already used.\n";
pub const MISSING_ACTION_INPUT_AFTER_ACTION: &str = "I did it wrong. Invalid Format: I missed the 'Action Input:' after 'Action:'. I will do right next, and don't use a tool I have already used.\n";

static ACTION_WITH_INPUT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?s)Action\s*\d*\s*:[\s]*(.*?)[\s]*Action\s*\d*\s*Input\s*\d*\s*:[\s]*(.*)").ok()
});
static ACTION: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?s)Action\s*\d*\s*:").ok());
static ACTION_INPUT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?s)Action\s*\d*\s*Input\s*\d*\s*:").ok());

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Finish {
        thought: String,
        output: String,
        text: String,
    },
    Action {
        thought: String,
        tool: String,
        tool_input: String,
        text: String,
    },
}

/// An `OutputParserException`; `0` is its `.error` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// `CrewAgentParser.parse`.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let thought = extract_thought(text);
    if text.contains(FINAL_ANSWER_ACTION) {
        let mut output = text
            .rsplit(FINAL_ANSWER_ACTION)
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if output.ends_with("```") && !output.matches("```").count().is_multiple_of(2) {
            output.truncate(output.len() - 3);
            output = output.trim_end().to_string();
        }
        return Ok(Parsed::Finish {
            thought,
            output,
            text: text.to_string(),
        });
    }
    if let Some(captures) = ACTION_WITH_INPUT.as_ref().and_then(|re| re.captures(text)) {
        let action = captures.get(1).map_or("", |m| m.as_str());
        let input = captures.get(2).map_or("", |m| m.as_str()).trim();
        let tool_input = input.trim_matches(' ').trim_matches('"');
        return Ok(Parsed::Action {
            thought,
            tool: clean_action(action),
            tool_input: safe_repair_json(tool_input),
            text: text.to_string(),
        });
    }
    if !ACTION.as_ref().is_some_and(|re| re.is_match(text)) {
        Err(ParseError(format!(
            "{MISSING_ACTION_AFTER_THOUGHT}\n{FINAL_ANSWER_FORMAT}"
        )))
    } else if !ACTION_INPUT.as_ref().is_some_and(|re| re.is_match(text)) {
        Err(ParseError(MISSING_ACTION_INPUT_AFTER_ACTION.to_string()))
    } else {
        // CrewAI leaves `{tool_names}` literal here.
        Err(ParseError(FORMAT_WITHOUT_TOOLS.to_string()))
    }
}

/// The executor's `format_answer`: any parse failure makes the whole reply the answer.
pub fn format_answer(text: &str) -> Parsed {
    parse(text).unwrap_or_else(|_| Parsed::Finish {
        thought: "Failed to parse LLM response".into(),
        output: text.to_string(),
        text: text.to_string(),
    })
}

fn extract_thought(text: &str) -> String {
    let index = text
        .find("\nAction")
        .or_else(|| text.find("\nFinal Answer"));
    match index {
        Some(index) => text[..index].trim().replace("```", "").trim().to_string(),
        None => String::new(),
    }
}

fn clean_action(action: &str) -> String {
    action.trim().trim_matches('*').trim().to_string()
}

/// `_safe_repair_json`: list-shaped input is kept; otherwise a repairable value is
/// re-serialised, and an unrepairable one (`""`/`{}`) keeps the original text.
fn safe_repair_json(input: &str) -> String {
    if input.starts_with('[') && input.ends_with(']') {
        return input.to_string();
    }
    let input = input.replace("\"\"\"", "\"");
    match parse_lenient(&input) {
        Some(Value::Object(map)) if map.is_empty() => input,
        Some(Value::String(text)) if text.is_empty() => input,
        Some(value) => serde_json::to_string(&value).unwrap_or(input),
        None => input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish_output(text: &str) -> String {
        match parse(text) {
            Ok(Parsed::Finish { output, .. }) => output,
            other => panic!("expected a final answer, got {other:?}"),
        }
    }

    fn action(text: &str) -> (String, String) {
        match parse(text) {
            Ok(Parsed::Action {
                tool, tool_input, ..
            }) => (tool, tool_input),
            other => panic!("expected an action, got {other:?}"),
        }
    }

    #[test]
    fn final_answer_wins_and_last_one_counts() {
        assert_eq!(finish_output("Thought: done\nFinal Answer: 42"), "42");
        assert_eq!(
            finish_output(
                "Thought: x\nAction: search\nAction Input: {}\nFinal Answer: A\nFinal Answer: B "
            ),
            "B"
        );
    }

    #[test]
    fn odd_trailing_fence_is_removed() {
        assert_eq!(
            finish_output("Final Answer: ```python\nx = 1\n```"),
            "```python\nx = 1\n```"
        );
        assert_eq!(finish_output("Final Answer: text\n```"), "text");
    }

    #[test]
    fn thought_is_the_text_before_action() {
        match parse("```I think```\nAction: a\nAction Input: {\"x\": 1}") {
            Ok(Parsed::Action { thought, .. }) => assert_eq!(thought, "I think"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn action_and_input_are_cleaned_and_repaired() {
        assert_eq!(
            action("Thought: t\nAction: **hello_world**\nAction Input: {\"name\": \"Ada\"}"),
            ("hello_world".into(), "{\"name\":\"Ada\"}".into())
        );
        assert_eq!(
            action("Action 1: calc\nAction 1 Input: {'expression': '1+1'}"),
            ("calc".into(), "{\"expression\":\"1+1\"}".into())
        );
        assert_eq!(
            action("Action: calc\nAction Input: [1, 2]"),
            ("calc".into(), "[1, 2]".into())
        );
        assert_eq!(
            action("Action: calc\nAction Input: not json"),
            ("calc".into(), "not json".into())
        );
        assert_eq!(
            action("Action: calc\nAction Input: {\"a\": \"\"\"x\"\"\"}"),
            ("calc".into(), "{\"a\":\"x\"}".into())
        );
    }

    #[test]
    fn format_errors_have_crewai_texts() {
        assert_eq!(
            parse("I just think"),
            Err(ParseError(format!(
                "{MISSING_ACTION_AFTER_THOUGHT}\n{FINAL_ANSWER_FORMAT}"
            )))
        );
        assert_eq!(
            parse("Action: calc"),
            Err(ParseError(MISSING_ACTION_INPUT_AFTER_ACTION.into()))
        );
        // The executor turns any of these into the whole reply as the answer.
        assert_eq!(
            format_answer("I just think"),
            Parsed::Finish {
                thought: "Failed to parse LLM response".into(),
                output: "I just think".into(),
                text: "I just think".into()
            }
        );
    }
}
