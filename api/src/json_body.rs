//! JSON request bodies held to their own OpenAPI schema before they are parsed.
//!
//! poem-openapi's `Json<T>` turns JSON numbers and booleans into `String`s, reads `null` as
//! "absent" in every `Option` field, and its parse errors do not name the field.
//! [`JsonBody<T>`] first walks the body along `T`'s registered schema and refuses, with 422
//! `invalid_type` and `details.field` naming the field:
//! - a value of the wrong JSON type (a number for a text field, a string for an object...);
//! - `null` for a required field;
//! - in a PATCH, `null` for a field whose schema is not `nullable` — only fields documented
//!   as clearable (`#[oai(nullable)]`) may be cleared.
//!
//! Then it parses the body exactly as `Json<T>` does.

use poem::http::Method;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// A JSON request body checked against its schema (see the module documentation).
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|err| ParseRequestPayloadError {
                reason: err.to_string(),
            })?
        };
        let mut registry = Registry::new();
        T::register(&mut registry);
        let check = SchemaCheck {
            registry: &registry,
            patch: request.method() == Method::PATCH,
        };
        // A body that is not an object at all stays a 400 `malformed_body`: no field to name.
        if let (Value::Object(fields), Some(schema)) = (&value, check.resolve(&T::schema_ref()))
            && let Err(problem) = check.object(fields, schema, "")
        {
            return Err(problem.into_error().into());
        }
        let parsed = T::parse_from_json(Some(value)).map_err(|err| ParseRequestPayloadError {
            reason: err.into_message(),
        })?;
        Ok(JsonBody(parsed))
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// A field that does not match its schema.
#[derive(Debug, PartialEq)]
struct Problem {
    field: String,
    /// The schema's JSON type (`string`, `integer`, ...), or `value` when it allows any.
    expected: &'static str,
    kind: ProblemKind,
}

#[derive(Debug, PartialEq)]
enum ProblemKind {
    WrongType,
    NullRequired,
    NullNotClearable,
}

impl Problem {
    fn into_error(self) -> ApiError {
        let Problem {
            field,
            expected,
            kind,
        } = self;
        let message = match kind {
            ProblemKind::WrongType => format!("`{field}` must be {}", with_article(expected)),
            ProblemKind::NullRequired => format!("`{field}` is required and cannot be null"),
            ProblemKind::NullNotClearable => {
                format!("`{field}` cannot be cleared: leave it out to keep its value")
            }
        };
        ApiError::Unprocessable {
            code: "invalid_type",
            message,
            details: Some(json!({ "field": field, "expected": expected })),
        }
    }
}

fn with_article(json_type: &str) -> String {
    match json_type {
        "integer" | "object" | "array" => format!("an {json_type}"),
        other => format!("a {other}"),
    }
}

struct SchemaCheck<'a> {
    registry: &'a Registry,
    patch: bool,
}

/// The JSON types a schema can demand; anything else (`""`: any value) is not checked.
const CHECKED_TYPES: [&str; 6] = ["string", "integer", "number", "boolean", "array", "object"];

