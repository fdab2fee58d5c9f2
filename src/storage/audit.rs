//! The audit log: who did what to which thing, and when.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_log;
use super::{DbConnection, now};
use crate::domain::audit::{Actor, ActorKind};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_label: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: Option<String>,
    pub details: String,
}

impl AuditEntry {
    pub fn actor_kind(&self) -> ActorKind {
        ActorKind::parse(&self.actor_kind)
    }
}

pub fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    action: &str,
    subject_kind: &str,
    subject_id: Option<&str>,
    details: serde_json::Value,
) -> QueryResult<usize> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::occurred_at.eq(now()),
            audit_log::actor_kind.eq(actor.kind.as_str()),
            audit_log::actor_id.eq(actor.id),
            audit_log::actor_label.eq(&actor.label),
            audit_log::action.eq(action),
            audit_log::subject_kind.eq(subject_kind),
            audit_log::subject_id.eq(subject_id),
            audit_log::details.eq(details.to_string()),
        ))
        .execute(conn)
}

/// Which entries a page of the log shows; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `(actor_kind, actor_id)`: one person or API key, or every system entry (id `None`).
    pub actor: Option<(String, Option<i64>)>,
    pub action: Option<String>,
    /// From this time (inclusive) to `until` (exclusive).
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// A page of entries, newest first, older than `before` (an entry id) when given.
pub fn page(
    conn: &mut DbConnection,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEntry>> {
    page_matching(conn, &AuditFilter::default(), before, limit)
}

/// A page of the entries `filter` matches, newest first, older than `before` when given.
pub fn page_matching(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEntry>> {
    let mut query = audit_log::table
        .select(AuditEntry::as_select())
        .order(audit_log::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(audit_log::id.lt(before));
    }
    if let Some((kind, id)) = &filter.actor {
        query = query.filter(audit_log::actor_kind.eq(kind.clone()));
        query = match id {
            Some(id) => query.filter(audit_log::actor_id.eq(*id)),
            None => query.filter(audit_log::actor_id.is_null()),
        };
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_log::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_log::occurred_at.lt(until));
    }
    query.load(conn)
}

/// Every action the log holds, for the filter.
pub fn actions(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    audit_log::table
        .select(audit_log::action)
        .distinct()
        .order(audit_log::action)
        .load(conn)
}

/// Everyone who appears in the log: `(kind, id, a label they were recorded with)`, for the
/// filter.
pub fn actors(conn: &mut DbConnection) -> QueryResult<Vec<(String, Option<i64>, String)>> {
    let rows: Vec<(String, Option<i64>, String)> = audit_log::table
        .select((
            audit_log::actor_kind,
            audit_log::actor_id,
            audit_log::actor_label,
        ))
        .distinct()
        .load(conn)?;
    let mut out: Vec<(String, Option<i64>, String)> = Vec::new();
    for (kind, id, label) in rows {
        if !out.iter().any(|(k, i, _)| *k == kind && *i == id) {
            out.push((kind, id, label));
        }
    }
    out.sort_by_key(|a| a.2.to_lowercase());
    Ok(out)
}

/// What the entries name, by kind: `(kind, id) -> name`. Users are named by their internal
/// id, everything else by its public id; deleted things are simply missing.
pub fn names(
    conn: &mut DbConnection,
    refs: &[(String, String)],
) -> QueryResult<std::collections::HashMap<(String, String), String>> {
    use super::schema::{api_keys, channels, contacts, imports, lists, templates, users};
    let mut out = std::collections::HashMap::new();
    let ids = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = refs
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut put = |kind: &str, rows: Vec<(String, String)>| {
        for (id, name) in rows {
            out.insert((kind.to_owned(), id), name);
        }
    };
    let user_ids: Vec<i64> = ids("user").iter().filter_map(|i| i.parse().ok()).collect();
    if !user_ids.is_empty() {
        let rows: Vec<(i64, String)> = users::table
            .filter(users::id.eq_any(&user_ids))
            .select((users::id, users::name))
            .load(conn)?;
        put(
            "user",
            rows.into_iter().map(|(i, n)| (i.to_string(), n)).collect(),
        );
    }
    macro_rules! by_public_id {
        ($kind:literal, $table:ident, $name:expr) => {{
            let wanted = ids($kind);
            if !wanted.is_empty() {
                let rows: Vec<(String, String)> = $table::table
                    .filter($table::public_id.eq_any(&wanted))
                    .select(($table::public_id, $name))
                    .load(conn)?;
                put($kind, rows);
            }
        }};
    }
    by_public_id!("channel", channels, channels::name);
    by_public_id!("list", lists, lists::name);
    by_public_id!("template", templates, templates::name);
    by_public_id!("api_key", api_keys, api_keys::name);
    by_public_id!("import", imports, imports::file_name);
    {
        let wanted = ids("contact");
        if !wanted.is_empty() {
            let rows: Vec<(String, String, String)> = contacts::table
                .filter(contacts::public_id.eq_any(&wanted))
                .select((contacts::public_id, contacts::name, contacts::phone))
                .load(conn)?;
            put(
                "contact",
                rows.into_iter()
                    .map(|(id, name, phone)| (id, if name.is_empty() { phone } else { name }))
                    .collect(),
            );
        }
    }
    Ok(out)
}
