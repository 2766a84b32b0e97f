//! Whose executions a dashboard reads, checked once per request, and the `WHERE` clause
//! that says so. The clause names only the filters in use (no `$n IS NULL OR ...`), so the
//! planner sees `user_id = $n AND finished_at >= ... AND finished_at < ...` and picks the
//! matching `(user_id, finished_at)`, `(graph_id, finished_at)` or `(finished_at)` index.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};
use uuid::Uuid;

use super::range::TimeRange;
use crate::auth::Principal;
use crate::error::{CoreError, CoreResult};

/// Who the figures are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The caller's own executions.
    Own,
    /// Every user's executions (admin role only), or one user's.
    Admin { user_id: Option<Uuid> },
}

/// A dashboard request as the client made it.
#[derive(Debug, Clone, Copy)]
pub struct DashboardRequest {
    pub audience: Audience,
    /// Only this graph's executions.
    pub graph_id: Option<Uuid>,
    pub range: TimeRange,
}

/// The executions a dashboard reads, after [`authorize`] checked the caller may see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every user's (admins only).
    pub user_id: Option<Uuid>,
    pub graph_id: Option<Uuid>,
    pub range: TimeRange,
}

/// A user sees their own executions and their own graphs (another's graph is 404); an
/// admin sees anyone's (a graph or user that does not exist is 404); anyone else asking
/// for the admin view gets 403.
pub async fn authorize(
    db: &DatabaseConnection,
    principal: &Principal,
    request: &DashboardRequest,
) -> CoreResult<Scope> {
    let user_id = match request.audience {
        Audience::Own => Some(principal.user_id),
        Audience::Admin { user_id } => {
            if !principal.is_admin() {
                return Err(CoreError::Forbidden("this needs the admin role"));
            }
            if let Some(id) = user_id {
                exists(
                    db,
                    "SELECT 1 FROM users WHERE id = $1",
                    vec![id.into()],
                    "user",
                )
                .await?;
            }
            user_id
        }
    };
    if let Some(graph_id) = request.graph_id {
        match request.audience {
            Audience::Own => {
                let sql = "SELECT 1 FROM graphs WHERE id = $1 AND user_id = $2";
                let values = vec![graph_id.into(), principal.user_id.into()];
                exists(db, sql, values, "graph").await?;
            }
            Audience::Admin { .. } => {
                let sql = "SELECT 1 FROM graphs WHERE id = $1";
                exists(db, sql, vec![graph_id.into()], "graph").await?;
            }
        }
    }
    Ok(Scope {
        user_id,
        graph_id: request.graph_id,
        range: request.range,
    })
}

async fn exists(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
    what: &'static str,
) -> CoreResult<()> {
    let statement = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    match db.query_one(statement).await? {
        Some(_) => Ok(()),
        None => Err(CoreError::NotFound(what)),
    }
}

/// A statement's bound values, numbered as they are added.
#[derive(Debug, Default)]
pub struct Binds(pub Vec<Value>);

impl Binds {
    /// Binds `value` and returns its placeholder (`$n`).
    pub fn push(&mut self, value: impl Into<Value>) -> String {
        self.0.push(value.into());
        format!("${}", self.0.len())
    }
}

impl Scope {
    /// The conditions (without `WHERE`) on a table's columns, with `prefix` (`m.`, say) in
    /// front of each column name.
    pub fn condition(&self, prefix: &str, binds: &mut Binds) -> String {
        let mut parts = Vec::with_capacity(4);
        if let Some(user_id) = self.user_id {
            parts.push(format!("{prefix}user_id = {}", binds.push(user_id)));
        }
        if let Some(graph_id) = self.graph_id {
            parts.push(format!("{prefix}graph_id = {}", binds.push(graph_id)));
        }
        parts.push(format!(
            "{prefix}finished_at >= {}",
            binds.push(self.range.from)
        ));
        parts.push(format!(
            "{prefix}finished_at < {}",
            binds.push(self.range.to)
        ));
        parts.join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    #[test]
    fn the_condition_names_only_the_filters_in_use_with_numbered_placeholders() {
        let to = Utc::now();
        let range = TimeRange {
            from: to - Duration::days(1),
            to,
        };
        let everyone = Scope {
            user_id: None,
            graph_id: None,
            range,
        };
        let mut binds = Binds::default();
        assert_eq!(
            everyone.condition("", &mut binds),
            "finished_at >= $1 AND finished_at < $2"
        );
        assert_eq!(binds.0.len(), 2);

        let own_graph = Scope {
            user_id: Some(Uuid::now_v7()),
            graph_id: Some(Uuid::now_v7()),
            range,
        };
        let mut binds = Binds::default();
        binds.push("already bound");
        assert_eq!(
            own_graph.condition("m.", &mut binds),
            "m.user_id = $2 AND m.graph_id = $3 AND m.finished_at >= $4 AND m.finished_at < $5"
        );
        assert_eq!(binds.0.len(), 5);
    }
}
