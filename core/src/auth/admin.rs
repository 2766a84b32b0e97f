//! User management for admins. Every function checks the caller's role itself, so no
//! route can forget to.

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use uuid::Uuid;

use crate::auth::users::{USER_COLUMNS, User, UserRow};
use crate::auth::{Principal, Role};
use crate::error::{CoreError, CoreResult};
use crate::pagination::{Page, PageRequest};

fn require_admin(principal: &Principal) -> CoreResult<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(CoreError::Forbidden("this needs the admin role"))
    }
}

/// An admin cannot demote, deactivate or delete themself: it is how installations lose
/// their last admin.
fn refuse_self(principal: &Principal, user_id: Uuid) -> CoreResult<()> {
    if principal.user_id == user_id {
        return Err(CoreError::Conflict {
            code: "cannot_modify_self",
            message: "admins cannot change their own role or status, or delete themselves".into(),
            details: None,
        });
    }
    Ok(())
}

/// Users ordered by id (creation time), optionally those whose email contains `email`.
pub async fn list_users(
    db: &DatabaseConnection,
    principal: &Principal,
    page: PageRequest,
    email: Option<&str>,
) -> CoreResult<Page<User>> {
    require_admin(principal)?;
    let pattern = email.map(|e| {
        format!(
            "%{}%",
            e.trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = UserRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE ($1::uuid IS NULL OR id > $1) AND ($2::text IS NULL OR lower(email) LIKE $2) \
             ORDER BY id LIMIT $3"
        ),
        [page.after.into(), pattern.into(), page.fetch_limit().into()],
    ))
    .all(db)
    .await?;
    let users: Vec<User> = rows.into_iter().map(User::from).collect();
    Ok(Page::from_rows(users, page, |u| u.id))
}

pub struct UserAdminChanges {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// Changes a user's role or active flag. A deactivated user's tokens stop working at
/// once (every request checks the flag) and their sessions are revoked.
pub async fn update_user(
    db: &DatabaseConnection,
    principal: &Principal,
    user_id: Uuid,
    changes: UserAdminChanges,
) -> CoreResult<User> {
    require_admin(principal)?;
    refuse_self(principal, user_id)?;
    let row = UserRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE users SET role = COALESCE($2, role), is_active = COALESCE($3, is_active), \
               updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        ),
        [
            user_id.into(),
            changes.role.map(|r| r.as_str()).into(),
            changes.is_active.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or(CoreError::NotFound("user"))?;
    if changes.is_active == Some(false) {
        db.execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'deactivated' \
             WHERE user_id = $1 AND revoked_at IS NULL",
            [user_id.into()],
        ))
        .await?;
    }
    Ok(row.into())
}

/// Deletes a user and everything they own.
pub async fn delete_user(
    db: &DatabaseConnection,
    principal: &Principal,
    user_id: Uuid,
) -> CoreResult<()> {
    require_admin(principal)?;
    refuse_self(principal, user_id)?;
    let deleted = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM users WHERE id = $1",
            [user_id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(CoreError::NotFound("user"));
    }
    Ok(())
}
