//! Broadcasts and their frozen recipients. The audience filter (`domain::broadcast::Audience`)
//! is compiled here into a WHERE clause over `contacts c` whose every value is a bound
//! parameter; freezing is one `INSERT ... SELECT` in the database; feeding reads pending
//! recipients a batch at a time.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text, Timestamp};

use super::prepared::{Fixed, fixed};
use super::schema::{broadcast_recipients, broadcasts, messages};
use super::{DbConnection, new_public_id, now};
use crate::domain::broadcast::{
    Audience, BroadcastState, Combine, Condition, Exclusion, Group, Node, Op, Subject, column_key,
    parse_time,
};
use crate::domain::channel::ChannelKind;
use crate::domain::local_time::Timing;
use crate::domain::message::MessageStatus;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = broadcasts)]
pub struct BroadcastRow {
    pub id: i64,
    pub public_id: String,
    pub name: String,
    pub channel_id: i64,
    pub state: String,
    pub audience: String,
    pub message: String,
    pub send_at: Option<NaiveDateTime>,
    pub time_zone: String,
    pub expires_at: Option<NaiveDateTime>,
    pub pause_reason: Option<String>,
    pub created_by: Option<i64>,
    pub created_by_label: String,
    pub approval_requested_by: Option<i64>,
    pub approved_by_label: Option<String>,
    pub review_note: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub recipients: i64,
    pub launched_at: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub resumed_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// `domain::local_time::Timing` as JSON, when local time or quiet hours are used.
    pub timing: Option<String>,
    /// Issue 18: the broadcast this one was created from by "Send again to...".
    pub follow_up_of: Option<i64>,
}

impl BroadcastRow {
    pub fn state(&self) -> BroadcastState {
        self.state.parse().unwrap_or(BroadcastState::Draft)
    }

    /// Its timing (local time, quiet hours), or none of it.
    pub fn timing(&self) -> Timing {
        self.timing
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }
}

/// What a draft holds (the JSON documents already serialised).
#[derive(Debug, Clone)]
pub struct DraftFields {
    pub name: String,
    pub channel_id: i64,
    pub audience: String,
    pub message: String,
    pub send_at: Option<NaiveDateTime>,
    pub time_zone: String,
    pub expires_at: Option<NaiveDateTime>,
    pub timing: Option<String>,
}

pub fn insert(
    conn: &mut DbConnection,
    fields: &DraftFields,
    created_by: Option<i64>,
    created_by_label: &str,
    idempotency_key: Option<&str>,
    request_hash: Option<&str>,
) -> QueryResult<BroadcastRow> {
    let at = now();
    let public_id = new_public_id();
    diesel::insert_into(broadcasts::table)
        .values((
            broadcasts::public_id.eq(&public_id),
            broadcasts::name.eq(&fields.name),
            broadcasts::channel_id.eq(fields.channel_id),
            broadcasts::state.eq(BroadcastState::Draft.as_str()),
            broadcasts::audience.eq(&fields.audience),
            broadcasts::message.eq(&fields.message),
            broadcasts::send_at.eq(fields.send_at),
            broadcasts::time_zone.eq(&fields.time_zone),
            broadcasts::expires_at.eq(fields.expires_at),
            broadcasts::timing.eq(&fields.timing),
            broadcasts::created_by.eq(created_by),
            broadcasts::created_by_label.eq(created_by_label),
            broadcasts::idempotency_key.eq(idempotency_key),
            broadcasts::request_hash.eq(request_hash),
            broadcasts::created_at.eq(at),
            broadcasts::updated_at.eq(at),
        ))
        .execute(conn)?;
    find_by_public_id(conn, &public_id)?.ok_or(diesel::result::Error::NotFound)
}

