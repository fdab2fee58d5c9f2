//! The send history (issue 18): every message across channels, newest first, for admins. The
//! page (`/history`), its CSV export and `GET /api/v1/messages` take the same parameters and
//! read them here, in one place ([`resolve`]): dates, ids, names and phone numbers become a
//! typed [`HistoryFilter`], and anything that does not fit is a problem named by its field.
//!
//! Pages go by keyset on `(created_at, id)`: a cursor is an opaque token holding a position,
//! the direction and a checksum over both and the filters it was made for, so an edited,
//! truncated or borrowed cursor is refused instead of silently showing another place.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::message::MessageSource;
use crate::domain::phone::{DefaultCountry, E164};
use crate::service::{FieldProblems, ServiceError, ServiceResult, Services};
use crate::storage::history::{self, HistoryFilter, HistoryRow, Limit, Position, Start};
use crate::storage::message_counts::{self, CountFilter};
use crate::storage::{self, DbConnection, broadcasts, channels, contacts, templates};

/// Messages on one page of the history.
pub const PAGE_SIZE: i64 = 50;
/// The API's page size when `limit` is not given, and the largest it may ask for.
pub const API_LIMIT_DEFAULT: i64 = 50;
pub const API_LIMIT_MAX: i64 = 500;
/// Beyond this many matches, counting through the index stops and the page says "more than".
pub const COUNT_CAP: i64 = 10_000;
/// Messages read per statement by the CSV export.
pub const EXPORT_BATCH: i64 = 2_000;
/// The longest value any parameter may have.
const MAX_PARAM: usize = 200;

/// Every status a message can have, including those later issues add (`scheduled` for
/// scheduled sends, `expired` for broadcast messages that ran out of time).
pub const STATUSES: [&str; 11] = [
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
    "scheduled",
    "expired",
];

/// The history's parameters as written in the URL (the same names for the page, the CSV and
/// the API): `since`/`until` a date (`until` takes the whole day) or an RFC 3339 time
/// (`until` then excludes it), `channel` its id or name, `status` one status or several
/// separated by commas, `broadcast`/`template` their ids, `contact` a phone number in any
/// format or a contact id, `source` person, api or broadcast, `error` a provider error code,
/// `cursor` a page's `next_cursor` (or the page's own links).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HistoryParams {
    pub since: String,
    pub until: String,
    pub channel: String,
    pub status: String,
    pub broadcast: String,
    pub template: String,
    pub contact: String,
    pub source: String,
    pub error: String,
    pub cursor: String,
}

impl HistoryParams {
    /// The filter parameters that are set, in URL order (without the cursor).
    pub fn filter_pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("since", &self.since),
            ("until", &self.until),
            ("channel", &self.channel),
            ("status", &self.status),
            ("broadcast", &self.broadcast),
            ("template", &self.template),
            ("contact", &self.contact),
            ("source", &self.source),
            ("error", &self.error),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// Any filter is set.
    pub fn is_filtered(&self) -> bool {
        !self.filter_pairs().is_empty()
    }

