//! Signed webhooks. A user's webhook names a URL and the events it wants; a graph's
//! webhooks fire for every run of the graph, and a kickoff may name more (`webhook_ids`).
//! Which webhooks an execution reports to is fixed at kickoff (`execution_webhooks`).
//!
//! Appending a subscribed event creates its delivery, and queues the fang job that sends
//! it, in the transaction that appends the event ([`subscriptions::on_events_appended`]):
//! a delivery exists exactly when its event does. The job ([`WebhookDelivery`]) posts
//! the JSON summary signed with the webhook's secret (`X-Crewgraph-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`), records every attempt, and retries with
//! exponential backoff until the attempt limit, after which the delivery is `failed`.
//! Receivers are checked by the outbound address policy at creation and again on the
//! resolved address of every attempt.

mod deliveries;
mod delivery;
mod payload;
mod resources;
pub mod signing;
mod subscriptions;

use std::time::Duration;

use crate::config::{Config, EncryptionKeys};
use crate::outbound::OutboundPolicy;

pub use deliveries::{Attempt, Delivery, DeliveryStatus, for_execution, for_webhook};
pub use delivery::{REQUEST_TIMEOUT, WebhookDelivery, backoff};
pub use resources::{
    CreatedWebhook, MAX_WEBHOOKS_PER_GRAPH, NewWebhook, Webhook, WebhookChanges, create, delete,
    get, list, rotate_all_secrets, rotate_secret, update,
};
pub use subscriptions::{MAX_KICKOFF_WEBHOOKS, attach_to_execution, on_events_appended};

/// Events a webhook can subscribe to.
pub const EVENT_TYPES: [&str; 4] = [
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
    "task.completed",
];

/// What a webhook created without `events` gets: the ends of a run.
pub const DEFAULT_EVENTS: [&str; 3] = [
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
];

/// Whether a webhook can subscribe to events of this type.
pub fn is_subscribable(event_type: &str) -> bool {
    EVENT_TYPES.contains(&event_type)
}

/// What delivering needs from the process (the worker's job pool).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub keys: EncryptionKeys,
    pub policy: OutboundPolicy,
    /// Attempts of one delivery before it is given up.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; each later one doubles.
    pub backoff_base: Duration,
}

impl DeliverySettings {
    pub fn from_config(config: &Config) -> Self {
        DeliverySettings {
            keys: config.encryption_keys.clone(),
            policy: config.webhook_outbound_policy(),
            max_attempts: config.webhooks.max_attempts,
            backoff_base: config.webhooks.backoff_base,
        }
    }
}
