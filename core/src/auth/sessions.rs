//! Login sessions: login, refresh-token rotation with reuse detection, logout, and the
//! authentication of access tokens.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, FromQueryResult, Statement,
    TransactionTrait,
};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::password::verify_password;
use crate::auth::rate_limit::{
    self, LOGIN_PER_ACCOUNT, LOGIN_PER_ADDRESS, REFRESH_PER_ACCOUNT, REFRESH_PER_ADDRESS,
};
use crate::auth::tokens::{
    AccessTokens, REFRESH_TOKEN_PREFIX, REFRESH_TOKEN_TTL, hash_secret, new_secret,
};
use crate::auth::users::{User, normalise_email};
use crate::auth::{Credential, Principal, Role};
use crate::error::{CoreError, CoreResult};

/// What a client receives on login and refresh.
pub struct TokenPair {
    pub access_token: SecretString,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: SecretString,
    pub refresh_token_expires_at: DateTime<Utc>,
}

const BAD_CREDENTIALS: &str = "invalid email or password";
const BAD_REFRESH: &str = "invalid, expired or revoked refresh token";

#[derive(FromQueryResult)]
struct LoginRow {
    id: Uuid,
    password_hash: String,
    role: String,
    is_active: bool,
}

/// Checks email and password (same answer and about the same time for an unknown email
/// and a wrong password), then opens a session.
pub async fn login(
    db: &DatabaseConnection,
    tokens: &AccessTokens,
    email: &str,
    password: SecretString,
    client_address: &str,
) -> CoreResult<TokenPair> {
    rate_limit::hit(db, LOGIN_PER_ADDRESS, client_address).await?;
    let email = normalise_email(email).unwrap_or_else(|_| email.trim().to_string());
    rate_limit::hit(db, LOGIN_PER_ACCOUNT, &email).await?;
    let row = LoginRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT id, password_hash, role, is_active FROM users WHERE lower(email) = lower($1)",
        [email.into()],
    ))
    .one(db)
    .await?;
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    let password_ok = verify_password(password, stored).await?;
    let Some(user) = row.filter(|r| password_ok && r.is_active) else {
        return Err(CoreError::Unauthenticated(BAD_CREDENTIALS));
    };
    let role = Role::parse(&user.role).unwrap_or(Role::User);
    let txn = db.begin().await?;
    let session_id = Uuid::now_v7();
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO sessions (id, user_id) VALUES ($1, $2)",
        [session_id.into(), user.id.into()],
    ))
    .await?;
    let pair = issue_pair(&txn, tokens, user.id, session_id, role).await?;
    txn.commit().await?;
    Ok(pair)
}

async fn issue_pair(
    txn: &DatabaseTransaction,
    tokens: &AccessTokens,
    user_id: Uuid,
    session_id: Uuid,
    role: Role,
) -> CoreResult<TokenPair> {
    let (refresh_token, refresh_hash) = new_secret(REFRESH_TOKEN_PREFIX);
    let refresh_token_expires_at = Utc::now() + REFRESH_TOKEN_TTL;
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        [
            Uuid::now_v7().into(),
            session_id.into(),
            refresh_hash.into(),
            refresh_token_expires_at.into(),
        ],
    ))
    .await?;
    let (access_token, access_token_expires_at) = tokens.issue(user_id, session_id, role)?;
    Ok(TokenPair {
        access_token: SecretString::from(access_token),
        access_token_expires_at,
        refresh_token,
        refresh_token_expires_at,
    })
}