/// Rewrites a draft; false when it is no longer a draft.
pub fn update_draft(conn: &mut DbConnection, id: i64, fields: &DraftFields) -> QueryResult<bool> {
    let n = diesel::update(
        broadcasts::table
            .filter(broadcasts::id.eq(id))
            .filter(broadcasts::state.eq(BroadcastState::Draft.as_str())),
    )
    .set((
        broadcasts::name.eq(&fields.name),
        broadcasts::channel_id.eq(fields.channel_id),
        broadcasts::audience.eq(&fields.audience),
        broadcasts::message.eq(&fields.message),
        broadcasts::send_at.eq(fields.send_at),
        broadcasts::time_zone.eq(&fields.time_zone),
        broadcasts::expires_at.eq(fields.expires_at),
        broadcasts::timing.eq(&fields.timing),
        broadcasts::updated_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<BroadcastRow>> {
    broadcasts::table
        .find(id)
        .select(BroadcastRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_public_id(
    conn: &mut DbConnection,
    public_id: &str,
) -> QueryResult<Option<BroadcastRow>> {
    broadcasts::table
        .filter(broadcasts::public_id.eq(public_id))
        .select(BroadcastRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    key: &str,
) -> QueryResult<Option<BroadcastRow>> {
    broadcasts::table
        .filter(broadcasts::idempotency_key.eq(key))
        .select(BroadcastRow::as_select())
        .first(conn)
        .optional()
}

/// What the broadcasts list filters on.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<BroadcastState>,
    /// Part of the name.
    pub q: Option<String>,
}

/// A page of broadcasts, newest first, by keyset (`before`: ids below it); one more row than
/// `limit` tells there is another page.
pub fn page(
    conn: &mut DbConnection,
    filter: &ListFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<BroadcastRow>> {
    let mut query = broadcasts::table
        .select(BroadcastRow::as_select())
        .order(broadcasts::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(state) = filter.state {
        query = query.filter(broadcasts::state.eq(state.as_str()));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        query = query.filter(broadcasts::name.like(format!("%{escaped}%")).escape('\\'));
    }
    if let Some(id) = before {
        query = query.filter(broadcasts::id.lt(id));
    }
    query.load(conn)
}

/// Broadcasts in a state (the scheduler's work list), oldest first.
pub fn in_state(conn: &mut DbConnection, state: BroadcastState) -> QueryResult<Vec<BroadcastRow>> {
    broadcasts::table
        .filter(broadcasts::state.eq(state.as_str()))
        .order(broadcasts::id.asc())
        .select(BroadcastRow::as_select())
        .load(conn)
}

/// Moves a broadcast from one of `from` to `to`, only if it is still in one of them: the one
/// conditional change that makes launching, pausing or cancelling happen once whoever asks
/// twice. Returns whether it moved.
pub fn transition(
    conn: &mut DbConnection,
    id: i64,
    from: &[BroadcastState],
    to: BroadcastState,
) -> QueryResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let at = now();
    let n = diesel::update(
        broadcasts::table
            .filter(broadcasts::id.eq(id))
            .filter(broadcasts::state.eq_any(from)),
    )
    .set((
        broadcasts::state.eq(to.as_str()),
        broadcasts::updated_at.eq(at),
    ))
    .execute(conn)?;
    if n == 1 {
        // started_at keeps the first start (a resume is not a start).
        match to {
            BroadcastState::Running => {
                diesel::update(
                    broadcasts::table
                        .filter(broadcasts::id.eq(id))
                        .filter(broadcasts::started_at.is_null()),
                )
                .set(broadcasts::started_at.eq(at))
                .execute(conn)?;
            }
            BroadcastState::Completed | BroadcastState::Cancelled => {
                diesel::update(broadcasts::table.find(id))
                    .set(broadcasts::finished_at.eq(at))
                    .execute(conn)?;
            }
            _ => {}
        }
        let reason: Option<&str> = None;
        if to != BroadcastState::Paused {
            diesel::update(broadcasts::table.find(id))
                .set(broadcasts::pause_reason.eq(reason))
                .execute(conn)?;
        }
    }
    Ok(n == 1)
}

/// Marks a running broadcast as being worked on (a write on its row, which on PostgreSQL
/// holds it until the transaction ends); false when it is not running.
pub fn touch_running(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
    let n = diesel::update(
        broadcasts::table
            .filter(broadcasts::id.eq(id))
            .filter(broadcasts::state.eq(BroadcastState::Running.as_str())),
    )
    .set(broadcasts::updated_at.eq(now()))
    .execute(conn)?;
    Ok(n == 1)
}

/// Notes the moment of a resume (the failure threshold starts counting again).
pub fn set_resumed(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(id))
        .set(broadcasts::resumed_at.eq(now()))
        .execute(conn)
}

pub fn clear_pause_reason(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    let none: Option<&str> = None;
    diesel::update(broadcasts::table.find(id))
        .set(broadcasts::pause_reason.eq(none))
        .execute(conn)
}

pub fn set_pause_reason(conn: &mut DbConnection, id: i64, reason: &str) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(id))
        .set(broadcasts::pause_reason.eq(reason))
        .execute(conn)
}

/// Records who asked for approval, or who approved or rejected and why.
pub fn set_review(
    conn: &mut DbConnection,
    id: i64,
    requested_by: Option<i64>,
    reviewer: Option<&str>,
    note: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(id))
        .set((
            broadcasts::approval_requested_by.eq(requested_by),
            broadcasts::approved_by_label.eq(reviewer),
            broadcasts::review_note.eq(note),
        ))
        .execute(conn)
}

pub fn set_launched(
    conn: &mut DbConnection,
    id: i64,
    recipients: i64,
    send_at: Option<NaiveDateTime>,
) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(id))
        .set((
            broadcasts::recipients.eq(recipients),
            broadcasts::launched_at.eq(now()),
            broadcasts::send_at.eq(send_at),
        ))
        .execute(conn)
}

// ---------------------------------------------------------------------------------------------
// The audience as SQL

/// A value bound into the audience's SQL.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Text(String),
    Int(i64),
    Real(f64),
    Time(NaiveDateTime),
}

/// What the audience's SQL needs beside the filter: list ids (already resolved from public
/// ids), the channel, the exclusions' settings and the time now.
#[derive(Debug, Clone)]
pub struct AudienceContext {
    pub lists: Vec<i64>,
    pub exclude_lists: Vec<i64>,
    pub channel_id: i64,
    pub kind: ChannelKind,
    pub now: NaiveDateTime,
    /// At most this many broadcast messages per contact per rolling 7 days.
    pub frequency_cap: Option<i64>,
    /// Fields or attributes the message needs with no fallback.
    pub required_values: Vec<String>,
    /// Issue 17: a CSV audience's upload (its import's id); its rows are the audience.
    pub csv_upload: Option<i64>,
    /// Issue 18: a follow-up's own id: its frozen contacts are the audience.
    pub follow_up: Option<i64>,
}

/// SQL text under construction, with its bound values numbered `$1`… in order.
struct Sql {
    text: String,
    binds: Vec<Bound>,
    postgres: bool,
}

