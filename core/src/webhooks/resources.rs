//! Webhooks as the caller's resources: create (the secret is returned once), list, get,
//! change, delete, rotate the secret; and re-encryption under a new master key.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::{DEFAULT_EVENTS, EVENT_TYPES, signing};
use crate::auth::Principal;
use crate::config::EncryptionKeys;
use crate::crypto::{self, Sealed};
use crate::error::{CoreError, CoreResult};
use crate::fields;
use crate::outbound::OutboundPolicy;
use crate::pagination::{Page, PageRequest};

pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Webhooks one graph may have (each run sends to every one).
pub const MAX_WEBHOOKS_PER_GRAPH: i64 = 20;
/// What a secret is sealed as (associated data), bound to its webhook's id.
pub(super) const SECRET_CONTEXT: &[u8] = b"crewgraph:webhook-secret:";
const ROTATION_BATCH: i64 = 100;

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: Uuid,
    /// `None`: fired only by kickoffs that name it.
    pub graph_id: Option<Uuid>,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct WebhookRow {
    id: Uuid,
    graph_id: Option<Uuid>,
    url: String,
    events: String,
    description: Option<String>,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Webhook {
            id: row.id,
            graph_id: row.graph_id,
            url: row.url,
            events: row.events.split(',').map(str::to_string).collect(),
            description: row.description,
            enabled: row.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, graph_id, url, array_to_string(events, ',') AS events, description, \
                       enabled, created_at, updated_at";

pub struct NewWebhook {
    pub url: String,
    /// `None`: [`DEFAULT_EVENTS`].
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A webhook with its secret: only the answers to create and rotate hold one.
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: SecretString,
}

#[derive(Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// An http(s) URL that the address policy lets through (no DNS here: the worker checks
/// the resolved address of every attempt).
fn validate_url(url: &str, policy: &OutboundPolicy) -> CoreResult<String> {
    let url = url.trim();
    let parsed = Url::parse(url).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host().is_some() && url.len() <= MAX_URL_CHARS
    });
    if parsed.is_none() {
        return Err(CoreError::invalid(
            "invalid_url",
            "url",
            format!("url must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"),
        ));
    }
    policy.check_base_url(url).map_err(|refusal| {
        CoreError::invalid(
            "url_not_allowed",
            "url",
            format!(
                "{} {}: webhooks may only call public addresses unless an operator lists the \
                 host in CREWGRAPH_WEBHOOK_ALLOWED_HOSTS",
                refusal.target, refusal.reason
            ),
        )
    })?;
    Ok(url.to_string())
}

/// Known event types, without duplicates, in the order given; at least one.
fn validate_events(events: Option<Vec<String>>) -> CoreResult<Vec<String>> {
    let Some(events) = events else {
        return Ok(DEFAULT_EVENTS.map(String::from).to_vec());
    };
    let unknown: Vec<&String> = events
        .iter()
        .filter(|e| !EVENT_TYPES.contains(&e.as_str()))
        .collect();
    if !unknown.is_empty() || events.is_empty() {
        return Err(CoreError::Problems {
            code: "invalid_events",
            message: format!(
                "events must name at least one of: {}",
                EVENT_TYPES.join(", ")
            ),
            details: json!({ "field": "events", "unknown": unknown, "allowed": EVENT_TYPES }),
        });
    }
    let mut kept: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        if !kept.contains(&event) {
            kept.push(event);
        }
    }
    Ok(kept)
}

fn validate_description(description: Option<String>) -> CoreResult<Option<String>> {
    fields::optional_text(
        description,
        "description",
        "invalid_description",
        MAX_DESCRIPTION_CHARS,
    )
}