    /// `?since=…&cursor=…` for these filters and `cursor` ("" without any).
    pub fn query_string(&self, cursor: Option<&str>) -> String {
        let mut pairs = self.filter_pairs();
        if let Some(c) = cursor {
            pairs.push(("cursor", c));
        }
        if pairs.is_empty() {
            return String::new();
        }
        format!(
            "?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }
}

/// What the parameters ask for: the filter and where the page starts.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub filter: HistoryFilter,
    pub start: Start,
}

/// Reads the parameters into a filter, looking up what they name. Every problem is reported,
/// each under its parameter's name, as `Invalid` (`invalid_cursor` when the cursor is the
/// only one, `invalid_filter` otherwise).
pub fn resolve(
    conn: &mut DbConnection,
    params: &HistoryParams,
    country: DefaultCountry,
) -> ServiceResult<Resolved> {
    resolve_among(conn, params, country, &Choices::default())
}

/// [`resolve`], finding a channel, broadcast or template the parameters name by its id among
/// `known` (the filter form's choices, read in the same trip) before asking the database: the
/// form's own links name them so, and each look-up saved is a round trip.
fn resolve_among(
    conn: &mut DbConnection,
    params: &HistoryParams,
    country: DefaultCountry,
    known: &Choices,
) -> ServiceResult<Resolved> {
    let mut problems = FieldProblems::new();
    for (field, value) in params
        .filter_pairs()
        .into_iter()
        .chain([("cursor", params.cursor.trim())])
    {
        if value.chars().count() > MAX_PARAM {
            problems.add(field, format!("Too long: at most {MAX_PARAM} characters."));
        }
    }
    if !problems.is_empty() {
        return Err(refusal(problems));
    }
    let since = problems
        .check("since", moment(&params.since, false))
        .flatten();
    let until = problems
        .check("until", moment(&params.until, true))
        .flatten();
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        problems.add(
            "until",
            "The end of the range comes before its start: pick an end after the start.",
        );
    }
    let statuses = problems
        .check("status", statuses(&params.status))
        .unwrap_or_default();
    let channel_id = problems
        .check("channel", channel(conn, &params.channel, &known.channels)?)
        .flatten();
    let broadcast_id = problems
        .check(
            "broadcast",
            broadcast(conn, &params.broadcast, &known.broadcasts)?,
        )
        .flatten();
    let template_id = problems
        .check(
            "template",
            template(conn, &params.template, &known.templates)?,
        )
        .flatten();
    let contact_id = problems
        .check("contact", contact(conn, &params.contact, country)?)
        .flatten();
    let source = problems.check("source", source(&params.source)).flatten();
    let error_code = Some(params.error.trim().to_owned()).filter(|e| !e.is_empty());
    let filter = HistoryFilter {
        since,
        until,
        channel_id,
        statuses,
        broadcast_id,
        template_id,
        contact_id,
        source,
        error_code,
    };
    let start = if problems.is_empty() {
        problems
            .check("cursor", read_cursor(params.cursor.trim(), &filter))
            .unwrap_or(Start::Newest)
    } else {
        Start::Newest
    };
    if problems.is_empty() {
        Ok(Resolved { filter, start })
    } else {
        Err(refusal(problems))
    }
}

fn refusal(problems: FieldProblems) -> ServiceError {
    let only_cursor = problems.iter().all(|p| p.field == "cursor");
    ServiceError::invalid_fields(
        if only_cursor {
            "invalid_cursor"
        } else {
            "invalid_filter"
        },
        problems,
    )
}

/// A date (`YYYY-MM-DD`, midnight UTC; for the end of a range the midnight after it, so the
/// whole day is in) or an RFC 3339 time.
fn moment(raw: &str, end: bool) -> Result<Option<NaiveDateTime>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let day = if end { day.succ_opt() } else { Some(day) };
        return day
            .map(|d| Some(NaiveDateTime::from(d)))
            .ok_or_else(|| format!("\"{raw}\" is too far in the future."));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| Some(t.naive_utc()))
        .map_err(|_| {
            format!("\"{raw}\" is not a date like 2026-12-03 or a time like 2026-12-03T09:30:00Z.")
        })
}

