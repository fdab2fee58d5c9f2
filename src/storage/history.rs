//! The send history: every message, newest first on `(created_at, id)`, narrowed by a filter
//! and paged by keyset (issue 18). One statement text per combination of filters present, so
//! each is prepared once per connection ([`fixed`]); every filter the history offers has an
//! index ending in `(created_at, id)` (migration `20261204100000_history`), so a page is a
//! walk down one index, never a sort of the matching rows. [`explain`] shows the plan.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text, Timestamp};

use super::DbConnection;
use super::messages::{COLUMNS, MessageRow};
use super::prepared::{Fixed, fixed};
use crate::domain::message::MessageSource;

/// Which messages the history shows; `None` and empty fields match everything. Ids are
/// internal: the service resolves what people and clients write into them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Created at or after this time.
    pub since: Option<NaiveDateTime>,
    /// Created before this time.
    pub until: Option<NaiveDateTime>,
    pub channel_id: Option<i64>,
    /// Any of these statuses.
    pub statuses: Vec<String>,
    pub broadcast_id: Option<i64>,
    pub template_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub source: Option<MessageSource>,
    pub error_code: Option<String>,
}

impl HistoryFilter {
    /// Every field as text, in a fixed order: what a cursor is bound to.
    pub fn fingerprint(&self) -> String {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let at = |v: Option<NaiveDateTime>| {
            v.map(|t| t.and_utc().timestamp_micros().to_string())
                .unwrap_or_default()
        };
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            at(self.since),
            at(self.until),
            opt(self.channel_id),
            self.statuses.join(","),
            opt(self.broadcast_id),
            opt(self.template_id),
            opt(self.contact_id),
            self.source.map(|s| s.as_str()).unwrap_or_default(),
            self.error_code.as_deref().unwrap_or_default(),
        )
    }
}

/// A place in the history: a message's `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: NaiveDateTime,
    pub id: i64,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The newest messages.
    Newest,
    /// The messages just older than this one, newest first.
    Older(Position),
    /// The messages just newer than this one (still returned newest first).
    Newer(Position),
}

/// A message with the names the history shows beside it.
#[derive(Debug, Clone, QueryableByName)]
pub struct HistoryRow {
    #[diesel(embed)]
    pub message: MessageRow,
    #[diesel(sql_type = Nullable<Text>)]
    pub contact_public_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub contact_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub channel_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub broadcast_public_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub broadcast_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub template_public_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub template_name: Option<String>,
}

impl HistoryRow {
    pub fn position(&self) -> Position {
        Position {
            created_at: self.message.created_at,
            id: self.message.id,
        }
    }
}

/// A value bound to a statement.
enum Bind {
    Int(i64),
    Text(String),
    Time(NaiveDateTime),
}

