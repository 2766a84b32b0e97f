//! Sending a run's spans over OTLP/HTTP (protobuf) with opentelemetry-otlp's exporter: to
//! MLflow's `/v1/traces` (with the experiment and run headers that file the trace under the
//! experiment and link it to the run) and to the operator's other OTLP endpoint.
//!
//! Each destination gets exactly the headers configured for it: the exporter would also
//! add `OTEL_EXPORTER_OTLP_HEADERS` from the environment to every request, which must not
//! reach MLflow, so the transport below rebuilds each request's headers itself.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

use super::client::ExportError;
use super::traces::{SpanNode, SpanRole};

/// Spans per request (MLflow takes a request whole or not at all).
const SPANS_PER_REQUEST: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where spans go, with the headers for it.
pub struct Destination {
    /// For errors: `MLflow` or `the OTLP endpoint`.
    pub label: &'static str,
    pub traces_url: String,
    pub headers: HeaderMap,
}

impl Destination {
    /// MLflow's OTLP endpoint for this experiment, linking the trace to the run.
    pub fn mlflow(tracking_uri: &str, auth: HeaderMap, experiment_id: &str, run_id: &str) -> Self {
        let mut headers = auth;
        for (name, value) in [
            ("x-mlflow-experiment-id", experiment_id),
            ("x-mlflow-run-id", run_id),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        Destination {
            label: "MLflow",
            traces_url: format!("{tracking_uri}/v1/traces"),
            headers,
        }
    }

    pub fn otlp(destination: &crate::config::OtlpDestination) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &destination.headers {
            if let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose_secret()),
            ) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        Destination {
            label: "the OTLP endpoint",
            traces_url: destination.traces_url.clone(),
            headers,
        }
    }
}

/// The exporter's transport: our reqwest client, with the destination's headers only.
struct Transport {
    http: reqwest::Client,
    headers: HeaderMap,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: never printed.
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpClient for Transport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut outgoing = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(self.headers.clone())
            .body(body);
        for name in [CONTENT_TYPE, CONTENT_ENCODING] {
            if let Some(value) = parts.headers.get(&name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let response = outgoing
            .send()
            .await
            .map_err(|e| Box::new(ExportError::transport("sending spans", e)) as HttpError)?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Box::new(ExportError::transport("reading the answer", e)) as HttpError)?;
        Ok(Response::builder().status(status).body(body)?)
    }
}

/// Sends the spans to one destination, in requests of [`SPANS_PER_REQUEST`].
pub async fn send(
    http: &reqwest::Client,
    destination: &Destination,
    execution_id: Uuid,
    spans: &[SpanNode],
) -> Result<(), ExportError> {
    // The exporter's own text names the endpoint URL (which may carry a token) and the
    // collector's answer: it goes to the operator's log only, never into the export state
    // that users read.
    let failed = |e: &dyn std::fmt::Display| {
        tracing::warn!(destination = %destination.label, error = %e, "trace export failed");
        ExportError::new(format!(
            "sending the trace to {} failed (see the worker's log)",
            destination.label
        ))
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Transport {
            http: http.clone(),
            headers: destination.headers.clone(),
        })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(destination.traces_url.clone())
        .with_timeout(TIMEOUT)
        .build()
        .map_err(|e| failed(&e))?;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name("crewgraph")
            .build(),
    );
    for chunk in spans.chunks(SPANS_PER_REQUEST) {
        let batch = chunk.iter().map(|s| span_data(execution_id, s)).collect();
        exporter.export(batch).await.map_err(|e| failed(&e))?;
    }
    Ok(())
}

fn span_data(execution_id: Uuid, span: &SpanNode) -> SpanData {
    let trace_id = TraceId::from_bytes(*execution_id.as_bytes());
    SpanData {
        span_context: SpanContext::new(
            trace_id,
            SpanId::from_bytes(span.span_id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: span
            .parent
            .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
        parent_span_is_remote: false,
        span_kind: match span.role {
            SpanRole::LlmCall => SpanKind::Client,
            _ => SpanKind::Internal,
        },
        name: Cow::Owned(span.name.clone()),
        start_time: SystemTime::from(span.start),
        end_time: SystemTime::from(span.end),
        attributes: span.attributes.clone(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match &span.error {
            None => Status::Ok,
            Some(description) => Status::error(description.clone()),
        },
        instrumentation_scope: InstrumentationScope::builder("crewgraph")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    }
}
