//! Webhook delivery (`core::webhooks`): the operator allow-list for receivers that are not
//! public (`CREWGRAPH_WEBHOOK_ALLOWED_HOSTS`, like `CREWGRAPH_LLM_ALLOWED_HOSTS`), how many
//! attempts a delivery gets and the base of its exponential backoff.

use std::time::Duration;

use super::reader::Reader;
use crate::outbound::{AllowedHost, OutboundPolicy, parse_allowed_hosts};

pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_WEBHOOK_BACKOFF_SECS: u64 = 10;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub allowed_hosts: Vec<AllowedHost>,
    /// Attempts of one delivery before it is given up (`failed`).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; each later wait doubles.
    pub backoff_base: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allowed_hosts: Vec::new(),
            max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            backoff_base: Duration::from_secs(DEFAULT_WEBHOOK_BACKOFF_SECS),
        }
    }
}

pub(super) fn read(reader: &mut Reader<'_>) -> WebhookConfig {
    let allowed_hosts = match reader.get("CREWGRAPH_WEBHOOK_ALLOWED_HOSTS") {
        Some(raw) => parse_allowed_hosts(&raw).unwrap_or_else(|message| {
            reader.problem(
                "CREWGRAPH_WEBHOOK_ALLOWED_HOSTS",
                format!("must be comma-separated hosts or host:port pairs: {message}"),
            );
            Vec::new()
        }),
        None => Vec::new(),
    };
    let max_attempts = reader
        .parse_ranged(
            "CREWGRAPH_WEBHOOK_MAX_ATTEMPTS",
            DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            1,
            50,
        )
        .unwrap_or(DEFAULT_WEBHOOK_MAX_ATTEMPTS);
    let backoff_secs = reader
        .parse_ranged(
            "CREWGRAPH_WEBHOOK_BACKOFF_SECS",
            DEFAULT_WEBHOOK_BACKOFF_SECS,
            1,
            3600,
        )
        .unwrap_or(DEFAULT_WEBHOOK_BACKOFF_SECS);
    WebhookConfig {
        allowed_hosts,
        max_attempts,
        backoff_base: Duration::from_secs(backoff_secs),
    }
}

impl super::Config {
    /// The policy for webhook URLs: public addresses plus the allow-list. The API checks
    /// URLs with it at creation, the worker again on the resolved address of every attempt.
    pub fn webhook_outbound_policy(&self) -> OutboundPolicy {
        OutboundPolicy::new(self.webhooks.allowed_hosts.clone())
    }
}
