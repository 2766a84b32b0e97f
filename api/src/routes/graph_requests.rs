//! Request bodies of the graph routes (`routes/graphs.rs`).

use poem_openapi::Object;
use poem_openapi::types::{Example, MaybeUndefined};
use serde_json::Value;
use uuid::Uuid;

use super::graph_bodies::example_document;

#[derive(Object)]
#[oai(example)]
pub struct CreateGraphRequest {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// The graph document; an empty graph when absent. Drafts with validation errors are
    /// stored (with `valid: false`); a document that is not a readable graph is refused.
    pub document: Option<Value>,
}

impl Example for CreateGraphRequest {
    fn example() -> Self {
        CreateGraphRequest {
            name: "Greeter".into(),
            description: Some("Says hello".into()),
            document: Some(example_document()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ReplaceGraphRequest {
    /// The new document.
    pub document: Value,
    /// The version this replaces (or send `If-Match: "<version>"`).
    pub version: Option<i32>,
    /// A new name, optionally.
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
}

impl Example for ReplaceGraphRequest {
    fn example() -> Self {
        ReplaceGraphRequest {
            document: example_document(),
            version: Some(3),
            name: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct UpdateGraphRequest {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// `null` clears it; leaving it out keeps it.
    #[oai(nullable, validator(max_length = 2000))]
    pub description: MaybeUndefined<String>,
}

impl Example for UpdateGraphRequest {
    fn example() -> Self {
        UpdateGraphRequest {
            name: Some("Greeter v2".into()),
            description: MaybeUndefined::Undefined,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct DuplicateGraphRequest {
    /// Default: "<name> (copy)".
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// Another of your workspaces; default: the same one.
    pub workspace_id: Option<Uuid>,
}

impl Example for DuplicateGraphRequest {
    fn example() -> Self {
        DuplicateGraphRequest {
            name: Some("Greeter (experiment)".into()),
            workspace_id: None,
        }
    }
}
