//! The OpenAI-compatible model endpoints Ollama serves (`GET /v1/models`, `GET /v1/models/{model}`),
//! as its `openai` package shapes them from the list and show answers.

use serde::{Deserialize, Serialize};

use crate::json::{Wire, sealed::Sealed};
use crate::{ListResponse, ShowResponse};

/// One model, OpenAI's shape (`openai.Model`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The model's name.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Modification time, Unix seconds.
    pub created: i64,
    /// The name's namespace (`library` for an unqualified name).
    pub owned_by: String,
}

/// `GET /v1/models` (`openai.ListCompletion`). `data` is `null` when there are no models, as Go
/// encodes the nil slice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Option<Vec<Model>>,
}

/// An error, OpenAI's shape (`openai.ErrorResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: Error,
}

/// The body of an [`ErrorResponse`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// What went wrong (Ollama's own message).
    pub message: String,
    /// `invalid_request_error` (400), `not_found_error` (404), else `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `null` here.
    pub param: Option<String>,
    /// Always `null` here.
    pub code: Option<String>,
}

impl ErrorResponse {
    /// Ollama's `openai.NewError`: the type follows the HTTP status.
    pub fn new(status: u16, message: impl Into<String>) -> ErrorResponse {
        let kind = match status {
            400 => "invalid_request_error",
            404 => "not_found_error",
            _ => "api_error",
        };
        ErrorResponse {
            error: Error {
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
                code: None,
            },
        }
    }
}

/// Ollama's `ToListCompletion`: each model's `model` (else `name`) as its id, the namespace its
/// name parses to (`namespace_of`) as the owner.
pub fn model_list(list: &ListResponse, namespace_of: impl Fn(&str) -> String) -> ModelList {
    let data: Vec<Model> = list
        .models
        .iter()
        .map(|m| {
            let id = if m.model.is_empty() {
                &m.name
            } else {
                &m.model
            };
            Model {
                id: id.clone(),
                object: "model".to_owned(),
                created: m.modified_at.unix_seconds(),
                owned_by: namespace_of(id),
            }
        })
        .collect();
    ModelList {
        object: "list".to_owned(),
        data: (!data.is_empty()).then_some(data),
    }
}

/// Ollama's `ToModel`: the model as it was asked for, its modification time, its namespace.
pub fn model(show: &ShowResponse, name: &str, namespace_of: impl Fn(&str) -> String) -> Model {
    Model {
        id: name.to_owned(),
        object: "model".to_owned(),
        created: show.modified_at.unix_seconds(),
        owned_by: namespace_of(name),
    }
}

impl Sealed for Model {}
impl Wire for Model {}
impl Sealed for ModelList {}
impl Wire for ModelList {}
impl Sealed for ErrorResponse {}
impl Wire for ErrorResponse {}
