//! The fang job that sends one attempt of a delivery. Each attempt is its own job: it
//! claims the delivery at its attempt number (so a task fang hands to two workers is sent
//! once), builds the body the first time and keeps it, signs it with a fresh `t`, posts
//! it, and records the attempt together with what follows — delivered, given up after
//! the limit, or the next attempt queued after an exponential backoff.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fang::typetag;
use fang::{AsyncQueueable, AsyncRunnable, FangError};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resources::SealedSecret;
use super::{DeliverySettings, payload, signing};
use crate::error::{CoreError, CoreResult};
use crate::jobs::{self, TASK_TYPE};
use crate::outbound::{OutboundPolicy, PublicOnlyResolver, Route};

/// How long a receiver has to answer one attempt.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An attempt under way for longer than this was cut off (its worker died): the job's
/// retry takes it up again under the same number.
const STALE_ATTEMPT: Duration = Duration::from_secs(60);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// How much of a failing receiver's answer is kept in the attempt's error.
const ANSWER_SNIPPET_CHARS: usize = 200;

/// Attempt `attempt` (from 1) of one delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub delivery_id: Uuid,
    pub attempt: i32,
}

impl WebhookDelivery {
    pub fn first(delivery_id: Uuid) -> Self {
        WebhookDelivery {
            delivery_id,
            attempt: 1,
        }
    }
}

/// The wait after failed attempt `failed` (from 1): `base`, then doubling, at most 6 h.
pub fn backoff(base: Duration, failed: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed.saturating_sub(1));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

#[typetag::serde]
#[async_trait]
impl AsyncRunnable for WebhookDelivery {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let (context, _guard) = jobs::enter()?;
        deliver(&context.db, &context.webhooks, self)
            .await
            .map_err(|error| FangError {
                description: format!("webhook delivery: {}", with_causes(&error)),
            })
    }

    fn task_type(&self) -> String {
        TASK_TYPE.into()
    }

    /// fang's retries cover the database being away and attempts still under way
    /// elsewhere (its backoff passes [`STALE_ATTEMPT`] well before the last one); a
    /// receiver's failures are the delivery's own attempts, not these.
    fn max_retries(&self) -> i32 {
        12
    }
}

#[derive(FromQueryResult)]
struct Claimed {
    execution_id: Uuid,
    event_type: String,
    event_seq: i64,
    body: Option<String>,
    url: String,
    webhook_id: Uuid,
    secret_ciphertext: Vec<u8>,
    secret_nonce: Vec<u8>,
    secret_key_version: i32,
}

enum Claim {
    Ours(Box<Claimed>),
    /// Sent already, given up, deleted, or a later attempt is due: nothing to do.
    Done,
    /// Another worker is sending this attempt right now.
    Busy,
}

async fn claim(db: &DatabaseConnection, job: &WebhookDelivery) -> CoreResult<Claim> {
    let claimed = Claimed::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE webhook_deliveries d SET attempt_count = $2, attempt_started_at = now(), \
           updated_at = now() \
         FROM webhooks w \
         WHERE d.id = $1 AND w.id = d.webhook_id AND d.status = 'pending' \
           AND (d.attempt_count = $2 - 1 OR (d.attempt_count = $2 \
                AND d.attempt_started_at < now() - make_interval(secs => $3))) \
         RETURNING d.execution_id, d.event_type, d.event_seq, d.body, w.url, w.id AS webhook_id, \
           w.secret_ciphertext, w.secret_nonce, w.secret_key_version",
        [
            job.delivery_id.into(),
            job.attempt.into(),
            STALE_ATTEMPT.as_secs_f64().into(),
        ],
    ))
    .one(db)
    .await?;
    if let Some(claimed) = claimed {
        return Ok(Claim::Ours(Box::new(claimed)));
    }
    let busy = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT 1 AS busy FROM webhook_deliveries WHERE id = $1 AND status = 'pending' \
               AND attempt_count = $2 AND attempt_started_at IS NOT NULL",
            [job.delivery_id.into(), job.attempt.into()],
        ))
        .await?;
    Ok(if busy.is_some() {
        Claim::Busy
    } else {
        Claim::Done
    })
}

/// An error with its causes (`CoreError`'s own text hides them from clients; fang's
/// stored error message is for operators).
fn with_causes(error: &CoreError) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// How one attempt went.
struct Answer {
    status_code: Option<u16>,
    /// `None`: delivered (a 2xx answer).
    error: Option<String>,
}

