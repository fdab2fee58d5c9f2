//! Contacts: one per phone number, with fields, free-form attributes, and search with keyset
//! pagination that stays fast at a million rows.

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::schema::{attribute_keys, contact_consents, contacts, list_members};
use super::{DbConnection, new_public_id, now, on_backend};
use crate::domain::channel::ChannelKind;
use crate::domain::contact::{
    Attributes, attributes_from_json, attributes_to_json, fold_for_search, search_text,
};
use crate::domain::phone::E164;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = contacts)]
struct ContactRow {
    id: i64,
    public_id: String,
    phone: String,
    name: String,
    email: String,
    language: String,
    time_zone: String,
    attributes: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: i64,
    pub public_id: String,
    pub phone: E164,
    pub name: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
    pub attributes: Attributes,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl From<ContactRow> for Contact {
    fn from(r: ContactRow) -> Self {
        Contact {
            id: r.id,
            public_id: r.public_id,
            phone: E164::from_trusted(r.phone),
            name: r.name,
            email: r.email,
            language: r.language,
            time_zone: r.time_zone,
            attributes: attributes_from_json(&r.attributes),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl Contact {
    /// The name, or the phone number for contacts without one.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.phone.as_str()
        } else {
            &self.name
        }
    }

    /// What search finds the contact by besides its phone number (`contacts.search_text`).
    pub fn search_text(&self) -> String {
        search_text(&self.name, &self.email, self.attributes.values())
    }

    /// A field or attribute by name, for template variables and exports.
    pub fn value_of(&self, key: &str) -> Option<String> {
        match key {
            "phone" => Some(self.phone.to_string()),
            "name" => Some(self.name.clone()),
            "first_name" if !self.attributes.contains_key("first_name") => {
                self.name.split_whitespace().next().map(str::to_owned)
            }
            "email" => Some(self.email.clone()),
            "language" => Some(self.language.clone()),
            "time_zone" => Some(self.time_zone.clone()),
            other => self.attributes.get(other).cloned(),
        }
        .filter(|v| !v.is_empty())
    }
}

/// Changes to a contact; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub time_zone: Option<String>,
    /// Attributes to add or overwrite (an empty value removes the attribute).
    pub attributes: Attributes,
    /// Replace all attributes with `attributes` instead of merging.
    pub replace_attributes: bool,
}

impl ContactPatch {
    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.email.is_none()
            && self.language.is_none()
            && self.time_zone.is_none()
            && self.attributes.is_empty()
            && !self.replace_attributes
    }

