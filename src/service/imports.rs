//! Contact imports: a turn at the gate, the import's record (with its audit entry), the
//! streamed run over the upload, and the reads of progress and rejected rows. The same calls
//! serve the import page and `POST /api/v1/contacts/import`.

use bytes::Bytes;
use futures_util::StreamExt;

use super::{ServiceError, ServiceResult, Services};
use crate::domain::audit::Actor;
use crate::domain::phone::DefaultCountry;
use crate::domain::user::DisplayName;
use crate::import::gate::{Busy, ImportPermit};
use crate::import::mapping::Mapping;
use crate::import::{self, ImportError, Plan, Summary};
use crate::storage::imports::{self, Import, Rejection, RejectionsFrom};
use crate::storage::lists::{self, List};
use crate::storage::{DbConnection, is_unique_violation};

/// Where the imported contacts go.
#[derive(Debug, Clone)]
pub enum ImportList {
    /// The import form: an existing list (public id or name), or a new one by name (which wins
    /// when both are given). Both empty: no list.
    Form { existing: String, new_name: String },
    /// The API's `?list=`: a list's public id or name; a name that is no list creates it.
    IdOrName(String),
}

/// The 503 for an import that found no turn.
pub fn busy(busy: Busy) -> ServiceError {
    ServiceError::Busy {
        message: busy.to_string(),
        retry_after_secs: busy.retry_after.as_secs().max(1),
    }
}

/// Waits for a turn to import (in arrival order, for a bounded time), or says when to retry.
/// Nothing is written while an import waits.
pub async fn take_turn(svc: &Services) -> ServiceResult<ImportPermit> {
    svc.imports.enter().await.map_err(busy)
}

fn nul_in(field: &str) -> ServiceError {
    ServiceError::invalid(
        "invalid_field",
        format!(
            "{field}: contains a NUL character (U+0000), which Herald does not accept; remove it"
        ),
    )
}

/// The list of the form's choice (see [`ImportList::Form`]).
fn form_list(
    conn: &mut DbConnection,
    existing: &str,
    new_name: &str,
) -> ServiceResult<Option<List>> {
    let new_name = new_name.trim();
    if !new_name.is_empty() {
        let name = DisplayName::parse(new_name).map_err(|e| {
            ServiceError::invalid("invalid_list", e.replace("a name", "a list name"))
        })?;
        return Ok(Some(lists::find_or_create(conn, name.as_str())?));
    }
    match existing.trim() {
        "" => Ok(None),
        id if id.contains('\0') => Err(nul_in("list")),
        id => Ok(Some(
            match lists::find_by_public_id(conn, id)? {
                Some(l) => Some(l),
                None => lists::find_by_name(conn, id)?,
            }
            .ok_or_else(|| {
                ServiceError::invalid("unknown_list", format!("There is no list \"{id}\"."))
            })?,
        )),
    }
}

/// Where the imported contacts go (a new list is created here).
pub fn resolve_list(conn: &mut DbConnection, choice: &ImportList) -> ServiceResult<Option<List>> {
    match choice {
        ImportList::Form { existing, new_name } => form_list(conn, existing, new_name),
        ImportList::IdOrName(l) if l.trim().is_empty() => Ok(None),
        ImportList::IdOrName(l) => {
            let exists = lists::find_by_public_id(conn, l)?.is_some()
                || lists::find_by_name(conn, l)?.is_some();
            if exists {
                form_list(conn, l, "")
            } else {
                form_list(conn, "", l)
            }
        }
    }
}

/// An import about to start.
#[derive(Debug, Clone)]
pub struct NewImport {
    /// Chosen by the form when it was shown, so a second submit of the same form is refused.
    pub public_id: String,
    pub file_name: String,
    pub list: ImportList,
    /// The upload's size when known (for progress).
    pub bytes_total: Option<i64>,
}

/// Creates the import's record with its audit entry. A second start of the same import (a
/// double click) is a `Conflict`: nothing is imported twice.
pub async fn begin(
    svc: &Services,
    actor: Actor,
    new: NewImport,
    once: Option<super::idempotency::IdempotencyKey>,
) -> ServiceResult<Import> {
    // The file's name is only shown: control characters (a NUL would not even store) go.
    let file_name: String = new.file_name.chars().filter(|c| !c.is_control()).collect();
    svc.write(actor, move |change| {
        let list = resolve_list(change.conn, &new.list)?;
        let import = imports::create(
            change.conn,
            &new.public_id,
            &file_name,
            list.as_ref().map(|l| l.id),
            new.bytes_total,
            &change.actor.label,
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                ServiceError::conflict(
                    "conflict",
                    "This import was already started; see Contacts › Import for its result.",
                )
            } else {
                e.into()
            }
        })?;
        change.audit(
            "contacts.import_started",
            "import",
            Some(&import.public_id),
            serde_json::json!({"file": import.file_name, "list": list.as_ref().map(|l| l.name.clone())}),
        )?;
        super::idempotency::remember(change, once.as_ref(), "contact_import", &import.public_id)?;
        Ok(import)
    })
    .await
}