/// The `WHERE` of a history statement as it is built: its text (parameters `$1`…) and values.
#[derive(Default)]
struct Statement {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Statement {
    /// The next parameter's placeholder, bound to `value`.
    fn param(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Adds `m.{column} {op} $n` when `value` is given.
    fn add(&mut self, column: &str, op: &str, value: Option<Bind>) {
        if let Some(v) = value {
            let p = self.param(v);
            self.conditions.push(format!("m.{column} {op} {p}"));
        }
    }

    fn filtered(filter: &HistoryFilter) -> Self {
        let mut s = Statement::default();
        s.add("created_at", ">=", filter.since.map(Bind::Time));
        s.add("created_at", "<", filter.until.map(Bind::Time));
        s.add("channel_id", "=", filter.channel_id.map(Bind::Int));
        match filter.statuses.as_slice() {
            [] => {}
            [one] => s.add("status", "=", Some(Bind::Text(one.clone()))),
            many => {
                let ps: Vec<String> = many
                    .iter()
                    .map(|st| s.param(Bind::Text(st.clone())))
                    .collect();
                s.conditions
                    .push(format!("m.status IN ({})", ps.join(", ")));
            }
        }
        s.add("campaign_id", "=", filter.broadcast_id.map(Bind::Int));
        s.add("template_id", "=", filter.template_id.map(Bind::Int));
        s.add("contact_id", "=", filter.contact_id.map(Bind::Int));
        if let Some(source) = filter.source {
            s.add("source", "=", Some(Bind::Text(source.as_str().to_owned())));
            if source != MessageSource::Broadcast {
                // The partial index `messages_history_direct`'s own predicate, written out so
                // that SQLite sees the index applies (it does not infer it from `= $n`).
                s.conditions.push("m.source <> 'broadcast'".into());
            }
        }
        s.add("error_code", "=", filter.error_code.clone().map(Bind::Text));
        s
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// Binds every value in order onto a statement of fixed text.
fn bound<'a, DB>(sql: &'a str, binds: &'a [Bind]) -> Fixed<'a, DB>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text> + HasSqlType<Timestamp>,
    i64: ToSql<BigInt, DB>,
    String: ToSql<Text, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
{
    binds.iter().fold(fixed(sql), |q, b| match b {
        Bind::Int(v) => q.bind::<BigInt, _>(v),
        Bind::Text(v) => q.bind::<Text, _>(v),
        Bind::Time(v) => q.bind::<Timestamp, _>(v),
    })
}

/// How many rows a page statement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A size its caller always uses (the dashboard's page, an export batch): written into
    /// the statement's text. PostgreSQL then keeps one plan for the statement; with `LIMIT $n`
    /// its generic plan assumed a tenth of the table would be read, so it planned the
    /// five-table join again on every call (about 1 ms of planning for 0.3 ms of work).
    Fixed(i64),
    /// Any size (an API client's `limit`): bound, so that every size shares one statement.
    Bound(i64),
}

/// The statement of one page: its text and values.
fn page_statement(filter: &HistoryFilter, from: Start, limit: Limit) -> (String, Vec<Bind>) {
    let mut s = Statement::filtered(filter);
    // `created_at <= t AND (created_at < t OR id < i)`: the first term is a range on the
    // index, the second drops the rows of the same instant already shown.
    let order = match from {
        Start::Newest => "DESC",
        Start::Older(at) => {
            let t = s.param(Bind::Time(at.created_at));
            let i = s.param(Bind::Int(at.id));
            s.conditions.push(format!(
                "m.created_at <= {t} AND (m.created_at < {t} OR m.id < {i})"
            ));
            "DESC"
        }
        Start::Newer(at) => {
            let t = s.param(Bind::Time(at.created_at));
            let i = s.param(Bind::Int(at.id));
            s.conditions.push(format!(
                "m.created_at >= {t} AND (m.created_at > {t} OR m.id > {i})"
            ));
            "ASC"
        }
    };
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("m.{c}")).collect();
    let limit_param = match limit {
        Limit::Fixed(n) => n.to_string(),
        Limit::Bound(n) => s.param(Bind::Int(n)),
    };
    let sql = format!(
        "SELECT {}, c.public_id AS contact_public_id, c.name AS contact_name, \
         ch.name AS channel_name, b.public_id AS broadcast_public_id, b.name AS broadcast_name, \
         t.public_id AS template_public_id, t.name AS template_name \
         FROM messages m \
         LEFT JOIN contacts c ON c.id = m.contact_id \
         LEFT JOIN channels ch ON ch.id = m.channel_id \
         LEFT JOIN broadcasts b ON b.id = m.campaign_id \
         LEFT JOIN templates t ON t.id = m.template_id{} \
         ORDER BY m.created_at {order}, m.id {order} LIMIT {limit_param}",
        columns.join(", "),
        s.where_clause(),
    );
    (sql, s.binds)
}

/// Up to `limit` messages matching `filter` from `from`, newest first.
pub fn page(
    conn: &mut DbConnection,
    filter: &HistoryFilter,
    from: Start,
    limit: Limit,
) -> QueryResult<Vec<HistoryRow>> {
    let (sql, binds) = page_statement(filter, from, limit);
    let mut rows: Vec<HistoryRow> =
        super::on_backend!(conn, |c| bound(&sql, &binds).load::<HistoryRow>(c))?;
    if matches!(from, Start::Newer(_)) {
        rows.reverse();
    }
    Ok(rows)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many messages match `filter`, counting at most `cap` (through the same indexes as a
/// page, so a count never visits more than `cap` rows).
pub fn count_up_to(conn: &mut DbConnection, filter: &HistoryFilter, cap: i64) -> QueryResult<i64> {
    let s = Statement::filtered(filter);
    // The cap is its callers' constant: written into the text, like a fixed page size (see
    // `Limit::Fixed`), so PostgreSQL keeps one plan.
    let sql = format!(
        "SELECT count(*) AS n FROM (SELECT 1 AS one FROM messages m{} LIMIT {cap}) capped",
        s.where_clause()
    );
    let binds = s.binds;
    let row: Count = super::on_backend!(conn, |c| bound(&sql, &binds).get_result::<Count>(c))?;
    Ok(row.n)
}

#[derive(QueryableByName)]
struct SqlitePlanLine {
    #[diesel(sql_type = Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

/// Whether the statement of a page of `filter` from `from` takes values: PostgreSQL keeps one
/// plan for a statement without any, and plans one with values again on each call unless the
/// read asks for its generic plan (`storage::read_with_generic_plans`).
pub fn has_values(filter: &HistoryFilter, from: Start) -> bool {
    from != Start::Newest || !Statement::filtered(filter).binds.is_empty()
}

/// The database's plan for the first page of `filter` (SQLite's `EXPLAIN QUERY PLAN`,
/// PostgreSQL's `EXPLAIN` of the generic plan its pages run with, see [`has_values`]), one
/// line per step: for the tests and the benchmark, which check that no filter sorts or scans
/// the whole table.
pub fn explain(conn: &mut DbConnection, filter: &HistoryFilter) -> QueryResult<Vec<String>> {
    let (sql, binds) = page_statement(filter, Start::Newest, Limit::Fixed(51));
    match conn {
        DbConnection::Sqlite(c) => Ok(bound(&format!("EXPLAIN QUERY PLAN {sql}"), &binds)
            .load::<SqlitePlanLine>(c)?
            .into_iter()
            .map(|l| l.detail)
            .collect()),
        DbConnection::Postgres(c) => {
            use diesel::connection::SimpleConnection;
            // A statement prepared by name and explained with its generic plan forced: the
            // plan does not depend on the values, so each is NULL.
            let values = vec!["NULL"; binds.len()].join(", ");
            let execute = if binds.is_empty() {
                "EXECUTE herald_explain".to_owned()
            } else {
                format!("EXECUTE herald_explain({values})")
            };
            c.batch_execute(&format!("PREPARE herald_explain AS {sql}"))?;
            let plan = c.transaction(|c| {
                c.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")?;
                diesel::sql_query(format!("EXPLAIN {execute}")).load::<PgPlanLine>(c)
            });
            c.batch_execute("DEALLOCATE herald_explain")?;
            Ok(plan?.into_iter().map(|l| l.line).collect())
        }
    }
}

/// The most broadcasts or templates the filter form lists (a filter by address takes any).
pub const CHOICES: i64 = 200;

/// Something to choose in the filter form: its id, public id and name.
pub type Choice = (i64, String, String);

/// What the filter form offers, as [`choices`] reads it.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// Every channel, in the order of `channels::list` (enabled first, by kind and name).
    pub channels: Vec<Choice>,
    /// The newest broadcasts first.
    pub broadcasts: Vec<Choice>,
    /// Templates by name, then language; the name says the language.
    pub templates: Vec<Choice>,
}

#[derive(QueryableByName)]
struct ChoiceRow {
    /// 0 a channel, 1 a broadcast, 2 a template.
    #[diesel(sql_type = BigInt)]
    list: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    public_id: String,
    #[diesel(sql_type = Text)]
    name: String,
}

/// The filter form's choices in one statement (one round trip, where three lists were three):
/// every channel, the newest broadcasts and the templates by name (at most [`CHOICES`] of
/// each). Each list's order is written as sort keys `k1`-`k3` (a channel's as in
/// `channels::list`, a broadcast's id backwards, a template's name and language), which the
/// outer `ORDER BY` follows (a `UNION ALL` alone promises no order); `row_number()` instead
/// doubled the statement's time on SQLite.
pub fn choices(conn: &mut DbConnection) -> QueryResult<Choices> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT list, id, public_id, name FROM ( \
         SELECT CAST(0 AS BIGINT) AS list, CASE WHEN disabled_at IS NULL THEN 0 ELSE 1 END AS k1, \
                kind AS k2, name AS k3, id, public_id, name FROM channels \
         UNION ALL SELECT 1, -id, '', '', id, public_id, name FROM ( \
           SELECT id, public_id, name FROM broadcasts ORDER BY id DESC LIMIT {CHOICES}) b \
         UNION ALL SELECT 2, 0, name, language, id, public_id, name || ' (' || language || ')' FROM ( \
           SELECT id, public_id, name, language FROM templates ORDER BY name, language LIMIT {CHOICES}) t \
         ) lists ORDER BY list, k1, k2, k3"
        )
    });
    let rows: Vec<ChoiceRow> = super::on_backend!(conn, |c| fixed(&SQL).load::<ChoiceRow>(c))?;
    let mut out = Choices::default();
    for r in rows {
        let list = match r.list {
            0 => &mut out.channels,
            1 => &mut out.broadcasts,
            _ => &mut out.templates,
        };
        list.push((r.id, r.public_id, r.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_combination_has_one_statement_text() {
        let a = HistoryFilter {
            channel_id: Some(1),
            statuses: vec!["failed".into()],
            ..HistoryFilter::default()
        };
        let b = HistoryFilter {
            channel_id: Some(2),
            statuses: vec!["sent".into()],
            ..HistoryFilter::default()
        };
        // Different values, same text: one prepared statement per combination.
        for limit in [Limit::Fixed(51), Limit::Bound(51)] {
            assert_eq!(
                page_statement(&a, Start::Newest, limit).0,
                page_statement(&b, Start::Newest, limit).0
            );
        }
        let (sql, binds) = page_statement(&a, Start::Newest, Limit::Bound(51));
        assert_eq!(binds.len(), 3);
        assert!(sql.contains("m.channel_id = $1 AND m.status = $2"), "{sql}");
        assert!(
            sql.ends_with("ORDER BY m.created_at DESC, m.id DESC LIMIT $3"),
            "{sql}"
        );
        // A caller's fixed size is part of the text (one plan kept on PostgreSQL).
        let (sql, binds) = page_statement(&a, Start::Newest, Limit::Fixed(51));
        assert_eq!(binds.len(), 2);
        assert!(sql.ends_with("m.id DESC LIMIT 51"), "{sql}");
    }

    #[test]
    fn sources_other_than_broadcasts_repeat_the_partial_index_predicate() {
        let api = HistoryFilter {
            source: Some(MessageSource::Api),
            ..HistoryFilter::default()
        };
        assert!(
            page_statement(&api, Start::Newest, Limit::Fixed(51))
                .0
                .contains("m.source <> 'broadcast'")
        );
        let broadcast = HistoryFilter {
            source: Some(MessageSource::Broadcast),
            ..HistoryFilter::default()
        };
        assert!(
            !page_statement(&broadcast, Start::Newest, Limit::Fixed(51))
                .0
                .contains("<> 'broadcast'")
        );
    }

    #[test]
    fn fingerprints_differ_with_any_field() {
        let base = HistoryFilter::default();
        let variants = [
            HistoryFilter {
                channel_id: Some(1),
                ..base.clone()
            },
            HistoryFilter {
                contact_id: Some(1),
                ..base.clone()
            },
            HistoryFilter {
                error_code: Some("131026".into()),
                ..base.clone()
            },
            HistoryFilter {
                source: Some(MessageSource::Person),
                ..base.clone()
            },
        ];
        for v in &variants {
            assert_ne!(v.fingerprint(), base.fingerprint(), "{v:?}");
        }
    }
}