    fn apply(&self, contact: &mut Contact) {
        if let Some(v) = &self.name {
            contact.name.clone_from(v);
        }
        if let Some(v) = &self.email {
            contact.email.clone_from(v);
        }
        if let Some(v) = &self.language {
            contact.language.clone_from(v);
        }
        if let Some(v) = &self.time_zone {
            contact.time_zone.clone_from(v);
        }
        if self.replace_attributes {
            contact.attributes.clear();
        }
        for (k, v) in &self.attributes {
            if v.is_empty() {
                contact.attributes.remove(k);
            } else {
                contact.attributes.insert(k.clone(), v.clone());
            }
        }
    }
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Contact>> {
    Ok(contacts::table
        .find(id)
        .select(ContactRow::as_select())
        .first(conn)
        .optional()?
        .map(Contact::from))
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<Contact>> {
    Ok(contacts::table
        .filter(contacts::public_id.eq(public_id))
        .select(ContactRow::as_select())
        .first(conn)
        .optional()?
        .map(Contact::from))
}

/// Internal ids of the contacts with these public ids (unknown ones are left out).
pub fn ids_by_public_ids(
    conn: &mut DbConnection,
    public_ids: &[String],
) -> QueryResult<Vec<(i64, String)>> {
    contacts::table
        .filter(contacts::public_id.eq_any(public_ids))
        .select((contacts::id, contacts::public_id))
        .load(conn)
}

pub fn find_by_phone(conn: &mut DbConnection, phone: &E164) -> QueryResult<Option<Contact>> {
    Ok(contacts::table
        .filter(contacts::phone.eq(phone.as_str()))
        .select(ContactRow::as_select())
        .first(conn)
        .optional()?
        .map(Contact::from))
}

/// Records attribute names in use (for exports, filters and import mappings).
pub fn register_attribute_keys<'a>(
    conn: &mut DbConnection,
    keys: impl IntoIterator<Item = &'a String>,
) -> QueryResult<()> {
    let mut keys = keys.into_iter().peekable();
    // None (most sends): no savepoint either, which is two statements on PostgreSQL.
    if keys.peek().is_none() {
        return Ok(());
    }
    let at = now();
    // One transaction: one turn at SQLite's write lock, not one per key.
    crate::storage::write_transaction(conn, |conn| {
        for key in keys {
            on_backend!(conn, |c| diesel::insert_into(attribute_keys::table)
                .values((
                    attribute_keys::key.eq(key),
                    attribute_keys::created_at.eq(at)
                ))
                .on_conflict_do_nothing()
                .execute(c))?;
        }
        Ok(())
    })
}

pub fn attribute_keys(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    attribute_keys::table
        .select(attribute_keys::key)
        .order(attribute_keys::key)
        .load(conn)
}

/// A contact for this number with the patch applied, as it would be stored (no id yet).
fn new_contact(phone: &E164, patch: &ContactPatch) -> Contact {
    let at = now();
    let mut contact = Contact {
        id: 0,
        public_id: new_public_id(),
        phone: phone.clone(),
        name: String::new(),
        email: String::new(),
        language: String::new(),
        time_zone: String::new(),
        attributes: Attributes::new(),
        created_at: at,
        updated_at: at,
    };
    patch.apply(&mut contact);
    contact
}

/// Inserts the contact unless one has this number already (`None` then): one statement, and
/// no unique violation to abort an outer transaction on PostgreSQL, so no savepoint.
fn insert_new(
    conn: &mut DbConnection,
    phone: &E164,
    patch: &ContactPatch,
) -> QueryResult<Option<Contact>> {
    let mut contact = new_contact(phone, patch);
    let values = (
        contacts::public_id.eq(&contact.public_id),
        contacts::phone.eq(contact.phone.as_str()),
        contacts::name.eq(&contact.name),
        contacts::email.eq(&contact.email),
        contacts::language.eq(&contact.language),
        contacts::time_zone.eq(&contact.time_zone),
        contacts::attributes.eq(attributes_to_json(&contact.attributes)),
        contacts::created_at.eq(contact.created_at),
        contacts::updated_at.eq(contact.updated_at),
        contacts::search_text.eq(Some(contact.search_text())),
    );
    let id: Option<i64> = super::on_backend!(conn, |c| diesel::insert_into(contacts::table)
        .values(values)
        .on_conflict(contacts::phone)
        .do_nothing()
        .returning(contacts::id)
        .get_result(c)
        .optional())?;
    let Some(id) = id else {
        return Ok(None);
    };
    contact.id = id;
    register_attribute_keys(conn, contact.attributes.keys())?;
    Ok(Some(contact))
}

/// Applies a patch to an existing contact and returns it as stored.
pub fn update(
    conn: &mut DbConnection,
    mut contact: Contact,
    patch: &ContactPatch,
) -> QueryResult<Contact> {
    patch.apply(&mut contact);
    contact.updated_at = now();
    diesel::update(contacts::table.find(contact.id))
        .set((
            contacts::name.eq(&contact.name),
            contacts::email.eq(&contact.email),
            contacts::language.eq(&contact.language),
            contacts::time_zone.eq(&contact.time_zone),
            contacts::attributes.eq(attributes_to_json(&contact.attributes)),
            contacts::updated_at.eq(contact.updated_at),
            contacts::search_text.eq(Some(contact.search_text())),
        ))
        .execute(conn)?;
    register_attribute_keys(
        conn,
        patch
            .attributes
            .keys()
            .filter(|k| !patch.attributes[*k].is_empty()),
    )?;
    Ok(contact)
}

/// Creates the contact for this phone number, or updates the one that has it. True when created.
/// Two callers racing for the same new number both succeed: the loser updates.
pub fn upsert(
    conn: &mut DbConnection,
    phone: &E164,
    patch: &ContactPatch,
) -> QueryResult<(Contact, bool)> {
    if let Some(done) = upsert_in_one(conn, phone, patch)? {
        return Ok(done);
    }
    if let Some(existing) = find_by_phone(conn, phone)? {
        // Nothing to change (a send to a known number): no write.
        if patch.is_empty() {
            return Ok((existing, false));
        }
        return Ok((update(conn, existing, patch)?, false));
    }
    match insert_new(conn, phone, patch)? {
        Some(c) => Ok((c, true)),
        // Another writer stored this number since the look-up.
        None => {
            let existing = find_by_phone(conn, phone)?.ok_or(diesel::result::Error::NotFound)?;
            Ok((update(conn, existing, patch)?, false))
        }
    }
}

/// PostgreSQL: the insert of a new number and the look-up of a known one in one statement (one
/// round trip, where a new number took two): the inserted row's id, or the stored row.
const UPSERT_PG: &str = "WITH new AS (\
    INSERT INTO contacts (public_id, phone, name, email, language, time_zone, attributes, \
      created_at, updated_at, search_text) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (phone) DO NOTHING RETURNING id) \
  SELECT id, TRUE AS created, NULL::text AS public_id, NULL::text AS phone, NULL::text AS name, \
    NULL::text AS email, NULL::text AS language, NULL::text AS time_zone, \
    NULL::text AS attributes, NULL::timestamp AS created_at, NULL::timestamp AS updated_at \
    FROM new \
  UNION ALL \
  SELECT id, FALSE, public_id, phone, name, email, language, time_zone, attributes, \
    created_at, updated_at FROM contacts WHERE phone = $2 AND NOT EXISTS (SELECT 1 FROM new)";

/// A row of [`UPSERT_PG`]: only the id when `created`.
#[derive(QueryableByName)]
struct Upserted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    created: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    public_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    phone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    language: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    attributes: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    created_at: Option<NaiveDateTime>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    updated_at: Option<NaiveDateTime>,
}

