//! `hello_world`: greets a name. The Quickstart's first crew uses it.

use serde_json::{Value, json};

use super::{Tool, ToolError};

pub struct HelloWorld;

#[async_trait::async_trait]
impl Tool for HelloWorld {
    fn name(&self) -> &str {
        "hello_world"
    }

    fn description(&self) -> &str {
        "Greets someone by name. Use it to say hello."
    }

    fn args_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Who to greet", "minLength": 1, "maxLength": 200}
            },
            "required": ["name"],
            "additionalProperties": false
        })
    }

    async fn run(&self, args: Value) -> Result<String, ToolError> {
        let name = args
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidArguments("`name` must be text".into()))?;
        Ok(format!("Hello, {name}!"))
    }
}
