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

/// A page of entries, newest first, older than `before` (an entry id) when given.
pub fn page(
    conn: &mut DbConnection,
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
    query.load(conn)
}