/// Creates a webhook of the caller's: on one of their graphs, or on none.
pub async fn create(
    db: &DatabaseConnection,
    keys: &EncryptionKeys,
    policy: &OutboundPolicy,
    principal: &Principal,
    graph_id: Option<Uuid>,
    new: NewWebhook,
) -> CoreResult<CreatedWebhook> {
    let url = validate_url(&new.url, policy)?;
    let events = validate_events(new.events)?;
    let description = validate_description(new.description)?;
    let txn = db.begin().await?;
    if let Some(graph_id) = graph_id {
        // Holding the graph's row serialises creations on it, so the cap holds.
        let count = txn
            .query_one(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "WITH graph AS (SELECT id FROM graphs WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE) \
                 SELECT (SELECT count(*) FROM graph) AS graphs, \
                        (SELECT count(*) FROM webhooks WHERE graph_id = $1) AS webhooks",
                [graph_id.into(), principal.user_id.into()],
            ))
            .await?
            .map(|row| -> CoreResult<(i64, i64)> {
                Ok((row.try_get("", "graphs")?, row.try_get("", "webhooks")?))
            })
            .transpose()?
            .unwrap_or((0, 0));
        match count {
            (0, _) => return Err(CoreError::NotFound("graph")),
            (_, n) if n >= MAX_WEBHOOKS_PER_GRAPH => {
                return Err(CoreError::Conflict {
                    code: "too_many_webhooks",
                    message: format!(
                        "a graph may have at most {MAX_WEBHOOKS_PER_GRAPH} webhooks; delete one first"
                    ),
                    details: Some(json!({ "limit": MAX_WEBHOOKS_PER_GRAPH })),
                });
            }
            _ => {}
        }
    }
    let id = Uuid::now_v7();
    let secret = signing::new_secret();
    let sealed = crypto::seal_bound(keys, SECRET_CONTEXT, id, &secret)?;
    let row = WebhookRow::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "INSERT INTO webhooks (id, user_id, graph_id, url, events, description, \
               secret_ciphertext, secret_nonce, secret_key_version) \
             VALUES ($1, $2, $3, $4, string_to_array($5, ','), $6, $7, $8, $9) RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            graph_id.into(),
            url.into(),
            events.join(",").into(),
            description.into(),
            sealed.ciphertext.into(),
            sealed.nonce.into(),
            sealed.key_version.into(),
        ],
    ))
    .one(&txn)
    .await?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))?;
    txn.commit().await?;
    Ok(CreatedWebhook {
        webhook: row.into(),
        secret,
    })
}

/// The caller's webhooks, oldest first: all of them, or one graph's (404 when the graph
/// is not theirs).
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
    graph_id: Option<Uuid>,
    page: PageRequest,
) -> CoreResult<Page<Webhook>> {
    if let Some(graph_id) = graph_id {
        crate::graphs::get(db, principal, graph_id).await?;
    }
    let rows = WebhookRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {COLUMNS} FROM webhooks WHERE user_id = $1 \
               AND ($2::uuid IS NULL OR graph_id = $2) AND ($3::uuid IS NULL OR id > $3) \
             ORDER BY id LIMIT $4"
        ),
        [
            principal.user_id.into(),
            graph_id.into(),
            page.after_id()?.into(),
            page.fetch_limit().into(),
        ],
    ))
    .all(db)
    .await?;
    let items: Vec<Webhook> = rows.into_iter().map(Webhook::from).collect();
    Ok(Page::from_rows(items, page, |w| w.id))
}

pub async fn get(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<Webhook> {
    WebhookRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2"),
        [id.into(), principal.user_id.into()],
    ))
    .one(db)
    .await?
    .map(Webhook::from)
    .ok_or(CoreError::NotFound("webhook"))
}

/// Changes a webhook. Runs already started keep reporting to it (with its new URL and
/// secret); the events a run reports were fixed at its kickoff.
pub async fn update(
    db: &DatabaseConnection,
    policy: &OutboundPolicy,
    principal: &Principal,
    id: Uuid,
    changes: WebhookChanges,
) -> CoreResult<Webhook> {
    let url = changes
        .url
        .as_deref()
        .map(|u| validate_url(u, policy))
        .transpose()?;
    let events = match changes.events {
        Some(events) => Some(validate_events(Some(events))?.join(",")),
        None => None,
    };
    let description = changes.description.map(validate_description).transpose()?;
    WebhookRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE webhooks SET url = COALESCE($3, url), \
               events = COALESCE(string_to_array($4, ','), events), \
               description = CASE WHEN $5::boolean THEN $6::text ELSE description END, \
               enabled = COALESCE($7, enabled), updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            url.into(),
            events.into(),
            description.is_some().into(),
            description.flatten().into(),
            changes.enabled.into(),
        ],
    ))
    .one(db)
    .await?
    .map(Webhook::from)
    .ok_or(CoreError::NotFound("webhook"))
}

