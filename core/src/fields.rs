//! Checks for the plain fields every resource has (names, descriptions, titles,
//! timestamps), so each resource states only its limits.

use chrono::{DateTime, Utc};

use crate::error::{CoreError, CoreResult};

/// PostgreSQL's earliest `timestamptz` (4714-11-24 00:00 UTC BC), in microseconds since
/// the Unix epoch. Its latest (year 294276) is beyond what `DateTime<Utc>` holds.
pub const EARLIEST_STORABLE_MICROS: i64 = -210_866_803_200_000_000;

/// Whether PostgreSQL can store (and compare with) this time.
pub fn is_storable_time(time: DateTime<Utc>) -> bool {
    time.timestamp_micros() >= EARLIEST_STORABLE_MICROS
}

/// A time from the client that is compared with stored times: one PostgreSQL cannot hold
/// is the client's mistake (422 naming `field`), not a database error.
pub fn storable_time(
    time: Option<DateTime<Utc>>,
    field: &'static str,
) -> CoreResult<Option<DateTime<Utc>>> {
    match time {
        Some(t) if !is_storable_time(t) => Err(CoreError::invalid(
            "invalid_timestamp",
            field,
            format!("{field} must be a time from 4714-11-24 BC on"),
        )),
        other => Ok(other),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storable_times_start_at_postgresqls_earliest_timestamptz() {
        let earliest = DateTime::from_timestamp_micros(EARLIEST_STORABLE_MICROS).expect("time");
        assert_eq!(earliest.to_rfc3339(), "-4713-11-24T00:00:00+00:00");
        assert!(is_storable_time(earliest));
        assert!(!is_storable_time(
            earliest - chrono::Duration::microseconds(1)
        ));
        assert!(storable_time(None, "created_after").is_ok());
        assert!(storable_time(Some(earliest), "created_after").is_ok());
        assert!(storable_time(Some(DateTime::<Utc>::MIN_UTC), "created_after").is_err());
    }
}
