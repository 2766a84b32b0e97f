//! Users: registration, profile, password changes and the bootstrap admin.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::password::{hash_password, validate_new_password, verify_password};
use crate::auth::{Principal, Role};
use crate::config::{BootstrapAdmin, looks_like_email};
use crate::db::OnConstraint as _;
use crate::error::{CoreError, CoreResult};

pub const MAX_DISPLAY_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    display_name: Option<String>,
    role: String,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            role: Role::parse(&row.role).unwrap_or(Role::User),
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub(crate) const USER_COLUMNS: &str =
    "id, email, display_name, role, is_active, created_at, updated_at";

pub struct NewUser {
    pub email: String,
    pub password: SecretString,
    pub display_name: Option<String>,
}

pub fn normalise_email(email: &str) -> CoreResult<String> {
    let email = email.trim().to_string();
    if !looks_like_email(&email) {
        return Err(CoreError::invalid(
            "invalid_email",
            "email",
            "the email address is not valid",
        ));
    }
    Ok(email)
}

fn validate_display_name(name: Option<String>) -> CoreResult<Option<String>> {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_CHARS)
    {
        return Err(CoreError::invalid(
            "display_name_too_long",
            "display_name",
            format!("the display name must have at most {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

/// The error for a violation of `users_email_key`.
fn email_conflict() -> CoreError {
    CoreError::Conflict {
        code: "email_taken",
        message: "an account with this email already exists".into(),
        details: None,
    }
}

pub async fn register(db: &DatabaseConnection, new_user: NewUser) -> CoreResult<User> {
    let email = normalise_email(&new_user.email)?;
    validate_new_password(new_user.password.expose_secret())?;
    let display_name = validate_display_name(new_user.display_name)?;
    let hash = hash_password(new_user.password).await?;
    insert_user(db, &email, display_name, &hash, Role::User).await
}

async fn insert_user(
    db: &impl ConnectionTrait,
    email: &str,
    display_name: Option<String>,
    password_hash: &str,
    role: Role,
) -> CoreResult<User> {
    let row = UserRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO users (id, email, display_name, password_hash, role) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            email.into(),
            display_name.into(),
            password_hash.into(),
            role.as_str().into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("users_email_key", email_conflict)?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))?;
    Ok(row.into())
}

pub async fn get(db: &DatabaseConnection, user_id: Uuid) -> CoreResult<User> {
    UserRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        [user_id.into()],
    ))
    .one(db)
    .await?
    .map(User::from)
    .ok_or(CoreError::NotFound("user"))
}

pub struct ProfileChanges {
    pub email: Option<String>,
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<String>>,
}

pub async fn update_profile(
    db: &DatabaseConnection,
    principal: &Principal,
    changes: ProfileChanges,
) -> CoreResult<User> {
    let email = changes.email.as_deref().map(normalise_email).transpose()?;
    let display_name = changes
        .display_name
        .map(validate_display_name)
        .transpose()?;
    let row = UserRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE users SET \
               email = COALESCE($2, email), \
               display_name = CASE WHEN $3 THEN $4 ELSE display_name END, \
               updated_at = now() \
             WHERE id = $1 RETURNING {USER_COLUMNS}"
        ),
        [
            principal.user_id.into(),
            email.into(),
            display_name.is_some().into(),
            display_name.flatten().into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("users_email_key", email_conflict)?
    .ok_or(CoreError::NotFound("user"))?;
    Ok(row.into())
}

/// Changes the password after checking the current one, and ends every other session of
/// the user (the one making the change stays signed in).
pub async fn change_password(
    db: &DatabaseConnection,
    principal: &Principal,
    current: SecretString,
    new: SecretString,
) -> CoreResult<()> {
    validate_new_password(new.expose_secret())?;
    let stored: Option<String> = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT password_hash FROM users WHERE id = $1",
            [principal.user_id.into()],
        ))
        .await?
        .map(|row| row.try_get("", "password_hash"))
        .transpose()?;
    if !verify_password(current, stored).await? {
        return Err(CoreError::invalid(
            "wrong_password",
            "current_password",
            "the current password is not correct",
        ));
    }
    let hash = hash_password(new).await?;
    let txn = db.begin().await?;
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        [principal.user_id.into(), hash.into()],
    ))
    .await?;
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE sessions SET revoked_at = now(), revoked_reason = 'password_changed' \
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
        [principal.user_id.into(), principal.session_id().into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Creates the configured admin when no admin exists. If an account with that email
/// already exists it is promoted *and* given the configured password, so nobody can
/// pre-register the admin's address and inherit the role with their own password, or keep
/// the sessions and tokens they made before.
pub async fn ensure_bootstrap_admin(
    db: &DatabaseConnection,
    admin: &BootstrapAdmin,
) -> CoreResult<Option<User>> {
    let has_admin = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND is_active) AS present",
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    if has_admin {
        return Ok(None);
    }
    let email = normalise_email(&admin.email)?;
    let hash = hash_password(admin.password.clone()).await?;
    let txn = db.begin().await?;
    let row = UserRow::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, 'admin') \
             ON CONFLICT ((lower(email))) DO UPDATE \
               SET role = 'admin', password_hash = EXCLUDED.password_hash, is_active = true, \
                   updated_at = now() \
             RETURNING {USER_COLUMNS}"
        ),
        [Uuid::now_v7().into(), email.into(), hash.into()],
    ))
    .one(&txn)
    .await?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("upsert returned no row")))?;
    // If the address was registered before, whoever registered it must not keep a way in:
    // their sessions and personal access tokens end with the promotion.
    for statement in [
        "UPDATE sessions SET revoked_at = now(), revoked_reason = 'bootstrap_admin' \
         WHERE user_id = $1 AND revoked_at IS NULL",
        "UPDATE personal_access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    ] {
        txn.execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            statement,
            [row.id.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(Some(row.into()))
}