impl Sql {
    fn new(postgres: bool) -> Self {
        Sql {
            text: String::new(),
            binds: Vec::new(),
            postgres,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, value: Bound) -> &mut Self {
        self.binds.push(value);
        let n = self.binds.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    /// An attribute's value as text (NULL when absent).
    fn attribute(&mut self, key: &str) {
        self.json_value("c.attributes", key);
    }

    /// A key's value in a JSON object column, as text (NULL when absent).
    fn json_value(&mut self, column: &str, key: &str) {
        if self.postgres {
            self.push(&format!("({column}::jsonb ->> "));
            self.bind(Bound::Text(key.to_owned()));
            self.push(")");
        } else {
            self.push(&format!("json_extract({column}, "));
            let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
            self.bind(Bound::Text(format!("$.\"{escaped}\"")));
            self.push(")");
        }
    }

    /// The statement, ready to run (its values bound in order).
    fn statement<DB>(&self) -> Fixed<'_, DB>
    where
        DB: diesel::backend::Backend
            + diesel::sql_types::HasSqlType<Text>
            + diesel::sql_types::HasSqlType<BigInt>
            + diesel::sql_types::HasSqlType<Double>
            + diesel::sql_types::HasSqlType<Timestamp>,
        String: diesel::serialize::ToSql<Text, DB>,
        i64: diesel::serialize::ToSql<BigInt, DB>,
        f64: diesel::serialize::ToSql<Double, DB>,
        NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
    {
        let mut q = fixed(&self.text);
        for b in &self.binds {
            q = match b.clone() {
                Bound::Text(s) => q.bind::<Text, _>(s),
                Bound::Int(i) => q.bind::<BigInt, _>(i),
                Bound::Real(f) => q.bind::<Double, _>(f),
                Bound::Time(t) => q.bind::<Timestamp, _>(t),
            };
        }
        q
    }
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn comparison(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        _ => "<=",
    }
}

impl Sql {
    /// The contacts the audience names: `FROM contacts c WHERE ...`.
    fn audience(&mut self, audience: &Audience, ctx: &AudienceContext) {
        if audience.follow_up.is_some() {
            // Issue 18: the contacts frozen when the follow-up was created; a first broadcast's
            // CSV rows (as `r`) still give each their variables.
            self.push("FROM broadcast_follow_up_contacts f JOIN contacts c ON c.id = f.contact_id");
            if ctx.csv_upload.is_some() {
                self.push(
                    " LEFT JOIN broadcast_csv_rows r ON r.contact_id = c.id AND r.import_id = ",
                );
                self.bind(Bound::Int(ctx.csv_upload.unwrap_or(-1)));
            }
            self.push(" WHERE f.broadcast_id = ");
            self.bind(Bound::Int(ctx.follow_up.unwrap_or(-1)));
            return;
        }
        if audience.csv.is_some() {
            // Issue 17: the good rows of the upload (one per contact), lists and filter unused.
            self.push(
                "FROM broadcast_csv_rows r JOIN contacts c ON c.id = r.contact_id WHERE r.import_id = ",
            );
            self.bind(Bound::Int(ctx.csv_upload.unwrap_or(-1)));
            return;
        }
        self.push("FROM contacts c WHERE 1 = 1");
        if !audience.lists.is_empty() {
            self.push(
                " AND EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = c.id AND lm.list_id IN (",
            );
            self.ids(&ctx.lists);
            self.push("))");
        }
        if !ctx.exclude_lists.is_empty() {
            self.push(
                " AND NOT EXISTS (SELECT 1 FROM list_members lx WHERE lx.contact_id = c.id AND lx.list_id IN (",
            );
            self.ids(&ctx.exclude_lists);
            self.push("))");
        }
        if let Some(group) = &audience.filter
            && !group.conditions.is_empty()
        {
            self.push(" AND ");
            self.group(group, ctx);
        }
    }

    fn ids(&mut self, ids: &[i64]) {
        if ids.is_empty() {
            // No list matched: nobody is in it.
            self.push("NULL");
        }
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(Bound::Int(*id));
        }
    }

    fn group(&mut self, group: &Group, ctx: &AudienceContext) {
        if group.conditions.is_empty() {
            self.push("1 = 1");
            return;
        }
        let joiner = match group.combine {
            Combine::All => " AND ",
            Combine::Any => " OR ",
        };
        // In an "any" group, equality tests of one attribute ("tier is gold or silver") are
        // one `IN` over one read of the attribute: each read of an attribute is a look-up in
        // the contact's JSON, for every contact.
        let mut alternatives: Vec<(String, Vec<String>)> = Vec::new();
        let mut rest: Vec<&Node> = Vec::new();
        for node in &group.conditions {
            match node {
                Node::Condition(c) if group.combine == Combine::Any && c.op == Op::Eq => {
                    if let Ok(Subject::Attribute(key)) = c.subject() {
                        let value = c.value.as_deref().map(str::trim).unwrap_or("");
                        let value = value.to_lowercase();
                        match alternatives.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, values)) => values.push(value),
                            None => alternatives.push((key, vec![value])),
                        }
                    } else {
                        rest.push(node);
                    }
                }
                _ => rest.push(node),
            }
        }
        self.push("(");
        let mut first = true;
        for (key, values) in &alternatives {
            if !std::mem::take(&mut first) {
                self.push(joiner);
            }
            self.attribute_in(key, values);
        }
        for node in rest {
            if !std::mem::take(&mut first) {
                self.push(joiner);
            }
            match node {
                Node::Group(g) => self.group(g, ctx),
                Node::Condition(c) => self.condition(c, ctx),
            }
        }
        self.push(")");
    }

    /// The attribute equals one of `values` (lowercase), ignoring case as an `eq` does.
    fn attribute_in(&mut self, key: &str, values: &[String]) {
        if self.postgres {
            self.push("lower(");
            self.attribute(key);
            self.push(")");
        } else {
            self.attribute(key);
            self.push(" COLLATE NOCASE");
        }
        self.push(" IN (");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(Bound::Text(value.clone()));
        }
        self.push(")");
    }

    fn condition(&mut self, c: &Condition, ctx: &AudienceContext) {
        // Conditions were checked when the draft was saved; one that no longer reads matches
        // nobody rather than everybody.
        let Ok(subject) = c.subject() else {
            self.push("1 = 0");
            return;
        };
        let value = c.value.as_deref().map(str::trim).unwrap_or("").to_owned();
        match subject {
            Subject::Text(column) => self.text_condition(&format!("c.{column}"), c.op, &value),
            Subject::Attribute(key) => self.attribute_condition(&key, c.op, &value),
            Subject::Time(which) => {
                let expr = match which {
                    "created_at" => "c.created_at",
                    "last_inbound_at" => {
                        "(SELECT max(w.last_inbound_at) FROM contact_windows w WHERE w.contact_id = c.id)"
                    }
                    _ => "(SELECT max(m.created_at) FROM messages m WHERE m.contact_id = c.id)",
                };
                match c.op {
                    Op::Exists => {
                        self.push(&format!("{expr} IS NOT NULL"));
                    }
                    Op::NotExists => {
                        self.push(&format!("{expr} IS NULL"));
                    }
                    op => {
                        let at = parse_time(&value, ctx.now.and_utc()).unwrap_or(ctx.now);
                        self.push(&format!("{expr} {} ", comparison(op)));
                        self.bind(Bound::Time(at));
                    }
                }
            }
            Subject::Consent => {
                self.push("COALESCE((SELECT cc.status FROM contact_consents cc WHERE cc.contact_id = c.id AND cc.channel_kind = ");
                self.bind(Bound::Text(ctx.kind.as_str().to_owned()));
                self.push("), 'unknown') ");
                self.push(if c.op == Op::Ne { "<> " } else { "= " });
                self.bind(Bound::Text(value));
            }
            Subject::Window => {
                if c.op == Op::Closed {
                    self.push("NOT ");
                }
                self.push(
                    "EXISTS (SELECT 1 FROM contact_windows w WHERE w.contact_id = c.id AND w.channel_id = ",
                );
                self.bind(Bound::Int(ctx.channel_id));
                self.push(" AND w.last_inbound_at > ");
                self.bind(Bound::Time(ctx.now - Duration::hours(24)));
                self.push(")");
            }
        }
    }

    fn text_condition(&mut self, expr: &str, op: Op, value: &str) {
        match op {
            Op::Exists => {
                self.push(&format!("{expr} <> ''"));
            }
            Op::NotExists => {
                self.push(&format!("{expr} = ''"));
            }
            Op::Contains => {
                self.push(&format!("lower({expr}) LIKE "));
                self.bind(Bound::Text(like_pattern(value)));
                self.push(" ESCAPE '\\'");
            }
            Op::Ne => {
                self.push(&format!("lower({expr}) <> "));
                self.bind(Bound::Text(value.to_lowercase()));
            }
            _ => {
                self.push(&format!("lower({expr}) = "));
                self.bind(Bound::Text(value.to_lowercase()));
            }
        }
    }

    fn attribute_condition(&mut self, key: &str, op: Op, value: &str) {
        match op {
            Op::Exists => {
                self.push("COALESCE(");
                self.attribute(key);
                self.push(", '') <> ''");
            }
            Op::NotExists => {
                self.push("COALESCE(");
                self.attribute(key);
                self.push(", '') = ''");
            }
            Op::Contains => {
                self.push("lower(");
                self.attribute(key);
                self.push(") LIKE ");
                self.bind(Bound::Text(like_pattern(value)));
                self.push(" ESCAPE '\\'");
            }
            Op::Eq => self.attribute_in(key, &[value.to_lowercase()]),
            Op::Ne if !self.postgres => {
                // SQLite's NOCASE folds exactly what its lower() folds (ASCII letters), and the
                // value is lowercase already: the same test as `lower(x) <> value`, without
                // copying every contact's value to lowercase it.
                self.push("COALESCE(");
                self.attribute(key);
                self.push(", '') <> ");
                self.bind(Bound::Text(value.to_lowercase()));
                self.push(" COLLATE NOCASE");
            }
            Op::Ne => {
                self.push("COALESCE(lower(");
                self.attribute(key);
                self.push("), '') <> ");
                self.bind(Bound::Text(value.to_lowercase()));
            }
            op => {
                if let Ok(number) = value.parse::<f64>() {
                    // Only values that read as numbers take part in a numeric comparison.
                    if self.postgres {
                        self.push("(CASE WHEN ");
                        self.attribute(key);
                        self.push(" ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN CAST(");
                        self.attribute(key);
                        self.push(" AS DOUBLE PRECISION) END) ");
                    } else {
                        self.push("(CASE WHEN trim(");
                        self.attribute(key);
                        self.push(") GLOB '[0-9-]*' THEN CAST(");
                        self.attribute(key);
                        self.push(" AS REAL) END) ");
                    }
                    self.push(comparison(op));
                    self.push(" ");
                    self.bind(Bound::Real(number));
                } else {
                    // Dates as text: ISO dates and times sort as they compare.
                    self.attribute(key);
                    self.push(&format!(" {} ", comparison(op)));
                    self.bind(Bound::Text(value.to_owned()));
                }
            }
        }
    }

    /// The first exclusion that applies to `c`, as its code, or NULL.
    fn exclusion(&mut self, ctx: &AudienceContext) {
        // The opted-out set once (a few rows of the (channel_kind, status) index, held as an
        // in-memory index or hash), rather than a look-up in contact_consents per contact.
        self.push("CASE WHEN c.id IN (SELECT cc.contact_id FROM contact_consents cc WHERE cc.channel_kind = ");
        self.bind(Bound::Text(ctx.kind.as_str().to_owned()));
        self.push(" AND cc.status = 'opted_out') THEN ");
        self.bind(Bound::Text(Exclusion::OptedOut.as_str().to_owned()));
        if let Some(cap) = ctx.frequency_cap {
            self.push(" WHEN (SELECT count(*) FROM messages fm WHERE fm.contact_id = c.id AND fm.campaign_id IS NOT NULL AND fm.created_at > ");
            self.bind(Bound::Time(ctx.now - Duration::days(7)));
            self.push(") >= ");
            self.bind(Bound::Int(cap));
            self.push(" THEN ");
            self.bind(Bound::Text(Exclusion::FrequencyCap.as_str().to_owned()));
        }
        if !ctx.required_values.is_empty() {
            self.push(" WHEN ");
            for (i, key) in ctx.required_values.iter().enumerate() {
                if i > 0 {
                    self.push(" OR ");
                }
                match key.as_str() {
                    "name" | "email" | "language" | "time_zone" => {
                        self.push(&format!("trim(c.{key}) = ''"));
                    }
                    "phone" => {
                        self.push("c.phone = ''");
                    }
                    "first_name" => {
                        self.push("(trim(c.name) = '' AND COALESCE(");
                        self.attribute("first_name");
                        self.push(", '') = '')");
                    }
                    other => match column_key(other) {
                        // Issue 17: a CSV column, from the recipient's row.
                        Some(header) if ctx.csv_upload.is_some() => {
                            self.push("trim(COALESCE(");
                            self.json_value("r.variables", header);
                            self.push(", '')) = ''");
                        }
                        Some(_) => {
                            self.push("1 = 1");
                        }
                        None => {
                            self.push("trim(COALESCE(");
                            self.attribute(other);
                            self.push(", '')) = ''");
                        }
                    },
                }
            }
            self.push(" THEN ");
            self.bind(Bound::Text(Exclusion::MissingVariable.as_str().to_owned()));
        }
        self.push(" ELSE NULL END");
    }

    /// `SELECT c.id, <exclusion> AS reason FROM contacts c WHERE <audience>`.
    fn candidates(&mut self, audience: &Audience, ctx: &AudienceContext) {
        self.push("SELECT c.id AS contact_id, ");
        self.exclusion(ctx);
        self.push(" AS reason ");
        self.audience(audience, ctx);
    }
}