impl SchemaCheck<'_> {
    fn resolve<'s>(&'s self, schema: &'s MetaSchemaRef) -> Option<&'s MetaSchema> {
        match schema {
            MetaSchemaRef::Inline(schema) => Some(schema),
            MetaSchemaRef::Reference(name) => self.registry.schemas.get(name),
        }
    }

    fn value(&self, value: &Value, schema: &MetaSchemaRef, field: &str) -> Result<(), Problem> {
        let Some(schema) = self.resolve(schema) else {
            return Ok(());
        };
        for part in &schema.all_of {
            self.value(value, part, field)?;
        }
        let matches = match (schema.ty, value) {
            // Nulls are judged by the object that holds them.
            (_, Value::Null) => true,
            ("string", Value::String(_))
            | ("boolean", Value::Bool(_))
            | ("number", Value::Number(_)) => true,
            ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
            ("array", Value::Array(items)) => {
                if let Some(item_schema) = &schema.items {
                    for (index, item) in items.iter().enumerate() {
                        self.value(item, item_schema, &format!("{field}[{index}]"))?;
                    }
                }
                true
            }
            ("object", Value::Object(fields)) => {
                self.object(fields, schema, field)?;
                true
            }
            (ty, _) => !CHECKED_TYPES.contains(&ty),
        };
        if matches {
            Ok(())
        } else {
            Err(Problem {
                field: field.to_string(),
                expected: schema.ty,
                kind: ProblemKind::WrongType,
            })
        }
    }

    fn object(
        &self,
        fields: &Map<String, Value>,
        schema: &MetaSchema,
        path: &str,
    ) -> Result<(), Problem> {
        for (name, property) in &schema.properties {
            let field = join(path, name);
            match fields.get(*name) {
                // A missing field is the parser's to report.
                None => {}
                Some(Value::Null) => {
                    let kind = if schema.required.contains(name) {
                        ProblemKind::NullRequired
                    } else if self.patch && !self.nullable(property) {
                        ProblemKind::NullNotClearable
                    } else {
                        continue;
                    };
                    return Err(Problem {
                        expected: self.json_type(property),
                        field,
                        kind,
                    });
                }
                Some(value) => self.value(value, property, &field)?,
            }
        }
        if let Some(additional) = &schema.additional_properties {
            for (name, value) in fields {
                if !schema.properties.iter().any(|(known, _)| known == name) {
                    self.value(value, additional, &join(path, name))?;
                }
            }
        }
        Ok(())
    }

    fn nullable(&self, schema: &MetaSchemaRef) -> bool {
        matches!(schema, MetaSchemaRef::Inline(schema) if schema.nullable)
    }

    fn json_type(&self, schema: &MetaSchemaRef) -> &'static str {
        let Some(schema) = self.resolve(schema) else {
            return "value";
        };
        if CHECKED_TYPES.contains(&schema.ty) {
            return schema.ty;
        }
        schema
            .all_of
            .iter()
            .map(|part| self.json_type(part))
            .find(|ty| *ty != "value")
            .unwrap_or("value")
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use poem_openapi::Object;
    use poem_openapi::types::MaybeUndefined;

    use super::*;

    #[derive(Object)]
    struct Inner {
        role: String,
    }

    #[derive(Object)]
    struct Body {
        name: String,
        count: Option<u32>,
        tags: Option<Vec<String>>,
        inner: Option<Inner>,
        agents: Option<Vec<Inner>>,
        inputs: Option<BTreeMap<String, i64>>,
        anything: Option<Value>,
        #[oai(nullable)]
        note: MaybeUndefined<String>,
    }

    fn check(body: Value, patch: bool) -> Result<(), Problem> {
        let mut registry = Registry::new();
        Body::register(&mut registry);
        let check = SchemaCheck {
            registry: &registry,
            patch,
        };
        let schema_ref = Body::schema_ref();
        let schema = check.resolve(&schema_ref).expect("registered");
        let Value::Object(fields) = body else {
            panic!("an object")
        };
        check.object(&fields, schema, "")
    }

    fn refused(body: Value, patch: bool) -> (String, &'static str, ProblemKind) {
        let problem = check(body, patch).expect_err("refused");
        (problem.field, problem.expected, problem.kind)
    }

    #[test]
    fn values_of_the_right_types_pass() {
        let body = json!({"name": "n", "count": 3, "tags": ["a"], "inner": {"role": "r"},
                          "agents": [{"role": "r"}], "inputs": {"a": 1}, "anything": [1, "x"],
                          "note": "x", "unknown": 5});
        assert_eq!(check(body, false), Ok(()));
        assert_eq!(
            check(json!({"name": "n", "count": null, "note": null}), false),
            Ok(())
        );
        assert_eq!(check(json!({"note": null, "anything": 1}), true), Ok(()));
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        use ProblemKind::WrongType;
        for (body, field, expected) in [
            (json!({"name": 12345}), "name", "string"),
            (json!({"name": true}), "name", "string"),
            (json!({"name": "n", "count": "3"}), "count", "integer"),
            (json!({"name": "n", "count": 1.5}), "count", "integer"),
            (json!({"name": "n", "tags": "a"}), "tags", "array"),
            (json!({"name": "n", "tags": ["a", 2]}), "tags[1]", "string"),
            (json!({"name": "n", "inner": "r"}), "inner", "object"),
            (
                json!({"name": "n", "inner": {"role": 1}}),
                "inner.role",
                "string",
            ),
            (
                json!({"name": "n", "agents": [{"role": false}]}),
                "agents[0].role",
                "string",
            ),
            (
                json!({"name": "n", "inputs": {"a": "1"}}),
                "inputs.a",
                "integer",
            ),
        ] {
            assert_eq!(
                refused(body, false),
                (field.to_string(), expected, WrongType)
            );
        }
    }

    #[test]
    fn null_is_refused_for_required_fields_and_in_patches_for_fields_not_clearable() {
        assert_eq!(
            refused(json!({"name": null}), false),
            ("name".to_string(), "string", ProblemKind::NullRequired)
        );
        // Outside PATCH an optional field's null means absent, as poem-openapi reads it.
        assert_eq!(check(json!({"name": "n", "count": null}), false), Ok(()));
        for (field, expected) in [
            ("count", "integer"),
            ("inner", "object"),
            ("anything", "value"),
        ] {
            assert_eq!(
                refused(json!({ field: null }), true),
                (field.to_string(), expected, ProblemKind::NullNotClearable)
            );
        }
    }

    #[test]
    fn problems_become_422_naming_the_field() {
        let error = Problem {
            field: "name".into(),
            expected: "string",
            kind: ProblemKind::WrongType,
        }
        .into_error();
        let ApiError::Unprocessable {
            code,
            message,
            details,
        } = error
        else {
            panic!("not a 422");
        };
        assert_eq!(code, "invalid_type");
        assert_eq!(message, "`name` must be a string");
        assert_eq!(
            details,
            Some(json!({"field": "name", "expected": "string"}))
        );
    }
}
