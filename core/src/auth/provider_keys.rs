//! LLM provider API keys of a user. The secret is encrypted on the way in and only ever
//! shown masked; [`reveal`] is the one way back to the plaintext, for the worker just
//! before it calls the provider.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, TransactionTrait};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::Principal;
use crate::config::EncryptionKeys;
use crate::crypto::{self, Sealed};
use crate::db::OnConstraint as _;
use crate::error::{CoreError, CoreResult};

pub const PROVIDERS: &[&str] = &[
    "openai",
    "anthropic",
    "azure-openai",
    "ollama",
    "openai-compatible",
];
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_SECRET_CHARS: usize = 4096;
const ROTATION_BATCH: u64 = 100;

#[derive(Debug, Clone, FromQueryResult)]
pub struct ProviderKey {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    /// The masked secret, e.g. `sk-…a1b2`.
    pub secret_hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, provider, base_url, secret_hint, created_at, updated_at";

pub struct NewProviderKey {
    pub name: String,
    pub provider: String,
    pub secret: SecretString,
    pub base_url: Option<String>,
}

pub struct ProviderKeyChanges {
    pub name: Option<String>,
    pub secret: Option<SecretString>,
    /// `Some(None)` removes the base URL.
    pub base_url: Option<Option<String>>,
}

/// `sk-…a1b2` for secrets of 20+ characters (7 shown); shorter ones reveal nothing.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() >= 20 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    } else {
        "…".into()
    }
}

fn validate_name(name: &str) -> CoreResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(CoreError::invalid(
            "invalid_name",
            "name",
            format!("the name must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_string())
}

fn validate_secret(secret: &SecretString) -> CoreResult<()> {
    let text = secret.expose_secret();
    if text.trim().is_empty() || text.chars().count() > MAX_SECRET_CHARS {
        return Err(CoreError::invalid(
            "invalid_secret",
            "secret",
            format!("the secret must have 1 to {MAX_SECRET_CHARS} characters"),
        ));
    }
    Ok(())
}

fn validate_base_url(provider: &str, base_url: Option<&str>) -> CoreResult<()> {
    match base_url {
        Some(raw) => match url::Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
            _ => Err(CoreError::invalid(
                "invalid_base_url",
                "base_url",
                "base_url must be an http:// or https:// URL",
            )),
        },
        None if matches!(provider, "azure-openai" | "openai-compatible") => {
            Err(CoreError::invalid(
                "base_url_required",
                "base_url",
                format!("provider `{provider}` needs a base_url"),
            ))
        }
        None => Ok(()),
    }
}

/// The error for a violation of `provider_api_keys_name_key`.
fn name_conflict() -> CoreError {
    CoreError::Conflict {
        code: "name_taken",
        message: "you already have a provider key with this name".into(),
        details: None,
    }
}

pub async fn create(
    db: &DatabaseConnection,
    keys: &EncryptionKeys,
    principal: &Principal,
    new_key: NewProviderKey,
) -> CoreResult<ProviderKey> {
    let name = validate_name(&new_key.name)?;
    let provider = new_key.provider.trim().to_ascii_lowercase();
    if !PROVIDERS.contains(&provider.as_str()) {
        return Err(CoreError::invalid(
            "invalid_provider",
            "provider",
            format!("provider must be one of: {}", PROVIDERS.join(", ")),
        ));
    }
    validate_secret(&new_key.secret)?;
    let base_url = new_key
        .base_url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    validate_base_url(&provider, base_url.as_deref())?;
    let sealed = crypto::seal(keys, principal.user_id, &new_key.secret)?;
    let hint = mask(new_key.secret.expose_secret());
    ProviderKey::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "INSERT INTO provider_api_keys \
               (id, user_id, name, provider, base_url, ciphertext, nonce, key_version, secret_hint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        ),
        [
            Uuid::now_v7().into(),
            principal.user_id.into(),
            name.into(),
            provider.into(),
            base_url.into(),
            sealed.ciphertext.into(),
            sealed.nonce.into(),
            sealed.key_version.into(),
            hint.into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("provider_api_keys_name_key", name_conflict)?
    .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("insert returned no row")))
}

pub async fn list(db: &DatabaseConnection, principal: &Principal) -> CoreResult<Vec<ProviderKey>> {
    Ok(ProviderKey::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM provider_api_keys WHERE user_id = $1 ORDER BY lower(name), id"),
        [principal.user_id.into()],
    ))
    .all(db)
    .await?)
}

