//! `/api/v1/users/me`: the caller's profile and password.

use chrono::{DateTime, Utc};
use crewgraph_core::auth::sessions;
use crewgraph_core::auth::users::{self, ProfileChanges, User};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct UsersApi;

#[derive(Object)]
#[oai(example, rename = "User")]
pub struct UserBody {
    pub id: uuid::Uuid,
    pub email: String,
    pub display_name: Option<String>,
    /// `user` or `admin`.
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        UserBody {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            role: user.role.as_str().into(),
            is_active: user.is_active,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateMeRequest {
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// `null` clears it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 200))]
    pub display_name: MaybeUndefined<String>,
}

#[derive(Object)]
#[oai(example)]
pub struct ChangePasswordRequest {
    #[oai(validator(max_length = 256))]
    pub current_password: String,
    #[oai(validator(max_length = 256))]
    pub new_password: String,
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserBody>),
}

#[derive(ApiResponse)]
pub enum PasswordChanged {
    /// Changed; every other session of the account was signed out.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's profile.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn get_me(&self, state: Data<&AppState>, auth: Auth) -> Result<UserResponse, ApiError> {
        let user = sessions::current_user(&state.db, &auth.0).await?;
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Change the caller's email or display name.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<UpdateMeRequest>,
    ) -> Result<UserResponse, ApiError> {
        let body = body.0;
        let display_name = match body.display_name {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(name) => Some(Some(name)),
        };
        let user = users::update_profile(
            &state.db,
            &auth.0,
            ProfileChanges {
                email: body.email,
                display_name,
            },
        )
        .await?;
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Change the caller's password; every other session is signed out.
    #[oai(
        path = "/me/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<ChangePasswordRequest>,
    ) -> Result<PasswordChanged, ApiError> {
        let body = body.0;
        users::change_password(
            &state.db,
            &auth.0,
            SecretString::from(body.current_password),
            SecretString::from(body.new_password),
        )
        .await?;
        Ok(PasswordChanged::NoContent)
    }
}

impl Example for UserBody {
    fn example() -> Self {
        UserBody {
            id: uuid::Uuid::from_u128(0x0193_5f7e_8c1a_7b3c_9d2e_4f60_1a2b_3c4d),
            email: "ada@example.com".into(),
            display_name: Some("Ada".into()),
            role: "user".into(),
            is_active: true,
            created_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
            updated_at: "2026-11-25T10:00:00Z".parse().unwrap_or_default(),
        }
    }
}

impl Example for UpdateMeRequest {
    fn example() -> Self {
        UpdateMeRequest {
            email: None,
            display_name: MaybeUndefined::Value("Ada Lovelace".into()),
        }
    }
}

impl Example for ChangePasswordRequest {
    fn example() -> Self {
        ChangePasswordRequest {
            current_password: "correct horse battery".into(),
            new_password: "a new and longer passphrase".into(),
        }
    }
}
