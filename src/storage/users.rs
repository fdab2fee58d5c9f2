//! People who sign in.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::users;
use super::{DbConnection, now, sessions, settings};
use crate::domain::role::Role;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub(super) struct UserRow {
    id: i64,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    must_change_password: i32,
    disabled_at: Option<NaiveDateTime>,
    last_login_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub must_change_password: bool,
    pub disabled_at: Option<NaiveDateTime>,
    pub last_login_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.disabled_at.is_none()
    }
}

impl TryFrom<UserRow> for User {
    type Error = diesel::result::Error;

    fn try_from(r: UserRow) -> Result<Self, Self::Error> {
        let role = r
            .role
            .parse()
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        Ok(User {
            id: r.id,
            email: r.email,
            name: r.name,
            role,
            password_hash: r.password_hash,
            must_change_password: r.must_change_password != 0,
            disabled_at: r.disabled_at,
            last_login_at: r.last_login_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub must_change_password: bool,
}

fn rows_to_users(rows: Vec<UserRow>) -> QueryResult<Vec<User>> {
    rows.into_iter().map(User::try_from).collect()
}

pub fn any_exists(conn: &mut DbConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.select(users::id))).get_result(conn)
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::try_from)
        .transpose()
}

pub fn find_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::try_from)
        .transpose()
}

/// Everyone, active first, then by name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<User>> {
    let rows = users::table
        .select(UserRow::as_select())
        .order((users::disabled_at.is_not_null(), users::name, users::id))
        .load(conn)?;
    rows_to_users(rows)
}

pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> QueryResult<User> {
    let at = now();
    let row = diesel::insert_into(users::table)
        .values((
            users::email.eq(new.email),
            users::name.eq(new.name),
            users::role.eq(new.role.as_str()),
            users::password_hash.eq(new.password_hash),
            users::must_change_password.eq(i32::from(new.must_change_password)),
            users::created_at.eq(at),
            users::updated_at.eq(at),
        ))
        .returning(users::all_columns)
        .get_result::<UserRow>(conn)?;
    User::try_from(row)
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("Herald is already set up")]
    AlreadySetUp,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Creates the first admin, once. The `setup_completed` flag is written in the same
/// transaction, so two simultaneous setup forms cannot both succeed.
pub fn create_first_admin(conn: &mut DbConnection, new: &NewUser<'_>) -> Result<User, SetupError> {
    crate::storage::write_transaction(conn, |conn| {
        if !settings::insert_if_absent(conn, settings::SETUP_COMPLETED, "1")? || any_exists(conn)? {
            return Err(SetupError::AlreadySetUp);
        }
        Ok(insert(conn, new)?)
    })
}

pub fn count_active_admins(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::disabled_at.is_null())
        .count()
        .get_result(conn)
}

pub fn set_role(conn: &mut DbConnection, id: i64, role: Role) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::role.eq(role.as_str()), users::updated_at.eq(now())))
        .execute(conn)
}

/// Disables or re-enables an account; disabling also ends its sessions.
pub fn set_disabled(conn: &mut DbConnection, id: i64, disabled: bool) -> QueryResult<usize> {
    let at = now();
    if disabled {
        sessions::revoke_for_user(conn, id, None, at)?;
    }
    diesel::update(users::table.find(id))
        .set((
            users::disabled_at.eq(disabled.then_some(at)),
            users::updated_at.eq(at),
        ))
        .execute(conn)
}

/// Replaces the password hash and ends every session of the account but `keep` (the one of the
/// person changing their own password). Returns how many other sessions it ended.
pub fn set_password(
    conn: &mut DbConnection,
    id: i64,
    password_hash: &str,
    must_change: bool,
    keep: Option<i64>,
) -> QueryResult<usize> {
    let at = now();
    let ended = sessions::revoke_for_user(conn, id, keep, at)?;
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::must_change_password.eq(i32::from(must_change)),
            users::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(ended)
}

pub fn record_login(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::last_login_at.eq(now()))
        .execute(conn)
}
