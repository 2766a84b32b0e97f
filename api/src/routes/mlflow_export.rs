//! The MLflow view of an execution (`mlflow` in `GET /api/v1/executions/{id}`): where its
//! export stands, and its run once made.

use chrono::{DateTime, Utc};
use crewgraph_core::mlflow::ExportState;
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};

use super::graph_bodies::example_time;

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename = "MlflowExportState", rename_all = "lowercase")]
pub enum ExportStateBody {
    /// Queued, or being retried while MLflow (or the OTLP endpoint) fails.
    Pending,
    Exported,
    /// Given up after `attempts`; `last_error` says why.
    Failed,
}

/// The execution's MLflow run and the state of its export.
#[derive(Object)]
#[oai(rename = "MlflowExport", example)]
pub struct MlflowExportBody {
    pub state: ExportStateBody,
    /// Set once the run exists.
    pub run_id: Option<String>,
    pub experiment_id: Option<String>,
    /// The run in MLflow's UI (tracking URI + `/#/experiments/<experiment>/runs/<run>`).
    pub url: Option<String>,
    /// Attempts so far (each retry counts).
    pub attempts: i32,
    /// Why the last attempt failed (cleared once exported).
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub exported_at: Option<DateTime<Utc>>,
}

impl From<ExportState> for MlflowExportBody {
    fn from(state: ExportState) -> Self {
        MlflowExportBody {
            url: state.run_url(),
            state: match state.state.as_str() {
                "exported" => ExportStateBody::Exported,
                "failed" => ExportStateBody::Failed,
                _ => ExportStateBody::Pending,
            },
            run_id: state.run_id,
            experiment_id: state.experiment_id,
            attempts: state.attempts,
            last_error: state.last_error,
            updated_at: state.updated_at,
            exported_at: state.exported_at,
        }
    }
}

impl Example for MlflowExportBody {
    fn example() -> Self {
        MlflowExportBody {
            state: ExportStateBody::Exported,
            run_id: Some("5f2d0b6c1e8a4f7e9b3c2d1a0f9e8d7c".into()),
            experiment_id: Some("12".into()),
            url: Some(
                "https://mlflow.example.com/#/experiments/12/runs/5f2d0b6c1e8a4f7e9b3c2d1a0f9e8d7c"
                    .into(),
            ),
            attempts: 1,
            last_error: None,
            updated_at: example_time(),
            exported_at: Some(example_time()),
        }
    }
}