/// The reach of an audience and what it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Every contact the audience names.
    pub matched: i64,
    /// Left out, by reason.
    pub excluded: Vec<(Exclusion, i64)>,
}

impl Estimate {
    /// Who would get the message.
    pub fn reach(&self) -> i64 {
        self.matched - self.excluded.iter().map(|(_, n)| n).sum::<i64>()
    }
}

#[derive(QueryableByName)]
struct ReasonCounts {
    #[diesel(sql_type = BigInt)]
    matched: i64,
    #[diesel(sql_type = BigInt)]
    opted_out: i64,
    #[diesel(sql_type = BigInt)]
    frequency_cap: i64,
    #[diesel(sql_type = BigInt)]
    missing_variable: i64,
}

fn is_postgres(conn: &DbConnection) -> bool {
    matches!(conn, DbConnection::Postgres(_))
}

/// Counts who the audience names and who it would leave out, without writing anything.
pub fn estimate(
    conn: &mut DbConnection,
    audience: &Audience,
    ctx: &AudienceContext,
) -> QueryResult<Estimate> {
    // Conditional counts in one pass rather than a GROUP BY of the reason, which SQLite
    // answers by sorting every matched contact (in memory, with temp_store = MEMORY).
    let mut sql = Sql::new(is_postgres(conn));
    sql.push("SELECT count(*) AS matched");
    for (e, column) in [
        (Exclusion::OptedOut, "opted_out"),
        (Exclusion::FrequencyCap, "frequency_cap"),
        (Exclusion::MissingVariable, "missing_variable"),
    ] {
        sql.push(", count(CASE WHEN s.reason = ");
        sql.bind(Bound::Text(e.as_str().to_owned()));
        sql.push(&format!(" THEN 1 END) AS {column}"));
    }
    sql.push(" FROM (");
    sql.candidates(audience, ctx);
    sql.push(") s");
    let rows: Vec<ReasonCounts> = match conn {
        DbConnection::Sqlite(c) => sql.statement().load(c)?,
        DbConnection::Postgres(c) => sql.statement().load(c)?,
    };
    let mut estimate = Estimate::default();
    if let Some(row) = rows.first() {
        estimate.matched = row.matched;
        for (e, n) in [
            (Exclusion::OptedOut, row.opted_out),
            (Exclusion::FrequencyCap, row.frequency_cap),
            (Exclusion::MissingVariable, row.missing_variable),
        ] {
            if n > 0 {
                estimate.excluded.push((e, n));
            }
        }
    }
    if let Some(csv) = audience
        .csv
        .as_ref()
        .filter(|_| audience.follow_up.is_none())
    {
        // Rows of the file that never became recipients, from the upload's report.
        for (ex, n) in csv.rejected() {
            estimate.matched += n;
            estimate.excluded.push((ex, n));
        }
    }
    estimate.excluded.sort_by_key(|(e, _)| e.as_str());
    Ok(estimate)
}

