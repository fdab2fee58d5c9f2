//! Contacts in the API: upsert by phone, read one (with its windows and consent per channel),
//! look up by phone or search, and import a CSV.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::phone::E164;
use crate::error::AppError;
use crate::import;
use crate::service::api_objects::{ContactJson, contact_json};
use crate::service::contacts::{ContactFilter, ContactUpsert, ViewsFrom};
use crate::service::imports::{ImportList, NewImport, ReadAs};
use crate::service::{self, ServiceError};
use crate::startup::AppState;
use crate::storage::new_public_id;
use crate::web::api::{
    BadRequest, Body, Busy, NotFound, Params, Unprocessable, csv_body, default_country,
    import_turn, page_params,
};
use crate::web::identity::{Auth, perm};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContactUpsert)]
#[schema(example = json!({"phone": "+14155550100", "name": "Ada Lovelace", "language": "en",
    "attributes": {"city": "London"}, "lists": ["VIP"]}))]
pub struct UpsertBody {
    /// `+E164`, or a national number read with the server's default country.
    phone: String,
    name: Option<String>,
    email: Option<String>,
    language: Option<String>,
    time_zone: Option<String>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    attributes: BTreeMap<String, serde_json::Value>,
    /// `{"sms": "opted_out"}`.
    #[serde(default)]
    consent: BTreeMap<String, String>,
    /// List names; missing lists are created.
    #[serde(default)]
    lists: Vec<String>,
}

/// `POST /api/v1/contacts`: creates the contact for this phone number or updates the one that
/// has it. 201 when created, 200 when updated.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts",
    summary = "Create or update a contact by phone",
    request_body = UpsertBody,
    responses(
        (status = 200, description = "The contact existed and was updated.", body = ContactJson),
        (status = 201, description = "The contact was created.", body = ContactJson),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn upsert(
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    body: Body<UpsertBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let body = body.get()?;
    let input = ContactUpsert {
        phone: body.phone,
        name: body.name,
        email: body.email,
        language: body.language,
        time_zone: body.time_zone,
        attributes: body.attributes,
        consent: body.consent,
        lists: body.lists,
    };
    let state = &state;
    let answer = |view, created| {
        let json = contact_json(view);
        let mut res = if created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        };
        res.insert_header((header::LOCATION, format!("/api/v1/contacts/{}", json.id)))
            .json(json)
    };
    let (role, actor) = (auth.principal.role(), auth.actor());
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let (view, created) = service::contacts::upsert(state, actor, role, input, key).await?;
            Ok(answer(view, created))
        },
        |id| async move { Ok(answer(service::contacts::view(state, id).await?, false)) },
    )
    .await
}

