//! `current_datetime`: the current UTC date and time, as RFC 3339 or in a strftime
//! format.

use std::fmt::Write;

use chrono::format::{Item, StrftimeItems};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{Tool, ToolError};

pub struct CurrentDatetime;

#[async_trait::async_trait]
impl Tool for CurrentDatetime {
    fn name(&self) -> &str {
        "current_datetime"
    }

    fn description(&self) -> &str {
        "Returns the current date and time in UTC. Without a format it answers in RFC 3339 (2025-01-31T09:30:00Z); with a strftime format such as \"%Y-%m-%d\" it uses that."
    }

    fn args_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "format": {
                    "type": "string",
                    "description": "A strftime format, e.g. %Y-%m-%d %H:%M; RFC 3339 when absent",
                    "maxLength": 100
                }
            },
            "additionalProperties": false
        })
    }

    /// The time changes: a cached answer would be wrong.
    fn cacheable(&self) -> bool {
        false
    }

    async fn run(&self, args: Value) -> Result<String, ToolError> {
        let now = Utc::now();
        match args.get("format").and_then(Value::as_str) {
            None | Some("") => Ok(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
            Some(format) => format_time(&now, format),
        }
    }
}

fn format_time(time: &chrono::DateTime<Utc>, format: &str) -> Result<String, ToolError> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(ToolError::InvalidArguments(format!(
            "'{format}' is not a valid strftime format"
        )));
    }
    let mut out = String::new();
    // Formatting can still fail (e.g. a time-zone name on a naive value): never panic.
    write!(out, "{}", time.format_with_items(items.into_iter()))
        .map_err(|_| ToolError::InvalidArguments(format!("'{format}' cannot format a UTC time")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_strftime() {
        let time = Utc
            .with_ymd_and_hms(2025, 1, 31, 9, 30, 5)
            .single()
            .expect("valid");
        assert_eq!(
            format_time(&time, "%Y-%m-%d %H:%M").as_deref(),
            Ok("2025-01-31 09:30")
        );
        assert!(matches!(
            format_time(&time, "%Q"),
            Err(ToolError::InvalidArguments(_))
        ));
    }

    #[tokio::test]
    async fn defaults_to_rfc3339() {
        let output = CurrentDatetime.run(json!({})).await.expect("runs");
        assert!(
            chrono::DateTime::parse_from_rfc3339(&output).is_ok(),
            "{output}"
        );
        assert!(output.ends_with('Z'));
        let year = CurrentDatetime
            .run(json!({"format": "%Y"}))
            .await
            .expect("runs");
        assert_eq!(year, Utc::now().format("%Y").to_string());
    }
}
