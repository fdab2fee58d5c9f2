//! `GET /api/v1/templates`: the templates a client may send now, with the variables each takes.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::content::ParameterFormat;
use crate::domain::template::{Language, PlaceholderInfo};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::templates::{self, SendableTemplate, TemplateFilter};
use crate::web::api::{ChannelRef, Params};
use crate::web::identity::{Auth, perm};

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// A channel's id or name.
    #[serde(default)]
    channel: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: String,
}

#[derive(Serialize)]
pub struct TemplateJson {
    pub id: String,
    /// The version that sends.
    pub version: i32,
    pub channel: ChannelRef,
    pub name: String,
    pub language: String,
    pub category: Option<&'static str>,
    pub kind: &'static str,
    /// `positional`: pass `variables` as a list in the order of `variables`; `named`: as an
    /// object keyed by variable name (either works for named templates).
    pub parameter_format: ParameterFormat,
    /// The variable names a send fills, each once, in the order a list fills them.
    pub variables: Vec<String>,
    /// Every placeholder with where it sits and its sample value.
    pub placeholders: Vec<PlaceholderInfo>,
    /// The text with its placeholders, as approved.
    pub body: String,
}

impl TemplateJson {
    fn new(channel: &Channel, t: SendableTemplate) -> TemplateJson {
        let placeholders = t.placeholders();
        let mut variables: Vec<String> = Vec::new();
        for p in &placeholders {
            if !variables.contains(&p.name) {
                variables.push(p.name.clone());
            }
        }
        TemplateJson {
            id: t.public_id,
            version: t.version,
            channel: ChannelRef {
                id: channel.public_id.clone(),
                name: channel.name.clone(),
                kind: channel.kind.as_str(),
            },
            name: t.template.name().to_string(),
            language: t.template.language().to_string(),
            category: t.template.category().map(|c| c.as_str()),
            kind: t.template.kind().as_str(),
            parameter_format: t.template.parameter_format(),
            variables,
            placeholders,
            body: t.template.body().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct TemplateList {
    data: Vec<TemplateJson>,
}

/// Lists what is sendable now; `?channel=` (id or name), `?name=`, `?language=` narrow it.
pub async fn list(
    _auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let found = state
        .db
        .run(move |conn| {
            let wanted = query.channel.trim();
            let channel = if wanted.is_empty() {
                None
            } else {
                let found = channels::list(conn)?
                    .into_iter()
                    .find(|c| c.public_id == wanted || c.name == wanted);
                Some(found.ok_or_else(|| {
                    AppError::NotFound(format!("There is no channel \"{wanted}\"."))
                })?)
            };
            // `en-us` finds `en_US`: the language as the channel (or WhatsApp, by default)
            // writes it.
            let kind = channel.as_ref().map_or(ChannelKind::Whatsapp, |c| c.kind);
            let language = match query.language.trim() {
                "" => None,
                raw => Some(
                    Language::parse(kind, raw)
                        .map(|l| l.as_str().to_owned())
                        .unwrap_or_else(|_| raw.to_owned()),
                ),
            };
            let filter = TemplateFilter {
                channel_id: channel.map(|c| c.id),
                name: Some(query.name.trim().to_owned()).filter(|n| !n.is_empty()),
                language,
                ..TemplateFilter::default()
            };
            Ok::<_, AppError>(templates::sendable_list(conn, &filter)?)
        })
        .await?;
    let data = found
        .into_iter()
        .map(|(channel, t)| TemplateJson::new(&channel, t))
        .collect();
    Ok(HttpResponse::Ok().json(TemplateList { data }))
}
