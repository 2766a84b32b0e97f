//! Request-level middleware: request ids with access logs, and the body size limit.

use std::time::Instant;

use poem::http::{HeaderValue, Method, header};
use poem::{Endpoint, Middleware, Request, Response, Result};
use tracing::Instrument as _;

use crate::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// Keeps the caller's `X-Request-Id` (when it is a sane token) or makes one, puts it on the
/// tracing span of the request so every log line carries it, echoes it in the response,
/// and logs one access line with method, path, status and latency.
///
/// Only the path is logged: query strings and headers may carry credentials (stream
/// tokens, `Authorization`), and bodies may carry passwords.
pub struct RequestContext;

impl<E: Endpoint> Middleware<E> for RequestContext {
    type Output = RequestContextEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestContextEndpoint { inner }
    }
}

pub struct RequestContextEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for RequestContextEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_acceptable_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            path = %path,
        );
        async move {
            let started = Instant::now();
            let mut response = self.inner.get_response(req).await;
            let status = response.status().as_u16();
            let latency_us = started.elapsed().as_micros() as u64;
            if status >= 500 {
                tracing::error!(status, latency_us, "request failed");
            } else {
                tracing::info!(status, latency_us, "request completed");
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// Incoming ids end up in logs: accept only short tokens of safe characters.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Rejects bodies over `limit` bytes with 413, whether the client announced the length or
/// streamed the body chunked. Bodies under the limit are buffered (they are JSON documents
/// that would be buffered to parse anyway).
pub struct BodyLimit {
    pub limit: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            limit: self.limit,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    limit: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let too_large = || ApiError::PayloadTooLarge { limit: self.limit };
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|len| len > self.limit as u64) {
            return Err(too_large().into());
        }
        let may_have_body = declared_length.is_some_and(|len| len > 0)
            || req.headers().contains_key(header::TRANSFER_ENCODING)
            || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if may_have_body {
            let body = req.take_body();
            match body.into_bytes_limit(self.limit).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                    return Err(too_large().into());
                }
                Err(e) => {
                    return Err(ApiError::BadRequest {
                        code: "malformed_body",
                        message: format!("the request body could not be read: {e}"),
                    }
                    .into());
                }
            }
        }
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::is_acceptable_request_id;

    #[test]
    fn request_ids_are_limited_to_safe_tokens() {
        assert!(is_acceptable_request_id("abc-123_x.y:z"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id("line\nbreak"));
        assert!(!is_acceptable_request_id(&"a".repeat(129)));
    }
}
