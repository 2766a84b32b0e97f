//! Reading deliveries with every attempt: a webhook's, or an execution's (newest first).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{CoreError, CoreResult};
use crate::pagination::{Page, PageRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not sent yet, or retrying (`next_attempt_at` says when).
    Pending,
    Delivered,
    /// Given up after the last attempt (`last_error` says why).
    Failed,
}

impl DeliveryStatus {
    fn parse(value: &str) -> CoreResult<Self> {
        match value {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(CoreError::Internal(anyhow::anyhow!(
                "unknown delivery status {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub execution_id: Uuid,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The body sent (the same for every attempt); `None` before the first attempt.
    pub payload: Option<Value>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub number: i32,
    pub started_at: DateTime<Utc>,
    /// The receiver's HTTP status; `None` when it did not answer.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(FromQueryResult)]
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    execution_id: Uuid,
    event_type: String,
    status: String,
    attempt_count: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    body: Option<String>,
}

/// Deliveries of one of the caller's webhooks.
pub async fn for_webhook(
    db: &DatabaseConnection,
    principal: &Principal,
    webhook_id: Uuid,
    page: PageRequest,
) -> CoreResult<Page<Delivery>> {
    super::get(db, principal, webhook_id).await?;
    list(db, principal, "webhook_id", webhook_id, page).await
}

/// Deliveries about one of the caller's executions.
pub async fn for_execution(
    db: &DatabaseConnection,
    principal: &Principal,
    execution_id: Uuid,
    page: PageRequest,
) -> CoreResult<Page<Delivery>> {
    crate::executions::get(db, principal, execution_id).await?;
    list(db, principal, "execution_id", execution_id, page).await
}

async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    column: &'static str,
    value: Uuid,
    page: PageRequest,
) -> CoreResult<Page<Delivery>> {
    let rows = DeliveryRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT id, webhook_id, execution_id, event_type, status, attempt_count, \
               next_attempt_at, last_error, delivered_at, created_at, body \
             FROM webhook_deliveries WHERE {column} = $1 AND user_id = $2 \
               AND ($3::uuid IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ),
        [
            value.into(),
            principal.user_id.into(),
            page.after_id()?.into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let mut attempts = if ids.is_empty() {
        Vec::new()
    } else {
        db.query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT delivery_id, number, started_at, status_code, latency_ms, error \
             FROM webhook_delivery_attempts \
             WHERE delivery_id = ANY(string_to_array($1, ',')::uuid[]) \
             ORDER BY delivery_id, number",
            [ids.join(",").into()],
        ))
        .await?
        .into_iter()
        .map(|row| Attempt::from_query_result(&row, ""))
        .collect::<Result<Vec<Attempt>, sea_orm::DbErr>>()?
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let (mine, rest): (Vec<Attempt>, Vec<Attempt>) =
            attempts.into_iter().partition(|a| a.delivery_id == row.id);
        attempts = rest;
        items.push(Delivery {
            id: row.id,
            webhook_id: row.webhook_id,
            execution_id: row.execution_id,
            event: row.event_type,
            status: DeliveryStatus::parse(&row.status)?,
            attempt_count: row.attempt_count,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
            payload: row.body.and_then(|b| serde_json::from_str(&b).ok()),
            attempts: mine,
        });
    }
    Ok(Page::from_rows(items, page, |d| d.id))
}
