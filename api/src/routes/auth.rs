//! `/api/v1/auth`: register, login, refresh, logout.

use chrono::Utc;
use crewgraph_core::auth::sessions::{self, TokenPair};
use crewgraph_core::auth::users::{self, NewUser};
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use super::ApiTags;
use super::users::UserBody;
use crate::auth::{Auth, client_address};
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct AuthApi;

#[derive(Object)]
#[oai(example)]
pub struct RegisterRequest {
    #[oai(validator(max_length = 254))]
    pub email: String,
    /// 8 to 256 characters.
    #[oai(validator(max_length = 256))]
    pub password: String,
    #[oai(validator(max_length = 200))]
    pub display_name: Option<String>,
}

impl Example for RegisterRequest {
    fn example() -> Self {
        RegisterRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            display_name: Some("Ada".into()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct LoginRequest {
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 256))]
    pub password: String,
}

impl Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh. Each one works once.
    #[oai(validator(max_length = 512))]
    pub refresh_token: String,
}

/// A new access token and refresh token. Store the refresh token safely: it is shown
/// once, works once, and presenting it a second time revokes the whole session.
#[derive(Object)]
#[oai(example)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

impl Example for TokenResponse {
    fn example() -> Self {
        TokenResponse {
            access_token: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: "cgr_3q2-7wJ...".into(),
            refresh_expires_in: 2_592_000,
        }
    }
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        let now = Utc::now();
        let (access, refresh) = pair.expose();
        TokenResponse {
            access_token: access.to_string(),
            token_type: "Bearer".into(),
            expires_in: (pair.access_token_expires_at - now).num_seconds(),
            refresh_token: refresh.to_string(),
            refresh_expires_in: (pair.refresh_token_expires_at - now).num_seconds(),
        }
    }
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created; log in to get tokens.
    #[oai(status = 201)]
    Created(Json<UserBody>),
}

#[derive(ApiResponse)]
pub enum TokensIssued {
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
pub enum LoggedOut {
    /// The session is over: its access and refresh tokens no longer work.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account (unless `CREWGRAPH_ALLOW_REGISTRATION=false`).
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: JsonBody<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        if !state.config.auth.allow_registration {
            return Err(ApiError::Forbidden {
                code: "registration_disabled",
                message: "self-registration is switched off on this server".into(),
            });
        }
        crewgraph_core::auth::rate_limit::hit(
            &state.db,
            crewgraph_core::auth::rate_limit::REGISTER_PER_ADDRESS,
            &client_address(req),
        )
        .await?;
        let body = body.0;
        crewgraph_core::auth::rate_limit::hit(
            &state.db,
            crewgraph_core::auth::rate_limit::REGISTER_PER_ACCOUNT,
            body.email.trim(),
        )
        .await?;
        let user = users::register(
            &state.db,
            NewUser {
                email: body.email,
                password: SecretString::from(body.password),
                display_name: body.display_name,
            },
        )
        .await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }

    /// Log in with email and password. A wrong password and an unknown email get the
    /// same 401.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: JsonBody<LoginRequest>,
    ) -> Result<TokensIssued, ApiError> {
        let LoginRequest { email, password } = body.0;
        let pair = sessions::login(
            &state.db,
            &state.access_tokens,
            &email,
            SecretString::from(password),
            &client_address(req),
        )
        .await?;
        Ok(TokensIssued::Ok(Json(pair.into())))
    }

    /// Exchange a refresh token for a new access token and a new refresh token.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: JsonBody<RefreshRequest>,
    ) -> Result<TokensIssued, ApiError> {
        let pair = sessions::refresh(
            &state.db,
            &state.access_tokens,
            &body.refresh_token,
            &client_address(req),
        )
        .await?;
        Ok(TokensIssued::Ok(Json(pair.into())))
    }

    /// End the current session (the one the access token belongs to).
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: Data<&AppState>, auth: Auth) -> Result<LoggedOut, ApiError> {
        sessions::logout(&state.db, &auth.0).await?;
        Ok(LoggedOut::NoContent)
    }
}

impl Example for RefreshRequest {
    fn example() -> Self {
        RefreshRequest {
            refresh_token: "cgr_3q2-7wJ...".into(),
        }
    }
}
