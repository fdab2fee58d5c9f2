//! Streamed CSV downloads: rows are produced on a blocking thread with a database connection
//! and sent a batch at a time, so an export of a million rows never sits in memory.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};

use crate::storage::{Db, DbConnection};

/// Encodes rows as CSV: through `csv_out`, which quotes what needs quotes and neutralises
/// cells a spreadsheet would evaluate.
pub fn csv_rows<I, R, F>(rows: I) -> Vec<u8>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    crate::csv_out::rows(rows)
}

/// Where a producer sends CSV chunks; `false` means the client went away: stop.
pub type Sink<'a> = dyn FnMut(Vec<u8>) -> bool + 'a;

/// A `text/csv` attachment whose body `produce` writes on a blocking thread. An error after the
/// first bytes can only cut the download short (the status is already sent); it is logged.
pub fn csv_download<F>(db: Db, file_name: String, produce: F) -> HttpResponse
where
    F: FnOnce(&mut DbConnection, &mut Sink<'_>) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut conn = match db.get() {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut sink = |chunk: Vec<u8>| tx.blocking_send(Ok(web::Bytes::from(chunk))).is_ok();
        if let Err(e) = produce(&mut conn, &mut sink) {
            tracing::error!(error = %e, "a CSV download stopped early");
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(file_name)],
        })
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

/// Why a producer stopped, for the log (with the cause of an internal error).
pub fn download_error(err: &crate::service::ServiceError) -> String {
    use crate::service::ServiceError;
    match err {
        ServiceError::Internal(cause) | ServiceError::Unavailable(cause) => format!("{cause:#}"),
        other => other.to_string(),
    }
}
