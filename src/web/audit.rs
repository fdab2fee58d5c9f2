//! Settings › Audit log (admins): every change people and keys made, newest first, filtered
//! by who, what and when; people and things are named and linked, not shown as raw ids.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::audit::{self, AuditEntry, AuditFilter};
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm};
use crate::web::render;

const PAGE_SIZE: i64 = 50;

/// A person, key or thing an entry names: its name, and where to see it when it still exists.
pub struct Named {
    pub name: String,
    pub href: Option<String>,
}

pub struct EntryView {
    pub when: String,
    pub actor: Named,
    pub action: String,
    pub subject: Named,
    pub details: String,
}

/// What a kind of subject is called, and where its page is.
fn subject_link(kind: &str, id: &str) -> (&'static str, Option<String>) {
    match kind {
        "user" => ("Person", Some(crate::web::paths::USERS.to_owned())),
        "api_key" => ("API key", Some(crate::web::paths::API_KEYS.to_owned())),
        "channel" => (
            "Channel",
            Some(format!("{}/{id}", crate::web::paths::CHANNELS)),
        ),
        "contact" => ("Contact", Some(format!("/contacts/{id}"))),
        "list" => ("List", Some(format!("/contacts?list={id}"))),
        "template" => ("Template", Some(format!("/templates/{id}"))),
        "import" => ("Import", Some(format!("/contacts/imports/{id}"))),
        "message" => ("Message", None),
        _ => ("", None),
    }
}

fn entry_view(e: AuditEntry, names: &HashMap<(String, String), String>) -> EntryView {
    let fields = match serde_json::from_str::<serde_json::Value>(&e.details) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let details = fields
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let subject = match &e.subject_id {
        Some(id) => {
            let (label, href) = subject_link(&e.subject_kind, id);
            let current = names.get(&(e.subject_kind.clone(), id.clone()));
            // A deleted thing keeps the name its entry recorded, without a link.
            let recorded = fields
                .get("name")
                .or_else(|| fields.get("file"))
                .and_then(|v| v.as_str());
            let name = current
                .map(String::as_str)
                .or(recorded)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{label} (deleted)").trim().to_owned());
            let name = if label.is_empty() {
                name
            } else {
                format!("{label} {name}")
            };
            Named {
                name,
                href: current.and(href),
            }
        }
        None => Named {
            name: e.subject_kind.replace('_', " "),
            href: None,
        },
    };
    let actor = match (e.actor_kind.as_str(), e.actor_id) {
        ("user", Some(id)) => Named {
            name: names
                .get(&("user".to_owned(), id.to_string()))
                .cloned()
                .unwrap_or_else(|| e.actor_label.clone()),
            href: Some(crate::web::paths::USERS.to_owned()),
        },
        ("api_key", Some(_)) => Named {
            name: e.actor_label.clone(),
            href: Some(crate::web::paths::API_KEYS.to_owned()),
        },
        _ => Named {
            name: e.actor_label.clone(),
            href: None,
        },
    };
    EntryView {
        when: format::datetime(&e.occurred_at),
        actor,
        action: e.action,
        subject,
        details,
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "audit/index.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryView>,
    older: Option<String>,
    newest: Option<String>,
    actors: Vec<Choice>,
    actions: Vec<Choice>,
    since: String,
    until: String,
    filtered: bool,
    problem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    /// `user:3`, `api_key:5` or `system`.
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// Dates, `YYYY-MM-DD`, both inclusive.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

fn parse_actor(s: &str) -> Option<(String, Option<i64>)> {
    match s.split_once(':') {
        Some((kind @ ("user" | "api_key"), id)) => {
            id.parse().ok().map(|id| (kind.to_owned(), Some(id)))
        }
        None if s == "system" => Some(("system".to_owned(), None)),
        _ => None,
    }
}

fn actor_value(kind: &str, id: Option<i64>) -> String {
    match id {
        Some(id) => format!("{kind}:{id}"),
        None => kind.to_owned(),
    }
}

/// The query string for these filters (and `before`), for the pager's links.
fn query_string(q: &AuditQuery, before: Option<i64>) -> String {
    let mut parts: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if !v.trim().is_empty() {
            parts.push((k, v.trim().to_owned()));
        }
    }
    if let Some(b) = before {
        parts.push(("before", b.to_string()));
    }
    if parts.is_empty() {
        return String::new();
    }
    let encoded = serde_urlencoded::to_string(&parts).unwrap_or_default();
    format!("?{encoded}")
}

fn day(s: &str) -> Result<Option<NaiveDate>, String> {
    match s.trim() {
        "" => Ok(None),
        t => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("\"{t}\" is not a date like 2026-12-03.")),
    }
}

pub async fn index(
    _auth: Auth<perm::ViewAuditLog>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let mut problem = None;
    let since = day(&q.since).unwrap_or_else(|e| {
        problem = Some(e);
        None
    });
    let until = day(&q.until).unwrap_or_else(|e| {
        problem = Some(e);
        None
    });
    let filter = AuditFilter {
        actor: parse_actor(q.actor.trim()),
        action: Some(q.action.trim().to_owned()).filter(|a| !a.is_empty()),
        since: since.map(NaiveDateTime::from),
        until: until.and_then(|d| d.succ_opt()).map(NaiveDateTime::from),
    };
    let before = q.before;
    let (mut rows, names, all_actors, all_actions) = {
        let filter = filter.clone();
        state
            .db
            .run(move |conn| {
                let rows = audit::page_matching(conn, &filter, before, PAGE_SIZE + 1)?;
                let refs: Vec<(String, String)> = rows
                    .iter()
                    .filter_map(|e| {
                        e.subject_id
                            .as_ref()
                            .map(|id| (e.subject_kind.clone(), id.clone()))
                    })
                    .chain(rows.iter().filter_map(|e| {
                        (e.actor_kind == "user")
                            .then_some(e.actor_id)
                            .flatten()
                            .map(|id| ("user".to_owned(), id.to_string()))
                    }))
                    .collect();
                let names = audit::names(conn, &refs)?;
                Ok::<_, AppError>((rows, names, audit::actors(conn)?, audit::actions(conn)?))
            })
            .await?
    };
    let has_more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(50);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(50));
    let older = if has_more {
        rows.last().map(|e| query_string(&q, Some(e.id)))
    } else {
        None
    };
    let newest = before.map(|_| query_string(&q, None));
    let selected_actor = filter
        .actor
        .as_ref()
        .map(|(k, i)| actor_value(k, *i))
        .unwrap_or_default();
    render(&AuditPage {
        chrome,
        entries: rows.into_iter().map(|e| entry_view(e, &names)).collect(),
        older,
        newest,
        actors: all_actors
            .into_iter()
            .map(|(kind, id, label)| {
                let value = actor_value(&kind, id);
                Choice {
                    selected: value == selected_actor,
                    label,
                    value,
                }
            })
            .collect(),
        actions: all_actions
            .into_iter()
            .map(|a| Choice {
                selected: filter.action.as_deref() == Some(a.as_str()),
                label: a.clone(),
                value: a,
            })
            .collect(),
        since: since.map(|d| d.to_string()).unwrap_or_default(),
        until: until.map(|d| d.to_string()).unwrap_or_default(),
        filtered: filter != AuditFilter::default(),
        problem,
    })
}