/// `GET /api/v1/contacts/{id}`: the contact, with its window and consent per channel.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts",
    summary = "Read a contact",
    params(("id" = String, Path, description = "The contact's id.")),
    responses(
        (status = 200, description = "The contact.", body = ContactJson),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let view = service::contacts::view(&state, id.clone())
        .await
        .map_err(|e| match e {
            ServiceError::NotFound(_) => {
                AppError::NotFound(format!("There is no contact with id \"{id}\"."))
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(contact_json(view)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Finds the contact with this number (0 or 1 results).
    phone: Option<String>,
    // The contacts page's filters (no `#[serde(flatten)]`: it would read `limit` as a string).
    /// Search in names, numbers and e-mails.
    q: Option<String>,
    /// A list's id or name.
    list: Option<String>,
    /// A kind of channel (`whatsapp`, `sms`, `viber`) the contacts opted out of.
    opted_out: Option<String>,
    language: Option<String>,
    /// Older form of `cursor`: the `next_before` of the previous page.
    before: Option<String>,
    /// Page size: 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of contacts.
#[derive(Serialize, utoipa::ToSchema)]
struct ContactPage {
    data: Vec<ContactJson>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    /// The same place for the older `before` parameter.
    next_before: Option<String>,
}

/// `GET /api/v1/contacts?phone=+E164` finds the contact with that number (0 or 1 results);
/// without `phone`, pages through contacts (newest first), filtered as the contacts page is:
/// `q` (search), `list` (a list's id or name), `opted_out` (a kind of channel), `language`.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts",
    summary = "Find contacts by phone, or page through them",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of contacts, newest first.", body = ContactPage),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let request = match page_params(query.limit.as_deref(), query.cursor.as_deref()) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let limit = request.limit;
    if let Some(raw) = query.phone {
        let phone = E164::parse(&raw, Some(state.settings.default_country))
            .map_err(|e| AppError::invalid("invalid_phone", e))?;
        let found = service::contacts::view_by_phone(&state, phone).await?;
        return Ok(HttpResponse::Ok().json(ContactPage {
            data: found.into_iter().map(contact_json).collect(),
            next_cursor: None,
            next_before: None,
        }));
    }
    let filter = ContactFilter {
        q: query.q.unwrap_or_default(),
        list: query.list.unwrap_or_default(),
        opted_out: query.opted_out.unwrap_or_default(),
        language: query.language.unwrap_or_default(),
    };
    let from = match (request.after, query.before) {
        (Some(id), _) => ViewsFrom::Cursor(id),
        (None, Some(public_id)) => ViewsFrom::Before(public_id),
        (None, None) => ViewsFrom::First,
    };
    let page = service::contacts::views(&state, filter, from, limit).await?;
    Ok(HttpResponse::Ok().json(ContactPage {
        data: page.data.into_iter().map(contact_json).collect(),
        next_cursor: page.next_cursor,
        next_before: page.next_before,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// A list's name or id to add the contacts to (a new name creates the list).
    list: Option<String>,
    /// ISO country for numbers written without their country code.
    default_country: Option<String>,
    /// `comma`, `semicolon` or `tab` (found from the file when not given).
    delimiter: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ImportRejectedRow)]
struct RejectedJson {
    /// The line in the file (the header is line 1).
    row: i64,
    value: String,
    reason: String,
}

/// What an import did.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ContactImport)]
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
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts",
    summary = "Import contacts from a CSV",
    params(ImportQuery),
    request_body(description = "The CSV, as the raw body or the multipart field `file`; a `phone` column, and `name`, `email`, `language`, `time_zone` or any other header as an attribute.",
        content(
            (String = "text/csv", example = "phone,name,city\n+14155550100,Ada,London\n"),
        )),
    responses(
        (status = 200, description = "The import is done.", body = ImportJson),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
        (status = 503, response = Busy),
    ))]
pub async fn import(
    req: HttpRequest,
    auth: Auth<perm::ImportContacts>,
    state: web::Data<AppState>,
    query: Params<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let country = default_country(query.default_country.as_deref(), &state)?;
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
    let list = ImportList::IdOrName(query.list.clone().unwrap_or_default());
    // Issue 19: the file streams in and is not kept, so the key's fingerprint is the request
    // line with the body's type and length.
    let mut once = crate::web::api::RequestKey::of(&req);
    let header_of = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    once.fingerprint(
        format!(
            "{}\n{}",
            header_of(header::CONTENT_TYPE),
            header_of(header::CONTENT_LENGTH)
        )
        .as_bytes(),
    );
    let state = &state;
    let answer = |import: crate::storage::imports::Import, counts: Option<import::Summary>| async move {
        let counts = counts.unwrap_or(import::Summary {
            rows: u64::try_from(import.rows_read).unwrap_or(0),
            imported: u64::try_from(import.imported).unwrap_or(0),
            updated: u64::try_from(import.updated).unwrap_or(0),
            rejected: u64::try_from(import.rejected).unwrap_or(0),
        });
        let rejected = service::imports::rejections(state, import.id, 10_000).await?;
        Ok(HttpResponse::Ok().json(ImportJson {
            report_url: format!(
                "{}/contacts/imports/{}/rejected.csv",
                state.public_url, import.public_id
            ),
            id: import.public_id,
            rows: counts.rows,
            imported: counts.imported,
            updated: counts.updated,
            rejected_total: counts.rejected,
            rejected: rejected
                .into_iter()
                .map(|r| RejectedJson {
                    row: r.row_number,
                    value: r.value,
                    reason: r.reason,
                })
                .collect(),
        }))
    };
    let replay = |id| async move {
        let import = service::imports::find(state, id)
            .await?
            .ok_or_else(|| AppError::not_found("This import"))?;
        answer(import, None).await
    };
    let (principal, actor) = (&auth.principal, auth.actor());
    crate::web::api::idempotent(
        state,
        principal,
        once,
        actix_web::http::StatusCode::OK,
        |key| async move {
            // A turn first (nothing is written while the import waits for one).
            let mut payload = payload;
            let permit = import_turn(state, &mut payload).await?;
            let read_as = ReadAs {
                mapping: None,
                country,
                delimiter,
            };
            let mut body = csv_body(&req, payload).await?;
            let new = NewImport {
                public_id: new_public_id(),
                file_name: body
                    .file_name
                    .take()
                    .unwrap_or_else(|| "api-upload.csv".into()),
                list,
                bytes_total: body.bytes_total,
            };
            let import = service::imports::begin(state, actor, new, key).await?;
            let summary =
                service::imports::run(state, import.clone(), read_as, permit, body.chunks).await;
            let summary = summary.map_err(|e| match e {
                import::ImportError::Invalid(m) => AppError::invalid("invalid_csv", m),
                other => AppError::internal(other),
            })?;
            answer(import, Some(summary)).await
        },
        replay,
    )
    .await
}
