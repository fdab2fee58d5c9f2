//! End-of-test checks on the outbox: a test that expects every message it queued to have
//! reached an outcome calls [`assert_outbox_drained`] last, so no test leaves work silently
//! unprocessed (a message stuck `queued` or `sending` fails it, named).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use herald::domain::message::MessageStatus;
use herald::storage::Db;
use herald::storage::schema::messages;

use crate::helpers::TestApp;

/// How long a worker still running (the server's own) may take to finish what it holds.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// One message not finished: `(public id, status, to, requested by, error)`.
type Left = (String, String, String, String, Option<String>);

/// The messages still `queued` or `sending`, oldest first.
pub fn left_in_outbox(db: &Db) -> Vec<Left> {
    let mut conn = db.get().expect("connection");
    messages::table
        .filter(messages::status.eq_any([
            MessageStatus::Queued.as_str(),
            MessageStatus::Sending.as_str(),
        ]))
        .order(messages::id)
        .select((
            messages::public_id,
            messages::status,
            messages::to_address,
            messages::requested_by,
            messages::error_message,
        ))
        .load(&mut conn)
        .expect("messages left in the outbox")
}

/// Fails, listing them, when messages are still `queued` or `sending` after a worker still
/// running had [`DRAIN_WAIT`] to finish them.
pub async fn assert_outbox_drained(app: &TestApp) {
    let db = Db::connect(&app.database_url, 1).expect("connect");
    let started = Instant::now();
    loop {
        let left = left_in_outbox(&db);
        if left.is_empty() {
            return;
        }
        if started.elapsed() >= DRAIN_WAIT {
            let list: Vec<String> = left
                .iter()
                .map(|(id, status, to, by, error)| {
                    format!(
                        "  {id} {status} to {to} (requested by {by}){}",
                        error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "{} message(s) left in the outbox, expected none:\n{}",
                left.len(),
                list.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