async fn deliver(
    db: &DatabaseConnection,
    settings: &DeliverySettings,
    job: &WebhookDelivery,
) -> CoreResult<()> {
    let claimed = match claim(db, job).await? {
        Claim::Ours(claimed) => claimed,
        Claim::Done => return Ok(()),
        Claim::Busy => {
            return Err(CoreError::Internal(anyhow::anyhow!(
                "attempt {} is under way elsewhere; checking again later",
                job.attempt
            )));
        }
    };
    let body = match &claimed.body {
        Some(body) => body.clone(),
        None => {
            let built =
                payload::build(db, job.delivery_id, claimed.execution_id, claimed.event_seq)
                    .await?;
            match built {
                Some(body) => keep_body(db, job.delivery_id, body).await?,
                None => return Ok(()), // the execution is gone, and the delivery with it
            }
        }
    };
    let started_at = Utc::now();
    let clock = Instant::now();
    let answer = match secret_of(&claimed, settings) {
        Ok(secret) => {
            let request = Request {
                delivery_id: job.delivery_id,
                event_type: &claimed.event_type,
                url: &claimed.url,
                body: &body,
            };
            send(&settings.policy, &secret, &request).await
        }
        Err(_) => Answer {
            status_code: None,
            error: Some(
                "the webhook's secret could not be decrypted (is its master key still in \
                 CREWGRAPH_ENCRYPTION_KEYS?)"
                    .into(),
            ),
        },
    };
    record(db, settings, job, started_at, clock.elapsed(), answer).await
}

fn secret_of(claimed: &Claimed, settings: &DeliverySettings) -> CoreResult<SecretString> {
    SealedSecret {
        id: claimed.webhook_id,
        secret_ciphertext: claimed.secret_ciphertext.clone(),
        secret_nonce: claimed.secret_nonce.clone(),
        secret_key_version: claimed.secret_key_version,
    }
    .open(&settings.keys)
}

/// Stores the body unless one is stored already; returns the stored one (every attempt
/// sends the same bytes).
async fn keep_body(db: &DatabaseConnection, delivery_id: Uuid, body: String) -> CoreResult<String> {
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE webhook_deliveries SET body = COALESCE(body, $2) WHERE id = $1 RETURNING body",
            [delivery_id.into(), body.clone().into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<String>("", "body"))
        .transpose()?
        .unwrap_or(body))
}

struct Request<'a> {
    delivery_id: Uuid,
    event_type: &'a str,
    url: &'a str,
    body: &'a str,
}

/// Posts the signed body once. Never follows a redirect; a name must resolve to public
/// addresses only (checked as the connection is made) unless the operator allows the host.
async fn send(policy: &OutboundPolicy, secret: &SecretString, request: &Request<'_>) -> Answer {
    let failed = |error: String| Answer {
        status_code: None,
        error: Some(error),
    };
    let route = match policy.check_base_url(request.url) {
        Ok(route) => route,
        Err(refusal) => {
            return failed(format!(
                "refused by the address policy: {} {}",
                refusal.target, refusal.reason
            ));
        }
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("crewgraph-webhooks/", env!("CARGO_PKG_VERSION")));
    if route == Route::PublicOnly {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver));
    }
    let Ok(client) = builder.build() else {
        return failed("the HTTP client could not be built".into());
    };
    let timestamp = Utc::now().timestamp();
    let signature =
        signing::signature_header(secret.expose_secret(), timestamp, request.body.as_bytes());
    let response = client
        .post(request.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signing::SIGNATURE_HEADER, signature)
        .header(signing::DELIVERY_HEADER, request.delivery_id.to_string())
        .header(signing::EVENT_HEADER, request.event_type)
        .body(request.body.to_owned())
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return failed(describe(&error)),
    };
    let status = response.status();
    if status.is_success() {
        return Answer {
            status_code: Some(status.as_u16()),
            error: None,
        };
    }
    let mut error = format!("HTTP {}", status.as_u16());
    if status.is_redirection() {
        error.push_str(" (redirects are not followed)");
    } else if let Some(text) = answer_prefix(response).await {
        let snippet: String = text.trim().chars().take(ANSWER_SNIPPET_CHARS).collect();
        if !snippet.is_empty() {
            error.push_str(": ");
            error.push_str(&snippet);
        }
    }
    Answer {
        status_code: Some(status.as_u16()),
        error: Some(error),
    }
}

