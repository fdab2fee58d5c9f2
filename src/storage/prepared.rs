//! Raw SQL of fixed text that each connection keeps prepared.
//!
//! Diesel never keeps a `sql_query` statement prepared (its text could be anything), so the
//! server parses and plans it on every call: on PostgreSQL about 7 µs of server time per message
//! sent, in the dispatcher's claim, record and look-up statements. [`Fixed`] is the same kind of
//! statement, bound the same way (`.bind::<SqlType, _>(value)`), for text that does not vary
//! with the data: Diesel then prepares it once per connection and caches it by its text. Never
//! build its text from a count of values (a list of placeholders): each length would be cached
//! as a statement of its own.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::connection::Connection;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement whose parameters are written `$1`, `$2`… (each may appear more than once), on
/// either backend. A `$` followed by digits is always read as a parameter, even inside a string
/// literal; any other `$` (a JSON path such as `'$.a'`) is left as written.
pub struct Fixed<'a, DB: Backend> {
    sql: &'a str,
    params: Vec<Box<dyn Param<DB> + 'a>>,
}

/// Starts a statement of fixed text (see the module's documentation).
pub fn fixed<DB: Backend>(sql: &str) -> Fixed<'_, DB> {
    Fixed {
        sql,
        params: Vec::new(),
    }
}

impl<'a, DB: Backend> Fixed<'a, DB> {
    /// Binds the next parameter (`$1` first).
    pub fn bind<ST, T>(mut self, value: T) -> Self
    where
        DB: HasSqlType<ST>,
        T: ToSql<ST, DB> + 'a,
        ST: 'a,
    {
        self.params.push(Box::new(Value(value, PhantomData::<ST>)));
        self
    }
}

trait Param<DB: Backend> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

struct Value<ST, T>(T, PhantomData<ST>);

impl<DB, ST, T> Param<DB> for Value<ST, T>
where
    DB: Backend + HasSqlType<ST>,
    T: ToSql<ST, DB>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.0)
    }
}

impl<DB: Backend> QueryFragment<DB> for Fixed<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            out.push_sql(&rest[..at]);
            if digits == 0 {
                out.push_sql("$");
                rest = &rest[at + 1..];
                continue;
            }
            let number: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
            let param = number
                .checked_sub(1)
                .and_then(|i| self.params.get(i))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("${number} has no bound value").into(),
                    )
                })?;
            param.push(&mut out)?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<DB: Backend> QueryId for Fixed<'_, DB> {
    type QueryId = ();
    // Cached by its text and parameter types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for Fixed<'_, DB> {
    type SqlType = Untyped;
}

impl<DB: Backend, Conn: Connection<Backend = DB>> RunQueryDsl<Conn> for Fixed<'_, DB> {}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    use super::fixed;

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        a: i64,
        #[diesel(sql_type = Text)]
        b: String,
        #[diesel(sql_type = BigInt)]
        c: i64,
    }

    #[test]
    fn parameters_are_bound_by_number_and_may_repeat() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let rows: Vec<Row> = fixed("SELECT $2 AS a, $1 AS b, $2 + $2 AS c")
            .bind::<Text, _>("x")
            .bind::<BigInt, _>(21)
            .load(&mut conn)
            .unwrap();
        assert_eq!(
            rows,
            vec![Row {
                a: 21,
                b: "x".into(),
                c: 42
            }]
        );
        let missing = fixed::<diesel::sqlite::Sqlite>("SELECT $1 AS a, $3 AS b, $1 AS c")
            .bind::<BigInt, _>(1)
            .load::<Row>(&mut conn)
            .unwrap_err();
        assert!(
            missing.to_string().contains("$3 has no bound value"),
            "{missing}"
        );
    }
}