fn statuses(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s = s.to_ascii_lowercase();
        if !STATUSES.contains(&s.as_str()) {
            return Err(format!(
                "\"{s}\" is not a message status: expected one of {}.",
                STATUSES.join(", ")
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn source(raw: &str) -> Result<Option<MessageSource>, String> {
    match raw.trim() {
        "" => Ok(None),
        s => MessageSource::parse(&s.to_ascii_lowercase())
            .map(Some)
            .ok_or_else(|| format!("\"{s}\" is not a source: expected person, api or broadcast.")),
    }
}

/// What a look-up found: the id, or the words for what is wrong with the value.
type Lookup = Result<Option<i64>, String>;

/// The id of the choice `raw` names by its id (as in its page's address, or the number the
/// database gives it), when `known` has it.
fn known_id(raw: &str, known: &[history::Choice]) -> Option<i64> {
    let number = raw.parse::<i64>().ok();
    known
        .iter()
        .find(|(id, public_id, _)| number == Some(*id) || (number.is_none() && public_id == raw))
        .map(|(id, _, _)| *id)
}

/// A channel by its id (as in its page's address, or the number the database gives it) or
/// its name.
fn channel(conn: &mut DbConnection, raw: &str, known: &[history::Choice]) -> ServiceResult<Lookup> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Ok(None));
    }
    if let Some(id) = known_id(raw, known) {
        return Ok(Ok(Some(id)));
    }
    let found = match raw.parse::<i64>() {
        Ok(id) => channels::find(conn, id)?,
        Err(_) => match channels::find_by_public_id(conn, raw)? {
            Some(c) => Some(c),
            None => channels::find_by_name(conn, raw, None)?,
        },
    };
    Ok(found
        .map(|c| Some(c.id))
        .ok_or_else(|| format!("There is no channel \"{raw}\".")))
}

/// A broadcast or template by its id (as in its page's address, or the number the database
/// gives it): `find` by number, `find_public` by public id.
fn by_id(
    conn: &mut DbConnection,
    raw: &str,
    what: &str,
    known: &[history::Choice],
    find: fn(&mut DbConnection, i64) -> diesel::QueryResult<Option<i64>>,
    find_public: fn(&mut DbConnection, &str) -> diesel::QueryResult<Option<i64>>,
) -> ServiceResult<Lookup> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Ok(None));
    }
    if let Some(id) = known_id(raw, known) {
        return Ok(Ok(Some(id)));
    }
    let found = match raw.parse::<i64>() {
        Ok(id) => find(conn, id)?,
        Err(_) => find_public(conn, raw)?,
    };
    Ok(found
        .map(Some)
        .ok_or_else(|| format!("There is no {what} \"{raw}\".")))
}

fn broadcast(
    conn: &mut DbConnection,
    raw: &str,
    known: &[history::Choice],
) -> ServiceResult<Lookup> {
    by_id(
        conn,
        raw,
        "broadcast",
        known,
        |c, id| Ok(broadcasts::find(c, id)?.map(|b| b.id)),
        |c, id| Ok(broadcasts::find_by_public_id(c, id)?.map(|b| b.id)),
    )
}

fn template(
    conn: &mut DbConnection,
    raw: &str,
    known: &[history::Choice],
) -> ServiceResult<Lookup> {
    by_id(
        conn,
        raw,
        "template",
        known,
        |c, id| Ok(templates::find(c, id)?.map(|t| t.id)),
        |c, id| Ok(templates::find_by_public_id(c, id)?.map(|t| t.id)),
    )
}

/// A contact by its id, or by a phone number in any format (national numbers in `country`'s).
fn contact(conn: &mut DbConnection, raw: &str, country: DefaultCountry) -> ServiceResult<Lookup> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Ok(None));
    }
    if uuid::Uuid::parse_str(raw).is_ok() {
        return Ok(contacts::find_by_public_id(conn, raw)?
            .map(|c| Some(c.id))
            .ok_or_else(|| format!("There is no contact with the id \"{raw}\".")));
    }
    let phone = match E164::parse(raw, Some(country)) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("Not a contact id or a phone number: {e}."))),
    };
    Ok(contacts::find_by_phone(conn, &phone)?
        .map(|c| Some(c.id))
        .ok_or_else(|| format!("No contact has the number {}.", phone.as_str())))
}

// --- cursors ---

const OLDER: &str = "o";
const NEWER: &str = "n";