/// A transport error in words, without the URL (its path or query may hold a token).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut root = None;
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        root = Some(inner.to_string());
        cause = inner.source();
    }
    let kind = if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    match root {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind.into(),
    }
}

/// Records the attempt and what follows it, in one transaction (unless another worker
/// took the attempt over meanwhile: then it records nothing).
async fn record(
    db: &DatabaseConnection,
    settings: &DeliverySettings,
    job: &WebhookDelivery,
    started_at: DateTime<Utc>,
    latency: Duration,
    answer: Answer,
) -> CoreResult<()> {
    let attempt = u32::try_from(job.attempt).unwrap_or(u32::MAX);
    let (status, retry_in) = match &answer.error {
        None => ("delivered", None),
        Some(_) if attempt >= settings.max_attempts => ("failed", None),
        Some(_) => ("pending", Some(backoff(settings.backoff_base, attempt))),
    };
    let txn = db.begin().await?;
    let updated = txn
        .execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "UPDATE webhook_deliveries SET status = $3, attempt_started_at = NULL, last_error = $4, \
               delivered_at = CASE WHEN $3 = 'delivered' THEN now() END, \
               next_attempt_at = CASE WHEN $5::float8 IS NULL THEN NULL \
                                      ELSE now() + make_interval(secs => $5::float8) END, \
               updated_at = now() \
             WHERE id = $1 AND attempt_count = $2 AND status = 'pending'",
            [
                job.delivery_id.into(),
                job.attempt.into(),
                status.into(),
                answer.error.clone().into(),
                retry_in.map(|d| d.as_secs_f64()).into(),
            ],
        ))
        .await?
        .rows_affected();
    if updated == 0 {
        return Ok(());
    }
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO webhook_delivery_attempts \
           (delivery_id, number, started_at, status_code, latency_ms, error) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (delivery_id, number) DO UPDATE SET started_at = EXCLUDED.started_at, \
           status_code = EXCLUDED.status_code, latency_ms = EXCLUDED.latency_ms, \
           error = EXCLUDED.error",
        [
            job.delivery_id.into(),
            job.attempt.into(),
            started_at.into(),
            answer.status_code.map(i32::from).into(),
            i64::try_from(latency.as_millis())
                .unwrap_or(i64::MAX)
                .into(),
            answer.error.clone().into(),
        ],
    ))
    .await?;
    if let Some(delay) = retry_in {
        let next = WebhookDelivery {
            delivery_id: job.delivery_id,
            attempt: job.attempt + 1,
        };
        jobs::enqueue(&txn, &next, delay).await?;
    }
    txn.commit().await?;
    match status {
        "delivered" => tracing::info!(delivery_id = %job.delivery_id, attempt, "webhook delivered"),
        "failed" => tracing::warn!(
            delivery_id = %job.delivery_id, attempt,
            "webhook delivery given up after the last attempt"
        ),
        _ => tracing::info!(
            delivery_id = %job.delivery_id, attempt, retry_in_secs = retry_in.map(|d| d.as_secs()),
            "webhook attempt failed; retrying"
        ),
    }
    Ok(())
}

/// The start of a receiver's answer: read chunk by chunk and dropped after a few KiB, so a
/// receiver streaming a huge body cannot fill the worker's memory.
async fn answer_prefix(mut response: reqwest::Response) -> Option<String> {
    const LIMIT: usize = 4 * 1024;
    let mut bytes = Vec::new();
    while bytes.len() < LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) if bytes.is_empty() => return None,
            Err(_) => break,
        }
    }
    bytes.truncate(LIMIT);
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_a_cap() {
        let base = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=5).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160]);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
        assert_eq!(backoff(base, 0), base);
    }

    #[test]
    fn jobs_serialise_as_fang_stores_them() {
        let job = WebhookDelivery::first(Uuid::nil());
        let stored = serde_json::to_value(&job as &dyn AsyncRunnable).expect("metadata");
        assert_eq!(stored["type"], "WebhookDelivery");
        assert_eq!(stored["attempt"], 1);
        let back: Box<dyn AsyncRunnable> = serde_json::from_value(stored).expect("read back");
        assert_eq!(back.task_type(), TASK_TYPE);
    }
}
