//! Kickoff inputs into `{placeholders}`, as CrewAI 0.121.1's `interpolate_only` and the
//! Task/Agent wrappers do it (crewai-reference.md §2), with the same error texts.

use serde_json::{Map, Value};

use crate::crew::pyrepr::{python_repr, python_str};

/// Why `interpolate_only` failed; `Display` is Python's `str()` of the exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// A `KeyError`: its `str()` is the repr of the message.
    MissingVariable(String),
    /// A `ValueError`.
    Invalid(String),
}

impl InterpolationError {
    /// `e.args[0]`: the bare message.
    pub fn message(&self) -> &str {
        match self {
            InterpolationError::MissingVariable(message) | InterpolationError::Invalid(message) => {
                message
            }
        }
    }
}

impl std::fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolationError::MissingVariable(message) => {
                f.write_str(&python_repr(&Value::String(message.clone())))
            }
            InterpolationError::Invalid(message) => f.write_str(message),
        }
    }
}

/// Placeholder names as CrewAI's regex `\{([A-Za-z_][A-Za-z0-9_\-]*)\}` finds them.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'{' {
            let start = index + 1;
            let mut end = start;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'-')
            {
                end += 1;
            }
            let first_ok =
                start < end && (bytes[start].is_ascii_alphabetic() || bytes[start] == b'_');
            if first_ok && end < bytes.len() && bytes[end] == b'}' {
                names.push(&text[start..end]);
                index = end + 1;
                continue;
            }
        }
        index += 1;
    }
    names
}

/// CrewAI's `interpolate_only(input_string, inputs)`.
pub fn interpolate_only(
    input: &str,
    inputs: &Map<String, Value>,
) -> Result<String, InterpolationError> {
    // JSON values are all of Python's allowed kinds (str, int, float, bool, None, dict,
    // list), so CrewAI's "Unsupported type" check cannot fail here.
    if input.is_empty() {
        return Ok(String::new());
    }
    if !input.contains('{') && !input.contains('}') {
        return Ok(input.to_string());
    }
    if inputs.is_empty() {
        return Err(InterpolationError::Invalid(
            "Inputs dictionary cannot be empty when interpolating variables".into(),
        ));
    }
    let mut result = input.to_string();
    for name in placeholders(input) {
        let Some(value) = inputs.get(name) else {
            return Err(InterpolationError::MissingVariable(format!(
                "Template variable '{name}' not found in inputs dictionary"
            )));
        };
        let placeholder = format!("{{{name}}}");
        if result.contains(&placeholder) {
            result = result.replace(&placeholder, &python_str(value));
        }
    }
    Ok(result)
}

/// CrewAI skips interpolation when inputs are empty. We skip too, unless the text has a
/// placeholder: a server run must not send an unfilled `{topic}` to a model
/// (docs/crewai-compat.md), so that case raises CrewAI's own empty-inputs error.
fn interpolate_field(
    text: &str,
    inputs: &Map<String, Value>,
) -> Result<String, InterpolationError> {
    if inputs.is_empty() && placeholders(text).is_empty() {
        return Ok(text.to_string());
    }
    interpolate_only(text, inputs)
}

/// `Task.description`, with the Task wrapper's texts.
pub fn task_description(text: &str, inputs: &Map<String, Value>) -> Result<String, String> {
    interpolate_field(text, inputs).map_err(|error| match error {
        InterpolationError::MissingVariable(message) => {
            format!("Missing required template variable '{message}' in description")
        }
        InterpolationError::Invalid(message) => {
            format!("Error interpolating description: {message}")
        }
    })
}

/// `Task.expected_output`, with the Task wrapper's text.
pub fn task_expected_output(text: &str, inputs: &Map<String, Value>) -> Result<String, String> {
    interpolate_field(text, inputs)
        .map_err(|error| format!("Error interpolating expected_output: {error}"))
}

/// Agent role, goal and backstory: CrewAI does not wrap these errors.
pub fn agent_field(text: &str, inputs: &Map<String, Value>) -> Result<String, String> {
    interpolate_field(text, inputs).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn fills_placeholders_with_python_str_values() {
        let inputs = inputs(json!({"topic": "AI", "num": 42, "flag": true, "d": {"k": [1]}}));
        assert_eq!(
            interpolate_only("About {topic}: {num} {flag} {d}", &inputs).as_deref(),
            Ok("About AI: 42 True {'k': [1]}")
        );
    }

    #[test]
    fn leaves_json_and_non_identifiers_alone() {
        let inputs = inputs(json!({"placeholder": "X"}));
        assert_eq!(
            interpolate_only(r#"{"info": "Look at {placeholder}"}"#, &inputs).as_deref(),
            Ok(r#"{"info": "Look at X"}"#)
        );
        assert_eq!(
            interpolate_only("{1abc} { spaced } {}", &inputs).as_deref(),
            Ok("{1abc} { spaced } {}")
        );
    }

    #[test]
    fn hyphenated_keys_work() {
        let inputs = inputs(json!({"interpolation-with-hyphens": "ok"}));
        assert_eq!(
            interpolate_only("{interpolation-with-hyphens}", &inputs).as_deref(),
            Ok("ok")
        );
    }

    #[test]
    fn missing_and_empty_inputs_have_crewai_texts() {
        let some = inputs(json!({"other": 1}));
        assert_eq!(
            task_description("Research {topic}", &some),
            Err("Missing required template variable 'Template variable 'topic' not found in inputs dictionary' in description".into())
        );
        assert_eq!(
            task_expected_output("About {topic}", &some),
            Err("Error interpolating expected_output: \"Template variable 'topic' not found in inputs dictionary\"".into())
        );
        assert_eq!(
            agent_field("{role_name}", &some),
            Err("\"Template variable 'role_name' not found in inputs dictionary\"".into())
        );
        let none = Map::new();
        assert_eq!(
            task_description("Research {topic}", &none),
            Err("Error interpolating description: Inputs dictionary cannot be empty when interpolating variables".into())
        );
        assert_eq!(
            task_description(r#"{"a": 1}"#, &none).as_deref(),
            Ok(r#"{"a": 1}"#)
        );
        assert_eq!(task_description("plain", &none).as_deref(), Ok("plain"));
    }

    #[test]
    fn replacement_is_sequential_like_crewai() {
        // A value containing a later placeholder is filled too (str.replace in order).
        let inputs = inputs(json!({"a": "{b}", "b": "B"}));
        assert_eq!(interpolate_only("{a} {b}", &inputs).as_deref(), Ok("B B"));
    }
}
