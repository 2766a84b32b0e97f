//! MLflow's tracking REST API (`/api/2.0/mlflow/...`), the calls the export makes.
//! Every failure becomes an [`ExportError`] whose text is safe to store and show: it names
//! the call and MLflow's answer, never a credential (the tracking URI cannot hold any, and
//! transport errors are stripped of their URL).

use std::fmt;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::{MlflowAuth, MlflowTracking};

/// MLflow's batch limits (`mlflow/utils/validation.py`).
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// The tag a retried export finds its run by.
pub const EXECUTION_ID_TAG: &str = "crewgraph.execution_id";
/// Longest error text kept.
const MAX_ERROR_CHARS: usize = 500;

/// Why an export attempt failed, in words fit for the export state.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportError(pub String);

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExportError {}

impl ExportError {
    pub fn new(message: impl Into<String>) -> Self {
        let message: String = message.into();
        ExportError(message.chars().take(MAX_ERROR_CHARS).collect())
    }

    /// A transport error with its causes ("connection refused"...), without the URL
    /// (reqwest prints it, query string and all).
    pub fn transport(what: &str, error: reqwest::Error) -> Self {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        let mut text = error.without_url().to_string();
        for cause in causes {
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
        }
        ExportError::new(format!("{what}: {text}"))
    }
}

/// A point of a metric series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One `runs/log-batch` request's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// Splits a run's data into requests within MLflow's limits: params and tags go first
/// (with as many metrics as fit beside them), the remaining metrics follow.
pub fn batches(metrics: Vec<Metric>, params: Vec<KeyValue>, tags: Vec<KeyValue>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut params = params.into_iter().peekable();
    let mut tags = tags.into_iter().peekable();
    let mut metrics = metrics.into_iter().peekable();
    while params.peek().is_some() || tags.peek().is_some() || metrics.peek().is_some() {
        let batch_params: Vec<_> = params.by_ref().take(MAX_PARAMS_PER_BATCH).collect();
        let batch_tags: Vec<_> = tags.by_ref().take(MAX_TAGS_PER_BATCH).collect();
        let room = (MAX_ENTITIES_PER_BATCH - batch_params.len() - batch_tags.len())
            .min(MAX_METRICS_PER_BATCH);
        let batch_metrics: Vec<_> = metrics.by_ref().take(room).collect();
        out.push(Batch {
            metrics: batch_metrics,
            params: batch_params,
            tags: batch_tags,
        });
    }
    out
}

/// The `Authorization` header MLflow's credentials make, marked sensitive.
pub fn auth_headers(auth: &MlflowAuth) -> HeaderMap {
    let value = match auth {
        MlflowAuth::None => None,
        MlflowAuth::Bearer(token) => Some(format!("Bearer {}", token.expose_secret())),
        MlflowAuth::Basic { username, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose_secret()))
        )),
    };
    let mut headers = HeaderMap::new();
    if let Some(Ok(mut value)) = value.map(|v| HeaderValue::from_str(&v)) {
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    headers
}

pub struct MlflowClient<'a> {
    http: &'a reqwest::Client,
    tracking: &'a MlflowTracking,
}

/// MLflow's error answer.
struct ApiError {
    status: u16,
    code: String,
    message: String,
}

impl<'a> MlflowClient<'a> {
    pub fn new(http: &'a reqwest::Client, tracking: &'a MlflowTracking) -> Self {
        MlflowClient { http, tracking }
    }

    async fn call(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Result<Value, ApiError>, ExportError> {
        let what = format!("MLflow {endpoint}");
        let response = request
            .headers(auth_headers(&self.tracking.auth))
            .send()
            .await
            .map_err(|e| ExportError::transport(&what, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ExportError::transport(&what, e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(body));
        }
        Ok(Err(ApiError {
            status: status.as_u16(),
            code: body["error_code"].as_str().unwrap_or_default().to_string(),
            message: body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(200).collect()),
        }))
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.tracking.uri)
    }

    async fn post(&self, endpoint: &str, body: Value) -> Result<Value, ExportError> {
        let request = self.http.post(self.url(endpoint)).json(&body);
        self.call(endpoint, request)
            .await?
            .map_err(|e| failed(endpoint, e))
    }

    /// The experiment's id, created when missing (if another exporter creates it at the
    /// same moment, MLflow says RESOURCE_ALREADY_EXISTS and it is read again).
    pub async fn experiment_id(&self, name: &str) -> Result<String, ExportError> {
        if let Some(id) = self.experiment_by_name(name).await? {
            return Ok(id);
        }
        let endpoint = "experiments/create";
        let request = self
            .http
            .post(self.url(endpoint))
            .json(&json!({ "name": name }));
        match self.call(endpoint, request).await? {
            Ok(body) => string_field(&body["experiment_id"], endpoint),
            Err(e) if e.code == "RESOURCE_ALREADY_EXISTS" => {
                self.experiment_by_name(name).await?.ok_or_else(|| {
                    ExportError::new(format!(
                        "MLflow experiment {name:?} is deleted: restore it or remove it for good"
                    ))
                })
            }
            Err(e) => Err(failed(endpoint, e)),
        }
    }

