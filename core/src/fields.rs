//! Checks for the plain text fields every resource has (names, descriptions, titles), so
//! each resource states only its limits.

use crate::error::{CoreError, CoreResult};

/// A required one-line text: trimmed, 1 to `max_chars` characters.
pub fn required_text(
    value: &str,
    field: &'static str,
    code: &'static str,
    max_chars: usize,
) -> CoreResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max_chars {
        return Err(CoreError::invalid(
            code,
            field,
            format!("the {field} must have 1 to {max_chars} characters"),
        ));
    }
    Ok(value.to_string())
}

/// An optional text: trimmed, blank becomes absent, at most `max_chars` characters.
pub fn optional_text(
    value: Option<String>,
    field: &'static str,
    code: &'static str,
    max_chars: usize,
) -> CoreResult<Option<String>> {
    let value = value
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if value
        .as_ref()
        .is_some_and(|d| d.chars().count() > max_chars)
    {
        return Err(CoreError::invalid(
            code,
            field,
            format!("the {field} must have at most {max_chars} characters"),
        ));
    }
    Ok(value)
}
