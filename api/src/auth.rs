//! Request authentication: `Authorization: Bearer <JWT or personal access token>` or
//! `X-API-Key: <personal access token>`. Both are security schemes in the OpenAPI
//! document, so Swagger UI's "Authorize" accepts either.

use crewgraph_core::auth::tokens::PERSONAL_ACCESS_TOKEN_PREFIX;
use crewgraph_core::auth::{Principal, personal_tokens, sessions};
use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};

use crate::error::ApiError;
use crate::startup::AppState;

/// A JWT access token (from login/refresh) or a personal access token (`cgp_...`).
#[derive(SecurityScheme)]
#[oai(
    rename = "bearer",
    ty = "bearer",
    bearer_format = "JWT or cgp_ personal access token",
    checker = "check_bearer"
)]
pub struct BearerAuth(Principal);

/// A personal access token (`cgp_...`) in the `X-API-Key` header.
#[derive(SecurityScheme)]
#[oai(
    rename = "api_key",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "check_api_key"
)]
pub struct ApiKeyAuth(Principal);

fn state(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")).into())
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = state(req)?;
    let result = if bearer.token.starts_with(PERSONAL_ACCESS_TOKEN_PREFIX) {
        personal_tokens::authenticate(&state.db, &bearer.token).await
    } else {
        sessions::authenticate_access_token(&state.db, &state.access_tokens, &bearer.token).await
    };
    result.map_err(|e| ApiError::from(e).into())
}

async fn check_api_key(req: &Request, api_key: ApiKey) -> poem::Result<Principal> {
    let state = state(req)?;
    personal_tokens::authenticate(&state.db, &api_key.key)
        .await
        .map_err(|e| ApiError::from(e).into())
}

/// The authenticated caller, by whichever scheme it used.
///
/// Written by hand instead of poem-openapi's derived enum, which would report the error
/// of the *last* scheme tried: a bad bearer token must not become "X-API-Key missing",
/// and a database outage while checking a token must not become a 401.
pub struct Auth(pub Principal);

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerAuth::register(registry);
        ApiKeyAuth::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = BearerAuth::security_schemes();
        schemes.extend(ApiKeyAuth::security_schemes());
        schemes
    }

    async fn from_request(
        req: &'a Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if req.headers().contains_key("authorization") {
            BearerAuth::from_request(req, body, param_opts)
                .await
                .map(|BearerAuth(p)| Auth(p))
        } else if req.headers().contains_key("x-api-key") {
            ApiKeyAuth::from_request(req, body, param_opts)
                .await
                .map(|ApiKeyAuth(p)| Auth(p))
        } else {
            Err(ApiError::Unauthorized(
                "authentication required: send `Authorization: Bearer <token>` or `X-API-Key: <token>`"
                    .into(),
            )
            .into())
        }
    }
}

/// The caller of the events stream: like [`Auth`], or a stream token in `?token=` (for
/// browsers' EventSource, which cannot send headers) valid for the execution in the path.
/// Yields the user id.
pub struct StreamAuth(pub uuid::Uuid);

impl<'a> ApiExtractor<'a> for StreamAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        Auth::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        Auth::security_schemes()
    }

    async fn from_request(
        req: &'a Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let token = req.uri().query().and_then(url_token);
        match token {
            Some(token) => {
                let state = state(req)?;
                let execution_id = execution_in_path(req.uri().path()).ok_or_else(|| {
                    ApiError::Unauthorized(
                        "a stream token needs an execution id in the path".into(),
                    )
                })?;
                state
                    .stream_tokens
                    .verify(&token, execution_id)
                    .map(StreamAuth)
                    .map_err(|e| ApiError::from(e).into())
            }
            None => Auth::from_request(req, body, param_opts)
                .await
                .map(|Auth(principal)| StreamAuth(principal.user_id)),
        }
    }
}

/// `.../executions/{id}/...` → the id.
fn execution_in_path(path: &str) -> Option<uuid::Uuid> {
    let mut segments = path.split('/');
    segments.find(|s| *s == "executions")?;
    segments
        .next()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
}

/// The `token` query parameter, percent-decoded.
fn url_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

/// The client's address for rate limits: the TCP peer. (Forwarded headers are not
/// trusted: anyone could set them to dodge a limit.)
pub fn client_address(req: &Request) -> String {
    req.remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}
