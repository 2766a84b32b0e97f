//! Dashboards over the run metrics: `/api/v1/dashboard/...` for the caller's executions
//! (optionally one of their graphs), `/api/v1/admin/dashboard/...` across users (admin
//! role only; others get 403). The figures are computed in `core::metrics::dashboard`.

use chrono::{DateTime, Utc};
use crewgraph_core::metrics::dashboard::{
    self, Audience, DashboardRequest, RankPageRequest, Ranking, TimeRange, TimeZone,
};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::dashboard_bodies::{
    BucketName, DashboardSummary, DashboardTimeseries, EndCodePage, FailingGraphPage,
    ModelUsagePage, page_items,
};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::startup::AppState;

pub struct DashboardApi;
pub struct AdminDashboardApi;

#[derive(ApiResponse)]
pub enum SummaryResponse {
    #[oai(status = 200)]
    Ok(Json<DashboardSummary>),
}

#[derive(ApiResponse)]
pub enum TimeseriesResponse {
    #[oai(status = 200)]
    Ok(Json<DashboardTimeseries>),
}

#[derive(ApiResponse)]
pub enum FailingGraphsResponse {
    #[oai(status = 200)]
    Ok(Json<FailingGraphPage>),
}

#[derive(ApiResponse)]
pub enum EndCodesResponse {
    #[oai(status = 200)]
    Ok(Json<EndCodePage>),
}

#[derive(ApiResponse)]
pub enum ModelsResponse {
    #[oai(status = 200)]
    Ok(Json<ModelUsagePage>),
}