    /// An active experiment's id; `None` when there is none by that name.
    async fn experiment_by_name(&self, name: &str) -> Result<Option<String>, ExportError> {
        let endpoint = "experiments/get-by-name";
        let request = self
            .http
            .get(self.url(endpoint))
            .query(&[("experiment_name", name)]);
        match self.call(endpoint, request).await? {
            Ok(body) if body["experiment"]["lifecycle_stage"] == "deleted" => Ok(None),
            Ok(body) => string_field(&body["experiment"]["experiment_id"], endpoint).map(Some),
            Err(e) if e.code == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            Err(e) => Err(failed(endpoint, e)),
        }
    }

    /// The run an earlier attempt made for this execution, if any.
    pub async fn find_run(
        &self,
        experiment_id: &str,
        execution_id: Uuid,
    ) -> Result<Option<String>, ExportError> {
        let endpoint = "runs/search";
        let body = self
            .post(
                endpoint,
                json!({
                    "experiment_ids": [experiment_id],
                    "filter": format!("tags.`{EXECUTION_ID_TAG}` = '{execution_id}'"),
                    "run_view_type": "ACTIVE_ONLY",
                    "max_results": 1,
                }),
            )
            .await?;
        match body["runs"].get(0) {
            Some(run) => string_field(&run["info"]["run_id"], endpoint).map(Some),
            None => Ok(None),
        }
    }

    /// Creates the run, tagged with its execution id from the start so that a retry after
    /// a lost answer finds it.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        execution_id: Uuid,
    ) -> Result<String, ExportError> {
        let endpoint = "runs/create";
        let body = self
            .post(
                endpoint,
                json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": start_time_ms,
                    "tags": [{"key": EXECUTION_ID_TAG, "value": execution_id.to_string()}],
                }),
            )
            .await?;
        string_field(&body["run"]["info"]["run_id"], endpoint)
    }

    pub async fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<(), ExportError> {
        let mut body = serde_json::to_value(batch).map_err(|e| ExportError::new(e.to_string()))?;
        body["run_id"] = json!(run_id);
        self.post("runs/log-batch", body).await.map(|_| ())
    }

    /// Ends the run: `FINISHED`, `FAILED` or `KILLED`, at the execution's end.
    pub async fn end_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), ExportError> {
        self.post(
            "runs/update",
            json!({"run_id": run_id, "status": status, "end_time": end_time_ms}),
        )
        .await
        .map(|_| ())
    }
}

fn failed(endpoint: &str, e: ApiError) -> ExportError {
    ExportError::new(format!(
        "MLflow {endpoint} answered {} {}: {}",
        e.status, e.code, e.message
    ))
}

fn string_field(value: &Value, endpoint: &str) -> Result<String, ExportError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ExportError::new(format!("MLflow {endpoint}: unexpected answer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(i: usize) -> Metric {
        Metric {
            key: format!("m{i}"),
            value: i as f64,
            timestamp: 0,
            step: 0,
        }
    }

    fn kv(prefix: &str, i: usize) -> KeyValue {
        KeyValue {
            key: format!("{prefix}{i}"),
            value: "v".into(),
        }
    }

    #[test]
    fn batches_stay_within_mlflows_limits_and_keep_everything_once() {
        let metrics: Vec<_> = (0..2_345).map(metric).collect();
        let params: Vec<_> = (0..150).map(|i| kv("p", i)).collect();
        let tags: Vec<_> = (0..120).map(|i| kv("t", i)).collect();
        let out = batches(metrics.clone(), params.clone(), tags.clone());
        for batch in &out {
            assert!(batch.metrics.len() <= MAX_METRICS_PER_BATCH);
            assert!(batch.params.len() <= MAX_PARAMS_PER_BATCH);
            assert!(batch.tags.len() <= MAX_TAGS_PER_BATCH);
            assert!(
                batch.metrics.len() + batch.params.len() + batch.tags.len()
                    <= MAX_ENTITIES_PER_BATCH
            );
        }
        let all_metrics: Vec<_> = out.iter().flat_map(|b| b.metrics.clone()).collect();
        let all_params: Vec<_> = out.iter().flat_map(|b| b.params.clone()).collect();
        let all_tags: Vec<_> = out.iter().flat_map(|b| b.tags.clone()).collect();
        assert_eq!(all_metrics, metrics);
        assert_eq!(all_params, params);
        assert_eq!(all_tags, tags);
        // 800 metrics beside 100 params and 100 tags, 930 beside the other 70, then 615.
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn an_empty_run_needs_no_batch() {
        assert!(batches(vec![], vec![], vec![]).is_empty());
    }
}