fn checksum(payload: &str, filter: &HistoryFilter) -> String {
    let digest = Sha256::digest(format!("{payload}|{}", filter.fingerprint()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cursor of the page after (`older`) or before (`!older`) `at`, for `filter`.
pub fn make_cursor(older: bool, at: Position, filter: &HistoryFilter) -> String {
    let t = at.created_at.and_utc();
    let payload = format!(
        "{}.{}.{}.{}",
        if older { OLDER } else { NEWER },
        t.timestamp(),
        t.timestamp_subsec_nanos(),
        at.id
    );
    let sum = checksum(&payload, filter);
    crate::auth::token::encode(format!("{payload}.{sum}").as_bytes())
}

/// Where a cursor starts a page; empty is the newest page.
fn read_cursor(raw: &str, filter: &HistoryFilter) -> Result<Start, String> {
    if raw.is_empty() {
        return Ok(Start::Newest);
    }
    let damaged = || {
        "This page link is damaged or was made for other filters: start again from the first page."
            .to_owned()
    };
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| damaged())?;
    let text = String::from_utf8(bytes).map_err(|_| damaged())?;
    let (payload, sum) = text.rsplit_once('.').ok_or_else(damaged)?;
    if checksum(payload, filter) != sum {
        return Err(damaged());
    }
    let parts: Vec<&str> = payload.split('.').collect();
    let [dir, secs, nanos, id] = parts.as_slice() else {
        return Err(damaged());
    };
    let secs: i64 = secs.parse().map_err(|_| damaged())?;
    let nanos: u32 = nanos.parse().map_err(|_| damaged())?;
    let id: i64 = id.parse().map_err(|_| damaged())?;
    let created_at = DateTime::from_timestamp(secs, nanos)
        .ok_or_else(damaged)?
        .naive_utc();
    let at = Position { created_at, id };
    match *dir {
        OLDER => Ok(Start::Older(at)),
        NEWER => Ok(Start::Newer(at)),
        _ => Err(damaged()),
    }
}

// --- pages and counts ---

/// How many messages match: exactly, or more than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Exact(i64),
    MoreThan(i64),
}

/// The count of `filter`'s messages. The counters the database keeps answer exactly where
/// they can ([`counted`]); otherwise the index is walked up to [`COUNT_CAP`] rows.
pub fn total(conn: &mut DbConnection, filter: &HistoryFilter) -> ServiceResult<Total> {
    if let Some(n) = counted(conn, filter)? {
        return Ok(Total::Exact(n));
    }
    let n = history::count_up_to(conn, filter, COUNT_CAP + 1)?;
    Ok(if n > COUNT_CAP {
        Total::MoreThan(COUNT_CAP)
    } else {
        Total::Exact(n)
    })
}

/// Whether the per-day counters can answer `filter`: only whole days, channel, status,
/// broadcast and error code narrow it.
pub fn counters_answer(filter: &HistoryFilter) -> bool {
    let whole_day = |t: Option<NaiveDateTime>| t.is_none_or(|t| t.time() == chrono::NaiveTime::MIN);
    whole_day(filter.since)
        && whole_day(filter.until)
        && filter.template_id.is_none()
        && filter.contact_id.is_none()
        && filter.source.is_none()
}

/// The exact count from the counters the database keeps (`storage::message_counts`), when
/// they can answer: one total per status asked for (none: every status).
fn counted(conn: &mut DbConnection, filter: &HistoryFilter) -> ServiceResult<Option<i64>> {
    if !counters_answer(filter) {
        return Ok(None);
    }
    let base = CountFilter {
        since_day: filter.since.map(|t| t.date()),
        // `until` is the midnight after the last day counted.
        until_day: filter.until.and_then(|t| t.date().pred_opt()),
        channel_id: filter.channel_id,
        campaign_id: filter.broadcast_id,
        status: None,
        error_code: filter.error_code.clone(),
    };
    if filter.statuses.is_empty() {
        return Ok(Some(message_counts::total(conn, &base)?));
    }
    let mut n = 0;
    for status in &filter.statuses {
        let one = CountFilter {
            status: Some(status.clone()),
            ..base.clone()
        };
        n += message_counts::total(conn, &one)?;
    }
    Ok(Some(n))
}

/// One page of the history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub rows: Vec<HistoryRow>,
    /// The cursor of the next (older) page, when there is one.
    pub older: Option<String>,
    /// The cursor of the previous (newer) page, when this is not the first.
    pub newer: Option<String>,
    /// This is not the newest page.
    pub not_first: bool,
    pub filter: HistoryFilter,
    pub total: Option<Total>,
}

/// A page of `size` messages as `params` ask; with the count when `count` is set.
pub async fn page(
    svc: &Services,
    params: HistoryParams,
    size: i64,
    count: bool,
) -> ServiceResult<HistoryPage> {
    let country = svc.settings.default_country;
    svc.read(move |conn| {
        let Resolved { filter, start } = resolve(conn, &params, country)?;
        page_in(conn, filter, start, size, count)
    })
    .await
}

