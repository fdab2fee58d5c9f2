//! Contacts in the API: upsert by phone, read one (with its windows and consent per channel),
//! look up by phone or search, and import a CSV.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::consent::{ConsentSource, ConsentStatus};
use crate::domain::contact::{self as rules};
use crate::domain::phone::{DefaultCountry, E164};
use crate::domain::role::Role;
use crate::domain::window;
use crate::error::AppError;
use crate::import::{self, Plan};
use crate::startup::AppState;
use crate::storage::contacts::{self, Contact, ContactFilter, ContactPatch, Cursor};
use crate::storage::{
    DbConnection, audit, channels, consents, conversations, imports, lists, new_public_id,
};
use crate::web::api::{Body, Params};
use crate::web::identity::{Auth, perm};
use crate::web::imports::begin;

#[derive(Serialize)]
pub struct WindowJson {
    pub open: bool,
    pub expires_at: Option<String>,
}

#[derive(Serialize)]
pub struct ChannelStateJson {
    pub channel_id: String,
    pub name: String,
    pub kind: &'static str,
    pub window: WindowJson,
    pub opted_out: bool,
}

#[derive(Serialize)]
pub struct ConsentJson {
    pub status: &'static str,
    pub source: &'static str,
    pub changed_at: String,
}

#[derive(Serialize)]
pub struct ContactJson {
    pub id: String,
    pub phone: String,
    pub name: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
    pub attributes: BTreeMap<String, String>,
    pub lists: Vec<String>,
    pub consent: BTreeMap<&'static str, ConsentJson>,
    pub channels: Vec<ChannelStateJson>,
    pub created_at: String,
    pub updated_at: String,
}

/// A contact with everything the API shows about it.
pub fn contact_json(conn: &mut DbConnection, c: Contact) -> Result<ContactJson, AppError> {
    let consent = consents::of_contact(conn, c.id)?;
    let windows = conversations::windows(conn, c.id)?;
    let now = Utc::now();
    let channels = channels::list(conn)?
        .into_iter()
        .filter(|ch| ch.is_enabled())
        .map(|ch| {
            let last = windows
                .iter()
                .find(|(id, _)| *id == ch.id)
                .map(|(_, at)| at.and_utc());
            let w = window::state(ch.kind, last, now);
            ChannelStateJson {
                opted_out: consent
                    .get(ch.kind.as_str())
                    .is_some_and(|x| x.status == ConsentStatus::OptedOut),
                window: WindowJson {
                    open: w.is_open(),
                    expires_at: w.expires_at().map(|t| t.to_rfc3339()),
                },
                kind: ch.kind.as_str(),
                channel_id: ch.public_id,
                name: ch.name,
            }
        })
        .collect();
    Ok(ContactJson {
        lists: lists::of_contact(conn, c.id)?
            .into_iter()
            .map(|l| l.name)
            .collect(),
        consent: consent
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    ConsentJson {
                        status: v.status.as_str(),
                        source: v.source.as_str(),
                        changed_at: v.changed_at.and_utc().to_rfc3339(),
                    },
                )
            })
            .collect(),
        channels,
        id: c.public_id,
        phone: c.phone.into_inner(),
        name: c.name,
        email: c.email,
        language: c.language,
        time_zone: c.time_zone,
        attributes: c.attributes,
        created_at: c.created_at.and_utc().to_rfc3339(),
        updated_at: c.updated_at.and_utc().to_rfc3339(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertBody {
    phone: String,
    name: Option<String>,
    email: Option<String>,
    language: Option<String>,
    time_zone: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
    /// `{"sms": "opted_out"}`.
    #[serde(default)]
    consent: BTreeMap<String, String>,
    /// List names; missing lists are created.
    #[serde(default)]
    lists: Vec<String>,
}

fn invalid(field: &str, e: String) -> AppError {
    AppError::invalid("invalid_field", format!("{field}: {e}"))
}

/// `POST /api/v1/contacts`: creates the contact for this phone number or updates the one that
/// has it. 201 when created, 200 when updated.
pub async fn upsert(
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    body: Body<UpsertBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.get()?;
    let phone = E164::parse(&body.phone, Some(state.settings.default_country))
        .map_err(|e| AppError::invalid("invalid_phone", e))?;
    let mut attrs: Vec<(String, String)> = Vec::new();
    for (k, v) in &body.attributes {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
            _ => {
                return Err(invalid(
                    &format!("attributes.{k}"),
                    "must be a string, number or boolean".into(),
                ));
            }
        };
        attrs.push((k.clone(), value));
    }
    let mut attributes = rules::Attributes::new();
    for (k, v) in &attrs {
        let key =
            rules::parse_attribute_key(k).map_err(|e| invalid(&format!("attributes.{k}"), e))?;
        let value = rules::parse_attribute_value(&key, v)
            .map_err(|e| invalid(&format!("attributes.{k}"), e))?;
        // An empty value removes the attribute.
        attributes.insert(key, value);
    }
    let patch = ContactPatch {
        name: body
            .name
            .as_deref()
            .map(rules::parse_name)
            .transpose()
            .map_err(|e| invalid("name", e))?,
        email: body
            .email
            .as_deref()
            .map(rules::parse_email)
            .transpose()
            .map_err(|e| invalid("email", e))?,
        language: body
            .language
            .as_deref()
            .map(rules::parse_language)
            .transpose()
            .map_err(|e| invalid("language", e))?,
        time_zone: body
            .time_zone
            .as_deref()
            .map(rules::parse_time_zone)
            .transpose()
            .map_err(|e| invalid("time_zone", e))?,
        attributes,
        replace_attributes: false,
    };
    let mut consent_changes = Vec::new();
    for (k, v) in &body.consent {
        let kind: ChannelKind = k.parse().map_err(|e| invalid(&format!("consent.{k}"), e))?;
        let status: ConsentStatus = v.parse().map_err(|e| invalid(&format!("consent.{k}"), e))?;
        consent_changes.push((kind, status));
    }
    let mut list_names = Vec::new();
    for l in &body.lists {
        list_names.push(
            crate::domain::user::DisplayName::parse(l)
                .map_err(|e| invalid("lists", e))?
                .into_inner(),
        );
    }
    let actor = auth.actor();
    let admin = auth.principal.role() == Role::Admin;
    let (json, created) = state
        .db
        .run(move |conn| {
            crate::storage::write_transaction(conn, |conn| {
                let (contact, created) = contacts::upsert(conn, &phone, &patch)?;
                for (kind, status) in consent_changes {
                    crate::web::contacts::change_consent(
                        conn,
                        &contact.public_id,
                        kind,
                        status,
                        ConsentSource::Api,
                        "",
                        &actor,
                        admin,
                    )?;
                }
                for name in list_names {
                    let list = lists::find_or_create(conn, &name)?;
                    lists::add_members(conn, list.id, &[contact.id])?;
                }
                audit::record(
                    conn,
                    &actor,
                    if created {
                        "contact.created"
                    } else {
                        "contact.updated"
                    },
                    "contact",
                    Some(&contact.public_id),
                    serde_json::json!({"phone": contact.phone.as_str()}),
                )?;
                let fresh = contacts::find(conn, contact.id)?
                    .ok_or_else(|| AppError::not_found("The contact"))?;
                Ok::<_, AppError>((contact_json(conn, fresh)?, created))
            })
        })
        .await?;
    let mut res = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res
        .insert_header((header::LOCATION, format!("/api/v1/contacts/{}", json.id)))
        .json(json))
}

