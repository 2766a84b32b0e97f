//! Personal access tokens for programmatic use: shown once, stored as a hash, listed by
//! prefix with their last use, revocable.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::tokens::{PERSONAL_ACCESS_TOKEN_PREFIX, hash_secret, new_secret};
use crate::auth::{Credential, Principal, Role};
use crate::error::{CoreError, CoreResult};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// How many characters of the secret are kept to recognise a token in lists.
const DISPLAY_PREFIX_CHARS: usize = 12;
/// `last_used_at` is written at most this often per token, so a busy script does not turn
/// every request into a write.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

#[derive(Debug, Clone, FromQueryResult)]
pub struct PersonalToken {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, prefix, created_at, expires_at, last_used_at";

pub async fn create(
    db: &DatabaseConnection,
    principal: &Principal,
    name: &str,
    expires_in_days: Option<u32>,
) -> CoreResult<(PersonalToken, SecretString)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(CoreError::invalid(
            "invalid_name",
            "name",
            format!("the name must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(days) = expires_in_days
        && !(1..=MAX_EXPIRY_DAYS).contains(&days)
    {
        return Err(CoreError::invalid(
            "invalid_expiry",
            "expires_in_days",
            format!("expires_in_days must be from 1 to {MAX_EXPIRY_DAYS}"),
        ));
    }
    let expires_at = expires_in_days.map(|d| Utc::now() + Duration::days(i64::from(d)));
    let (secret, hash) = new_secret(PERSONAL_ACCESS_TOKEN_PREFIX);
    let prefix: String = secret
        .expose_secret()
        .chars()
        .take(DISPLAY_PREFIX_CHARS)
        .collect();
    let token = PersonalToken::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO personal_access_tokens (id, user_id, name, prefix, token_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            principal.user_id.into(),
            name.into(),
            prefix.into(),
            hash.into(),
            expires_at.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))?;
    Ok((token, secret))
}

/// The caller's tokens that can still be used, newest first.
pub async fn list(
    db: &DatabaseConnection,
    principal: &Principal,
) -> CoreResult<Vec<PersonalToken>> {
    Ok(
        PersonalToken::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "SELECT {COLUMNS} FROM personal_access_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC"
            ),
            [principal.user_id.into()],
        ))
        .all(db)
        .await?,
    )
}

/// Revokes one of the caller's tokens; someone else's token is "not found".
pub async fn revoke(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let revoked = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE personal_access_tokens SET revoked_at = now() \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if revoked == 0 {
        return Err(CoreError::NotFound("token"));
    }
    Ok(())
}

#[derive(FromQueryResult)]
struct TokenOwnerRow {
    id: Uuid,
    user_id: Uuid,
    role: String,
}

/// Authenticates a personal access token: not revoked, not expired, owner active.
pub async fn authenticate(db: &DatabaseConnection, token: &str) -> CoreResult<Principal> {
    if !token.starts_with(PERSONAL_ACCESS_TOKEN_PREFIX) {
        return Err(CoreError::Unauthenticated("invalid personal access token"));
    }
    let row = TokenOwnerRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT t.id, t.user_id, u.role FROM personal_access_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
           AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.is_active",
        [hash_secret(token).into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::Unauthenticated("invalid personal access token"))?;
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE personal_access_tokens SET last_used_at = now() \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
        [row.id.into(), (LAST_USED_GRANULARITY_SECS as f64).into()],
    ))
    .await?;
    Ok(Principal {
        user_id: row.user_id,
        role: Role::parse(&row.role).unwrap_or(Role::User),
        credential: Credential::PersonalAccessToken(row.id),
    })
}
