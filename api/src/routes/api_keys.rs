//! `/api/v1/api-keys`: the caller's LLM provider keys. Responses only ever show the
//! masked secret.

use chrono::{DateTime, Utc};
use crewgraph_core::auth::provider_keys::{self, NewProviderKey, ProviderKey, ProviderKeyChanges};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct ApiKeysApi;

#[derive(Object)]
#[oai(example)]
pub struct CreateApiKeyRequest {
    #[oai(validator(max_length = 100))]
    pub name: String,
    /// `openai`, `anthropic`, `azure-openai`, `ollama` or `openai-compatible`.
    pub provider: String,
    /// The provider's secret. Stored encrypted; never shown again.
    #[oai(validator(max_length = 4096))]
    pub secret: String,
    /// Required for `azure-openai` and `openai-compatible`.
    #[oai(validator(max_length = 2048))]
    pub base_url: Option<String>,
}

impl Example for CreateApiKeyRequest {
    fn example() -> Self {
        CreateApiKeyRequest {
            name: "OpenAI (team)".into(),
            provider: "openai".into(),
            secret: "sk-proj-...".into(),
            base_url: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateApiKeyRequest {
    #[oai(validator(max_length = 100))]
    pub name: Option<String>,
    /// A new secret (re-encrypted with the newest master key).
    #[oai(validator(max_length = 4096))]
    pub secret: Option<String>,
    /// `null` removes it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 2048))]
    pub base_url: MaybeUndefined<String>,
}

#[derive(Object)]
#[oai(example, rename = "ApiKey")]
pub struct ApiKeyBody {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    /// The masked secret, e.g. `sk-…a1b2`.
    pub secret_hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProviderKey> for ApiKeyBody {
    fn from(k: ProviderKey) -> Self {
        ApiKeyBody {
            id: k.id,
            name: k.name,
            provider: k.provider,
            base_url: k.base_url,
            secret_hint: k.secret_hint,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyBody>,
}

#[derive(ApiResponse)]
pub enum ApiKeyCreated {
    #[oai(status = 201)]
    Created(Json<ApiKeyBody>),
}

#[derive(ApiResponse)]
pub enum ApiKeyResponse {
    #[oai(status = 200)]
    Ok(Json<ApiKeyBody>),
}

#[derive(ApiResponse)]
pub enum ApiKeyListResponse {
    #[oai(status = 200)]
    Ok(Json<ApiKeyList>),
}

#[derive(ApiResponse)]
pub enum ApiKeyDeleted {
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/api-keys", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Store a provider API key (encrypted with AES-256-GCM).
    #[oai(path = "/", method = "post", operation_id = "create_api_key")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateApiKeyRequest>,
    ) -> Result<ApiKeyCreated, ApiError> {
        let body = body.0;
        let key = provider_keys::create(
            &state.db,
            &state.config.encryption_keys,
            &auth.0,
            NewProviderKey {
                name: body.name,
                provider: body.provider,
                secret: SecretString::from(body.secret),
                base_url: body.base_url,
            },
        )
        .await?;
        Ok(ApiKeyCreated::Created(Json(key.into())))
    }

    /// The caller's provider keys (masked).
    #[oai(path = "/", method = "get", operation_id = "list_api_keys")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
    ) -> Result<ApiKeyListResponse, ApiError> {
        let items = provider_keys::list(&state.db, &auth.0).await?;
        Ok(ApiKeyListResponse::Ok(Json(ApiKeyList {
            items: items.into_iter().map(Into::into).collect(),
        })))
    }

    /// One provider key (masked).
    #[oai(path = "/:id", method = "get", operation_id = "get_api_key")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
    ) -> Result<ApiKeyResponse, ApiError> {
        let key = provider_keys::get(&state.db, &auth.0, id.0).await?;
        Ok(ApiKeyResponse::Ok(Json(key.into())))
    }

    /// Rename a key, replace its secret, or change its base URL.
    #[oai(path = "/:id", method = "patch", operation_id = "update_api_key")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
        body: JsonBody<UpdateApiKeyRequest>,
    ) -> Result<ApiKeyResponse, ApiError> {
        let body = body.0;
        let base_url = match body.base_url {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(url) => Some(Some(url)),
        };
        let key = provider_keys::update(
            &state.db,
            &state.config.encryption_keys,
            &auth.0,
            id.0,
            ProviderKeyChanges {
                name: body.name,
                secret: body.secret.map(SecretString::from),
                base_url,
            },
        )
        .await?;
        Ok(ApiKeyResponse::Ok(Json(key.into())))
    }

    /// Delete a provider key.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_api_key")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
    ) -> Result<ApiKeyDeleted, ApiError> {
        provider_keys::delete(&state.db, &auth.0, id.0).await?;
        Ok(ApiKeyDeleted::NoContent)
    }
}

impl Example for UpdateApiKeyRequest {
    fn example() -> Self {
        UpdateApiKeyRequest {
            name: Some("OpenAI (personal)".into()),
            secret: None,
            base_url: MaybeUndefined::Undefined,
        }
    }
}

impl Example for ApiKeyBody {
    fn example() -> Self {
        ApiKeyBody {
            id: uuid::Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            name: "OpenAI (team)".into(),
            provider: "openai".into(),
            base_url: None,
            secret_hint: "sk-…a1b2".into(),
            created_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
            updated_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
        }
    }
}

impl Example for ApiKeyList {
    fn example() -> Self {
        ApiKeyList {
            items: vec![ApiKeyBody::example()],
        }
    }
}
