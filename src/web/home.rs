//! The overview (the home page): messages per day per channel and outcome for the last 30
//! days as server-rendered SVG charts, delivery and read rates, failures by reason, broadcasts
//! under way, templates waiting for review, windows open now and opt-outs this week; each figure
//! links to the history filtered to it. For admins, what is left to set up.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::domain::role::Permission;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm};
use crate::web::render;

pub struct SetupStep {
    pub done: bool,
    pub text: &'static str,
    pub href: &'static str,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Dashboard {
    chrome: Chrome,
    first_name: String,
    channels: Vec<Channel>,
    all_sandbox: bool,
    steps: Vec<SetupStep>,
    can_manage_channels: bool,
    view: overview_view::OverviewView,
}

pub async fn dashboard(
    auth: Auth<perm::ViewDashboard>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let role = auth.principal.role();
    let home = crate::service::overview::home(&state.services, role).await?;
    let steps = home.setup.map_or_else(Vec::new, |f| {
        vec![
            SetupStep {
                done: f.has_marketer,
                text: "Invite a marketer",
                href: crate::web::paths::USERS,
            },
            SetupStep {
                done: f.has_support_lead,
                text: "Invite a support lead to review templates",
                href: crate::web::paths::USERS,
            },
            SetupStep {
                // Ticked once a real account answered "Test connection", not on adding.
                done: f.has_tested_channel,
                text: "Connect a real WhatsApp, SMS or Viber account",
                href: crate::web::paths::CHANNELS,
            },
            SetupStep {
                done: f.has_api_key,
                text: "Create an API key for your own systems",
                href: crate::web::paths::API_KEYS,
            },
        ]
    });
    let (figures, channels) = (home.overview, home.channels);
    let first_name = auth
        .user()
        .and_then(|u| u.name.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let view =
        overview_view::OverviewView::new(&figures, &channels, role.can(Permission::ViewHistory));
    render(&Dashboard {
        chrome,
        first_name,
        all_sandbox: channels.iter().all(Channel::is_sandbox),
        view,
        channels,
        steps,
        can_manage_channels: role.can(Permission::ManageChannels),
    })
}

mod overview_view {
    //! The overview's figures laid out for the template: bars with their coordinates, rates
    //! in words, links into the history.

    use std::collections::BTreeMap;

    use chrono::{Duration, NaiveDate};

    use crate::service::overview::Overview;
    use crate::storage::broadcasts::Counts;
    use crate::storage::channels::Channel;
    use crate::web::format::thousands;

    /// Outcome groups stacked in each day's bar, bottom first: (class, words in the legend,
    /// words in a bar's title, the one status the history can filter on when the group is
    /// one status).
    pub const GROUPS: [(&str, &str, &str, Option<&str>); 7] = [
        ("read", "Read", "read", Some("read")),
        ("delivered", "Delivered", "delivered", Some("delivered")),
        ("sent", "Sent", "sent", Some("sent")),
        ("pending", "Queued or sending", "queued or sending", None),
        ("failed", "Failed", "failed", Some("failed")),
        ("unknown", "Unknown", "unknown", Some("unknown")),
        (
            "other",
            "Skipped, cancelled or expired",
            "skipped, cancelled or expired",
            None,
        ),
    ];

    fn group_of(status: &str) -> usize {
        match status {
            "read" => 0,
            "delivered" => 1,
            "sent" => 2,
            "queued" | "sending" | "scheduled" => 3,
            "failed" => 4,
            "unknown" => 5,
            _ => 6,
        }
    }

    /// The chart's size in SVG units (it scales to the card's width).
    pub const BAR_STEP: i64 = 12;
    pub const BAR_WIDTH: i64 = 9;
    pub const PLOT_HEIGHT: i64 = 100;
    pub const WIDTH: i64 = BAR_STEP * crate::service::overview::DAYS;

    pub struct Segment {
        pub y: i64,
        pub height: i64,
        pub class: &'static str,
        pub title: String,
        pub href: Option<String>,
    }

    pub struct Bar {
        pub x: i64,
        pub segments: Vec<Segment>,
    }

    pub struct ChannelChart {
        pub name: String,
        pub total: String,
        pub peak: String,
        pub bars: Vec<Bar>,
        pub first_day: String,
        pub last_day: String,
        pub href: Option<String>,
    }

    pub struct Figure {
        pub label: &'static str,
        pub value: String,
        pub note: String,
        pub href: Option<String>,
    }

    pub struct FailureRow {
        pub channel: String,
        pub code: String,
        pub count: String,
        pub href: Option<String>,
    }

    pub struct BroadcastRow {
        pub name: String,
        pub href: String,
        pub state: &'static str,
        pub percent: i64,
        pub done: String,
        pub recipients: String,
    }

    pub struct Tally {
        pub label: String,
        pub count: String,
        pub href: Option<String>,
    }

    pub struct OverviewView {
        pub since: String,
        pub until: String,
        pub any_messages: bool,
        pub figures: Vec<Figure>,
        pub charts: Vec<ChannelChart>,
        pub legend: Vec<(&'static str, &'static str)>,
        pub failures: Vec<FailureRow>,
        pub broadcasts: Vec<BroadcastRow>,
        pub can_view_broadcasts: bool,
        pub templates_in_review: Option<String>,
        pub windows_open: Vec<Tally>,
        pub opt_outs_week: Vec<Tally>,
    }

    /// A link into the history, when the viewer may read it.
    struct Links {
        enabled: bool,
    }

    impl Links {
        fn history(&self, params: &[(&str, String)]) -> Option<String> {
            if !self.enabled {
                return None;
            }
            let kept: Vec<_> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
            let query = serde_urlencoded::to_string(kept).unwrap_or_default();
            Some(format!("/history?{query}"))
        }
    }

    fn percent(part: i64, whole: i64) -> String {
        if whole == 0 {
            "–".into()
        } else {
            format!("{:.1}%", part as f64 * 100.0 / whole as f64)
        }
    }

    fn day_words(day: NaiveDate) -> String {
        day.format("%-d %b").to_string()
    }

    impl OverviewView {
        pub fn new(o: &Overview, channels: &[Channel], can_view_history: bool) -> Self {
            let links = Links {
                enabled: can_view_history,
            };
            let since = o.since.to_string();
            let until = o.until.to_string();
            let range = |mut p: Vec<(&'static str, String)>| {
                p.push(("since", since.clone()));
                p.push(("until", until.clone()));
                p
            };
            let name_of = |id: i64| {
                channels
                    .iter()
                    .find(|c| c.id == id)
                    .map_or_else(|| format!("Channel {id}"), |c| c.name.clone())
            };

            // Per channel, per day, per group.
            let mut per: BTreeMap<i64, BTreeMap<NaiveDate, [i64; 7]>> = BTreeMap::new();
            let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
            for d in &o.daily {
                per.entry(d.channel_id)
                    .or_default()
                    .entry(d.day)
                    .or_default()[group_of(&d.status)] += d.n;
                *by_status.entry(d.status.as_str()).or_default() += d.n;
            }
            let total: i64 = by_status.values().sum();
            let n = |s: &str| by_status.get(s).copied().unwrap_or(0);
            let reached = n("sent") + n("delivered") + n("read");
            let delivered = n("delivered") + n("read");
            let failed = n("failed");

            let figures = vec![
                Figure {
                    label: "Messages",
                    value: thousands(total),
                    note: "created in the last 30 days".into(),
                    href: links.history(&range(vec![])),
                },
                Figure {
                    label: "Delivery rate",
                    value: percent(delivered, reached + failed + n("unknown")),
                    note: format!("{} delivered or read", thousands(delivered)),
                    href: links.history(&range(vec![("status", "delivered".into())])),
                },
                Figure {
                    label: "Read rate",
                    value: percent(n("read"), delivered),
                    note: format!("{} read of those delivered", thousands(n("read"))),
                    href: links.history(&range(vec![("status", "read".into())])),
                },
                Figure {
                    label: "Failed",
                    value: thousands(failed),
                    note: percent(failed, total) + " of all messages",
                    href: links.history(&range(vec![("status", "failed".into())])),
                },
            ];

            let days: Vec<NaiveDate> = (0..crate::service::overview::DAYS)
                .map(|i| o.since + Duration::days(i))
                .collect();
            // Each day's words and ISO date, made once for every channel's bars.
            let day_labels: Vec<(String, String)> = days
                .iter()
                .map(|d| (day_words(*d), d.to_string()))
                .collect();
            let charts = per
                .iter()
                .map(|(&channel_id, by_day)| {
                    let peak = by_day
                        .values()
                        .map(|g| g.iter().sum::<i64>())
                        .max()
                        .unwrap_or(0)
                        .max(1);
                    let channel_total: i64 = by_day.values().flat_map(|g| g.iter()).sum();
                    let bars = days
                        .iter()
                        .enumerate()
                        .map(|(i, day)| {
                            let (words_of_day, iso_day) = &day_labels[i];
                            let groups = by_day.get(day).copied().unwrap_or_default();
                            let mut bottom = PLOT_HEIGHT;
                            let segments = groups
                                .iter()
                                .enumerate()
                                .filter(|(_, count)| **count > 0)
                                .map(|(g, &count)| {
                                    let (class, _, words, status) = GROUPS[g];
                                    // At least one unit, so a handful among thousands shows.
                                    let height = (count * PLOT_HEIGHT / peak).max(1);
                                    bottom -= height;
                                    // Written out rather than encoded: an id, an ISO date
                                    // and a status from the list above need no escaping
                                    // (hundreds of these links make the page).
                                    let href = links.enabled.then(|| match status {
                                        Some(s) => format!(
                                            "/history?channel={channel_id}&since={iso_day}&until={iso_day}&status={s}"
                                        ),
                                        None => format!(
                                            "/history?channel={channel_id}&since={iso_day}&until={iso_day}"
                                        ),
                                    });
                                    Segment {
                                        y: bottom.max(0),
                                        height,
                                        class,
                                        title: format!(
                                            "{}: {} {}",
                                            words_of_day,
                                            thousands(count),
                                            words
                                        ),
                                        href,
                                    }
                                })
                                .collect();
                            Bar {
                                x: i as i64 * BAR_STEP,
                                segments,
                            }
                        })
                        .collect();
                    ChannelChart {
                        name: name_of(channel_id),
                        total: thousands(channel_total),
                        peak: thousands(peak),
                        bars,
                        first_day: day_words(o.since),
                        last_day: day_words(o.until),
                        href: links.history(&range(vec![("channel", channel_id.to_string())])),
                    }
                })
                .collect();

            let failures = o
                .failures
                .iter()
                .map(|f| FailureRow {
                    channel: name_of(f.channel_id),
                    code: if f.error_code.is_empty() {
                        "(no code)".into()
                    } else {
                        f.error_code.clone()
                    },
                    count: thousands(f.n),
                    href: links.history(&range(vec![
                        ("channel", f.channel_id.to_string()),
                        ("status", "failed".into()),
                        ("error", f.error_code.clone()),
                    ])),
                })
                .collect();

            let broadcasts = o
                .broadcasts
                .iter()
                .map(|(b, c): &(_, Counts)| BroadcastRow {
                    name: b.name.clone(),
                    href: format!("/broadcasts/{}", b.public_id),
                    state: b.state().label(),
                    percent: c.percent(),
                    done: thousands(c.done()),
                    recipients: thousands(c.recipients),
                })
                .collect();

            let windows_open = o
                .windows_open
                .iter()
                .map(|&(channel_id, count)| Tally {
                    label: name_of(channel_id),
                    count: thousands(count),
                    href: None,
                })
                .collect();
            let opt_outs_week = o
                .opt_outs_week
                .iter()
                .map(|(kind, count)| Tally {
                    label: kind
                        .parse::<crate::domain::channel::ChannelKind>()
                        .map_or_else(|_| kind.clone(), |k| k.label().to_owned()),
                    count: thousands(*count),
                    href: Some(format!("/contacts?opted_out={kind}")),
                })
                .collect();

            OverviewView {
                since: day_words(o.since),
                until: day_words(o.until),
                any_messages: total > 0,
                figures,
                charts,
                legend: GROUPS.iter().map(|(c, w, _, _)| (*c, *w)).collect(),
                failures,
                broadcasts,
                can_view_broadcasts: !o.broadcasts.is_empty(),
                templates_in_review: o.templates_in_review.map(thousands),
                windows_open,
                opt_outs_week,
            }
        }
    }
}
