//! Prometheus on the API (docs/metrics.md, "Prometheus"): the request metrics middleware
//! and `GET /metrics`, an operators' endpoint outside the versioned, documented API.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crewgraph_core::monitoring::{self, Scraped};
use poem::PathPattern;
use poem::http::header;
use poem::web::Data;
use poem::{Endpoint, Middleware, Request, Response, Result, handler};

use crate::error::ApiError;
use crate::startup::AppState;

/// Counts every answered request by method, route template and status, with its latency
/// up to the response head: a server-sent event stream's long body is not its latency.
/// Placed outside the error mapping and the panic catcher, so it sees the final status.
pub struct RequestMetrics {
    templates: Arc<HashMap<String, String>>,
}

impl RequestMetrics {
    /// `spec` is the OpenAPI document: its paths name the documented operations' routes.
    pub fn new(spec: &str) -> RequestMetrics {
        RequestMetrics {
            templates: Arc::new(route_templates(spec)),
        }
    }
}

/// poem-openapi routes a documented `/api/v1/graphs/{id}` as `/api/v1/graphs/:param0`:
/// each router pattern → the template the OpenAPI document shows.
fn route_templates(spec: &str) -> HashMap<String, String> {
    let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
    let Some(paths) = spec["paths"].as_object() else {
        return HashMap::new();
    };
    paths
        .keys()
        .map(|template| {
            let mut params = 0;
            let pattern: Vec<String> = template
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') && segment.ends_with('}') {
                        params += 1;
                        format!(":param{}", params - 1)
                    } else {
                        segment.to_string()
                    }
                })
                .collect();
            (pattern.join("/"), template.clone())
        })
        .collect()
}

impl<E: Endpoint> Middleware<E> for RequestMetrics {
    type Output = RequestMetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestMetricsEndpoint {
            inner,
            templates: self.templates.clone(),
        }
    }
}

pub struct RequestMetricsEndpoint<E> {
    inner: E,
    templates: Arc<HashMap<String, String>>,
}

impl<E: Endpoint> Endpoint for RequestMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let started = Instant::now();
        let method = req.method().clone();
        let response = self.inner.get_response(req).await;
        // The router leaves the pattern it matched on the response (errors keep it too,
        // see `error::into_json_response`); a path no route matched has none.
        let route = response.data::<PathPattern>().map(|pattern| {
            match self.templates.get(&*pattern.0) {
                Some(template) => Cow::Borrowed(template.as_str()),
                // Routes outside the OpenAPI document (`/metrics`, `/docs`).
                None => Cow::Owned(monitoring::route_label(&pattern.0)),
            }
        });
        monitoring::metrics().http.observe(
            method.as_str(),
            route.as_deref(),
            response.status().as_u16(),
            started.elapsed(),
        );
        Ok(response)
    }
}

/// `GET /metrics`: the text exposition format. Open unless `CREWGRAPH_METRICS_TOKEN` is
/// set; it carries no per-user data either way.
#[handler]
pub async fn metrics(request: &Request, state: Data<&AppState>) -> Result<Response> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = state.config.monitoring.metrics_token.as_ref();
    if !monitoring::scrape_allowed(token, authorization) {
        return Err(ApiError::Unauthorized(
            "this endpoint requires `Authorization: Bearer <CREWGRAPH_METRICS_TOKEN>`".into(),
        )
        .into());
    }
    let mut scraped = Scraped::default();
    monitoring::database_facts(&state.db, &mut scraped).await;
    scraped.gauge(
        "crewgraph_sse_clients",
        "Clients following an execution's events over SSE on this API process.",
        i64::try_from(state.events.clients()).unwrap_or(i64::MAX),
    );
    let body = monitoring::metrics().render(scraped);
    Ok(Response::builder()
        .content_type(monitoring::CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::route_templates;

    #[test]
    fn the_router_patterns_of_documented_operations_map_to_their_templates() {
        let templates = route_templates(&crate::startup::openapi_json());
        assert_eq!(
            templates
                .get("/api/v1/graphs/:param0/executions")
                .map(String::as_str),
            Some("/api/v1/graphs/{id}/executions")
        );
        assert_eq!(
            templates.get("/health").map(String::as_str),
            Some("/health")
        );
    }
}