/// The parameters every dashboard takes.
struct Window {
    audience: Audience,
    graph_id: Option<Uuid>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Window {
    fn own(
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Self {
        Window {
            audience: Audience::Own,
            graph_id: graph_id.0,
            from: from.0,
            to: to.0,
        }
    }

    fn admin(
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Self {
        Window {
            audience: Audience::Admin { user_id: user_id.0 },
            ..Window::own(graph_id, from, to)
        }
    }

    fn request(&self) -> Result<DashboardRequest, ApiError> {
        Ok(DashboardRequest {
            audience: self.audience,
            graph_id: self.graph_id,
            range: TimeRange::parse(self.from, self.to, Utc::now())?,
        })
    }
}

async fn summary(
    state: &AppState,
    auth: &Auth,
    window: Window,
) -> Result<SummaryResponse, ApiError> {
    let request = window.request()?;
    let summary = dashboard::summary(&state.db, &auth.0, &request).await?;
    Ok(SummaryResponse::Ok(Json(DashboardSummary::new(
        request.range,
        summary,
    ))))
}

async fn timeseries(
    state: &AppState,
    auth: &Auth,
    window: Window,
    bucket: Option<BucketName>,
    time_zone: Option<String>,
) -> Result<TimeseriesResponse, ApiError> {
    let request = window.request()?;
    let bucket = bucket.unwrap_or(BucketName::Day);
    let zone = TimeZone::parse(time_zone.as_deref())?;
    let points = dashboard::timeseries(&state.db, &auth.0, &request, bucket.into(), &zone).await?;
    Ok(TimeseriesResponse::Ok(Json(DashboardTimeseries {
        from: request.range.from,
        to: request.range.to,
        bucket,
        time_zone: zone.name().to_string(),
        buckets: points.into_iter().map(Into::into).collect(),
    })))
}

async fn failing_graphs(
    state: &AppState,
    auth: &Auth,
    window: Window,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<FailingGraphsResponse, ApiError> {
    let request = window.request()?;
    let page = RankPageRequest::parse(Ranking::FailingGraphs, limit, cursor.as_deref())?;
    let result = dashboard::failing_graphs(&state.db, &auth.0, &request, &page).await?;
    let (items, next_cursor) = page_items(result);
    Ok(FailingGraphsResponse::Ok(Json(FailingGraphPage {
        items,
        next_cursor,
    })))
}

async fn end_codes(
    state: &AppState,
    auth: &Auth,
    window: Window,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<EndCodesResponse, ApiError> {
    let request = window.request()?;
    let page = RankPageRequest::parse(Ranking::EndCodes, limit, cursor.as_deref())?;
    let result = dashboard::end_codes(&state.db, &auth.0, &request, &page).await?;
    let (items, next_cursor) = page_items(result);
    Ok(EndCodesResponse::Ok(Json(EndCodePage {
        items,
        next_cursor,
    })))
}

async fn models(
    state: &AppState,
    auth: &Auth,
    window: Window,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<ModelsResponse, ApiError> {
    let request = window.request()?;
    let page = RankPageRequest::parse(Ranking::Models, limit, cursor.as_deref())?;
    let result = dashboard::models(&state.db, &auth.0, &request, &page).await?;
    let (items, next_cursor) = page_items(result);
    Ok(ModelsResponse::Ok(Json(ModelUsagePage {
        items,
        next_cursor,
    })))
}

/// Query parameters, documented once here:
/// - `from`, `to` (RFC 3339): executions that ended in `[from, to)`; default the 7 days
///   before now; at most 400 days (422 `range_too_long`); `to` after `from` (422
///   `invalid_range`).
/// - `graph_id`: one graph's executions (another user's graph is 404).
/// - `limit` (1 to 100, default 50) and `cursor` (`next_cursor` of the previous page).
#[OpenApi(prefix_path = "/api/v1/dashboard", tag = "ApiTags::Dashboards")]
impl DashboardApi {
    /// Your executions that ended in `[from, to)`: runs by status, success rate, p50/p95
    /// run time and queue wait, tokens, cost, LLM and tool calls.
    #[oai(path = "/summary", method = "get", operation_id = "dashboard_summary")]
    async fn summary(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Only this graph's executions.
        graph_id: Query<Option<Uuid>>,
        /// Ended at or after this time (RFC 3339; default: 7 days before `to`).
        from: Query<Option<DateTime<Utc>>>,
        /// Ended before this time (RFC 3339; default: now).
        to: Query<Option<DateTime<Utc>>>,
    ) -> Result<SummaryResponse, ApiError> {
        summary(&state, &auth, Window::own(graph_id, from, to)).await
    }

    /// Your figures per hour or day, every bucket present (empty ones as zeros). At most
    /// 2,000 buckets (422 `too_many_buckets`).
    #[oai(
        path = "/timeseries",
        method = "get",
        operation_id = "dashboard_timeseries"
    )]
    async fn timeseries(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        /// `hour` or `day` (default).
        bucket: Query<Option<BucketName>>,
        /// IANA time zone whose hours and midnights bound the buckets (default `UTC`).
        time_zone: Query<Option<String>>,
    ) -> Result<TimeseriesResponse, ApiError> {
        let window = Window::own(graph_id, from, to);
        timeseries(&state, &auth, window, bucket.0, time_zone.0).await
    }

    /// Your graphs with the most failed runs in the range.
    #[oai(
        path = "/failing-graphs",
        method = "get",
        operation_id = "dashboard_failing_graphs"
    )]
    async fn failing_graphs(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<FailingGraphsResponse, ApiError> {
        let window = Window::own(graph_id, from, to);
        failing_graphs(&state, &auth, window, limit.0, cursor.0).await
    }

    /// The codes your executions ended with (failures and cancellations), most frequent
    /// first.
    #[oai(
        path = "/end-codes",
        method = "get",
        operation_id = "dashboard_end_codes"
    )]
    async fn end_codes(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<EndCodesResponse, ApiError> {
        let window = Window::own(graph_id, from, to);
        end_codes(&state, &auth, window, limit.0, cursor.0).await
    }

    /// Your usage per model: calls, failures, tokens and cost, most calls first.
    #[oai(path = "/models", method = "get", operation_id = "dashboard_models")]
    async fn models(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ModelsResponse, ApiError> {
        let window = Window::own(graph_id, from, to);
        models(&state, &auth, window, limit.0, cursor.0).await
    }
}

/// The same dashboards across every user (admin role only), or one user's with `user_id`
/// (an unknown user or graph is 404).
#[OpenApi(prefix_path = "/api/v1/admin/dashboard", tag = "ApiTags::Admin")]
impl AdminDashboardApi {
    /// Every user's executions that ended in `[from, to)` (or `user_id`'s).
    #[oai(
        path = "/summary",
        method = "get",
        operation_id = "admin_dashboard_summary"
    )]
    async fn summary(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Only this user's executions.
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Result<SummaryResponse, ApiError> {
        summary(&state, &auth, Window::admin(user_id, graph_id, from, to)).await
    }

    /// Every user's figures per hour or day.
    #[oai(
        path = "/timeseries",
        method = "get",
        operation_id = "admin_dashboard_timeseries"
    )]
    async fn timeseries(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        bucket: Query<Option<BucketName>>,
        time_zone: Query<Option<String>>,
    ) -> Result<TimeseriesResponse, ApiError> {
        let window = Window::admin(user_id, graph_id, from, to);
        timeseries(&state, &auth, window, bucket.0, time_zone.0).await
    }

    /// The graphs (of any user) with the most failed runs.
    #[oai(
        path = "/failing-graphs",
        method = "get",
        operation_id = "admin_dashboard_failing_graphs"
    )]
    async fn failing_graphs(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<FailingGraphsResponse, ApiError> {
        let window = Window::admin(user_id, graph_id, from, to);
        failing_graphs(&state, &auth, window, limit.0, cursor.0).await
    }

    /// The codes every user's executions ended with, most frequent first.
    #[oai(
        path = "/end-codes",
        method = "get",
        operation_id = "admin_dashboard_end_codes"
    )]
    async fn end_codes(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<EndCodesResponse, ApiError> {
        let window = Window::admin(user_id, graph_id, from, to);
        end_codes(&state, &auth, window, limit.0, cursor.0).await
    }

    /// Usage per model across every user.
    #[oai(
        path = "/models",
        method = "get",
        operation_id = "admin_dashboard_models"
    )]
    async fn models(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Query<Option<Uuid>>,
        graph_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ModelsResponse, ApiError> {
        let window = Window::admin(user_id, graph_id, from, to);
        models(&state, &auth, window, limit.0, cursor.0).await
    }
}
