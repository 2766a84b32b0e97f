//! HTTP request metrics: a counter and a latency histogram per method, route template and
//! status. The route is the template the router matched (`/api/v1/graphs/{id}`), never
//! the raw path, so ids cannot multiply series; a path no route matched is
//! [`UNMATCHED_ROUTE`]. Methods outside the standard ones share one label.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The route label of a request that matched no route (404s for unknown paths).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Seconds; from a cached read (~1 ms) to a slow kickoff under load.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub(super) fn new(registry: &Registry) -> HttpMetrics {
        let labels = &["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "crewgraph_http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
            ),
            labels,
        )
        .expect("a valid static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "crewgraph_http_request_duration_seconds",
                "Time from a request's arrival to its response head (a stream's body \
                 is not included), by method, route template and status code.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )
        .expect("a valid static metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
        ] {
            if let Err(error) = registry.register(collector) {
                tracing::error!(%error, "registering HTTP metrics failed");
            }
        }
        HttpMetrics { requests, duration }
    }

    /// Counts one answered request under its route template (`None`: no route matched).
    pub fn observe(&self, method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
        let mut digits = [0u8; 3];
        let labels = [
            known_method(method),
            route.unwrap_or(UNMATCHED_ROUTE),
            status_text(status, &mut digits),
        ];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// poem's pattern syntax (`:id`, `:id<regex>`, `*rest`) written as OpenAPI templates
/// (`{id}`), as the API's documentation shows them.
pub fn route_label(pattern: &str) -> String {
    let mut label = String::with_capacity(pattern.len() + 4);
    for (i, segment) in pattern.split('/').enumerate() {
        if i > 0 {
            label.push('/');
        }
        match segment
            .strip_prefix(':')
            .or_else(|| segment.strip_prefix('*'))
        {
            Some(name) => {
                let name = name.split('<').next().unwrap_or(name);
                label.push('{');
                label.push_str(name);
                label.push('}');
            }
            None => label.push_str(segment),
        }
    }
    label
}

/// Extension methods are arbitrary tokens: they share one label.
fn known_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// A status code's three digits, without allocating.
fn status_text(status: u16, digits: &mut [u8; 3]) -> &str {
    let status = status.clamp(100, 999);
    digits[0] = b'0' + (status / 100) as u8;
    digits[1] = b'0' + (status / 10 % 10) as u8;
    digits[2] = b'0' + (status % 10) as u8;
    std::str::from_utf8(digits).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_patterns_become_openapi_templates() {
        assert_eq!(
            route_label("/api/v1/graphs/:id/executions"),
            "/api/v1/graphs/{id}/executions"
        );
        assert_eq!(route_label("/files/:name<[a-z]+>"), "/files/{name}");
        assert_eq!(route_label("/docs/*path"), "/docs/{path}");
        assert_eq!(route_label("/health"), "/health");
        assert_eq!(route_label("/"), "/");
    }

    #[test]
    fn methods_and_statuses_are_bounded_labels() {
        assert_eq!(known_method("BREW"), "other");
        assert_eq!(known_method("PATCH"), "PATCH");
        let mut digits = [0u8; 3];
        assert_eq!(status_text(202, &mut digits), "202");
        assert_eq!(status_text(7, &mut digits), "100");
    }

    #[test]
    fn requests_without_a_route_share_one_label() {
        let registry = Registry::new();
        let metrics = HttpMetrics::new(&registry);
        metrics.observe("GET", None, 404, Duration::from_millis(1));
        metrics.observe("GET", None, 404, Duration::from_millis(1));
        metrics.observe("GET", Some("/api/v1/executions/{id}"), 200, Duration::ZERO);
        metrics.observe("BREW", Some("/api/v1/executions/{id}"), 200, Duration::ZERO);
        let unmatched = metrics
            .requests
            .with_label_values(&["GET", UNMATCHED_ROUTE, "404"])
            .get();
        assert_eq!(unmatched, 2);
        let routed = metrics
            .requests
            .with_label_values(&["other", "/api/v1/executions/{id}", "200"])
            .get();
        assert_eq!(routed, 1, "an unknown method is `other`");
    }
}
