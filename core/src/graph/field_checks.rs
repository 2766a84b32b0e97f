//! Field checks of a node's `data`: each described field (see `fields`) checked against its
//! descriptor, with CrewAI's codes and messages where CrewAI has them. This is the one
//! place node fields are checked; what the checks need beyond the node is in
//! `FieldContext`.

use serde_json::Value;

use crate::graph::document::Node;
use crate::graph::fields::{Field, FieldType, fields_of};
use crate::graph::placeholders;
use crate::graph::problems::{Problem, Problems};

/// What field checks need to know beyond the node itself.
pub struct FieldContext<'a> {
    /// Whether a tool name is in the tool repository.
    pub tool_exists: &'a dyn Fn(&str) -> bool,
}

pub(crate) fn check_node_data(node: &Node, context: &FieldContext<'_>, problems: &mut Problems) {
    for field in fields_of(node.kind) {
        if let Err(Wrong { code, message }) = check_field(field, node.data.get(field.name), context)
        {
            problems.push(
                Problem::error(code, message)
                    .node(&node.id)
                    .field(field.name),
            );
        }
    }
}

/// What is wrong with a field: a problem's code and message.
struct Wrong {
    code: &'static str,
    message: String,
}

impl Wrong {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Wrong {
            code,
            message: message.into(),
        }
    }
}

/// `null` means unset, for every field.
fn check_field(
    field: &Field,
    value: Option<&Value>,
    context: &FieldContext<'_>,
) -> Result<(), Wrong> {
    let value = match value {
        None | Some(Value::Null) if field.required => return Err(missing(field)),
        None | Some(Value::Null) => return Ok(()),
        Some(value) => value,
    };
    if field.required && value.as_str().is_some_and(|text| text.trim().is_empty()) {
        return Err(missing(field));
    }
    check_value(field, value, context)
}

/// CrewAI: "{field} must be provided either directly or through config".
fn missing(field: &Field) -> Wrong {
    Wrong::new(
        "missing_field",
        format!(
            "{} must be provided either directly or through config",
            field.name
        ),
    )
}

fn invalid(field: &Field, message: String) -> Wrong {
    match field.crewai_error {
        Some((code, crewai_message)) => Wrong::new(code, crewai_message),
        None => Wrong::new("invalid_field", message),
    }
}

fn check_value(field: &Field, value: &Value, context: &FieldContext<'_>) -> Result<(), Wrong> {
    let name = field.name;
    let text = || {
        value
            .as_str()
            .ok_or_else(|| invalid(field, format!("`{name}` must be text")))
    };
    let ok_or = |valid: bool, message: String| {
        if valid {
            Ok(())
        } else {
            Err(invalid(field, message))
        }
    };
    match field.ty {
        FieldType::Text => text().map(|_| ()),
        FieldType::HttpUrl => {
            let url = text()?;
            ok_or(
                url.starts_with("http://") || url.starts_with("https://"),
                format!("`{name}` must be an http:// or https:// URL"),
            )
        }
        FieldType::Uuid => ok_or(
            value
                .as_str()
                .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
            format!("`{name}` must be a UUID"),
        ),
        FieldType::OutputFile => {
            check_output_file(text()?).map_err(|message| Wrong::new("invalid_output_file", message))
        }
        FieldType::ToolName => {
            let tool = text()?;
            if (context.tool_exists)(tool) {
                Ok(())
            } else {
                Err(Wrong::new(
                    "unknown_tool",
                    format!("there is no tool named `{tool}` in the tool repository"),
                ))
            }
        }
        FieldType::Choice(options) => ok_or(
            value.as_str().is_some_and(|v| options.contains(&v)),
            format!("`{name}` must be one of: {}", options.join(", ")),
        ),
        FieldType::Bool => ok_or(
            value.is_boolean(),
            format!("`{name}` must be true or false"),
        ),
        FieldType::Integer { min: Some(min) } => ok_or(
            value.as_u64().is_some_and(|v| v >= min),
            if min == 1 {
                format!("`{name}` must be a whole number greater than zero")
            } else {
                format!("`{name}` must be a whole number of at least {min}")
            },
        ),
        FieldType::Integer { min: None } => {
            ok_or(value.is_i64(), format!("`{name}` must be a whole number"))
        }
        FieldType::Number { min, above, max } => ok_or(
            value.as_f64().is_some_and(|v| {
                min.is_none_or(|min| v >= min)
                    && above.is_none_or(|above| v > above)
                    && max.is_none_or(|max| v <= max)
            }),
            format!("`{name}` must be a number{}", range_text(min, above, max)),
        ),
    }
}

fn range_text(min: Option<f64>, above: Option<f64>, max: Option<f64>) -> String {
    match (min, above, max) {
        (Some(min), _, Some(max)) => format!(" from {min} to {max}"),
        (None, Some(above), Some(max)) => format!(" greater than {above} and at most {max}"),
        (Some(min), _, None) => format!(" of at least {min}"),
        (None, Some(above), None) => format!(" greater than {above}"),
        (None, None, Some(max)) => format!(" of at most {max}"),
        (None, None, None) => String::new(),
    }
}

/// CrewAI's `output_file` validator (crewai-reference.md §2).
fn check_output_file(path: &str) -> Result<(), String> {
    if path.contains("..") {
        return Err("Path traversal attempts are not allowed in output_file paths".into());
    }
    if path.starts_with('~') || path.starts_with('$') {
        return Err("Shell expansion characters are not allowed in output_file paths".into());
    }
    if path.contains(['|', '>', '<', '&', ';']) {
        return Err("Shell special characters are not allowed in output_file paths".into());
    }
    for part in path.split('{').skip(1) {
        if let Some((var, _)) = part.split_once('}')
            && !placeholders::is_identifier(var)
        {
            return Err(format!("Invalid template variable name: {var}"));
        }
    }
    Ok(())
}
