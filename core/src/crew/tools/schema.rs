//! A JSON Schema validator for the subset tool argument schemas use: `type`,
//! `properties`, `required`, `additionalProperties` (bool or schema), `items`, `enum`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`. Unknown keywords
//! are ignored, as JSON Schema says. Errors name the offending path.

use serde_json::Value;

/// Every problem, each `"<path>: <what is wrong>"` (path `$` is the whole value).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    check(schema, value, "$", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|n| n.is_finite() && n.fract() == 0.0)
        }
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            problems.push(format!("{path}: no value is allowed here"));
        }
        return;
    };
    match schema.get("type") {
        Some(Value::String(expected)) if !type_matches(expected, value) => {
            problems.push(format!(
                "{path}: expected {expected}, got {}",
                type_name(value)
            ));
            return;
        }
        Some(Value::Array(options))
            if !options
                .iter()
                .filter_map(Value::as_str)
                .any(|expected| type_matches(expected, value)) =>
        {
            problems.push(format!("{path}: has the wrong type ({})", type_name(value)));
            return;
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        problems.push(format!("{path}: must be one of {}", allowed.join(", ")));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64)
            && number < minimum
        {
            problems.push(format!("{path}: must be at least {minimum}"));
        }
        if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64)
            && number > maximum
        {
            problems.push(format!("{path}: must be at most {maximum}"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            problems.push(format!("{path}: must be at least {min} characters long"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            problems.push(format!("{path}: must be at most {max} characters long"));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            problems.push(format!("{path}: must have at least {min} items"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            problems.push(format!("{path}: must have at most {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{path}[{index}]"), problems);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    problems.push(format!("{path}.{name}: is required"));
                }
            }
        }
        for (name, item) in object {
            let item_path = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(property_schema) => check(property_schema, item, &item_path, problems),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        problems.push(format!("{item_path}: is not an allowed property"))
                    }
                    Some(extra @ Value::Object(_)) => check(extra, item, &item_path, problems),
                    _ => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5},
                "count": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["name"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_valid_values() {
        assert_eq!(
            validate(
                &schema(),
                &json!({"name": "Ada", "count": 3, "mode": "a", "tags": ["x"]})
            ),
            Ok(())
        );
        assert_eq!(
            validate(&schema(), &json!({"name": "Ada", "count": 3.0})),
            Ok(())
        );
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let problems = validate(
            &schema(),
            &json!({"count": 0, "mode": "c", "tags": ["x", 1, "z"], "extra": true}),
        )
        .expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "$.name: is required",
                "$.count: must be at least 1",
                "$.extra: is not an allowed property",
                "$.mode: must be one of \"a\", \"b\"",
                "$.tags: must have at most 2 items",
                "$.tags[1]: expected string, got number",
            ]
        );
    }

    #[test]
    fn checks_types_and_lengths() {
        assert_eq!(
            validate(&schema(), &json!("text")),
            Err(vec!["$: expected object, got string".to_string()])
        );
        assert_eq!(
            validate(&schema(), &json!({"name": ""})),
            Err(vec![
                "$.name: must be at least 1 characters long".to_string()
            ])
        );
        assert_eq!(
            validate(&schema(), &json!({"name": "abcdef", "count": 2.5})),
            Err(vec![
                "$.count: expected integer, got number".to_string(),
                "$.name: must be at most 5 characters long".to_string()
            ])
        );
    }
}
