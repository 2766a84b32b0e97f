//! `/api/v1/admin/users`: user management, for the `admin` role only (others get 403).

use crewgraph_core::auth::Role;
use crewgraph_core::auth::admin::{self, UserAdminChanges};
use crewgraph_core::pagination::{List, PageRequest};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::users::UserBody;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::startup::AppState;

pub struct AdminApi;

#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    User,
    Admin,
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateUserRequest {
    pub role: Option<RoleName>,
    /// `false` deactivates the account: its tokens stop working at once.
    pub is_active: Option<bool>,
}

#[derive(Object)]
#[oai(example)]
pub struct UserPage {
    pub items: Vec<UserBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum UserPageResponse {
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(ApiResponse)]
pub enum AdminUserResponse {
    #[oai(status = 200)]
    Ok(Json<UserBody>),
}

#[derive(ApiResponse)]
pub enum UserDeleted {
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/api/v1/admin/users", tag = "ApiTags::Admin")]
impl AdminApi {
    /// List users, oldest first, optionally those whose email contains `email`.
    #[oai(path = "/", method = "get", operation_id = "admin_list_users")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Case-insensitive part of an email address.
        email: Query<Option<String>>,
    ) -> Result<UserPageResponse, ApiError> {
        let page = PageRequest::parse(List::Users, limit.0, cursor.0.as_deref())?;
        let result = admin::list_users(&state.db, &auth.0, page, email.0.as_deref()).await?;
        Ok(UserPageResponse::Ok(Json(UserPage {
            items: result.items.into_iter().map(Into::into).collect(),
            next_cursor: result.next_cursor,
        })))
    }

    /// Change a user's role or deactivate/reactivate them.
    #[oai(path = "/:id", method = "patch", operation_id = "admin_update_user")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
        body: JsonBody<UpdateUserRequest>,
    ) -> Result<AdminUserResponse, ApiError> {
        let changes = UserAdminChanges {
            role: body.role.map(|r| match r {
                RoleName::User => Role::User,
                RoleName::Admin => Role::Admin,
            }),
            is_active: body.is_active,
        };
        let user = admin::update_user(&state.db, &auth.0, id.0, changes).await?;
        Ok(AdminUserResponse::Ok(Json(user.into())))
    }

    /// Delete a user and everything they own.
    #[oai(path = "/:id", method = "delete", operation_id = "admin_delete_user")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "id")] id: Path<Uuid>,
    ) -> Result<UserDeleted, ApiError> {
        admin::delete_user(&state.db, &auth.0, id.0).await?;
        Ok(UserDeleted::NoContent)
    }
}

impl Example for UpdateUserRequest {
    fn example() -> Self {
        UpdateUserRequest {
            role: Some(RoleName::Admin),
            is_active: None,
        }
    }
}

impl Example for UserPage {
    fn example() -> Self {
        UserPage {
            items: vec![UserBody::example()],
            next_cursor: Some("AZNffowae3ydLk9gGis8TQ".into()),
        }
    }
}