/// How to read the file.
#[derive(Debug, Clone)]
pub struct ReadAs {
    /// `None`: guess from the header names.
    pub mapping: Option<Mapping>,
    pub country: DefaultCountry,
    /// `None`: guessed from the first chunk.
    pub delimiter: Option<u8>,
}

/// Imports the upload as it arrives (a thousand rows per unit of work) and answers when it is
/// done. Without a chosen delimiter it is guessed from the first chunk (the reader needs it
/// before the first record). The import's record says how it ended either way.
pub async fn run<S, E>(
    svc: &Services,
    import: Import,
    read_as: ReadAs,
    permit: ImportPermit,
    upload: S,
) -> Result<Summary, ImportError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (delimiter, upload) = match sniff_delimiter(upload, read_as.delimiter).await {
        Ok(found) => found,
        Err(err) => {
            finish_failed(svc, &import, &err).await;
            return Err(err);
        }
    };
    let plan = Plan {
        delimiter,
        mapping: read_as.mapping,
        country: read_as.country,
    };
    import::run_streaming(svc.db.clone(), import, plan, permit, upload).await
}

/// The upload's delimiter: the chosen one, or guessed from the first chunk (the reader needs
/// it before the first record); and the upload again from its start.
#[allow(clippy::type_complexity)]
pub async fn sniff_delimiter<S, E>(
    mut upload: S,
    chosen: Option<u8>,
) -> Result<
    (
        u8,
        futures_util::stream::Chain<
            futures_util::stream::Iter<std::array::IntoIter<Result<Bytes, E>, 1>>,
            S,
        >,
    ),
    ImportError,
>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let first = match upload.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            return Err(ImportError::Invalid(format!(
                "the upload was interrupted: {e}"
            )));
        }
        None => Bytes::new(),
    };
    let delimiter = chosen.unwrap_or_else(|| {
        import::records::sniff_delimiter(first.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&first))
    });
    let head = futures_util::stream::iter([Ok::<_, E>(first)]);
    Ok((delimiter, head.chain(upload)))
}

async fn finish_failed(svc: &Services, import: &Import, err: &ImportError) {
    let (id, message) = (import.id, err.to_string());
    let _ = svc
        .read(move |conn| Ok(imports::finish(conn, id, Some(&message))?))
        .await;
}

/// The latest imports, newest first.
pub async fn recent(svc: &Services, limit: i64) -> ServiceResult<Vec<Import>> {
    svc.read(move |conn| Ok(imports::recent(conn, limit)?))
        .await
}

/// The import with this public id, if it has started.
pub async fn find(svc: &Services, public_id: String) -> ServiceResult<Option<Import>> {
    svc.read(move |conn| Ok(imports::find_by_public_id(conn, &public_id)?))
        .await
}

/// The import with this public id and its list (404 "This import").
pub async fn progress(svc: &Services, public_id: String) -> ServiceResult<(Import, Option<List>)> {
    svc.read(move |conn| {
        let import = imports::find_by_public_id(conn, &public_id)?
            .ok_or_else(|| ServiceError::not_found("This import"))?;
        let list = match import.list_id {
            Some(id) => lists::find(conn, id)?,
            None => None,
        };
        Ok((import, list))
    })
    .await
}

/// The first `limit` rejected rows, in line order.
pub async fn rejections(
    svc: &Services,
    import_id: i64,
    limit: i64,
) -> ServiceResult<Vec<Rejection>> {
    svc.read(move |conn| {
        Ok(imports::rejections(
            conn,
            import_id,
            RejectionsFrom::Offset(0),
            limit,
        )?)
    })
    .await
}

/// A page of an import's rejected rows in line order, the total number of them, and the
/// file's header.
pub async fn rejection_page(
    svc: &Services,
    import_id: i64,
    offset: i64,
    limit: i64,
) -> ServiceResult<(Vec<Rejection>, i64, Vec<String>)> {
    svc.read(move |conn| {
        Ok((
            imports::rejections(conn, import_id, RejectionsFrom::Offset(offset), limit)?,
            imports::rejection_count(conn, import_id)?,
            imports::header(conn, import_id)?,
        ))
    })
    .await
}

/// The file's header cells as the import kept them (empty for older imports). Blocking (a
/// streamed download's producer).
pub fn report_header(conn: &mut DbConnection, import_id: i64) -> ServiceResult<Vec<String>> {
    Ok(imports::header(conn, import_id)?)
}

/// Walks every rejected row of an import in batches, handing each to `each` until it answers
/// false. Blocking (a streamed download's producer).
pub fn each_rejection_batch(
    conn: &mut DbConnection,
    import_id: i64,
    mut each: impl FnMut(Vec<Rejection>) -> bool,
) -> ServiceResult<()> {
    let mut from = RejectionsFrom::Offset(0);
    loop {
        let batch = imports::rejections(conn, import_id, from, 2000)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        from = last.cursor();
        if !each(batch) {
            return Ok(());
        }
    }
}
