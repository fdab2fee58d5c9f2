//! Server-sent events for the live pages: `GET /events?contacts=<id>,<id>` streams what changes
//! about those contacts, as fragments htmx's SSE extension swaps in (`sse-swap`) or as triggers
//! that make a part of the page reload itself (`hx-trigger="sse:…"`):
//!
//! - `window-<contact>-<channel>`: the window badge, re-rendered (a customer wrote);
//! - `window-<contact>`, `consent-<contact>`: something the send form depends on changed;
//! - `message-<message>`: a message's status, re-rendered;
//! - `timeline-<contact>`: a message arrived or was queued.
//!
//! Events come from this process's [`EventHub`](crate::dispatch::hub::EventHub). Only contacts
//! the person may see are followed; a receiver that lagged behind re-sends the state of every
//! followed contact; a comment every 15 seconds keeps proxies from closing the stream; a
//! client that goes away drops the stream (and its hub receiver) at the next write; a stream
//! ends after 10 minutes so the browser reconnects through sign-in checks again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use askama::Template;
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::dispatch::hub::HubEvent;
use crate::domain::message::MessageStatus;
use crate::domain::window;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::messages;
use crate::storage::{Db, contacts, conversations};
use crate::web::format::{MessageStatusView, WindowBadge};
use crate::web::identity::{Auth, perm};

/// How many contacts one stream may follow (a page of the contacts list is 50).
pub const MAX_CONTACTS: usize = 200;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const LIFETIME: Duration = Duration::from_secs(600);

pub use crate::web::format::sse_event;

#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    /// Public ids of contacts, comma-separated.
    #[serde(default)]
    contacts: String,
    /// Public ids of messages whose status the page shows (at most 20), sent once at the
    /// start so a change between the page's rendering and the connection is not missed.
    #[serde(default)]
    messages: String,
}

/// The ids a stream follows: internal id -> public id.
type Followed = HashMap<i64, String>;