/// The page and its count; a page whose statement takes values (a filter, a cursor) runs with
/// the one plan PostgreSQL keeps for it (see `storage::read_with_generic_plans`).
fn page_in(
    conn: &mut DbConnection,
    filter: HistoryFilter,
    start: Start,
    size: i64,
    count: bool,
) -> ServiceResult<HistoryPage> {
    if history::has_values(&filter, start) {
        storage::read_with_generic_plans(conn, |conn| {
            page_planned(conn, filter, start, size, count)
        })
    } else {
        page_planned(conn, filter, start, size, count)
    }
}

fn page_planned(
    conn: &mut DbConnection,
    filter: HistoryFilter,
    start: Start,
    size: i64,
    count: bool,
) -> ServiceResult<HistoryPage> {
    let capacity = usize::try_from(size).unwrap_or(usize::MAX);
    // The dashboard's size and the API's default are fixed in the statement's text; any other
    // size an API client asks for is bound (see `storage::history::Limit`).
    let limit = if size == PAGE_SIZE || size == API_LIMIT_DEFAULT {
        Limit::Fixed(size + 1)
    } else {
        Limit::Bound(size + 1)
    };
    let mut rows = history::page(conn, &filter, start, limit)?;
    let (older, newer, not_first) = match start {
        Start::Newer(_) if rows.len() <= capacity => {
            // Back at the top: the newest page, whole.
            return page_in(conn, filter, Start::Newest, size, count);
        }
        Start::Newer(_) => {
            // The extra row is the newest, furthest from the cursor.
            rows.remove(0);
            let older = rows
                .last()
                .map(|r| make_cursor(true, r.position(), &filter));
            let newer = rows
                .first()
                .map(|r| make_cursor(false, r.position(), &filter));
            (older, newer, true)
        }
        Start::Newest | Start::Older(_) => {
            let more = rows.len() > capacity;
            rows.truncate(capacity);
            let older = if more {
                rows.last()
                    .map(|r| make_cursor(true, r.position(), &filter))
            } else {
                None
            };
            let not_first = matches!(start, Start::Older(_));
            let newer = match (start, rows.first()) {
                (Start::Older(_), Some(first)) => {
                    Some(make_cursor(false, first.position(), &filter))
                }
                (Start::Older(at), None) => Some(make_cursor(false, at, &filter)),
                _ => None,
            };
            (older, newer, not_first)
        }
    };
    let total = if count {
        Some(total(conn, &filter)?)
    } else {
        None
    };
    Ok(HistoryPage {
        rows,
        older,
        newer,
        not_first,
        filter,
        total,
    })
}

/// What the filter form offers: `(id, public id, name)` of the channels, the newest
/// broadcasts and the templates.
pub use crate::storage::history::Choices;

/// The history page's two reads, the filter form's choices (one statement) and the page itself
/// (with the count), on one connection in one trip to the blocking pool: under load each trip
/// waits for a free connection, so one wait instead of two. What the filters name by id is
/// found among the choices first. The page's own refusal (a bad filter) comes back beside the
/// choices, which the form still needs.
pub async fn page_with_choices(
    svc: &Services,
    params: HistoryParams,
    size: i64,
) -> ServiceResult<(Choices, ServiceResult<HistoryPage>)> {
    let country = svc.settings.default_country;
    svc.read(move |conn| {
        let choices = history::choices(conn)?;
        let page = resolve_among(conn, &params, country, &choices)
            .and_then(|Resolved { filter, start }| page_in(conn, filter, start, size, true));
        Ok((choices, page))
    })
    .await
}

/// Checks the parameters for an export before it starts streaming (a bad filter is answered
/// as an error, not as a CSV cut short).
pub async fn export_plan(svc: &Services, params: HistoryParams) -> ServiceResult<HistoryFilter> {
    let country = svc.settings.default_country;
    svc.read(move |conn| Ok(resolve(conn, &params, country)?.filter))
        .await
}