/// Freezes the audience: one recipient row per contact, written by the database in one
/// statement; contacts an exclusion applies to are `skipped` with its code. Returns how many
/// rows were written.
pub fn freeze(
    conn: &mut DbConnection,
    broadcast_id: i64,
    audience: &Audience,
    ctx: &AudienceContext,
) -> QueryResult<usize> {
    let mut sql = Sql::new(is_postgres(conn));
    sql.push("INSERT INTO broadcast_recipients (broadcast_id, contact_id, status, reason) SELECT ");
    sql.bind(Bound::Int(broadcast_id));
    sql.push(", s.contact_id, CASE WHEN s.reason IS NULL THEN 'pending' ELSE 'skipped' END, s.reason FROM (");
    sql.candidates(audience, ctx);
    sql.push(") s");
    let written = match conn {
        DbConnection::Sqlite(c) => sql.statement().execute(c)?,
        DbConnection::Postgres(c) => sql.statement().execute(c)?,
    };
    super::message_counts::count_frozen_recipients(conn, broadcast_id)?;
    Ok(written)
}

#[derive(QueryableByName)]
struct ContactId {
    #[diesel(sql_type = BigInt)]
    contact_id: i64,
}

/// The `offset`-th contact (in id order) the audience reaches, to preview the message for a
/// real recipient.
pub fn sample(
    conn: &mut DbConnection,
    audience: &Audience,
    ctx: &AudienceContext,
    offset: i64,
) -> QueryResult<Option<i64>> {
    let mut sql = Sql::new(is_postgres(conn));
    sql.push("SELECT s.contact_id AS contact_id FROM (");
    sql.candidates(audience, ctx);
    sql.push(") s WHERE s.reason IS NULL ORDER BY s.contact_id LIMIT 1 OFFSET ");
    sql.bind(Bound::Int(offset.max(0)));
    let rows: Vec<ContactId> = match conn {
        DbConnection::Sqlite(c) => sql.statement().load(c)?,
        DbConnection::Postgres(c) => sql.statement().load(c)?,
    };
    Ok(rows.first().map(|r| r.contact_id))
}