pub async fn get(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> CoreResult<ProviderKey> {
    ProviderKey::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT {COLUMNS} FROM provider_api_keys WHERE id = $1 AND user_id = $2"),
        [id.into(), principal.user_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("provider key"))
}

pub async fn update(
    db: &DatabaseConnection,
    keys: &EncryptionKeys,
    principal: &Principal,
    id: Uuid,
    changes: ProviderKeyChanges,
) -> CoreResult<ProviderKey> {
    let current = get(db, principal, id).await?;
    let name = changes.name.as_deref().map(validate_name).transpose()?;
    let base_url = match changes.base_url {
        None => current.base_url.clone(),
        Some(url) => url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()),
    };
    validate_base_url(&current.provider, base_url.as_deref())?;
    let sealed = match &changes.secret {
        Some(secret) => {
            validate_secret(secret)?;
            Some((
                crypto::seal(keys, principal.user_id, secret)?,
                mask(secret.expose_secret()),
            ))
        }
        None => None,
    };
    let (ciphertext, nonce, version, hint) = match sealed {
        Some((s, hint)) => (
            Some(s.ciphertext),
            Some(s.nonce),
            Some(s.key_version),
            Some(hint),
        ),
        None => (None, None, None, None),
    };
    ProviderKey::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE provider_api_keys SET \
               name = COALESCE($3, name), base_url = $4, \
               ciphertext = COALESCE($5, ciphertext), nonce = COALESCE($6, nonce), \
               key_version = COALESCE($7, key_version), secret_hint = COALESCE($8, secret_hint), \
               updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ),
        [
            id.into(),
            principal.user_id.into(),
            name.into(),
            base_url.into(),
            ciphertext.into(),
            nonce.into(),
            version.into(),
            hint.into(),
        ],
    ))
    .one(db)
    .await
    .on_constraint("provider_api_keys_name_key", name_conflict)?
    .ok_or(CoreError::NotFound("provider key"))
}

pub async fn delete(db: &DatabaseConnection, principal: &Principal, id: Uuid) -> CoreResult<()> {
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM provider_api_keys WHERE id = $1 AND user_id = $2",
            [id.into(), principal.user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("provider key"));
    }
    Ok(())
}

#[derive(FromQueryResult)]
struct SealedRow {
    id: Uuid,
    user_id: Uuid,
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
    key_version: i32,
    base_url: Option<String>,
}

impl SealedRow {
    fn sealed(&self) -> Sealed {
        Sealed {
            ciphertext: self.ciphertext.clone(),
            nonce: self.nonce.clone(),
            key_version: self.key_version,
        }
    }
}

/// A provider key opened for use: its secret and base URL.
pub struct RevealedKey {
    pub secret: SecretString,
    pub base_url: Option<String>,
}

/// Which stored key a run uses.
pub enum KeyChoice<'a> {
    /// The key an llm node names.
    ById(Uuid),
    /// The owner's newest key for this provider (`openai`, `anthropic`, ...).
    NewestFor(&'a str),
}

/// The plaintext of one of `owner`'s keys, for the worker just before it calls the
/// provider. Nothing in the API calls this. `None`: no such key.
pub async fn reveal(
    db: &DatabaseConnection,
    keys: &EncryptionKeys,
    owner: Uuid,
    choice: KeyChoice<'_>,
) -> CoreResult<Option<RevealedKey>> {
    let (condition, value): (&str, sea_orm::Value) = match choice {
        KeyChoice::ById(id) => ("id = $2", id.into()),
        KeyChoice::NewestFor(provider) => ("provider = $2", provider.into()),
    };
    let row = SealedRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT id, user_id, ciphertext, nonce, key_version, base_url FROM provider_api_keys \
             WHERE user_id = $1 AND {condition} ORDER BY created_at DESC, id DESC LIMIT 1"
        ),
        [owner.into(), value],
    ))
    .one(db)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(RevealedKey {
        secret: crypto::open(keys, row.user_id, &row.sealed())?,
        base_url: row.base_url.clone(),
    }))
}

/// Re-encrypts every key sealed with an older master key version with the newest one,
/// in batches (each its own transaction, rows locked while they change, waiting for rows
/// another request holds). Returns how many rows were re-encrypted and fails if any row is
/// left on an old version. Safe to re-run and to run while the API serves.
pub async fn rotate_all(db: &DatabaseConnection, keys: &EncryptionKeys) -> CoreResult<u64> {
    let (newest, _) = keys.newest();
    let mut rotated = 0;
    loop {
        let txn = db.begin().await?;
        let rows = SealedRow::find_by_statement(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT id, user_id, ciphertext, nonce, key_version, base_url FROM provider_api_keys \
             WHERE key_version <> $1 ORDER BY id LIMIT $2 FOR UPDATE",
            [(newest as i32).into(), (ROTATION_BATCH as i64).into()],
        ))
        .all(&txn)
        .await?;
        if rows.is_empty() {
            txn.commit().await?;
            // Rows are locked and waited for (never skipped), so none may be left on an old
            // version; check anyway before an operator drops the old key on our word.
            let left: i64 = db
                .query_one(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "SELECT count(*) AS left_over FROM provider_api_keys WHERE key_version <> $1",
                    [(newest as i32).into()],
                ))
                .await?
                .map(|row| row.try_get::<i64>("", "left_over"))
                .transpose()?
                .unwrap_or(0);
            if left > 0 {
                return Err(CoreError::Internal(anyhow::anyhow!(
                    "{left} provider key(s) are still on an older master key; run rotate-keys again"
                )));
            }
            return Ok(rotated);
        }
        for row in &rows {
            let plaintext = crypto::open(keys, row.user_id, &row.sealed())?;
            let sealed = crypto::seal(keys, row.user_id, &plaintext)?;
            txn.execute(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "UPDATE provider_api_keys SET ciphertext = $2, nonce = $3, key_version = $4 WHERE id = $1",
                [
                    row.id.into(),
                    sealed.ciphertext.into(),
                    sealed.nonce.into(),
                    sealed.key_version.into(),
                ],
            ))
            .await?;
        }
        rotated += rows.len() as u64;
        txn.commit().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_show_at_most_seven_characters() {
        assert_eq!(mask("sk-abcdefghijklmnop1234"), "sk-…1234");
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("sk-0123456789ab"), "…");
    }
}