pub async fn stream(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, AppError> {
    let mut wanted: Vec<String> = query
        .contacts
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    wanted.sort();
    wanted.dedup();
    if wanted.len() > MAX_CONTACTS {
        return Err(AppError::BadRequest(format!(
            "A live page may follow at most {MAX_CONTACTS} contacts."
        )));
    }
    let shown: Vec<String> = query
        .messages
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(20)
        .map(str::to_owned)
        .collect();
    // Subscribe before reading anything, so nothing that happens meanwhile is missed.
    let rx = state.hub.subscribe();
    let (followed, statuses) = state
        .db
        .run(move |conn| {
            let followed: Followed = contacts::ids_by_public_ids(conn, &wanted)?
                .into_iter()
                .collect();
            let mut statuses = Vec::new();
            for id in &shown {
                if let Some(m) = messages::find_by_public_id(conn, id)?
                    && followed.contains_key(&m.contact_id)
                {
                    statuses.push(m);
                }
            }
            Ok::<_, AppError>((followed, statuses))
        })
        .await?;
    let mut live = Live {
        db: state.db.clone(),
        rx,
        followed,
        pending: VecDeque::from([Bytes::from_static(b": live\nretry: 2000\n\n")]),
        keep_alive: tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        ends_at: tokio::time::Instant::now() + LIFETIME,
        shutting_down: state.shutting_down.clone(),
    };
    // The state as of now: the page was rendered a moment ago and may have missed a change.
    let ids: Vec<i64> = live.followed.keys().copied().collect();
    let initial = live.window_events(ids, None, false).await;
    live.pending.extend(initial);
    for m in statuses {
        if let Ok(html) = MessageStatusView::of(&m).render() {
            live.pending
                .push_back(sse_event(&format!("message-{}", m.public_id), &html));
        }
    }
    let body = futures_util::stream::unfold(live, |mut live| async move {
        live.next()
            .await
            .map(|b| (Ok::<_, actix_web::Error>(b), live))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((header::HeaderName::from_static("x-accel-buffering"), "no"))
        .streaming(body))
}

struct Live {
    db: Db,
    rx: Receiver<HubEvent>,
    followed: Followed,
    pending: VecDeque<Bytes>,
    keep_alive: tokio::time::Interval,
    ends_at: tokio::time::Instant,
    shutting_down: tokio::sync::watch::Receiver<bool>,
}

impl Live {
    /// The next chunk to write, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if *self.shutting_down.borrow() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.ends_at) => return None,
                _ = self.shutting_down.changed() => return None,
                _ = self.keep_alive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                received = self.rx.recv() => match received {
                    Ok(event) => {
                        let out = self.render(event).await;
                        self.pending.extend(out);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a live page fell behind; sending its state again");
                        let out = self.resync().await;
                        self.pending.extend(out);
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }

    /// The events a hub event makes for this page (none when it is about someone else).
    async fn render(&self, event: HubEvent) -> Vec<Bytes> {
        match event {
            HubEvent::Inbound {
                contact_id,
                channel_id,
                ..
            } => {
                let Some(contact) = self.followed.get(&contact_id).cloned() else {
                    return Vec::new();
                };
                let mut out = self
                    .window_events(vec![contact_id], Some(channel_id), true)
                    .await;
                out.push(sse_event(&format!("timeline-{contact}"), "inbound"));
                out
            }
            HubEvent::MessageStatus {
                message_id,
                contact_id,
                status,
                ..
            } => {
                let Some(contact) = self.followed.get(&contact_id).cloned() else {
                    return Vec::new();
                };
                let id = message_id.clone();
                let row = self
                    .db
                    .run(move |conn| Ok::<_, AppError>(messages::find_by_public_id(conn, &id)?))
                    .await;
                let view = match row {
                    Ok(Some(row)) => MessageStatusView::of(&row),
                    Ok(None) => return Vec::new(),
                    Err(e) => {
                        tracing::warn!(error = ?e, "a live message status could not be read");
                        let status =
                            MessageStatus::parse(&status).unwrap_or(MessageStatus::Unknown);
                        MessageStatusView::new(status, None, None)
                    }
                };
                let mut out = Vec::new();
                if let Ok(html) = view.render() {
                    out.push(sse_event(&format!("message-{message_id}"), &html));
                }
                if status == MessageStatus::Queued.as_str() {
                    out.push(sse_event(&format!("timeline-{contact}"), "queued"));
                    // Viber counts messages in a session: the send form asks again.
                    out.push(sse_event(&format!("window-{contact}"), "sent"));
                }
                out
            }
            HubEvent::Consent { contact_id, .. } => match self.followed.get(&contact_id) {
                Some(contact) => vec![sse_event(&format!("consent-{contact}"), "changed")],
                None => Vec::new(),
            },
            HubEvent::Template { .. } => Vec::new(),
        }
    }

    /// The window badges of followed contacts (on one channel, or all), and with `announce`
    /// the trigger for forms that depend on them.
    async fn window_events(
        &self,
        contact_ids: Vec<i64>,
        only: Option<i64>,
        announce: bool,
    ) -> Vec<Bytes> {
        if contact_ids.is_empty() {
            return Vec::new();
        }
        let ids = contact_ids.clone();
        let loaded = self
            .db
            .run(move |conn| {
                let channels: Vec<Channel> = match only {
                    Some(id) => channels::find(conn, id)?.into_iter().collect(),
                    None => channels::list(conn)?,
                };
                let windows = conversations::windows_of(conn, &ids)?;
                Ok::<_, AppError>((channels, windows))
            })
            .await;
        let (channels, windows) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = ?e, "live window state could not be read");
                return Vec::new();
            }
        };
        let now = Utc::now();
        let mut out = Vec::new();
        for contact_id in contact_ids {
            let Some(contact) = self.followed.get(&contact_id) else {
                continue;
            };
            for channel in channels
                .iter()
                .filter(|c| window::has_window(c.kind) && c.is_enabled())
            {
                let last = windows
                    .iter()
                    .find(|(c, ch, _)| *c == contact_id && *ch == channel.id)
                    .map(|(_, _, at)| at.and_utc());
                let badge = WindowBadge::new(window::state(channel.kind, last, now), now);
                if let Ok(html) = badge.render() {
                    out.push(sse_event(
                        &format!("window-{contact}-{}", channel.public_id),
                        &html,
                    ));
                }
            }
            if announce {
                out.push(sse_event(&format!("window-{contact}"), "changed"));
            }
        }
        out
    }

    /// After missing events: the state of every followed contact again.
    async fn resync(&self) -> Vec<Bytes> {
        let ids: Vec<i64> = self.followed.keys().copied().collect();
        let mut out = self.window_events(ids, None, true).await;
        for contact in self.followed.values() {
            out.push(sse_event(&format!("timeline-{contact}"), "resync"));
            out.push(sse_event(&format!("consent-{contact}"), "resync"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::window::WindowState;

    #[test]
    fn multi_line_data_becomes_one_data_field_per_line() {
        let e = sse_event("message-1", "<span>\nread</span>");
        assert_eq!(
            std::str::from_utf8(&e).unwrap(),
            "event: message-1\ndata: <span>\ndata: read</span>\n\n"
        );
        assert_eq!(
            std::str::from_utf8(&sse_event("x", "")).unwrap(),
            "event: x\ndata: \n\n"
        );
    }

    #[test]
    fn badges_say_open_with_the_time_left_or_closed() {
        let now = Utc::now();
        let open = WindowBadge::new(
            WindowState::Open {
                until: now
                    + chrono::Duration::minutes(23 * 60 + 12)
                    + chrono::Duration::seconds(30),
            },
            now,
        );
        let html = open.render().unwrap();
        assert!(html.contains("open, 23 h 12 min left"), "{html}");
        assert!(html.contains("data-window-until="));
        let closed = WindowBadge::new(WindowState::Closed { closed_at: None }, now);
        assert!(closed.render().unwrap().contains("closed, templates only"));
    }
}
