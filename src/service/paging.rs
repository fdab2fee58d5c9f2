//! How every growing API list pages, the same way on each: `?limit=` (1 to 200, 50 when not
//! given), `?cursor=` (opaque: the `next_cursor` of the page before) and the answer
//! `{"data": [...], "next_cursor": null|"..."}`. Lists page by keyset on their row ids (no
//! `OFFSET`, so a page costs the same deep in a long list and rows added meanwhile never
//! shift it); the cursor carries the last id seen, versioned and base64url-encoded so
//! clients treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use super::{FieldProblems, ServiceError};

/// The page size when `limit` is not given.
pub const LIMIT_DEFAULT: i64 = 50;
/// The largest page size.
pub const LIMIT_MAX: i64 = 200;

/// What the cursor's text starts with: a later format gets another prefix.
const CURSOR_PREFIX: &str = "k1.";

/// One page of a list as the API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each item turned into its JSON.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// A page asked for: its size, and the key of the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    /// The id the next page starts after (in the list's own order), if it is not the first.
    pub after: Option<i64>,
}

impl PageRequest {
    /// Reads `limit` and `cursor` as the query string gave them.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ServiceError> {
        Self::parse_up_to(limit, cursor, LIMIT_MAX)
    }

    /// As [`Self::parse`], for a list that allowed larger pages before it paged this way.
    pub fn parse_up_to(
        limit: Option<&str>,
        cursor: Option<&str>,
        max: i64,
    ) -> Result<Self, ServiceError> {
        let limit = parse_limit(limit, max)?;
        let after = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            Some(raw) => Some(decode_cursor(raw)?),
            None => None,
        };
        Ok(PageRequest { limit, after })
    }

    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page from rows read with [`Self::fetch`]: at most `limit` of them, and the cursor
    /// after the last when more followed.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(key(r)))
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
        }
    }
}

/// `limit` as given: a whole number from 1 to `max`; [`LIMIT_DEFAULT`] when absent or empty.
pub fn parse_limit(raw: Option<&str>, max: i64) -> Result<i64, ServiceError> {
    let Some(raw) = raw.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(LIMIT_DEFAULT.min(max));
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => {
            let mut fields = FieldProblems::new();
            fields.add(
                "limit",
                format!("\"{raw}\" is not a page size: give a number from 1 to {max}."),
            );
            Err(ServiceError::invalid_fields("invalid_limit", fields))
        }
    }
}

/// The cursor after the row with this id.
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

/// The id a cursor made by [`encode_cursor`] carries; anything else is `invalid_cursor`.
pub fn decode_cursor(raw: &str) -> Result<i64, ServiceError> {
    URL_SAFE_NO_PAD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            let mut fields = FieldProblems::new();
            fields.add(
                "cursor",
                "not one Herald gave: pass the previous page's `next_cursor` as it is.",
            );
            ServiceError::invalid_fields("invalid_cursor", fields)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_its_id() {
        for id in [1, 42, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(id)).ok(), Some(id));
        }
    }

    #[test]
    fn other_text_is_not_a_cursor() {
        for raw in ["", "42", "abc", "%%%", &encode_cursor(7)[1..], "azE"] {
            let err = decode_cursor(raw).unwrap_err();
            assert!(
                matches!(
                    err,
                    ServiceError::Invalid {
                        code: "invalid_cursor",
                        ..
                    }
                ),
                "{raw}: {err:?}"
            );
        }
        let negative = URL_SAFE_NO_PAD.encode("k1.-3");
        assert!(decode_cursor(&negative).is_err());
    }

    #[test]
    fn limits_outside_the_range_are_refused_naming_limit() {
        assert_eq!(parse_limit(None, LIMIT_MAX).ok(), Some(LIMIT_DEFAULT));
        assert_eq!(parse_limit(Some(" "), LIMIT_MAX).ok(), Some(LIMIT_DEFAULT));
        assert_eq!(parse_limit(Some("200"), LIMIT_MAX).ok(), Some(200));
        assert_eq!(parse_limit(Some("1"), LIMIT_MAX).ok(), Some(1));
        for bad in ["0", "201", "-1", "ten", "1.5"] {
            match parse_limit(Some(bad), LIMIT_MAX) {
                Err(ServiceError::Invalid {
                    code: "invalid_limit",
                    fields,
                    ..
                }) => assert_eq!(
                    fields.iter().next().map(|p| p.field.as_str()),
                    Some("limit")
                ),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_page_keeps_limit_rows_and_points_after_the_last() {
        let request = PageRequest {
            limit: 2,
            after: None,
        };
        let page = request.finish(vec![9, 8, 7], |r| *r);
        assert_eq!(page.data, vec![9, 8]);
        assert_eq!(
            page.next_cursor
                .as_deref()
                .and_then(|c| decode_cursor(c).ok()),
            Some(8)
        );
        let last = request.finish(vec![6, 5], |r| *r);
        assert_eq!(last.data, vec![6, 5]);
        assert_eq!(last.next_cursor, None);
    }
}
