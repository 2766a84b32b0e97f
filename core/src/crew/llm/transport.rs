//! What both provider clients share: time-outs, retries with backoff, `Retry-After`, and
//! turning HTTP failures into [`LlmError`]s that carry the provider's structured error
//! message (never the raw body, never the API key).

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret as _, SecretString};

use super::LlmError;
use crate::outbound::ResolveError;

/// Provider messages quoted in errors are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;
/// Error bodies larger than this are not worth reading.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Time-outs and retries of the HTTP LLM clients.
#[derive(Debug, Clone)]
pub struct HttpLlmOptions {
    pub connect_timeout: Duration,
    /// Per request (attempt) when `LlmSpec::timeout` is not set.
    pub default_request_timeout: Duration,
    /// The longest silence allowed between two chunks of a streamed answer.
    pub idle_timeout: Duration,
    /// Retries after the first attempt (429, 5xx, connection errors).
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A provider's `Retry-After` is honoured up to this long.
    pub max_retry_after: Duration,
}

impl Default for HttpLlmOptions {
    fn default() -> Self {
        HttpLlmOptions {
            connect_timeout: Duration::from_secs(10),
            default_request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// A failed attempt and whether another attempt may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: LlmError,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn fatal(error: LlmError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    pub fn transient(error: LlmError) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }

    pub fn invalid(what: impl fmt::Display) -> Failure {
        Failure::fatal(LlmError::InvalidResponse(truncate(&what.to_string())))
    }
}

impl From<LlmError> for Failure {
    fn from(error: LlmError) -> Self {
        Failure::fatal(error)
    }
}

/// Decides, after each failed attempt, whether and when to try again.
pub(crate) struct RetryBudget<'a> {
    options: &'a HttpLlmOptions,
    retries: u32,
}

impl<'a> RetryBudget<'a> {
    pub fn new(options: &'a HttpLlmOptions) -> Self {
        RetryBudget {
            options,
            retries: 0,
        }
    }

    /// The delay before the next attempt, or `None` to give up. Nothing is retried once
    /// a streamed delta has been handed on: the caller has already shown it.
    pub fn next_delay(&mut self, failure: &Failure, delivered: bool) -> Option<Duration> {
        if !failure.retryable || delivered || self.retries >= self.options.max_retries {
            return None;
        }
        let delay = match failure.retry_after {
            Some(wait) => wait.min(self.options.max_retry_after),
            None => backoff(self.options, self.retries),
        };
        self.retries += 1;
        Some(delay)
    }
}

/// Exponential backoff with jitter: a random delay in [half, full] of
/// `initial * 2^retry`, capped.
fn backoff(options: &HttpLlmOptions, retry: u32) -> Duration {
    let full = options
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(retry))
        .min(options.max_backoff);
    let factor = rand::thread_rng().gen_range(0.5..=1.0);
    full.mul_f64(factor)
}

/// `Retry-After` as seconds or an HTTP date (OpenAI also sends `retry-after-ms`).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after_value(value, now)
}

pub fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(u32::MAX as f64)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let date = SystemTime::from(date);
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A failed `send`: refused connections and resets may be retried, time-outs and
/// addresses the outbound policy refused are not.
pub(crate) fn send_failure(error: &reqwest::Error, secret: Option<&SecretString>) -> Failure {
    if let Some(refused @ ResolveError::NotPublic { .. }) = policy_refusal(error) {
        return Failure::fatal(LlmError::AddressRefused(format!(
            "{refused}: only public addresses are allowed unless an operator lists the host \
             in CREWGRAPH_LLM_ALLOWED_HOSTS"
        )));
    }
    let message = redact(&error_chain(error), secret);
    if error.is_timeout() {
        Failure::fatal(LlmError::Timeout(message))
    } else if error.is_connect() || error.is_request() {
        Failure::transient(LlmError::Unavailable(message))
    } else {
        Failure::fatal(LlmError::InvalidResponse(message))
    }
}

/// A failure while reading a body: a cut connection may be retried (if nothing was
/// delivered yet). reqwest reports every body read failure as a "decode" error, but we
/// parse JSON ourselves (and no compression is on), so these are all transport failures.
pub(crate) fn body_failure(error: &reqwest::Error, secret: Option<&SecretString>) -> Failure {
    let message = redact(&error_chain(error), secret);
    if error.is_timeout() {
        Failure::fatal(LlmError::Timeout(message))
    } else {
        Failure::transient(LlmError::Unavailable(format!(
            "the connection failed while reading the answer: {message}"
        )))
    }
}

/// The outbound policy's verdict, if that is what stopped the connection.
fn policy_refusal(error: &reqwest::Error) -> Option<&ResolveError> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<ResolveError>() {
            return Some(refusal);
        }
        source = cause.source();
    }
    None
}