/// Deletes a webhook with its deliveries (pending ones are not sent).
pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM webhooks WHERE id = $1 AND user_id = $2",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("webhook"));
    }
    Ok(())
}

/// Replaces the secret (returned once); every attempt from now on signs with the new one.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    keys: &EncryptionKeys,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<CreatedWebhook> {
    let secret = signing::new_secret();
    let sealed = crypto::seal_bound(keys, SECRET_CONTEXT, id, &secret)?;
    let webhook = store_sealed(db, id, Some(principal.user_id), &sealed)
        .await?
        .ok_or(CoreError::NotFound("webhook"))?;
    Ok(CreatedWebhook { webhook, secret })
}

async fn store_sealed<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    owner: Option<Uuid>,
    sealed: &Sealed,
) -> CoreResult<Option<Webhook>> {
    Ok(WebhookRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE webhooks SET secret_ciphertext = $3, secret_nonce = $4, secret_key_version = $5, \
               updated_at = CASE WHEN $2::uuid IS NULL THEN updated_at ELSE now() END \
             WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            owner.into(),
            sealed.ciphertext.clone().into(),
            sealed.nonce.clone().into(),
            sealed.key_version.into(),
        ],
    ))
    .one(db)
    .await?
    .map(Webhook::from))
}

#[derive(FromQueryResult)]
pub(super) struct SealedSecret {
    pub id: Uuid,
    pub secret_ciphertext: Vec<u8>,
    pub secret_nonce: Vec<u8>,
    pub secret_key_version: i32,
}

impl SealedSecret {
    pub fn open(&self, keys: &EncryptionKeys) -> CoreResult<SecretString> {
        let sealed = Sealed {
            ciphertext: self.secret_ciphertext.clone(),
            nonce: self.secret_nonce.clone(),
            key_version: self.secret_key_version,
        };
        crypto::open_bound(keys, SECRET_CONTEXT, self.id, &sealed)
    }
}

/// Re-encrypts every webhook secret sealed with an older master key (`crewgraph-api
/// rotate-keys`), batch by batch; returns how many. Safe to re-run.
pub async fn rotate_all_secrets(db: &DatabaseConnection, keys: &EncryptionKeys) -> CoreResult<u64> {
    let (newest, _) = keys.newest();
    let mut rotated = 0;
    loop {
        let txn = db.begin().await?;
        let rows = SealedSecret::find_by_statement(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT id, secret_ciphertext, secret_nonce, secret_key_version FROM webhooks \
             WHERE secret_key_version <> $1 ORDER BY id LIMIT $2 FOR UPDATE",
            [(newest as i32).into(), ROTATION_BATCH.into()],
        ))
        .all(&txn)
        .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(rotated);
        }
        for row in &rows {
            let secret = row.open(keys)?;
            let sealed = crypto::seal_bound(keys, SECRET_CONTEXT, row.id, &secret)?;
            store_sealed(&txn, row.id, None, &sealed).await?;
        }
        rotated += rows.len() as u64;
        txn.commit().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_the_ends_and_unknown_ones_are_named() {
        assert_eq!(validate_events(None).expect("default"), DEFAULT_EVENTS);
        assert_eq!(
            validate_events(Some(vec!["task.completed".into(), "task.completed".into()]))
                .expect("known"),
            ["task.completed"]
        );
        match validate_events(Some(vec![
            "execution.succeeded".into(),
            "task.started".into(),
        ])) {
            Err(CoreError::Problems { code, details, .. }) => {
                assert_eq!(code, "invalid_events");
                assert_eq!(details["field"], "events");
                assert_eq!(details["unknown"], json!(["task.started"]));
            }
            other => panic!("not refused: {:?}", other.map(|_| ())),
        }
        assert!(validate_events(Some(Vec::new())).is_err());
    }

    #[test]
    fn urls_must_be_http_and_allowed() {
        let public = OutboundPolicy::default();
        assert!(validate_url("https://hooks.example.com/x", &public).is_ok());
        for refused in [
            "ftp://example.com/",
            "not a url",
            "http://127.0.0.1:9/",
            "http://localhost/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
        ] {
            assert!(validate_url(refused, &public).is_err(), "{refused}");
        }
        let allowed = crate::outbound::parse_allowed_hosts("127.0.0.1").expect("list");
        assert!(validate_url("http://127.0.0.1:9/", &OutboundPolicy::new(allowed)).is_ok());
    }
}