/// Walks every message matching `filter`, newest first, [`EXPORT_BATCH`] at a time, handing
/// each batch to `each`; stops when `each` answers false. Blocking (a streamed download's
/// producer): only one batch is in memory at a time.
pub fn each_batch(
    conn: &mut DbConnection,
    filter: &HistoryFilter,
    mut each: impl FnMut(&[HistoryRow]) -> bool,
) -> ServiceResult<()> {
    let mut start = Start::Newest;
    loop {
        let batch = history::page(conn, filter, start, Limit::Fixed(EXPORT_BATCH))?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        start = Start::Older(last.position());
        let full = batch.len() == usize::try_from(EXPORT_BATCH).unwrap_or(usize::MAX);
        if !each(&batch) || !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%F %T%.f").unwrap()
    }

    #[test]
    fn cursors_round_trip_and_refuse_edits_and_other_filters() {
        let filter = HistoryFilter {
            channel_id: Some(3),
            ..HistoryFilter::default()
        };
        let pos = Position {
            created_at: at("2026-12-04 10:11:12.123456789"),
            id: 42,
        };
        let older = make_cursor(true, pos, &filter);
        assert_eq!(read_cursor(&older, &filter), Ok(Start::Older(pos)));
        let newer = make_cursor(false, pos, &filter);
        assert_eq!(read_cursor(&newer, &filter), Ok(Start::Newer(pos)));
        assert_eq!(read_cursor("", &filter), Ok(Start::Newest));

        // Another filter's cursor, an edited one, a truncated one, garbage.
        assert!(read_cursor(&older, &HistoryFilter::default()).is_err());
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = String::from_utf8(engine.decode(&older).unwrap()).unwrap();
        let edited = engine.encode(text.replacen(".42.", ".41.", 1));
        assert!(read_cursor(&edited, &filter).is_err());
        assert!(read_cursor(&older[..older.len() - 3], &filter).is_err());
        for junk in ["x", "%%%", "bm90IGEgY3Vyc29y", "...."] {
            assert!(read_cursor(junk, &filter).is_err(), "{junk}");
        }
    }

    #[test]
    fn dates_take_whole_days_and_times_are_exact() {
        assert_eq!(
            moment("2026-12-03", false),
            Ok(Some(at("2026-12-03 00:00:00")))
        );
        assert_eq!(
            moment("2026-12-03", true),
            Ok(Some(at("2026-12-04 00:00:00")))
        );
        assert_eq!(
            moment("2026-12-03T09:30:00+01:00", true),
            Ok(Some(at("2026-12-03 08:30:00")))
        );
        assert_eq!(moment(" ", false), Ok(None));
        assert!(moment("03/12/2026", false).is_err());
        assert!(moment("2026-13-01", false).is_err());
    }

    #[test]
    fn statuses_and_sources_are_checked() {
        assert_eq!(
            statuses("failed, unknown,failed"),
            Ok(vec!["failed".to_owned(), "unknown".to_owned()])
        );
        assert!(statuses("lost").unwrap_err().contains("\"lost\""));
        assert_eq!(source("API"), Ok(Some(MessageSource::Api)));
        assert!(source("robot").is_err());
    }

    #[test]
    fn only_whole_days_channel_status_broadcast_and_error_go_to_the_counters() {
        let mut f = HistoryFilter {
            since: Some(at("2026-12-01 00:00:00")),
            until: Some(at("2026-12-04 00:00:00")),
            channel_id: Some(1),
            statuses: vec!["failed".into()],
            broadcast_id: Some(2),
            ..HistoryFilter::default()
        };
        assert!(counters_answer(&f));
        f.until = Some(at("2026-12-04 09:30:00"));
        assert!(!counters_answer(&f));
        f.until = None;
        f.error_code = Some("131026".into());
        assert!(counters_answer(&f));
        f.contact_id = Some(5);
        assert!(!counters_answer(&f));
    }

    #[test]
    fn query_strings_keep_the_filters_and_the_cursor() {
        let p = HistoryParams {
            status: "failed".into(),
            contact: "+1 415 555 0100".into(),
            ..HistoryParams::default()
        };
        assert_eq!(
            p.query_string(Some("abc")),
            "?status=failed&contact=%2B1+415+555+0100&cursor=abc"
        );
        assert_eq!(HistoryParams::default().query_string(None), "");
    }
}