fn error_chain(error: &reqwest::Error) -> String {
    // reqwest's own message names the URL; its sources say what actually happened.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(&message)
}

/// Reads a non-success response and classifies it.
pub(crate) async fn status_failure(
    response: reqwest::Response,
    secret: Option<&SecretString>,
) -> Failure {
    let status = response.status();
    let retry_after = parse_retry_after(response.headers(), SystemTime::now());
    let body = read_error_body(response).await;
    let message = redact(&provider_message(&body), secret);
    let message = format!("HTTP {}: {message}", status.as_u16());
    let code = status.as_u16();
    let lowered = body.to_ascii_lowercase();
    let context_too_long = lowered.contains("context_length_exceeded")
        || lowered.contains("prompt is too long")
        || lowered.contains("maximum context length")
        || lowered.contains("context window");
    let (error, retryable) = match code {
        401 | 403 => (LlmError::Authentication(message), false),
        429 => (LlmError::RateLimited(message), true),
        400 | 413 if context_too_long => (LlmError::ContextTooLong(message), false),
        400..=499 => (LlmError::BadRequest(message), false),
        500..=599 => (LlmError::Unavailable(message), true),
        _ => (LlmError::InvalidResponse(message), false),
    };
    Failure {
        error,
        retryable,
        retry_after: if retryable { retry_after } else { None },
    }
}

async fn read_error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The provider's structured error message: OpenAI and Anthropic put it at
/// `error.message`, Ollama sends `error` as a string. Anything else in the body (an HTML
/// page, a stack trace, whatever a server answers) is never quoted.
fn provider_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|json| {
        [&json["error"]["message"], &json["error"]]
            .into_iter()
            .find_map(|value| value.as_str().map(str::to_owned))
    });
    match message {
        Some(message) => truncate(&message),
        None => "(the answer held no provider error message)".to_owned(),
    }
}

/// A JSON error without the text it quotes (serde quotes the offending value).
pub(crate) fn json_error(what: &str, error: &serde_json::Error) -> Failure {
    Failure::invalid(format!(
        "{what} (line {}, column {})",
        error.line(),
        error.column()
    ))
}

pub(crate) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Removes the API key from a message (some providers echo it back).
pub(crate) fn redact(message: &str, secret: Option<&SecretString>) -> String {
    match secret.map(|secret| secret.expose_secret()) {
        Some(key) if !key.is_empty() => message.replace(key, "[REDACTED]"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_in_seconds_and_as_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(
            parse_retry_after_value("3", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after_value(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after_value("-1", now), None);
        assert_eq!(parse_retry_after_value("soon", now), None);
    }

    #[test]
    fn retry_after_ms_wins() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("20"));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(
            parse_retry_after(&headers, SystemTime::now()),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn retry_budget_caps_retry_after_and_stops_after_delivery_or_max() {
        let options = HttpLlmOptions {
            max_retries: 2,
            max_retry_after: Duration::from_secs(5),
            ..HttpLlmOptions::default()
        };
        let mut budget = RetryBudget::new(&options);
        let mut limited = Failure::transient(LlmError::RateLimited("x".into()));
        limited.retry_after = Some(Duration::from_secs(600));
        assert_eq!(
            budget.next_delay(&limited, false),
            Some(Duration::from_secs(5))
        );
        assert_eq!(budget.next_delay(&limited, true), None);
        let backoff = budget
            .next_delay(
                &Failure::transient(LlmError::Unavailable("x".into())),
                false,
            )
            .expect("second retry");
        // Second retry: between half and all of 2 × initial.
        assert!(backoff >= options.initial_backoff && backoff <= options.initial_backoff * 2);
        assert_eq!(budget.next_delay(&limited, false), None);
        let mut fresh = RetryBudget::new(&options);
        assert_eq!(
            fresh.next_delay(&Failure::fatal(LlmError::BadRequest("x".into())), false),
            None
        );
    }

    #[test]
    fn messages_are_redacted_and_truncated() {
        let key = SecretString::from("sk-secret-123");
        assert_eq!(
            redact("Incorrect API key provided: sk-secret-123.", Some(&key)),
            "Incorrect API key provided: [REDACTED]."
        );
        let long = "x".repeat(1000);
        assert_eq!(truncate(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            provider_message(r#"{"type":"error","error":{"type":"x","message":"boom"}}"#),
            "boom"
        );
        assert_eq!(
            provider_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        let reduced = "(the answer held no provider error message)";
        assert_eq!(provider_message(r#"{"detail":"internal"}"#), reduced);
        assert_eq!(provider_message("<html>internal page</html>"), reduced);
        assert_eq!(provider_message(""), reduced);
    }
}
