//! One provider URL with its headers: sends a request body, classifies failures, reads
//! JSON answers and server-sent events (with an idle time-out between chunks).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::LlmError;
use super::transport::{
    Failure, HttpLlmOptions, RetryBudget, body_failure, json_error, send_failure, status_failure,
};

pub(crate) struct Endpoint {
    pub http: reqwest::Client,
    pub url: String,
    /// Authentication and version headers (key values are marked sensitive).
    pub headers: HeaderMap,
    /// Kept only to redact it from provider messages.
    pub secret: Option<SecretString>,
    pub request_timeout: Duration,
    pub options: Arc<HttpLlmOptions>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("api_key", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Marks a header value as sensitive so that it is never printed.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        LlmError::Configuration("the API key contains characters a header cannot carry".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Endpoint {
    pub fn retry_budget(&self) -> RetryBudget<'_> {
        RetryBudget::new(&self.options)
    }

    /// After one attempt (run under the request time-out): the result, or `Continue`
    /// once the backoff has been waited. `delivered` tells whether a streamed delta was
    /// handed on (then nothing is retried).
    pub async fn settle<T>(
        &self,
        outcome: Result<Result<T, Failure>, tokio::time::error::Elapsed>,
        delivered: bool,
        budget: &mut RetryBudget<'_>,
    ) -> ControlFlow<Result<T, LlmError>> {
        let failure = match outcome {
            Ok(Ok(value)) => return ControlFlow::Break(Ok(value)),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::fatal(LlmError::Timeout(format!(
                "no complete answer within {:.1} s",
                self.request_timeout.as_secs_f64()
            ))),
        };
        match budget.next_delay(&failure, delivered) {
            Some(delay) => {
                tracing::warn!(
                    url = %self.url,
                    error = %failure.error,
                    delay_ms = delay.as_millis() as u64,
                    "LLM call failed; retrying"
                );
                tokio::time::sleep(delay).await;
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(Err(failure.error)),
        }
    }

    pub async fn post(&self, body: &[u8]) -> Result<reqwest::Response, Failure> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|error| send_failure(&error, self.secret.as_ref()))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_failure(response, self.secret.as_ref()).await)
        }
    }

    pub async fn read_json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, Failure> {
        let bytes = response
            .bytes()
            .await
            .map_err(|error| body_failure(&error, self.secret.as_ref()))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| json_error("the answer is not the expected JSON", &error))
    }

    pub fn events(&self, response: reqwest::Response) -> SseStream<'_> {
        SseStream {
            endpoint: self,
            response,
            decoder: SseDecoder::default(),
            ready: std::collections::VecDeque::new(),
            ended: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

pub(crate) struct SseStream<'a> {
    endpoint: &'a Endpoint,
    response: reqwest::Response,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<SseEvent>,
    ended: bool,
}

impl SseStream<'_> {
    /// The next event; `None` when the body ended.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, Failure> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let idle = self.endpoint.options.idle_timeout;
            let chunk = tokio::time::timeout(idle, self.response.chunk())
                .await
                .map_err(|_| {
                    Failure::fatal(LlmError::Timeout(format!(
                        "the stream was silent for {:.1} s",
                        idle.as_secs_f64()
                    )))
                })?
                .map_err(|error| body_failure(&error, self.endpoint.secret.as_ref()))?;
            match chunk {
                Some(bytes) => self.decoder.push(&bytes, &mut self.ready)?,
                None => {
                    self.ended = true;
                    self.decoder.finish(&mut self.ready);
                }
            }
        }
    }
}

/// Server-sent events decoder (the subset providers use: `event:`, `data:`, comments).
#[derive(Default)]
struct SseDecoder {
    buffer: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    fn push(
        &mut self,
        bytes: &[u8],
        out: &mut std::collections::VecDeque<SseEvent>,
    ) -> Result<(), Failure> {
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(newline) = self.buffer[start..].iter().position(|b| *b == b'\n') {
            let end = start + newline;
            let mut line = &self.buffer[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| Failure::invalid("the event stream is not UTF-8"))?;
            if line.is_empty() {
                self.dispatch(out);
            } else if let Some(data) = line.strip_prefix("data:") {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                self.has_data = true;
            } else if let Some(name) = line.strip_prefix("event:") {
                self.event = Some(name.trim().to_owned());
            }
            start = end + 1;
        }
        self.buffer.drain(..start);
        Ok(())
    }

    fn finish(&mut self, out: &mut std::collections::VecDeque<SseEvent>) {
        if !self.buffer.is_empty() {
            // A last line without its newline still counts.
            let _ = self.push(b"\n", out);
        }
        self.dispatch(out);
    }

    fn dispatch(&mut self, out: &mut std::collections::VecDeque<SseEvent>) {
        if self.has_data {
            out.push_back(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn decodes_events_split_across_chunks() {
        let mut decoder = SseDecoder::default();
        let mut out = VecDeque::new();
        for piece in [
            "event: message_start\r\nda",
            "ta: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n",
            "\ndata: [DONE]",
        ] {
            decoder.push(piece.as_bytes(), &mut out).expect("valid");
        }
        decoder.finish(&mut out);
        let events: Vec<SseEvent> = out.into_iter().collect();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }
}
