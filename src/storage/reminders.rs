//! Issue 20: reminder rules and their due reminders (`reminder_rules`, `reminders`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{contacts, messages, reminder_rules, reminders};
use super::{DbConnection, new_public_id, now};

/// A stored rule; `variables` is a JSON `VariableMapping`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reminder_rules)]
pub struct RuleRow {
    pub id: i64,
    pub public_id: String,
    pub name: String,
    pub channel_id: i64,
    pub template_id: Option<i64>,
    pub text: Option<String>,
    pub variables: String,
    pub attribute: String,
    pub offset_minutes: Option<i32>,
    pub at_time: Option<String>,
    pub day_offset: i32,
    pub time_zone: String,
    pub grace_minutes: i32,
    pub enabled: i32,
    pub scanned_at: Option<NaiveDateTime>,
    pub scanned_id: i64,
    pub created_by_label: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// What a rule is made of (a new one, or its new state). Writing it starts the scan of the
/// contacts again, so every pending reminder is worked out anew.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = reminder_rules, treat_none_as_null = true)]
pub struct RuleFields {
    pub name: String,
    pub channel_id: i64,
    pub template_id: Option<i64>,
    pub text: Option<String>,
    pub variables: String,
    pub attribute: String,
    pub offset_minutes: Option<i32>,
    pub at_time: Option<String>,
    pub day_offset: i32,
    pub time_zone: String,
    pub grace_minutes: i32,
    pub enabled: i32,
    pub scanned_at: Option<NaiveDateTime>,
    pub scanned_id: i64,
    pub updated_at: NaiveDateTime,
}

pub fn insert(conn: &mut DbConnection, f: &RuleFields, created_by: &str) -> QueryResult<RuleRow> {
    super::on_backend!(conn, |c| diesel::insert_into(reminder_rules::table)
        .values((
            reminder_rules::public_id.eq(new_public_id()),
            reminder_rules::created_by_label.eq(created_by),
            reminder_rules::created_at.eq(f.updated_at),
            f,
        ))
        .returning(RuleRow::as_returning())
        .get_result(c))
}

pub fn update(conn: &mut DbConnection, id: i64, f: &RuleFields) -> QueryResult<usize> {
    diesel::update(reminder_rules::table.find(id))
        .set(f)
        .execute(conn)
}

pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(reminders::table.filter(reminders::rule_id.eq(id))).execute(conn)?;
    diesel::delete(reminder_rules::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<RuleRow>> {
    reminder_rules::table
        .find(id)
        .select(RuleRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<RuleRow>> {
    reminder_rules::table
        .filter(reminder_rules::public_id.eq(public_id))
        .select(RuleRow::as_select())
        .first(conn)
        .optional()
}

/// Another rule with this name (names compare without case).
pub fn name_taken(conn: &mut DbConnection, name: &str, except: Option<i64>) -> QueryResult<bool> {
    let lower = name.trim().to_lowercase();
    let rows: Vec<(i64, String)> = reminder_rules::table
        .select((reminder_rules::id, reminder_rules::name))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .any(|(id, n)| Some(id) != except && n.trim().to_lowercase() == lower))
}

/// A page of rules by id, after the cursor `after` (a row id).
pub fn page(conn: &mut DbConnection, after: Option<i64>, limit: i64) -> QueryResult<Vec<RuleRow>> {
    let mut q = reminder_rules::table
        .order(reminder_rules::id.asc())
        .select(RuleRow::as_select())
        .limit(limit)
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(reminder_rules::id.gt(a));
    }
    q.load(conn)
}

pub fn enabled(conn: &mut DbConnection) -> QueryResult<Vec<RuleRow>> {
    reminder_rules::table
        .filter(reminder_rules::enabled.ne(0))
        .order(reminder_rules::id.asc())
        .select(RuleRow::as_select())
        .load(conn)
}

/// Contacts changed since the rule's scan mark, in (updated_at, id) order:
/// (id, updated_at, time_zone, phone, attributes JSON).
pub type ChangedContact = (i64, NaiveDateTime, String, String, String);

pub fn changed_contacts(
    conn: &mut DbConnection,
    rule: &RuleRow,
    limit: i64,
) -> QueryResult<Vec<ChangedContact>> {
    let mut q = contacts::table
        .order((contacts::updated_at.asc(), contacts::id.asc()))
        .select((
            contacts::id,
            contacts::updated_at,
            contacts::time_zone,
            contacts::phone,
            contacts::attributes,
        ))
        .limit(limit)
        .into_boxed();
    if let Some(at) = rule.scanned_at {
        q = q.filter(
            contacts::updated_at.gt(at).or(contacts::updated_at
                .eq(at)
                .and(contacts::id.gt(rule.scanned_id))),
        );
    }
    q.load(conn)
}

/// Moves a rule's scan mark forward (never back: another worker may be further on).
pub fn mark_scanned(
    conn: &mut DbConnection,
    rule_id: i64,
    at: NaiveDateTime,
    id: i64,
) -> QueryResult<usize> {
    diesel::update(
        reminder_rules::table.find(rule_id).filter(
            reminder_rules::scanned_at
                .is_null()
                .or(reminder_rules::scanned_at.lt(at))
                .or(reminder_rules::scanned_at
                    .eq(at)
                    .and(reminder_rules::scanned_id.lt(id))),
        ),
    )
    .set((
        reminder_rules::scanned_at.eq(Some(at)),
        reminder_rules::scanned_id.eq(id),
    ))
    .execute(conn)
}

/// A due reminder.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reminders)]
pub struct ReminderRow {
    pub id: i64,
    pub rule_id: i64,
    pub contact_id: i64,
    pub attribute_value: String,
    pub due_at: Option<NaiveDateTime>,
    pub state: String,
    pub reason: Option<String>,
    pub message_id: Option<i64>,
    pub updated_at: NaiveDateTime,
}

/// Cancels a contact's pending reminders of a rule for any other value of the attribute (the
/// date moved or was cleared).
pub fn cancel_other_values(
    conn: &mut DbConnection,
    rule_id: i64,
    contact_id: i64,
    keep: Option<&str>,
    reason: &str,
) -> QueryResult<usize> {
    let q = reminders::table
        .filter(reminders::rule_id.eq(rule_id))
        .filter(reminders::contact_id.eq(contact_id))
        .filter(reminders::state.eq("pending"));
    let set = (
        reminders::state.eq("cancelled"),
        reminders::reason.eq(Some(reason)),
        reminders::updated_at.eq(now()),
    );
    match keep {
        Some(v) => diesel::update(q.filter(reminders::attribute_value.ne(v)))
            .set(set)
            .execute(conn),
        None => diesel::update(q).set(set).execute(conn),
    }
}

pub fn find_for_value(
    conn: &mut DbConnection,
    rule_id: i64,
    contact_id: i64,
    value: &str,
) -> QueryResult<Option<ReminderRow>> {
    reminders::table
        .filter(reminders::rule_id.eq(rule_id))
        .filter(reminders::contact_id.eq(contact_id))
        .filter(reminders::attribute_value.eq(value))
        .select(ReminderRow::as_select())
        .first(conn)
        .optional()
}

/// Records a reminder for a value, unless one is there already (another worker, or before).
pub fn insert_reminder(
    conn: &mut DbConnection,
    rule_id: i64,
    contact_id: i64,
    value: &str,
    due_at: Option<NaiveDateTime>,
    state: &str,
    reason: Option<&str>,
) -> QueryResult<usize> {
    super::on_backend!(conn, |c| diesel::insert_into(reminders::table)
        .values((
            reminders::rule_id.eq(rule_id),
            reminders::contact_id.eq(contact_id),
            reminders::attribute_value.eq(value),
            reminders::due_at.eq(due_at),
            reminders::state.eq(state),
            reminders::reason.eq(reason),
            reminders::updated_at.eq(now()),
        ))
        .on_conflict_do_nothing()
        .execute(c))
}

/// Moves a still pending reminder to a new due time (the rule changed).
pub fn reschedule(conn: &mut DbConnection, id: i64, due_at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        reminders::table
            .find(id)
            .filter(reminders::state.eq("pending")),
    )
    .set((
        reminders::due_at.eq(Some(due_at)),
        reminders::updated_at.eq(now()),
    ))
    .execute(conn)
}

/// Pending reminders whose time has come, oldest first.
pub fn due(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<ReminderRow>> {
    reminders::table
        .filter(reminders::state.eq("pending"))
        .filter(reminders::due_at.le(at))
        .order(reminders::due_at.asc())
        .select(ReminderRow::as_select())
        .limit(limit)
        .load(conn)
}

/// Moves a reminder out of `pending` if it still is; false when another worker took it.
/// On PostgreSQL a second worker's update waits for the first's transaction, then finds the
/// row no longer pending.
pub fn settle(
    conn: &mut DbConnection,
    id: i64,
    state: &str,
    reason: Option<&str>,
    message_id: Option<i64>,
) -> QueryResult<bool> {
    let n = diesel::update(
        reminders::table
            .find(id)
            .filter(reminders::state.eq("pending")),
    )
    .set((
        reminders::state.eq(state),
        reminders::reason.eq(reason),
        reminders::message_id.eq(message_id),
        reminders::updated_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn set_message(conn: &mut DbConnection, id: i64, message_id: i64) -> QueryResult<usize> {
    diesel::update(reminders::table.find(id))
        .set(reminders::message_id.eq(Some(message_id)))
        .execute(conn)
}

/// A reminder as a rule's page lists it: the row, the contact's public id and name or phone,
/// and its message's public id.
pub type ReminderLine = (ReminderRow, String, String, Option<String>);

/// A page of a rule's reminders: the pending ones soonest first, or the others newest first;
/// after the reminder `after` (in that order) when given, from the start when that reminder
/// is no longer there.
fn lines(
    conn: &mut DbConnection,
    rule_id: i64,
    pending: bool,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ReminderLine>> {
    let start: Option<(i64, Option<NaiveDateTime>, NaiveDateTime)> = match after {
        Some(id) => reminders::table
            .find(id)
            .filter(reminders::rule_id.eq(rule_id))
            .select((reminders::id, reminders::due_at, reminders::updated_at))
            .first(conn)
            .optional()?,
        None => None,
    };
    let base = reminders::table
        .inner_join(contacts::table)
        .left_join(messages::table.on(reminders::message_id.eq(messages::id.nullable())))
        .filter(reminders::rule_id.eq(rule_id))
        .select((
            ReminderRow::as_select(),
            contacts::public_id,
            contacts::phone,
            messages::public_id.nullable(),
        ))
        .limit(limit)
        .into_boxed();
    if pending {
        let mut q = base.filter(reminders::state.eq("pending"));
        if let Some((id, Some(due), _)) = start {
            q = q.filter(
                reminders::due_at
                    .gt(due)
                    .or(reminders::due_at.eq(due).and(reminders::id.gt(id))),
            );
        }
        q.order((reminders::due_at.asc(), reminders::id.asc()))
            .load(conn)
    } else {
        let mut q = base.filter(reminders::state.ne("pending"));
        if let Some((id, _, updated)) = start {
            q = q.filter(
                reminders::updated_at
                    .lt(updated)
                    .or(reminders::updated_at.eq(updated).and(reminders::id.lt(id))),
            );
        }
        q.order((reminders::updated_at.desc(), reminders::id.desc()))
            .load(conn)
    }
}

/// What is due next, soonest first, `limit` after the reminder `after`.
pub fn upcoming(
    conn: &mut DbConnection,
    rule_id: i64,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ReminderLine>> {
    lines(conn, rule_id, true, after, limit)
}

/// What happened (sent, skipped, cancelled), newest first, `limit` after the reminder `after`.
pub fn recent(
    conn: &mut DbConnection,
    rule_id: i64,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ReminderLine>> {
    lines(conn, rule_id, false, after, limit)
}

/// Sets a taken reminder's final state and reason (a send the policy refused).
pub fn mark(conn: &mut DbConnection, id: i64, state: &str, reason: &str) -> QueryResult<usize> {
    diesel::update(reminders::table.find(id))
        .set((
            reminders::state.eq(state),
            reminders::reason.eq(Some(reason)),
            reminders::updated_at.eq(now()),
        ))
        .execute(conn)
}

/// How many reminders each of these rules has pending (rules with none are left out).
pub fn pending_counts(conn: &mut DbConnection, rule_ids: &[i64]) -> QueryResult<Vec<(i64, i64)>> {
    reminders::table
        .filter(reminders::rule_id.eq_any(rule_ids))
        .filter(reminders::state.eq("pending"))
        .group_by(reminders::rule_id)
        .select((reminders::rule_id, diesel::dsl::count_star()))
        .load(conn)
}