/// [`upsert`] on PostgreSQL in one statement (two when a known number's contact is patched).
/// `None` on SQLite (in-process, where two statements cost little), and when it found nothing: another writer stored the number after the statement began
/// (the insert waited for it and did nothing, and the look-up's snapshot is older), which the
/// caller's look-up then finds.
fn upsert_in_one(
    conn: &mut DbConnection,
    phone: &E164,
    patch: &ContactPatch,
) -> QueryResult<Option<(Contact, bool)>> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(None);
    };
    let mut contact = new_contact(phone, patch);
    let row: Option<Upserted> = super::prepared::fixed(UPSERT_PG)
        .bind::<Text, _>(&contact.public_id)
        .bind::<Text, _>(contact.phone.as_str())
        .bind::<Text, _>(&contact.name)
        .bind::<Text, _>(&contact.email)
        .bind::<Text, _>(&contact.language)
        .bind::<Text, _>(&contact.time_zone)
        .bind::<Text, _>(attributes_to_json(&contact.attributes))
        .bind::<diesel::sql_types::Timestamp, _>(contact.created_at)
        .bind::<diesel::sql_types::Timestamp, _>(contact.updated_at)
        .bind::<diesel::sql_types::Nullable<Text>, _>(Some(contact.search_text()))
        .get_result(pg)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.created {
        contact.id = row.id;
        register_attribute_keys(conn, contact.attributes.keys())?;
        return Ok(Some((contact, true)));
    }
    let existing = Contact::from(ContactRow {
        id: row.id,
        public_id: row.public_id.unwrap_or_default(),
        phone: row.phone.unwrap_or_default(),
        name: row.name.unwrap_or_default(),
        email: row.email.unwrap_or_default(),
        language: row.language.unwrap_or_default(),
        time_zone: row.time_zone.unwrap_or_default(),
        attributes: row.attributes.unwrap_or_default(),
        created_at: row.created_at.unwrap_or_default(),
        updated_at: row.updated_at.unwrap_or_default(),
    });
    if patch.is_empty() {
        return Ok(Some((existing, false)));
    }
    Ok(Some((update(conn, existing, patch)?, false)))
}

/// What the folded search text is made of, as stored.
type SearchSource = (i64, String, String, String);
const SEARCH_SOURCE: (
    contacts::id,
    contacts::name,
    contacts::email,
    contacts::attributes,
) = (
    contacts::id,
    contacts::name,
    contacts::email,
    contacts::attributes,
);

fn write_search_text(conn: &mut DbConnection, rows: Vec<SearchSource>) -> QueryResult<usize> {
    let n = rows.len();
    for (id, name, email, attributes) in rows {
        let text = search_text(&name, &email, attributes_from_json(&attributes).values());
        diesel::update(contacts::table.find(id))
            .set(contacts::search_text.eq(Some(text)))
            .execute(conn)?;
    }
    Ok(n)
}

