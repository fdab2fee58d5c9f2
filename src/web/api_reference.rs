//! Settings › API reference: the API's OpenAPI document (`GET /api/v1/openapi.json`) rendered
//! on the server, so the reference never disagrees with the API and loads nothing from
//! elsewhere. Operations are grouped by tag; each shows its method, path, summary,
//! parameters, request body (fields and example) and answers.

use actix_web::HttpResponse;
use askama::Template;
use serde_json::Value;

use crate::error::AppError;
use crate::web::api::document;
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm};
use crate::web::render;

pub struct TagView {
    pub name: String,
    pub description: String,
    pub operations: Vec<OperationView>,
}

pub struct OperationView {
    /// The anchor a link to this operation uses.
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: String,
    pub public: bool,
    pub parameters: Vec<ParameterView>,
    pub request: Option<BodyView>,
    pub responses: Vec<ResponseView>,
}

pub struct ParameterView {
    pub name: String,
    pub location: String,
    pub kind: String,
    pub required: bool,
    pub description: String,
}

pub struct BodyView {
    pub content_type: String,
    pub schema: String,
    pub fields: Vec<FieldView>,
    pub example: Option<String>,
}

pub struct FieldView {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub description: String,
}

pub struct ResponseView {
    pub status: String,
    pub description: String,
    pub schema: String,
    pub example: Option<String>,
}

#[derive(Template)]
#[template(path = "api_reference/index.html")]
struct ReferencePage {
    chrome: Chrome,
    title: String,
    description: String,
    tags: Vec<TagView>,
}

/// `GET /settings/api-reference` (anyone signed in).
pub async fn page(
    _auth: Auth<perm::ViewDashboard>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let doc = serde_json::to_value(document()).map_err(AppError::internal)?;
    render(&ReferencePage {
        chrome,
        title: text(&doc["info"]["title"]),
        description: text(&doc["info"]["description"]),
        tags: tags(&doc),
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The operations of the document by tag, in the document's tag order.
pub fn tags(doc: &Value) -> Vec<TagView> {
    let mut out: Vec<TagView> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| TagView {
            name: text(&t["name"]),
            description: text(&t["description"]),
            operations: Vec::new(),
        })
        .collect();
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            let view = operation(doc, method, path, op);
            match out.iter_mut().find(|t| t.name == tag) {
                Some(t) => t.operations.push(view),
                None => out.push(TagView {
                    name: tag,
                    description: String::new(),
                    operations: vec![view],
                }),
            }
        }
    }
    out.retain(|t| !t.operations.is_empty());
    out
}

fn operation(doc: &Value, method: &str, path: &str, op: &Value) -> OperationView {
    let anchor = format!("{method}-{path}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let public = op["security"].as_array().is_some_and(|s| {
        s.iter()
            .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
    });
    let parameters = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ParameterView {
            name: text(&p["name"]),
            location: text(&p["in"]),
            kind: type_name(&p["schema"]),
            required: p["required"].as_bool().unwrap_or(false),
            description: text(&p["description"]),
        })
        .collect();
    let request = op["requestBody"]["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .map(|(content_type, content)| {
            let schema = resolve(doc, &content["schema"]);
            BodyView {
                content_type: content_type.clone(),
                schema: type_name(&content["schema"]),
                fields: fields(doc, schema),
                example: pretty(content.get("example").or_else(|| schema.get("example"))),
            }
        });
    let responses = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| {
            let r = resolve(doc, r);
            let content = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let schema = resolve(doc, &content["schema"]);
            ResponseView {
                status: status.clone(),
                description: text(&r["description"]),
                schema: if content.is_null() {
                    String::new()
                } else {
                    type_name(&content["schema"])
                },
                // The success answers' examples; the errors all share one shape.
                example: if status.starts_with('2') {
                    pretty(content.get("example").or_else(|| schema.get("example")))
                } else {
                    None
                },
            }
        })
        .collect();
    OperationView {
        anchor,
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        summary: text(&op["summary"]),
        description: text(&op["description"]),
        public,
        parameters,
        request,
        responses,
    }
}

/// A `$ref` followed to what it names (once: components do not chain here).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}

/// A schema in a few words: `ContactJson`, `array of MessageJson`, `string`, `integer or null`.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[combinator].as_array() {
            let names: Vec<String> = parts.iter().map(type_name).collect();
            return names.join(" or ");
        }
    }
    let base = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ if schema.is_object() && !schema.as_object().is_some_and(|o| o.is_empty()) => {
            "object".into()
        }
        _ => "any".into(),
    };
    if base.starts_with("array") {
        return format!("{base} of {}", type_name(&schema["items"]));
    }
    base
}

/// The properties of an object schema (one level), required ones first marked.
fn fields(doc: &Value, schema: &Value) -> Vec<FieldView> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, p)| FieldView {
            name: name.clone(),
            kind: type_name(p),
            required: required.contains(&name.as_str()),
            description: text(&resolve(doc, p)["description"]),
        })
        .collect()
}

fn pretty(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null())
        .and_then(|v| serde_json::to_string_pretty(v).ok())
}
