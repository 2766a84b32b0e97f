//! Field checks of a node's `data`, per node kind, with CrewAI's messages where CrewAI
//! has one.

use serde_json::{Map, Value};

use crate::graph::document::{Node, NodeKind};
use crate::graph::placeholders;
use crate::graph::problems::{Problem, Problems};

/// Field checks per node kind, with CrewAI's messages where CrewAI has one.
pub(crate) fn check_node_data(
    node: &Node,
    tool_exists: &dyn Fn(&str) -> bool,
    problems: &mut Problems,
) {
    let mut fields = FieldChecker { node, problems };
    match node.kind {
        NodeKind::Agent => {
            for field in ["role", "goal", "backstory"] {
                fields.required_text(field);
            }
            fields.optional_text("llm");
            fields.one_of("tool_calling", &["react", "native"]);
            fields.positive_int("max_iter");
            fields.positive_int("max_rpm");
            fields.positive_int("max_retry_limit");
            if let Some(value) = node.data.get("max_execution_time")
                && !value.is_null()
                && value.as_u64().is_none_or(|v| v == 0)
            {
                fields.problems.push(
                    Problem::error(
                        "invalid_max_execution_time",
                        "Max Execution time must be a positive integer greater than zero",
                    )
                    .node(&node.id)
                    .field("max_execution_time"),
                );
            }
            for flag in [
                "allow_delegation",
                "verbose",
                "use_system_prompt",
                "respect_context_window",
                "cache",
            ] {
                fields.optional_bool(flag);
            }
        }
        NodeKind::Task => {
            fields.required_text("description");
            fields.required_text("expected_output");
            fields.optional_text("name");
            fields.optional_bool("async_execution");
            fields.optional_bool("markdown");
            if let Some(Value::String(path)) = node.data.get("output_file") {
                if let Err(message) = check_output_file(path) {
                    fields.problems.push(
                        Problem::error("invalid_output_file", message)
                            .node(&node.id)
                            .field("output_file"),
                    );
                }
            } else {
                fields.optional_text("output_file");
            }
            if let Some(order) = node.data.get("order")
                && !order.is_null()
                && !order.is_number()
            {
                fields.invalid("order", "`order` must be a number");
            }
        }
        NodeKind::Tool => {
            if let Some(name) = fields.required_text("tool")
                && !tool_exists(&name)
            {
                fields.problems.push(
                    Problem::error(
                        "unknown_tool",
                        format!("there is no tool named `{name}` in the tool repository"),
                    )
                    .node(&node.id)
                    .field("tool"),
                );
            }
        }
        NodeKind::Llm => {
            fields.required_text("model");
            fields.optional_text("base_url");
            if let Some(Value::String(url)) = node.data.get("base_url")
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                fields.invalid("base_url", "`base_url` must be an http:// or https:// URL");
            }
            if let Some(value) = node.data.get("api_key_id")
                && !value.is_null()
                && value
                    .as_str()
                    .is_none_or(|id| uuid::Uuid::parse_str(id).is_err())
            {
                fields.invalid(
                    "api_key_id",
                    "`api_key_id` must be the id of a stored API key",
                );
            }
            fields.number_in("temperature", 0.0, 2.0);
            fields.number_in("top_p", 0.0, 1.0);
            fields.number_in("timeout", 0.001, 3600.0);
            fields.positive_int("max_tokens");
            fields.optional_bool("stream");
        }
        NodeKind::Crew => {
            if let Some(process) = node.data.get("process")
                && !process.is_null()
                && !matches!(process.as_str(), Some("sequential" | "hierarchical"))
            {
                fields.invalid(
                    "process",
                    "`process` must be `sequential` or `hierarchical`",
                );
            }
            fields.optional_text("manager_llm");
            fields.positive_int("max_rpm");
        }
    }
}

struct FieldChecker<'a> {
    node: &'a Node,
    problems: &'a mut Problems,
}

impl FieldChecker<'_> {
    fn data(&self) -> &Map<String, Value> {
        &self.node.data
    }

    fn invalid(&mut self, field: &str, message: &str) {
        self.problems.push(
            Problem::error("invalid_field", message)
                .node(&self.node.id)
                .field(field),
        );
    }

    /// CrewAI: "{field} must be provided either directly or through config".
    fn required_text(&mut self, field: &str) -> Option<String> {
        match self.data().get(field) {
            Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.problems.push(
                    Problem::error(
                        "missing_field",
                        format!("{field} must be provided either directly or through config"),
                    )
                    .node(&self.node.id)
                    .field(field),
                );
                None
            }
            Some(_) => {
                self.invalid(field, &format!("`{field}` must be text"));
                None
            }
        }
    }

    fn optional_text(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.is_string()
        {
            self.invalid(field, &format!("`{field}` must be text"));
        }
    }

    fn optional_bool(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.is_boolean()
        {
            self.invalid(field, &format!("`{field}` must be true or false"));
        }
    }

    fn one_of(&mut self, field: &str, allowed: &[&str]) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.as_str().is_some_and(|v| allowed.contains(&v))
        {
            self.invalid(
                field,
                &format!("`{field}` must be one of: {}", allowed.join(", ")),
            );
        }
    }

    fn number_in(&mut self, field: &str, min: f64, max: f64) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && !value.as_f64().is_some_and(|v| (min..=max).contains(&v))
        {
            self.invalid(
                field,
                &format!("`{field}` must be a number from {min} to {max}"),
            );
        }
    }

    fn positive_int(&mut self, field: &str) {
        if let Some(value) = self.data().get(field)
            && !value.is_null()
            && value.as_u64().is_none_or(|v| v == 0)
        {
            self.invalid(
                field,
                &format!("`{field}` must be a whole number greater than zero"),
            );
        }
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