/// Folds the search text of these contacts again from what is stored: after an import merged
/// names and attributes in SQL, which cannot fold accents.
pub fn refresh_search_text(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<()> {
    for chunk in ids.chunks(500) {
        let rows: Vec<SearchSource> = contacts::table
            .filter(contacts::id.eq_any(chunk))
            .select(SEARCH_SOURCE)
            .load(conn)?;
        write_search_text(conn, rows)?;
    }
    Ok(())
}

/// Gives contacts stored before the search column existed their folded text, a thousand per
/// transaction (so other writers get their turns); returns how many. The migration runner
/// calls it at every start: once they are done, the partial index on the NULLs is empty and
/// the check costs one look-up.
pub fn backfill_search_text(conn: &mut DbConnection) -> QueryResult<u64> {
    let mut done = 0;
    loop {
        let n = super::write_transaction(conn, |conn| {
            let rows: Vec<SearchSource> = contacts::table
                .filter(contacts::search_text.is_null())
                .order(contacts::id.asc())
                .select(SEARCH_SOURCE)
                .limit(1000)
                .load(conn)?;
            write_search_text(conn, rows)
        })?;
        if n == 0 {
            return Ok(done);
        }
        done += n as u64;
    }
}

/// Deletes contacts (with their list memberships, consent, windows and conversation).
pub fn delete(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        if let DbConnection::Postgres(pg) = conn {
            // Rows are locked in id order, as `lock_existing` locks them, so a deletion and a
            // bulk change over the same contacts wait for each other instead of deadlocking.
            contacts::table
                .filter(contacts::id.eq_any(chunk))
                .select(contacts::id)
                .order(contacts::id.asc())
                .for_update()
                .load::<i64>(pg)?;
        }
        n += diesel::delete(contacts::table.filter(contacts::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(n)
}

/// Those of these contacts that still exist, kept from deletion until the transaction ends
/// (before rows that reference them are written, e.g. list members). On PostgreSQL a contact
/// another transaction is deleting is waited for and left out once gone (a plain read would
/// still see it, and the insert would then fail its foreign key); on SQLite the write
/// transaction already keeps every other writer out.
pub fn lock_existing(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<i64>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let query = contacts::table
            .filter(contacts::id.eq_any(chunk))
            .select(contacts::id)
            .order(contacts::id.asc());
        out.extend(match conn {
            DbConnection::Postgres(pg) => query.for_key_share().load::<i64>(pg)?,
            DbConnection::Sqlite(sqlite) => query.load::<i64>(sqlite)?,
        });
    }
    Ok(out)
}

/// What the contacts page and the export filter on.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    /// Part of a phone number, name, e-mail or attribute value (case and accents folded).
    pub q: Option<String>,
    pub list_id: Option<i64>,
    /// Only contacts opted out of this kind of channel.
    pub opted_out: Option<ChannelKind>,
    pub language: Option<String>,
}

impl ContactFilter {
    pub fn is_empty(&self) -> bool {
        self.q.is_none()
            && self.list_id.is_none()
            && self.opted_out.is_none()
            && self.language.is_none()
    }
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Digits of a query that looks like (part of) a phone number: "+44 20 79" -> "442079".
fn phone_digits(q: &str) -> Option<String> {
    let looks_like_phone = q
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    (looks_like_phone && digits.len() >= 3).then_some(digits)
}

type BoxedContacts<'a> = contacts::BoxedQuery<'a, super::MultiBackend>;

impl ContactFilter {
    /// The search is a whole international number: at most one contact, found by the index.
    fn exact_phone(&self) -> Option<E164> {
        self.q
            .as_deref()
            .map(str::trim)
            .and_then(|q| E164::parse(q, None).ok())
    }
}

fn filtered(filter: &ContactFilter, sqlite: bool) -> BoxedContacts<'static> {
    let mut query = contacts::table.into_boxed();
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if let Some(exact) = filter.exact_phone() {
            query = query.filter(contacts::phone.eq(exact.into_inner()));
        } else if let Some(digits) = phone_digits(q) {
            query = query.filter(contacts::phone.like(like_pattern(&digits)).escape('\\'));
        } else {
            // Both sides folded alike (domain::contact::fold_for_search), so the comparison is
            // plain, whatever the database's collation. Three characters or more use a trigram
            // index: pg_trgm's serves this LIKE on PostgreSQL; on SQLite the FTS5 table
            // `contacts_search` (trigram tokenizer) matches the query as a phrase, which is a
            // substring match. Shorter queries read the column.
            let folded = fold_for_search(q);
            if sqlite && folded.chars().count() >= 3 {
                let phrase = format!("\"{}\"", folded.replace('"', "\"\""));
                query = query.filter(
                    sql::<Bool>(
                        "contacts.id IN (SELECT rowid FROM contacts_search WHERE contacts_search MATCH ",
                    )
                    .bind::<Text, _>(phrase)
                    .sql(")"),
                );
            } else {
                query = query.filter(
                    contacts::search_text
                        .like(like_pattern(&folded))
                        .escape('\\'),
                );
            }
        }
    }
    if let Some(list_id) = filter.list_id {
        query = query.filter(
            contacts::id.eq_any(
                list_members::table
                    .filter(list_members::list_id.eq(list_id))
                    .select(list_members::contact_id),
            ),
        );
    }
    if let Some(kind) = filter.opted_out {
        query = query.filter(
            contacts::id.eq_any(
                contact_consents::table
                    .filter(contact_consents::channel_kind.eq(kind.as_str()))
                    .filter(contact_consents::status.eq("opted_out"))
                    .select(contact_consents::contact_id),
            ),
        );
    }
    if let Some(lang) = filter.language.clone() {
        query = query.filter(contacts::language.eq(lang));
    }
    query
}