// ---------------------------------------------------------------------------------------------
// Feeding and counting

/// The next pending recipients, in the order they were frozen: (recipient id, contact id).
pub fn next_pending(
    conn: &mut DbConnection,
    broadcast_id: i64,
    limit: i64,
) -> QueryResult<Vec<(i64, i64)>> {
    broadcast_recipients::table
        .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
        .filter(broadcast_recipients::status.eq("pending"))
        .order(broadcast_recipients::id.asc())
        .limit(limit)
        .select((broadcast_recipients::id, broadcast_recipients::contact_id))
        .load(conn)
}

/// Marks one pending recipient skipped (or expired, or cancelled) with the reason.
pub fn set_recipient(
    conn: &mut DbConnection,
    recipient_id: i64,
    status: &str,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        broadcast_recipients::table
            .filter(broadcast_recipients::id.eq(recipient_id))
            .filter(broadcast_recipients::status.eq("pending")),
    )
    .set((
        broadcast_recipients::status.eq(status),
        broadcast_recipients::reason.eq(reason),
    ))
    .execute(conn)
}

#[derive(QueryableByName)]
struct QueuedId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// SQLite: queues a text broadcast's message for each of `recipient_ids` still pending, with
/// the first event of its timeline, as `outbox::enqueue_many` would, but written by the
/// database from the recipients' and contacts' rows: two statements of fixed text (prepared
/// once per connection) instead of reading each contact, rendering and binding 18 values a
/// message in the write lane. Returns how many were queued (a contact deleted since the launch
/// took its recipient row with it). Mark the recipients queued in the same transaction.
///
/// `+r.broadcast_id`, `+r.status`: with an index to enter the recipients by, SQLite walked
/// every pending recipient of the broadcast and the id list again for each (72 ms a batch with
/// 100,000 pending); this way it walks the list once and finds each recipient by its id.
#[allow(clippy::too_many_arguments)]
pub fn queue_text(
    conn: &mut DbConnection,
    broadcast_id: i64,
    channel_id: i64,
    recipient_ids: &[i64],
    body: &str,
    content: &str,
    requested_by: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    const MESSAGES: &str = "INSERT INTO messages (public_id, channel_id, contact_id, to_address, \
         campaign_id, template_id, content_kind, body, content, status, attempts, next_attempt_at, \
         idempotency_key, requested_by, resend_of, request_hash, source, created_at, updated_at) \
         SELECT herald_public_id(), $1, c.id, c.phone, $2, NULL, 'text', $3, $4, 'queued', 0, $5, \
         NULL, $6, NULL, NULL, 'broadcast', $5, $5 \
         FROM json_each($7) AS j JOIN broadcast_recipients r ON r.id = j.value \
         JOIN contacts c ON c.id = r.contact_id \
         WHERE +r.broadcast_id = $2 AND +r.status = 'pending' ORDER BY j.key RETURNING id";
    const EVENTS: &str = "INSERT INTO message_events (message_id, status, source, detail, occurred_at) \
         SELECT value, 'queued', 'herald', $1, $2 FROM json_each($3)";
    let DbConnection::Sqlite(c) = conn else {
        return Err(diesel::result::Error::QueryBuilderError(
            "queue_text is SQLite's".into(),
        ));
    };
    let ids = serde_json::to_string(recipient_ids).unwrap_or_else(|_| "[]".into());
    let written: Vec<QueuedId> = fixed(MESSAGES)
        .bind::<BigInt, _>(channel_id)
        .bind::<BigInt, _>(broadcast_id)
        .bind::<Text, _>(body)
        .bind::<Text, _>(content)
        .bind::<Timestamp, _>(at)
        .bind::<Text, _>(requested_by)
        .bind::<Text, _>(&ids)
        .load(c)?;
    if written.is_empty() {
        return Ok(0);
    }
    let message_ids: Vec<i64> = written.iter().map(|w| w.id).collect();
    fixed(EVENTS)
        .bind::<Text, _>(requested_by)
        .bind::<Timestamp, _>(at)
        .bind::<Text, _>(serde_json::to_string(&message_ids).unwrap_or_else(|_| "[]".into()))
        .execute(c)?;
    Ok(written.len())
}

/// The pending recipients with ids in `first..=last` became queued (their messages written in
/// the same transaction).
pub fn mark_queued(
    conn: &mut DbConnection,
    broadcast_id: i64,
    first: i64,
    last: i64,
) -> QueryResult<usize> {
    diesel::update(
        broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::status.eq("pending"))
            .filter(broadcast_recipients::id.between(first, last)),
    )
    .set(broadcast_recipients::status.eq("queued"))
    .execute(conn)
}

/// Every pending recipient becomes `status` with `reason` (cancel, expiry).
pub fn close_pending(
    conn: &mut DbConnection,
    broadcast_id: i64,
    status: &str,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::status.eq("pending")),
    )
    .set((
        broadcast_recipients::status.eq(status),
        broadcast_recipients::reason.eq(reason),
    ))
    .execute(conn)
}

