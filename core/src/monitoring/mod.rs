//! Prometheus metrics (docs/metrics.md, "Prometheus"): one registry per process, served
//! as text (format 0.0.4) at `/metrics` by the API and by each worker's own HTTP port.
//!
//! Three kinds of figures:
//! - counters and histograms moved where things happen: HTTP requests ([`http`]), runs'
//!   LLM and tool calls and executions' ends ([`runs`]). They cost an atomic add or two:
//!   handles are resolved once where the label set is known in advance, and every label
//!   value comes from a bounded set (route templates, providers, known tools, end codes),
//!   never from user input;
//! - facts about the database (queue depth, running crews, follow-up jobs, the pool),
//!   read with a few cheap indexed queries at scrape time ([`database`]), so nothing is
//!   kept in step per request;
//! - a process's own state (SSE clients, crews in flight), added by its scrape handler.
//!
//! Labels never carry user data: no user, graph or execution ids, no emails, no raw paths.

use std::sync::LazyLock;

use prometheus::proto::MetricFamily;
use prometheus::{Encoder as _, Gauge, IntGauge, Opts, Registry, TextEncoder};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

pub mod database;
pub mod http;
pub mod runs;

pub use database::database_facts;
pub use http::{HttpMetrics, UNMATCHED_ROUTE, route_label};
pub use runs::{ExecutionMetrics, RunMetrics};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every metric family this process registers up front.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub executions: ExecutionMetrics,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        Metrics {
            http: HttpMetrics::new(&registry),
            executions: ExecutionMetrics::new(&registry),
            registry,
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every registered family, then of `scraped` (gauges read
    /// just now).
    pub fn render(&self, scraped: Scraped) -> String {
        let mut families = self.registry.gather();
        families.extend(scraped.families);
        let mut buffer = Vec::with_capacity(16 * 1024);
        if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Gauges read at scrape time (database facts, a process's own state), rendered after the
/// registered families.
#[derive(Default)]
pub struct Scraped {
    families: Vec<MetricFamily>,
}

impl Scraped {
    /// A gauge without labels. `name` and `help` are static (a bad name is a bug).
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        match IntGauge::with_opts(Opts::new(name, help)) {
            Ok(gauge) => {
                gauge.set(value);
                self.families
                    .extend(prometheus::core::Collector::collect(&gauge));
            }
            Err(error) => tracing::error!(%error, name, "invalid gauge"),
        }
    }

    /// A gauge without labels whose value is not whole (seconds, say).
    pub fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        match Gauge::with_opts(Opts::new(name, help)) {
            Ok(gauge) => {
                gauge.set(value);
                self.families
                    .extend(prometheus::core::Collector::collect(&gauge));
            }
            Err(error) => tracing::error!(%error, name, "invalid gauge"),
        }
    }

    pub(crate) fn extend(&mut self, families: Vec<MetricFamily>) {
        self.families.extend(families);
    }
}

/// Whether a scrape may read `/metrics`: anyone when no token is configured
/// (`CREWGRAPH_METRICS_TOKEN`); otherwise only `Authorization: Bearer <token>`. Digests
/// are compared, so the time taken says nothing about the token.
pub fn scrape_allowed(token: Option<&SecretString>, authorization: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(offered) = authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, offered)| offered.trim())
    else {
        return false;
    };
    let expected = Sha256::digest(token.expose_secret().as_bytes());
    let offered = Sha256::digest(offered.as_bytes());
    expected
        .iter()
        .zip(offered.iter())
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// A label value from a bounded vocabulary: short identifiers are kept, anything else
/// (unexpected input that could multiply series) becomes `other`.
pub(crate) fn bounded_label(value: &str) -> &str {
    let plain = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain { value } else { "other" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_holds_registered_and_scraped_families() {
        let metrics = Metrics::new();
        metrics.http.observe(
            "GET",
            Some("/api/v1/graphs/{id}"),
            200,
            std::time::Duration::from_millis(3),
        );
        let mut scraped = Scraped::default();
        scraped.gauge("crewgraph_test_gauge", "A test gauge.", 7);
        let text = metrics.render(scraped);
        assert!(text.contains(
            "crewgraph_http_requests_total{method=\"GET\",route=\"/api/v1/graphs/{id}\",status=\"200\"} 1"
        ));
        assert!(text.contains("# TYPE crewgraph_test_gauge gauge\ncrewgraph_test_gauge 7"));
    }

    #[test]
    fn a_configured_token_is_required_as_a_bearer_token() {
        assert!(scrape_allowed(None, None));
        let token = SecretString::from("a-long-enough-scrape-token");
        assert!(scrape_allowed(
            Some(&token),
            Some("Bearer a-long-enough-scrape-token")
        ));
        assert!(scrape_allowed(
            Some(&token),
            Some("bearer a-long-enough-scrape-token")
        ));
        assert!(!scrape_allowed(Some(&token), None));
        assert!(!scrape_allowed(Some(&token), Some("Bearer wrong")));
        assert!(!scrape_allowed(
            Some(&token),
            Some("Basic a-long-enough-scrape-token")
        ));
    }

    #[test]
    fn labels_outside_the_plain_vocabulary_become_other() {
        assert_eq!(bounded_label("task_failed"), "task_failed");
        assert_eq!(bounded_label(""), "other");
        assert_eq!(bounded_label("has space"), "other");
        assert_eq!(bounded_label(&"x".repeat(65)), "other");
    }
}
