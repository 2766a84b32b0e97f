//! The time window a dashboard covers, its buckets and its time zone, checked before any
//! query runs: every query is bounded by a range of `finished_at`, so a window's length
//! bounds what the database reads.

use chrono::{DateTime, Duration, Utc};

use crate::error::{CoreError, CoreResult};
use crate::fields::storable_time;

/// The window when the client names neither end.
pub const DEFAULT_RANGE_DAYS: i64 = 7;
/// The longest window: a year and a bit, so year-over-year views fit, and no request
/// reads more than that much of the tables.
pub const MAX_RANGE_DAYS: i64 = 400;
/// The most buckets a time series spans (`to - from` ≤ this many bucket lengths; the
/// answer has one more when `from` is not on a bucket boundary).
pub const MAX_BUCKETS: i64 = 2_000;

/// Executions that ended in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// The window a client asked for: both ends, one end (the other is 7 days away, or
    /// now for `to`), or neither (the 7 days before `now`).
    pub fn parse(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> CoreResult<TimeRange> {
        let from = storable_time(from, "from")?;
        let to = storable_time(to, "to")?;
        let default_span = Duration::days(DEFAULT_RANGE_DAYS);
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            (Some(from), None) => (from, now),
            (None, Some(to)) => (to - default_span, to),
            (None, None) => (now - default_span, now),
        };
        // A default `from` computed from a very early `to` may itself be unstorable.
        storable_time(Some(from), "to")?;
        if to <= from {
            return Err(CoreError::invalid(
                "invalid_range",
                "to",
                "to must be later than from (the default to is now)",
            ));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(CoreError::invalid(
                "range_too_long",
                "from",
                format!("a dashboard covers at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(TimeRange { from, to })
    }
}

/// The width of a time-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// The `date_trunc` field, also the unit of the series' step.
    pub fn unit(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// The nominal length (a day in a time zone with daylight saving can be 23 or 25 h).
    fn length(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        }
    }

    /// Refuses a window that spans more than [`MAX_BUCKETS`] buckets.
    pub fn check_count(self, range: &TimeRange) -> CoreResult<()> {
        if range.to - range.from > self.length() * MAX_BUCKETS as i32 {
            return Err(CoreError::invalid(
                "too_many_buckets",
                "bucket",
                format!(
                    "a time series has at most {MAX_BUCKETS} buckets: use day buckets or a \
                     shorter range"
                ),
            ));
        }
        Ok(())
    }
}

/// The time zone whose midnights and hours bound the buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl TimeZone {
    pub fn utc() -> TimeZone {
        TimeZone("UTC".into())
    }

    /// An IANA name such as `Europe/Paris` (PostgreSQL decides whether it knows it).
    /// POSIX offsets like `+02` are refused here: PostgreSQL reads their sign backwards
    /// (ISO 8601 would say east, POSIX says west), which no client expects.
    pub fn parse(name: Option<&str>) -> CoreResult<TimeZone> {
        let Some(name) = name.map(str::trim) else {
            return Ok(TimeZone::utc());
        };
        let looks_like_a_name = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
        if !looks_like_a_name {
            return Err(invalid_time_zone());
        }
        Ok(TimeZone(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

pub fn invalid_time_zone() -> CoreError {
    CoreError::invalid(
        "invalid_time_zone",
        "time_zone",
        "time_zone must be an IANA time zone name such as Europe/Paris",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn field(err: CoreError) -> (&'static str, Option<&'static str>) {
        match err {
            CoreError::Invalid { code, field, .. } => (code, field),
            other => panic!("not an Invalid error: {other:?}"),
        }
    }

    #[test]
    fn missing_ends_default_to_the_seven_days_before_now_or_after_from() {
        let now = at("2026-12-10T12:00:00Z");
        let week = Duration::days(7);
        assert_eq!(
            TimeRange::parse(None, None, now).expect("range"),
            TimeRange {
                from: now - week,
                to: now
            }
        );
        let to = at("2026-11-01T00:00:00Z");
        assert_eq!(
            TimeRange::parse(None, Some(to), now).expect("range").from,
            to - week
        );
        let from = at("2026-12-01T00:00:00Z");
        assert_eq!(
            TimeRange::parse(Some(from), None, now).expect("range"),
            TimeRange { from, to: now }
        );
    }

    #[test]
    fn empty_backwards_too_long_and_unstorable_ranges_are_refused_naming_the_field() {
        let now = at("2026-12-10T12:00:00Z");
        let t = at("2026-12-01T00:00:00Z");
        let refused = |from, to| field(TimeRange::parse(from, to, now).expect_err("refused"));
        assert_eq!(refused(Some(t), Some(t)), ("invalid_range", Some("to")));
        assert_eq!(
            refused(Some(t), Some(t - Duration::seconds(1))),
            ("invalid_range", Some("to"))
        );
        assert_eq!(
            refused(Some(now + Duration::hours(1)), None),
            ("invalid_range", Some("to"))
        );
        assert_eq!(
            refused(
                Some(t - Duration::days(400) - Duration::seconds(1)),
                Some(t)
            ),
            ("range_too_long", Some("from"))
        );
        assert!(TimeRange::parse(Some(t - Duration::days(400)), Some(t), now).is_ok());
        assert_eq!(
            refused(Some(DateTime::<Utc>::MIN_UTC), Some(t)),
            ("invalid_timestamp", Some("from"))
        );
        // A storable `to` whose default `from` (7 days earlier) is not.
        let earliest =
            DateTime::<Utc>::from_timestamp_micros(crate::fields::EARLIEST_STORABLE_MICROS + 1)
                .expect("time");
        assert_eq!(
            refused(None, Some(earliest)),
            ("invalid_timestamp", Some("to"))
        );
    }

    #[test]
    fn a_series_spans_at_most_two_thousand_buckets() {
        let to = at("2026-12-10T00:00:00Z");
        let range = |span| TimeRange {
            from: to - span,
            to,
        };
        assert!(
            Bucket::Hour
                .check_count(&range(Duration::hours(2_000)))
                .is_ok()
        );
        assert_eq!(
            field(
                Bucket::Hour
                    .check_count(&range(Duration::hours(2_000) + Duration::seconds(1)))
                    .expect_err("refused")
            ),
            ("too_many_buckets", Some("bucket"))
        );
        assert!(Bucket::Day.check_count(&range(Duration::days(400))).is_ok());
    }

    #[test]
    fn time_zones_are_iana_names_not_posix_offsets() {
        assert_eq!(TimeZone::parse(None).expect("utc").name(), "UTC");
        for name in [
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "UTC",
        ] {
            assert_eq!(TimeZone::parse(Some(name)).expect(name).name(), name);
        }
        for bad in [
            "+02",
            "-05:00",
            "",
            "Europe/Paris'; --",
            "a b",
            &"x".repeat(65),
        ] {
            assert_eq!(
                field(TimeZone::parse(Some(bad)).expect_err(bad)),
                ("invalid_time_zone", Some("time_zone"))
            );
        }
    }
}