/// Which way a page goes from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    First,
    /// Rows older than this id (the next page).
    Before(i64),
    /// Rows newer than this id (the previous page).
    After(i64),
}

/// A page of contacts, newest first, by keyset (no OFFSET: the 20,000th page costs what the
/// first does). Returns up to `limit` rows plus whether more exist beyond them in that direction.
pub fn page(
    conn: &mut DbConnection,
    filter: &ContactFilter,
    cursor: Cursor,
    limit: i64,
) -> QueryResult<(Vec<Contact>, bool)> {
    let query = filtered(filter, matches!(conn, DbConnection::Sqlite(_)))
        .select(ContactRow::as_select())
        .limit(limit + 1);
    let mut rows: Vec<ContactRow> = match cursor {
        // One row at most: no ordering, or SQLite may walk the whole table in id order.
        _ if filter.exact_phone().is_some() => query.load(conn)?,
        Cursor::First => query.order(contacts::id.desc()).load(conn)?,
        Cursor::Before(id) => query
            .filter(contacts::id.lt(id))
            .order(contacts::id.desc())
            .load(conn)?,
        Cursor::After(id) => {
            let mut r: Vec<ContactRow> = query
                .filter(contacts::id.gt(id))
                .order(contacts::id.asc())
                .load(conn)?;
            let more = r.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            r.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            r.reverse();
            return Ok((r.into_iter().map(Contact::from).collect(), more));
        }
    };
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((rows.into_iter().map(Contact::from).collect(), more))
}

/// How many contacts match (for "1,284 contacts" and bulk-action confirmations).
pub fn count(conn: &mut DbConnection, filter: &ContactFilter) -> QueryResult<i64> {
    filtered(filter, matches!(conn, DbConnection::Sqlite(_)))
        .count()
        .get_result(conn)
}

/// Ids of the matching contacts with id below `before`, newest first, for bulk actions and
/// exports that walk a whole filter in batches.
pub fn ids_batch(
    conn: &mut DbConnection,
    filter: &ContactFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    let mut query = filtered(filter, matches!(conn, DbConnection::Sqlite(_)))
        .select(contacts::id)
        .order(contacts::id.desc())
        .limit(limit);
    if let Some(b) = before {
        query = query.filter(contacts::id.lt(b));
    }
    query.load(conn)
}

/// Full rows for an export batch (same walk as `ids_batch`).
pub fn rows_batch(
    conn: &mut DbConnection,
    filter: &ContactFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Contact>> {
    let mut query = filtered(filter, matches!(conn, DbConnection::Sqlite(_)))
        .select(ContactRow::as_select())
        .order(contacts::id.desc())
        .limit(limit);
    if let Some(b) = before {
        query = query.filter(contacts::id.lt(b));
    }
    Ok(query.load(conn)?.into_iter().map(Contact::from).collect())
}

/// Contacts by id, in no particular order.
pub fn by_ids(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Contact>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<ContactRow> = contacts::table
            .filter(contacts::id.eq_any(chunk))
            .select(ContactRow::as_select())
            .load(conn)?;
        out.extend(rows.into_iter().map(Contact::from));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_like_queries_search_digits() {
        assert_eq!(phone_digits("+44 20 79").as_deref(), Some("442079"));
        assert_eq!(phone_digits("(201) 555"), Some("201555".into()));
        assert_eq!(phone_digits("12"), None);
        assert_eq!(phone_digits("ada 123"), None);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off"), "%50\\%\\_off%");
    }
}
