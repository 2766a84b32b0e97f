//! `/api/v1/tokens`: the caller's personal access tokens.

use chrono::{DateTime, Utc};
use crewgraph_core::auth::personal_tokens::{self, PersonalToken};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct TokensApi;

#[derive(Object)]
#[oai(example)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. "CI pipeline".
    #[oai(validator(max_length = 100))]
    pub name: String,
    /// Days until it expires (1 to 3650); omit for a token that does not expire.
    pub expires_in_days: Option<u32>,
}

#[derive(Object)]
#[oai(example, rename = "PersonalAccessToken")]
pub struct TokenBody {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<PersonalToken> for TokenBody {
    fn from(t: PersonalToken) -> Self {
        TokenBody {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// The new token. `token` is shown this once and cannot be retrieved again.
#[derive(Object)]
#[oai(example)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>` or `X-API-Key: <token>`.
    pub token: String,
    #[oai(flatten)]
    pub details: TokenBody,
}

#[derive(Object)]
#[oai(example)]
pub struct TokenList {
    pub items: Vec<TokenBody>,
}

#[derive(ApiResponse)]
pub enum CreateTokenResponse {
    #[oai(status = 201)]
    Created(Json<CreatedToken>),
}

#[derive(ApiResponse)]
pub enum ListTokensResponse {
    #[oai(status = 200)]
    Ok(Json<TokenList>),
}

#[derive(ApiResponse)]
pub enum RevokeTokenResponse {
    /// Revoked: the token no longer works.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/tokens", tag = "ApiTags::Tokens")]
impl TokensApi {
    /// Create a personal access token.
    #[oai(path = "/", method = "post", operation_id = "create_token")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateTokenRequest>,
    ) -> Result<CreateTokenResponse, ApiError> {
        let (token, secret) =
            personal_tokens::create(&state.db, &auth.0, &body.name, body.expires_in_days).await?;
        Ok(CreateTokenResponse::Created(Json(CreatedToken {
            token: secret.expose_secret().to_string(),
            details: token.into(),
        })))
    }

    /// The caller's usable tokens, newest first (secrets are never shown again).
    #[oai(path = "/", method = "get", operation_id = "list_tokens")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
    ) -> Result<ListTokensResponse, ApiError> {
        let items = personal_tokens::list(&state.db, &auth.0).await?;
        Ok(ListTokensResponse::Ok(Json(TokenList {
            items: items.into_iter().map(Into::into).collect(),
        })))
    }

    /// Revoke one of the caller's tokens.
    #[oai(path = "/:id", method = "delete", operation_id = "revoke_token")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// The token's id.
        #[oai(name = "id")]
        id: Path<Uuid>,
    ) -> Result<RevokeTokenResponse, ApiError> {
        personal_tokens::revoke(&state.db, &auth.0, id.0).await?;
        Ok(RevokeTokenResponse::NoContent)
    }
}

impl Example for CreateTokenRequest {
    fn example() -> Self {
        CreateTokenRequest {
            name: "CI pipeline".into(),
            expires_in_days: Some(90),
        }
    }
}

impl Example for TokenBody {
    fn example() -> Self {
        TokenBody {
            id: uuid::Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            name: "CI pipeline".into(),
            prefix: "cgp_AFHw7AVj".into(),
            created_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
            expires_at: None,
            last_used_at: None,
        }
    }
}

impl Example for CreatedToken {
    fn example() -> Self {
        CreatedToken {
            token: "cgp_AFHw7AVjsXnOFK49qfrWFnqVWvxvKkjh9eiCiYcNDBA".into(),
            details: TokenBody::example(),
        }
    }
}

impl Example for TokenList {
    fn example() -> Self {
        TokenList {
            items: vec![TokenBody::example()],
        }
    }
}