pub async fn get(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let json = state
        .db
        .run(move |conn| {
            let c = contacts::find_by_public_id(conn, &id)?.ok_or_else(|| {
                AppError::NotFound(format!("There is no contact with id \"{id}\"."))
            })?;
            contact_json(conn, c)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

#[derive(Deserialize)]
pub struct ListQuery {
    phone: Option<String>,
    q: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct ContactPage {
    data: Vec<ContactJson>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<String>,
}

/// `GET /api/v1/contacts?phone=+E164` finds the contact with that number (0 or 1 results);
/// without `phone`, pages through contacts (newest first), optionally searching with `q`.
pub async fn list(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and 200, not {limit}"),
        ));
    }
    let country = state.settings.default_country;
    let page = state
        .db
        .run(move |conn| {
            if let Some(raw) = query.phone {
                let phone = E164::parse(&raw, Some(country))
                    .map_err(|e| AppError::invalid("invalid_phone", e))?;
                let data = match contacts::find_by_phone(conn, &phone)? {
                    Some(c) => vec![contact_json(conn, c)?],
                    None => Vec::new(),
                };
                return Ok::<_, AppError>(ContactPage {
                    data,
                    next_before: None,
                });
            }
            let cursor = match &query.before {
                Some(public_id) => Cursor::Before(
                    contacts::find_by_public_id(conn, public_id)?
                        .ok_or_else(|| {
                            AppError::invalid(
                                "invalid_cursor",
                                format!("before: no contact \"{public_id}\""),
                            )
                        })?
                        .id,
                ),
                None => Cursor::First,
            };
            let filter = ContactFilter {
                q: query.q.filter(|q| !q.trim().is_empty()),
                ..ContactFilter::default()
            };
            let (rows, more) = contacts::page(conn, &filter, cursor, limit)?;
            let next_before = if more {
                rows.last().map(|c| c.public_id.clone())
            } else {
                None
            };
            let data = rows
                .into_iter()
                .map(|c| contact_json(conn, c))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ContactPage { data, next_before })
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    list: Option<String>,
    default_country: Option<String>,
    delimiter: Option<String>,
}

#[derive(Serialize)]
struct RejectedJson {
    row: i64,
    value: String,
    reason: String,
}

#[derive(Serialize)]
struct ImportJson {
    id: String,
    rows: u64,
    imported: u64,
    updated: u64,
    rejected: Vec<RejectedJson>,
    /// All rejected rows (`rejected` lists at most 10,000 problems; the report has them all).
    rejected_total: u64,
    report_url: String,
}

/// `POST /api/v1/contacts/import`: the CSV as the raw body (`Content-Type: text/csv`) or as the
/// multipart field `file`; `?list=` (name or id; a new name creates the list), `?default_country=`.
/// Columns are mapped from the header names. Answers when the import is done.
pub async fn import(
    req: HttpRequest,
    auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    query: Params<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let country = match query
        .default_country
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(c) => DefaultCountry::parse(c).map_err(|e| AppError::invalid("invalid_country", e))?,
        None => state.settings.default_country,
    };
    let delimiter = match query.delimiter.as_deref() {
        None | Some("") => None,
        Some(";") | Some("semicolon") => Some(b';'),
        Some("\t") | Some("tab") => Some(b'\t'),
        Some(",") | Some("comma") => Some(b','),
        Some(other) => {
            return Err(AppError::invalid(
                "invalid_delimiter",
                format!("delimiter \"{other}\" is not comma, semicolon or tab"),
            ));
        }
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes_total = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let list = (query.list.clone().unwrap_or_default(), String::new());
    // A name that is not an existing list creates it.
    let list = match &query.list {
        Some(l) if !l.trim().is_empty() => {
            let name = l.clone();
            let exists = state
                .db
                .run(move |conn| {
                    Ok::<_, AppError>(
                        lists::find_by_public_id(conn, &name)?.is_some()
                            || lists::find_by_name(conn, &name)?.is_some(),
                    )
                })
                .await?;
            if exists {
                list
            } else {
                (String::new(), l.clone())
            }
        }
        _ => list,
    };
    // A turn first (nothing is written while the import waits for one). A refused upload is
    // read to its end, so the client gets the answer rather than a reset connection.
    let mut payload = payload;
    let permit = match state.imports.enter().await {
        Ok(p) => p,
        Err(busy) => {
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut payload).await {}
            return Err(crate::web::imports::busy_error(busy));
        }
    };

    let summary;
    let import;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
        let mut file = None;
        while let Some(item) = futures_util::StreamExt::next(&mut multipart).await {
            let field = item
                .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
            if field.name() == Some("file") {
                file = Some(field);
                break;
            }
        }
        let file = file.ok_or_else(|| {
            AppError::invalid("no_file", "Send the CSV as the multipart field \"file\".")
        })?;
        let name = file
            .content_disposition()
            .and_then(|cd| cd.get_filename().map(str::to_owned))
            .unwrap_or_else(|| "api-upload.csv".into());
        import = begin(&state, new_public_id(), name, list, None, auth.actor()).await?;
        summary = crate::web::imports::run_upload(
            &state,
            import.clone(),
            None,
            country,
            delimiter,
            permit,
            file,
        )
        .await;
    } else if content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/csv")
    {
        import = begin(
            &state,
            new_public_id(),
            "api-upload.csv".into(),
            list,
            bytes_total,
            auth.actor(),
        )
        .await?;
        let first = futures_util::StreamExt::next(&mut payload)
            .await
            .transpose()
            .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?
            .unwrap_or_default();
        let delimiter = delimiter.unwrap_or_else(|| {
            import::records::sniff_delimiter(first.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&first))
        });
        let head = futures_util::stream::iter([Ok::<_, actix_web::error::PayloadError>(first)]);
        summary = import::run_streaming(
            state.db.clone(),
            import.clone(),
            Plan {
                delimiter,
                mapping: None,
                country,
            },
            permit,
            futures_util::StreamExt::chain(head, payload),
        )
        .await;
    } else {
        return Err(AppError::invalid(
            "unsupported_media_type",
            "Send the CSV with Content-Type: text/csv, or as the multipart field \"file\".",
        ));
    }
    let summary = summary.map_err(|e| match e {
        import::ImportError::Invalid(m) => AppError::invalid("invalid_csv", m),
        other => AppError::internal(other),
    })?;
    let import_id = import.id;
    let rejected = state
        .db
        .run(move |conn| Ok::<_, AppError>(imports::rejections(conn, import_id, 0, 10_000)?))
        .await?;
    Ok(HttpResponse::Ok().json(ImportJson {
        report_url: format!(
            "{}/contacts/imports/{}/rejected.csv",
            state.public_url, import.public_id
        ),
        id: import.public_id,
        rows: summary.rows,
        imported: summary.imported,
        updated: summary.updated,
        rejected_total: summary.rejected,
        rejected: rejected
            .into_iter()
            .map(|(_, r)| RejectedJson {
                row: r.row_number,
                value: r.value,
                reason: r.reason,
            })
            .collect(),
    }))
}
