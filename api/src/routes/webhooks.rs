//! Webhooks: `/api/v1/graphs/{id}/webhooks`, `/api/v1/webhooks[/{id}]`, rotating the
//! secret, and the deliveries of a webhook or an execution with every attempt. The secret
//! is in the answers to create and rotate only.

use chrono::{DateTime, Utc};
use crewgraph_core::pagination::{List, PageRequest};
use crewgraph_core::webhooks::{
    self, CreatedWebhook, Delivery, DeliveryStatus, NewWebhook, Webhook, WebhookChanges,
};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use uuid::Uuid;

use super::graph_bodies::example_time;
use super::{ApiTags, patch_field};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct WebhooksApi;

#[derive(Object)]
#[oai(example)]
pub struct CreateWebhookRequest {
    /// The receiver: an http(s) URL at a public address (or a host the operator allows
    /// in `CREWGRAPH_WEBHOOK_ALLOWED_HOSTS`).
    #[oai(validator(max_length = 2048))]
    pub url: String,
    /// Any of `execution.succeeded`, `execution.failed`, `execution.cancelled`,
    /// `task.completed`; default: the three `execution.*` ends.
    pub events: Option<Vec<String>>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
}

impl Example for CreateWebhookRequest {
    fn example() -> Self {
        CreateWebhookRequest {
            url: "https://hooks.example.com/crewgraph".into(),
            events: Some(vec![
                "execution.succeeded".into(),
                "execution.failed".into(),
            ]),
            description: Some("CI notifier".into()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateWebhookRequest {
    #[oai(validator(max_length = 2048))]
    pub url: Option<String>,
    /// Applies to runs kicked off from now on.
    pub events: Option<Vec<String>>,
    /// `null` removes it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 500))]
    pub description: MaybeUndefined<String>,
    /// A disabled webhook gets no new deliveries.
    pub enabled: Option<bool>,
}

impl Example for UpdateWebhookRequest {
    fn example() -> Self {
        UpdateWebhookRequest {
            url: None,
            events: Some(vec!["execution.failed".into()]),
            description: MaybeUndefined::Undefined,
            enabled: None,
        }
    }
}

/// A webhook (its secret is never shown again after create or rotate).
#[derive(Object)]
#[oai(rename = "Webhook", example)]
pub struct WebhookBody {
    pub id: Uuid,
    /// The graph whose every run it hears of; `null`: only kickoffs naming it in
    /// `webhook_ids` fire it.
    pub graph_id: Option<Uuid>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deliveries_url: String,
}

impl From<Webhook> for WebhookBody {
    fn from(w: Webhook) -> Self {
        WebhookBody {
            deliveries_url: format!("/api/v1/webhooks/{}/deliveries", w.id),
            id: w.id,
            graph_id: w.graph_id,
            url: w.url,
            events: w.events,
            description: w.description,
            enabled: w.enabled,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

impl Example for WebhookBody {
    fn example() -> Self {
        let id = Uuid::from_u128(0x0193_5f80_1111_7b3c_9d2e_4f60_1a2b_3c4d);
        WebhookBody {
            id,
            graph_id: Some(Uuid::from_u128(0x0193_5f7e_9d2e_7b3c_9d2e_4f60_1a2b_3c4d)),
            url: "https://hooks.example.com/crewgraph".into(),
            events: vec!["execution.succeeded".into(), "execution.failed".into()],
            description: Some("CI notifier".into()),
            enabled: true,
            created_at: example_time(),
            updated_at: example_time(),
            deliveries_url: format!("/api/v1/webhooks/{id}/deliveries"),
        }
    }
}

/// A webhook with its signing secret — shown in this answer only.
#[derive(Object)]
#[oai(rename = "WebhookWithSecret", example)]
pub struct WebhookSecretBody {
    #[oai(flatten)]
    pub webhook: WebhookBody,
    /// Keys the HMAC-SHA256 of every delivery's `X-Crewgraph-Signature`. Store it now:
    /// it is never shown again (rotate it to get a new one).
    pub secret: String,
}

impl From<CreatedWebhook> for WebhookSecretBody {
    fn from(created: CreatedWebhook) -> Self {
        WebhookSecretBody {
            secret: created.secret.expose_secret().to_string(),
            webhook: created.webhook.into(),
        }
    }
}

impl Example for WebhookSecretBody {
    fn example() -> Self {
        WebhookSecretBody {
            webhook: WebhookBody::example(),
            secret: "whsec_3q2-7wPl0cM4dS1lX2ZQkD3n8vJm5bYhT0aR6uEoW9g".into(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct WebhookPage {
    /// Oldest first.
    pub items: Vec<WebhookBody>,
    pub next_cursor: Option<String>,
}

impl Example for WebhookPage {
    fn example() -> Self {
        WebhookPage {
            items: vec![WebhookBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum DeliveryStatusBody {
    /// Not sent yet, or waiting for its next attempt (`next_attempt_at`).
    Pending,
    Delivered,
    /// Given up after the last attempt; `last_error` says why.
    Failed,
}

/// One attempt to send a delivery.
#[derive(Object)]
#[oai(rename = "WebhookAttempt")]
pub struct AttemptBody {
    /// From 1.
    pub number: i32,
    pub started_at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when it did not answer.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// Why it failed; absent when delivered.
    pub error: Option<String>,
}

/// One event sent (or to be sent) to one webhook, with every attempt.
#[derive(Object)]
#[oai(rename = "WebhookDelivery", example)]
pub struct DeliveryBody {
    /// Also the `X-Crewgraph-Delivery` header: the same on every retry.
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub execution_id: Uuid,
    pub event: String,
    pub status: DeliveryStatusBody,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The JSON body sent (every attempt sends the same); absent before the first attempt.
    pub payload: Option<Value>,
    pub attempts: Vec<AttemptBody>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        DeliveryBody {
            id: d.id,
            webhook_id: d.webhook_id,
            execution_id: d.execution_id,
            event: d.event,
            status: match d.status {
                DeliveryStatus::Pending => DeliveryStatusBody::Pending,
                DeliveryStatus::Delivered => DeliveryStatusBody::Delivered,
                DeliveryStatus::Failed => DeliveryStatusBody::Failed,
            },
            attempt_count: d.attempt_count,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
            payload: d.payload,
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptBody {
                    number: a.number,
                    started_at: a.started_at,
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    error: a.error,
                })
                .collect(),
        }
    }
}

impl Example for DeliveryBody {
    fn example() -> Self {
        let id = Uuid::from_u128(0x0193_5f80_2222_7b3c_9d2e_4f60_1a2b_3c4d);
        DeliveryBody {
            id,
            webhook_id: WebhookBody::example().id,
            execution_id: Uuid::from_u128(0x0193_5f80_0000_7b3c_9d2e_4f60_1a2b_3c4d),
            event: "execution.succeeded".into(),
            status: DeliveryStatusBody::Delivered,
            attempt_count: 2,
            next_attempt_at: None,
            last_error: None,
            delivered_at: Some(example_time()),
            created_at: example_time(),
            payload: Some(json!({"delivery_id": id, "event": "execution.succeeded"})),
            attempts: vec![
                AttemptBody {
                    number: 1,
                    started_at: example_time(),
                    status_code: Some(500),
                    latency_ms: 41,
                    error: Some("HTTP 500: upstream unavailable".into()),
                },
                AttemptBody {
                    number: 2,
                    started_at: example_time(),
                    status_code: Some(200),
                    latency_ms: 12,
                    error: None,
                },
            ],
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<DeliveryBody>,
    pub next_cursor: Option<String>,
}

impl Example for DeliveryPage {
    fn example() -> Self {
        DeliveryPage {
            items: vec![DeliveryBody::example()],
            next_cursor: None,
        }
    }
}

#[derive(ApiResponse)]
pub enum WebhookCreated {
    /// Created; `secret` is shown in this answer only.
    #[oai(status = 201)]
    Created(Json<WebhookSecretBody>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum WebhookResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookBody>),
}

#[derive(ApiResponse)]
pub enum WebhookSecretResponse {
    /// The new secret, shown in this answer only.
    #[oai(status = 200)]
    Ok(Json<WebhookSecretBody>),
}

#[derive(ApiResponse)]
pub enum WebhookPageResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookPage>),
}

#[derive(ApiResponse)]
pub enum WebhookDeleted {
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum DeliveryPageResponse {
    #[oai(status = 200)]
    Ok(Json<DeliveryPage>),
}

fn new_webhook(body: CreateWebhookRequest) -> NewWebhook {
    NewWebhook {
        url: body.url,
        events: body.events,
        description: body.description,
    }
}

fn created(created: CreatedWebhook) -> WebhookCreated {
    let location = format!("/api/v1/webhooks/{}", created.webhook.id);
    WebhookCreated::Created(Json(created.into()), location)
}

fn webhook_page(page: crewgraph_core::pagination::Page<Webhook>) -> WebhookPageResponse {
    WebhookPageResponse::Ok(Json(WebhookPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn delivery_page(page: crewgraph_core::pagination::Page<Delivery>) -> DeliveryPageResponse {
    DeliveryPageResponse::Ok(Json(DeliveryPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Add a webhook to one of your graphs: it hears of every run of the graph. Answers
    /// 201 with the webhook and its `secret`, shown this once. A URL the address policy
    /// refuses is 422 `url_not_allowed`, unknown events 422 `invalid_events`.
    #[oai(
        path = "/api/v1/graphs/:id/webhooks",
        method = "post",
        operation_id = "create_graph_webhook"
    )]
    async fn create_for_graph(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<CreateWebhookRequest>,
    ) -> Result<WebhookCreated, ApiError> {
        let policy = state.config.webhook_outbound_policy();
        let keys = &state.config.encryption_keys;
        let webhook = webhooks::create(
            &state.db,
            keys,
            &policy,
            &auth.0,
            Some(id.0),
            new_webhook(body.0),
        )
        .await?;
        Ok(created(webhook))
    }

    /// A graph's webhooks, oldest first.
    #[oai(
        path = "/api/v1/graphs/:id/webhooks",
        method = "get",
        operation_id = "list_graph_webhooks"
    )]
    async fn list_for_graph(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<WebhookPageResponse, ApiError> {
        let page = PageRequest::parse(List::Webhooks, limit.0, cursor.0.as_deref())?;
        let result = webhooks::list(&state.db, &auth.0, Some(id.0), page).await?;
        Ok(webhook_page(result))
    }

    /// Create a webhook on no graph: only kickoffs that name it in `webhook_ids` fire it.
    #[oai(
        path = "/api/v1/webhooks",
        method = "post",
        operation_id = "create_webhook"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateWebhookRequest>,
    ) -> Result<WebhookCreated, ApiError> {
        let policy = state.config.webhook_outbound_policy();
        let keys = &state.config.encryption_keys;
        let webhook =
            webhooks::create(&state.db, keys, &policy, &auth.0, None, new_webhook(body.0)).await?;
        Ok(created(webhook))
    }

    /// All your webhooks (every graph's and those on no graph), oldest first.
    #[oai(
        path = "/api/v1/webhooks",
        method = "get",
        operation_id = "list_webhooks"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<WebhookPageResponse, ApiError> {
        let page = PageRequest::parse(List::Webhooks, limit.0, cursor.0.as_deref())?;
        let result = webhooks::list(&state.db, &auth.0, None, page).await?;
        Ok(webhook_page(result))
    }

    /// One webhook (without its secret).
    #[oai(
        path = "/api/v1/webhooks/:id",
        method = "get",
        operation_id = "get_webhook"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<WebhookResponse, ApiError> {
        let webhook = webhooks::get(&state.db, &auth.0, id.0).await?;
        Ok(WebhookResponse::Ok(Json(webhook.into())))
    }

    /// Change a webhook's URL, events, description, or switch it off (`enabled: false`).
    #[oai(
        path = "/api/v1/webhooks/:id",
        method = "patch",
        operation_id = "update_webhook"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateWebhookRequest>,
    ) -> Result<WebhookResponse, ApiError> {
        let body = body.0;
        let changes = WebhookChanges {
            url: body.url,
            events: body.events,
            description: patch_field(body.description),
            enabled: body.enabled,
        };
        let policy = state.config.webhook_outbound_policy();
        let webhook = webhooks::update(&state.db, &policy, &auth.0, id.0, changes).await?;
        Ok(WebhookResponse::Ok(Json(webhook.into())))
    }

    /// Delete a webhook with its deliveries (pending ones are not sent).
    #[oai(
        path = "/api/v1/webhooks/:id",
        method = "delete",
        operation_id = "delete_webhook"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<WebhookDeleted, ApiError> {
        webhooks::delete(&state.db, &auth.0, id.0).await?;
        Ok(WebhookDeleted::NoContent)
    }

    /// Replace the signing secret; the new one is in this answer only, and every attempt
    /// from now on (retries of older deliveries too) signs with it.
    #[oai(
        path = "/api/v1/webhooks/:id/rotate-secret",
        method = "post",
        operation_id = "rotate_webhook_secret"
    )]
    async fn rotate_secret(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<WebhookSecretResponse, ApiError> {
        let keys = &state.config.encryption_keys;
        let rotated = webhooks::rotate_secret(&state.db, keys, &auth.0, id.0).await?;
        Ok(WebhookSecretResponse::Ok(Json(rotated.into())))
    }

    /// A webhook's deliveries, newest first, each with every attempt (status, latency,
    /// error).
    #[oai(
        path = "/api/v1/webhooks/:id/deliveries",
        method = "get",
        operation_id = "list_webhook_deliveries"
    )]
    async fn deliveries(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<DeliveryPageResponse, ApiError> {
        let page = PageRequest::parse(List::WebhookDeliveries, limit.0, cursor.0.as_deref())?;
        let result = webhooks::for_webhook(&state.db, &auth.0, id.0, page).await?;
        Ok(delivery_page(result))
    }

    /// The webhook deliveries about one execution, newest first, with every attempt.
    #[oai(
        path = "/api/v1/executions/:id/webhook-deliveries",
        method = "get",
        operation_id = "list_execution_webhook_deliveries"
    )]
    async fn execution_deliveries(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<DeliveryPageResponse, ApiError> {
        let page = PageRequest::parse(List::WebhookDeliveries, limit.0, cursor.0.as_deref())?;
        let result = webhooks::for_execution(&state.db, &auth.0, id.0, page).await?;
        Ok(delivery_page(result))
    }
}