#[derive(FromQueryResult)]
struct RefreshRow {
    token_id: Uuid,
    session_id: Uuid,
    user_id: Uuid,
    role: String,
    is_active: bool,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: presenting
/// one that was already exchanged means it was copied, so the whole session (every
/// token of the family) is revoked.
pub async fn refresh(
    db: &DatabaseConnection,
    tokens: &AccessTokens,
    refresh_token: &str,
    client_address: &str,
) -> CoreResult<TokenPair> {
    rate_limit::hit(db, REFRESH_PER_ADDRESS, client_address).await?;
    let hash = hash_secret(refresh_token);
    // The per-account limit is counted before the transaction: counting inside it would
    // hold a pooled connection with row locks while waiting for a second one.
    let owner = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = $1",
            [hash.clone().into()],
        ))
        .await?
        .map(|row| row.try_get::<Uuid>("", "user_id"))
        .transpose()?;
    let Some(owner) = owner else {
        return Err(CoreError::Unauthenticated(BAD_REFRESH));
    };
    rate_limit::hit(db, REFRESH_PER_ACCOUNT, &owner.to_string()).await?;
    let txn = db.begin().await?;
    // FOR UPDATE serialises two refreshes of the same token: the second sees `used_at`.
    let row = RefreshRow::find_by_statement(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT r.id AS token_id, r.session_id, s.user_id, u.role, u.is_active, r.expires_at, \
                r.used_at, s.revoked_at \
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
         WHERE r.token_hash = $1 FOR UPDATE OF r, s",
        [hash.into()],
    ))
    .one(&txn)
    .await?;
    let Some(row) = row else {
        return Err(CoreError::Unauthenticated(BAD_REFRESH));
    };
    if row.used_at.is_some() {
        if row.revoked_at.is_none() {
            txn.execute(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE sessions SET revoked_at = now(), revoked_reason = 'refresh_token_reuse' WHERE id = $1",
                [row.session_id.into()],
            ))
            .await?;
            txn.commit().await?;
            tracing::warn!(session_id = %row.session_id, user_id = %row.user_id,
                "refresh token reused: session revoked");
        }
        return Err(CoreError::Unauthenticated(BAD_REFRESH));
    }
    if row.revoked_at.is_some() || !row.is_active || row.expires_at <= Utc::now() {
        return Err(CoreError::Unauthenticated(BAD_REFRESH));
    }
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
        [row.token_id.into()],
    ))
    .await?;
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE sessions SET last_used_at = now() WHERE id = $1",
        [row.session_id.into()],
    ))
    .await?;
    let role = Role::parse(&row.role).unwrap_or(Role::User);
    let pair = issue_pair(&txn, tokens, row.user_id, row.session_id, role).await?;
    txn.commit().await?;
    Ok(pair)
}

/// Ends the caller's session: its access tokens stop working at once and its refresh
/// tokens can no longer be exchanged.
pub async fn logout(db: &DatabaseConnection, principal: &Principal) -> CoreResult<()> {
    let Some(session_id) = principal.session_id() else {
        return Err(CoreError::invalid(
            "not_a_session",
            "authorization",
            "logout ends a login session; revoke a personal access token instead",
        ));
    };
    db.execute(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout' \
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        [session_id.into(), principal.user_id.into()],
    ))
    .await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct SessionCheckRow {
    role: String,
}

/// Authenticates a JWT access token: valid signature and claims, an active user and a
/// session that was not revoked. The role comes from the database, so a role change
/// applies at once.
pub async fn authenticate_access_token(
    db: &DatabaseConnection,
    tokens: &AccessTokens,
    token: &str,
) -> CoreResult<Principal> {
    let claims = tokens.verify(token)?;
    let row = SessionCheckRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT u.role FROM users u JOIN sessions s ON s.user_id = u.id \
         WHERE u.id = $1 AND s.id = $2 AND u.is_active AND s.revoked_at IS NULL",
        [claims.sub.into(), claims.sid.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::Unauthenticated(
        "invalid or expired access token",
    ))?;
    Ok(Principal {
        user_id: claims.sub,
        role: Role::parse(&row.role).unwrap_or(Role::User),
        credential: Credential::Session(claims.sid),
    })
}

/// The user behind a principal, for handlers that return the profile.
pub async fn current_user(db: &DatabaseConnection, principal: &Principal) -> CoreResult<User> {
    crate::auth::users::get(db, principal.user_id).await
}

impl TokenPair {
    /// Exposes the secrets for the one response that carries them.
    pub fn expose(&self) -> (&str, &str) {
        (
            self.access_token.expose_secret(),
            self.refresh_token.expose_secret(),
        )
    }
}
