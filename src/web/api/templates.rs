//! `GET /api/v1/templates`: the templates a client may send now, with the variables each takes.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::content::ParameterFormat;
use crate::domain::template::{Language, PlaceholderInfo};
use crate::error::AppError;
use crate::service::paging::{Page, PageRequest};
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::templates::{self, SendableTemplate, TemplateFilter};
use crate::web::api::{BadRequest, ChannelRef, NotFound, Params, Unprocessable, page_params};
use crate::web::identity::{Auth, perm};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A channel's id or name.
    #[serde(default)]
    #[param(required = false)]
    channel: String,
    #[serde(default)]
    #[param(required = false)]
    name: String,
    /// As the channel writes it (`en_US`), or close to it (`en-us`).
    #[serde(default)]
    #[param(required = false)]
    language: String,
    /// Page size: 1 to 200 (default 50).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// A template that can be sent now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TemplateJson {
    pub id: String,
    /// The version that sends.
    pub version: i32,
    pub channel: ChannelRef,
    pub name: String,
    pub language: String,
    /// `marketing`, `utility` or `authentication` (WhatsApp).
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

/// Lists what is sendable now; `?channel=` (id or name), `?name=`, `?language=` narrow it.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates",
    summary = "List the templates that can be sent now",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of templates, in the order they were made.", body = Page<TemplateJson>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let request = match page_params(query.limit.as_deref(), query.cursor.as_deref()) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
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
    let page = sendable_page(found, request).map(|(channel, t)| TemplateJson::new(&channel, t));
    Ok(HttpResponse::Ok().json(page))
}

/// A page of the sendable templates, by template id. Whether a template can be sent is
/// decided per template after the query (its live version and approval), so the page is cut
/// from that list rather than in SQL; the templates of one business are few.
fn sendable_page(
    mut found: Vec<(Channel, SendableTemplate)>,
    request: PageRequest,
) -> Page<(Channel, SendableTemplate)> {
    found.sort_by_key(|(_, t)| t.template_id);
    found.retain(|(_, t)| request.after.is_none_or(|after| t.template_id > after));
    found.truncate(usize::try_from(request.fetch()).unwrap_or(usize::MAX));
    request.finish(found, |(_, t)| t.template_id)
}