/// The broadcast's messages still queued or being sent.
pub fn in_flight(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<i64> {
    messages::table
        .filter(messages::campaign_id.eq(broadcast_id))
        .filter(messages::status.eq_any(["queued", "sending"]))
        .count()
        .get_result(conn)
}

/// Whether any recipient is still pending.
pub fn has_pending(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::status.eq("pending")),
    ))
    .get_result(conn)
}

/// Far in the future: a paused broadcast's queued messages wait here (the claim takes only due
/// messages), and come back to now on resume.
pub fn held_until() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(9999, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_else(now)
}

/// Holds (pause) the broadcast's queued messages: nothing of it is claimed any more.
pub fn hold_queued(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<usize> {
    diesel::update(
        messages::table
            .filter(messages::campaign_id.eq(broadcast_id))
            .filter(messages::status.eq("queued")),
    )
    .set(messages::next_attempt_at.eq(held_until()))
    .execute(conn)
}

/// Releases (resume) what [`hold_queued`] held.
pub fn release_held(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<usize> {
    diesel::update(
        messages::table
            .filter(messages::campaign_id.eq(broadcast_id))
            .filter(messages::status.eq("queued"))
            .filter(messages::next_attempt_at.eq(held_until())),
    )
    .set(messages::next_attempt_at.eq(now()))
    .execute(conn)
}

/// Withdraws the broadcast's queued messages (cancel, expiry): they become `cancelled` with the
/// reason. Returns how many.
pub fn withdraw_queued(
    conn: &mut DbConnection,
    broadcast_id: i64,
    reason: &str,
) -> QueryResult<usize> {
    let at = now();
    diesel::update(
        messages::table
            .filter(messages::campaign_id.eq(broadcast_id))
            .filter(messages::status.eq("queued")),
    )
    .set((
        messages::status.eq(MessageStatus::Cancelled.as_str()),
        messages::error_message.eq(reason),
        messages::updated_at.eq(at),
    ))
    .execute(conn)
}

/// The outcomes of the broadcast's last `n` finished messages queued since `since`:
/// (failed, finished). "Last" is in the order they were queued (`created_at`, then id).
///
/// One look-up per finished status, each walking the `(campaign_id, status, created_at, id)`
/// index backwards from the newest message and stopping after `n`. Ordered by id alone, with
/// `created_at` bounded, the index could not give the order: every finished message of the
/// broadcast since `since` went through a sorter at every step of the scheduler (8% of the
/// server's CPU a few seconds into a broadcast of 100,000, and growing as it went).
pub fn recent_failures(
    conn: &mut DbConnection,
    broadcast_id: i64,
    since: Option<NaiveDateTime>,
    n: i64,
) -> QueryResult<(i64, i64)> {
    let mut last: Vec<(NaiveDateTime, i64, String)> = Vec::new();
    for status in ["sent", "delivered", "read", "failed"] {
        let mut query = messages::table
            .filter(messages::campaign_id.eq(broadcast_id))
            .filter(messages::status.eq(status))
            .order((messages::created_at.desc(), messages::id.desc()))
            .limit(n)
            .select((messages::created_at, messages::id, messages::status))
            .into_boxed();
        if let Some(since) = since {
            query = query.filter(messages::created_at.ge(since));
        }
        last.extend(query.load::<(NaiveDateTime, i64, String)>(conn)?);
    }
    last.sort_unstable_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
    last.truncate(usize::try_from(n).unwrap_or(0));
    let failed = last.iter().filter(|(_, _, s)| s == "failed").count();
    Ok((failed as i64, last.len() as i64))
}

/// Unique contacts sent a template on these channels since `since` (what WhatsApp's messaging
/// limit counts: conversations a business starts), and the oldest such send (when room frees
/// up again).
pub fn business_initiated(
    conn: &mut DbConnection,
    channel_ids: &[i64],
    since: NaiveDateTime,
) -> QueryResult<(i64, Option<NaiveDateTime>)> {
    let counted = ["queued", "sending", "sent", "delivered", "read", "unknown"];
    let base = || {
        messages::table
            .filter(messages::channel_id.eq_any(channel_ids))
            .filter(messages::content_kind.eq("template"))
            .filter(messages::created_at.gt(since))
            .filter(messages::status.eq_any(counted))
    };
    let unique: i64 = base()
        .select(diesel::dsl::count(messages::contact_id).aggregate_distinct())
        .get_result(conn)?;
    let oldest: Option<NaiveDateTime> = base()
        .select(diesel::dsl::min(messages::created_at))
        .get_result(conn)?;
    Ok((unique, oldest))
}

/// WhatsApp's codes for a template it will not send (paused, disabled, missing, parameters
/// that do not fit): the broadcast pauses on them instead of failing every recipient.
pub const TEMPLATE_REFUSED_CODES: [&str; 7] = [
    "132000", "132001", "132005", "132007", "132012", "132015", "132016",
];

/// The provider's code of a template refusal among the broadcast's messages queued since
/// `since`, if there is one.
pub fn template_refusal(
    conn: &mut DbConnection,
    broadcast_id: i64,
    since: Option<NaiveDateTime>,
) -> QueryResult<Option<(String, String)>> {
    let mut query = messages::table
        .filter(messages::campaign_id.eq(broadcast_id))
        .filter(messages::status.eq("failed"))
        .filter(messages::error_code.eq_any(TEMPLATE_REFUSED_CODES))
        .select((messages::error_code, messages::error_message))
        .limit(1)
        .into_boxed();
    if let Some(since) = since {
        query = query.filter(messages::created_at.ge(since));
    }
    let found: Option<(Option<String>, Option<String>)> = query.first(conn).optional()?;
    Ok(found.map(|(code, words)| (code.unwrap_or_default(), words.unwrap_or_default())))
}

/// A broadcast's counts: recipients by state and messages by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub recipients: i64,
    /// Not sent yet: pending recipients and queued or sending messages.
    pub pending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub replied: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
    pub expired: i64,
    pub unknown: i64,
}

impl Counts {
    /// Recipients with an outcome, for the progress bar.
    pub fn done(&self) -> i64 {
        self.recipients - self.pending
    }

    pub fn percent(&self) -> i64 {
        if self.recipients == 0 {
            100
        } else {
            self.done() * 100 / self.recipients
        }
    }
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs a counting statement with `broadcast_id` bound as `$1`.
fn load_counts(
    conn: &mut DbConnection,
    sql: &str,
    broadcast_id: i64,
) -> QueryResult<Vec<StatusCount>> {
    super::on_backend!(conn, |c| fixed(sql).bind::<BigInt, _>(broadcast_id).load(c))
}

/// Counts from the counters the database keeps, never visiting every message row: the page and
/// the API ask for them every few seconds while a broadcast of a million runs. `sent`, `delivered` and
/// `read` count each message once, at the furthest it got (a read message is not also counted
/// as delivered); resends are not counted beside the message they resend. `replied` counts
/// recipients with a reply attributed to the broadcast (the first within the reply window
/// after delivery).
pub fn counts(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<Counts> {
    // The recipients by state and the messages by status from the counters the database
    // keeps (storage::message_counts), minus the resends (few: found through the resend_of
    // index; `+` keeps SQLite off the campaign index there).
    let mut counts = Counts::default();
    for (status, n) in super::message_counts::recipient_statuses(conn, broadcast_id)? {
        counts.recipients += n;
        match status.as_str() {
            "pending" => counts.pending += n,
            "skipped" => counts.skipped += n,
            "cancelled" => counts.cancelled += n,
            "expired" => counts.expired += n,
            _ => {}
        }
    }
    // On SQLite `GROUP BY +status`: grouped by the bare column, SQLite read every message
    // through a status index (to group in its order, no sort) instead of the few resends
    // through theirs: 35 ms with 200,000 messages, on every count.
    let resends = match conn {
        DbConnection::Sqlite(_) => {
            "SELECT status, count(*) AS n FROM messages \
             WHERE resend_of IS NOT NULL AND +campaign_id = $1 GROUP BY +status"
        }
        DbConnection::Postgres(_) => {
            "SELECT status, count(*) AS n FROM messages \
             WHERE resend_of IS NOT NULL AND +campaign_id = $1 GROUP BY status"
        }
    };
    let mut by_status: std::collections::BTreeMap<String, i64> = Default::default();
    for (status, n) in super::message_counts::campaign_statuses(conn, broadcast_id)? {
        *by_status.entry(status).or_default() += n;
    }
    for row in load_counts(conn, resends, broadcast_id)? {
        *by_status.entry(row.status).or_default() -= row.n;
    }
    for (status, n) in by_status {
        match status.as_str() {
            "queued" | "sending" => counts.pending += n,
            "sent" => counts.sent += n,
            "delivered" => counts.delivered += n,
            "read" => counts.read += n,
            "failed" => counts.failed += n,
            "unknown" => counts.unknown += n,
            "skipped" => counts.skipped += n,
            "cancelled" => counts.cancelled += n,
            _ => {}
        }
    }
    // Issue 18: replies are attributed when they arrive (`broadcast_results::attribute_reply`):
    // the recipients with one, from their partial index.
    counts.replied = super::broadcast_results::replied(conn, broadcast_id)?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::broadcast::Condition;

    fn ctx() -> AudienceContext {
        AudienceContext {
            lists: vec![7],
            exclude_lists: vec![],
            channel_id: 3,
            kind: ChannelKind::Whatsapp,
            now: now(),
            frequency_cap: Some(2),
            required_values: vec!["city".into()],
            csv_upload: None,
            follow_up: None,
        }
    }

    #[test]
    fn a_csv_audience_is_its_upload_rows_with_their_column_variables() {
        let audience = Audience {
            lists: vec!["ignored".into()],
            csv: Some(crate::domain::broadcast::CsvAudience::default()),
            ..Audience::default()
        };
        let mut c = ctx();
        c.csv_upload = Some(42);
        c.required_values = vec!["column:Order'; --".into(), "name".into()];
        for postgres in [false, true] {
            let mut sql = Sql::new(postgres);
            sql.candidates(&audience, &c);
            assert!(
                sql.text
                    .contains("FROM broadcast_csv_rows r JOIN contacts c ON c.id = r.contact_id"),
                "{}",
                sql.text
            );
            assert!(!sql.text.contains("list_members"), "{}", sql.text);
            assert!(sql.text.contains("r.variables"), "{}", sql.text);
            assert!(!sql.text.contains("Order"), "{}", sql.text);
            assert!(sql.binds.contains(&Bound::Int(42)));
        }
        // Without an upload a column is missing for everyone.
        c.csv_upload = None;
        let mut sql = Sql::new(false);
        sql.exclusion(&c);
        assert!(!sql.text.contains("r.variables"), "{}", sql.text);
    }

    #[test]
    fn every_value_is_bound_never_written_into_the_sql() {
        let hostile = "x'); DROP TABLE contacts; --";
        let audience = Audience {
            lists: vec!["l".into()],
            exclude_lists: vec![],
            filter: Some(Group {
                combine: Combine::Any,
                conditions: vec![
                    Node::Condition(Condition {
                        field: format!("attributes.{hostile}"),
                        op: Op::Eq,
                        value: Some(hostile.into()),
                    }),
                    Node::Condition(Condition {
                        field: "name".into(),
                        op: Op::Contains,
                        value: Some(hostile.into()),
                    }),
                ],
            }),
            csv: None,
            follow_up: None,
        };
        for postgres in [false, true] {
            let mut sql = Sql::new(postgres);
            sql.candidates(&audience, &ctx());
            assert!(!sql.text.contains("DROP"), "{}", sql.text);
            assert!(sql.binds.contains(&Bound::Text(hostile.to_lowercase())));
        }
    }
}
