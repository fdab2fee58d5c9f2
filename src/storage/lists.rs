//! Contact lists: named groups of contacts, for filtering, exports and broadcast audiences.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{list_members, lists};
use super::{DbConnection, new_public_id, now, on_backend};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = lists)]
pub struct List {
    pub id: i64,
    pub public_id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A list with how many contacts it holds.
#[derive(Debug, Clone)]
pub struct ListCount {
    pub list: List,
    pub members: i64,
}

pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<List>> {
    lists::table
        .select(List::as_select())
        .order(lists::name)
        .load(conn)
}

pub fn all_with_counts(conn: &mut DbConnection) -> QueryResult<Vec<ListCount>> {
    let rows: Vec<(List, i64)> = lists::table
        .left_join(list_members::table)
        .group_by(lists::id)
        .select((
            List::as_select(),
            diesel::dsl::count(list_members::contact_id.nullable()),
        ))
        .order(lists::name)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(list, members)| ListCount { list, members })
        .collect())
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<List>> {
    lists::table
        .find(id)
        .select(List::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<List>> {
    lists::table
        .filter(lists::public_id.eq(public_id))
        .select(List::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<List>> {
    lists::table
        .filter(lists::name.eq(name))
        .select(List::as_select())
        .first(conn)
        .optional()
}

pub fn create(conn: &mut DbConnection, name: &str) -> QueryResult<List> {
    let at = now();
    let id: i64 = diesel::insert_into(lists::table)
        .values((
            lists::public_id.eq(new_public_id()),
            lists::name.eq(name),
            lists::created_at.eq(at),
            lists::updated_at.eq(at),
        ))
        .returning(lists::id)
        .get_result(conn)?;
    find(conn, id)?.ok_or(diesel::result::Error::NotFound)
}

/// The list with this name, created when missing (imports into "a new list" by name).
pub fn find_or_create(conn: &mut DbConnection, name: &str) -> QueryResult<List> {
    if let Some(l) = find_by_name(conn, name)? {
        return Ok(l);
    }
    match crate::storage::write_transaction(conn, |c| create(c, name)) {
        Ok(l) => Ok(l),
        Err(e) if super::is_unique_violation(&e) => {
            find_by_name(conn, name)?.ok_or(diesel::result::Error::NotFound)
        }
        Err(e) => Err(e),
    }
}

pub fn rename(conn: &mut DbConnection, id: i64, name: &str) -> QueryResult<usize> {
    diesel::update(lists::table.find(id))
        .set((lists::name.eq(name), lists::updated_at.eq(now())))
        .execute(conn)
}

/// Deletes the list; its contacts stay.
pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(lists::table.find(id)).execute(conn)
}

/// Adds contacts to a list; those already in it are left alone. Returns how many were added.
pub fn add_members(
    conn: &mut DbConnection,
    list_id: i64,
    contact_ids: &[i64],
) -> QueryResult<usize> {
    let at = now();
    let mut added = 0;
    for chunk in contact_ids.chunks(300) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|id| {
                (
                    list_members::list_id.eq(list_id),
                    list_members::contact_id.eq(*id),
                    list_members::added_at.eq(at),
                )
            })
            .collect();
        added += on_backend!(conn, |c| diesel::insert_into(list_members::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    Ok(added)
}

pub fn remove_members(
    conn: &mut DbConnection,
    list_id: i64,
    contact_ids: &[i64],
) -> QueryResult<usize> {
    let mut removed = 0;
    for chunk in contact_ids.chunks(500) {
        removed += diesel::delete(
            list_members::table
                .filter(list_members::list_id.eq(list_id))
                .filter(list_members::contact_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}

/// The lists a contact belongs to.
pub fn of_contact(conn: &mut DbConnection, contact_id: i64) -> QueryResult<Vec<List>> {
    lists::table
        .inner_join(list_members::table)
        .filter(list_members::contact_id.eq(contact_id))
        .select(List::as_select())
        .order(lists::name)
        .load(conn)
}
