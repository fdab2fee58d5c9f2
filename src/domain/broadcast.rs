//! Broadcast campaigns: their states, the audience as a serialisable filter, the message and
//! the schedule. Nothing here touches the database; `storage::broadcasts` turns an [`Audience`]
//! into SQL with bound values (never SQL text from a person).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::fields::FieldProblems;
use super::template::VariableMapping;

/// Where a broadcast is in its life. Only `draft` may be edited; `completed` and `cancelled`
/// are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    Draft,
    /// Launched while launch approval is on: waits for an admin or support lead.
    PendingApproval,
    /// Launched (the audience is frozen) with a start time still to come.
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl BroadcastState {
    pub const ALL: [BroadcastState; 7] = [
        BroadcastState::Draft,
        BroadcastState::PendingApproval,
        BroadcastState::Scheduled,
        BroadcastState::Running,
        BroadcastState::Paused,
        BroadcastState::Completed,
        BroadcastState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::Draft => "draft",
            BroadcastState::PendingApproval => "pending_approval",
            BroadcastState::Scheduled => "scheduled",
            BroadcastState::Running => "running",
            BroadcastState::Paused => "paused",
            BroadcastState::Completed => "completed",
            BroadcastState::Cancelled => "cancelled",
        }
    }

    /// For people: "Pending approval".
    pub fn label(self) -> &'static str {
        match self {
            BroadcastState::Draft => "Draft",
            BroadcastState::PendingApproval => "Pending approval",
            BroadcastState::Scheduled => "Scheduled",
            BroadcastState::Running => "Running",
            BroadcastState::Paused => "Paused",
            BroadcastState::Completed => "Completed",
            BroadcastState::Cancelled => "Cancelled",
        }
    }

    /// The audience is frozen and messages may still go out.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            BroadcastState::Scheduled | BroadcastState::Running | BroadcastState::Paused
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, BroadcastState::Completed | BroadcastState::Cancelled)
    }
}

impl FromStr for BroadcastState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BroadcastState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown broadcast state \"{s}\""))
    }
}

impl fmt::Display for BroadcastState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a recipient is left out: the codes stored on skipped rows and shown in the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Opted out of this channel's kind.
    OptedOut,
    /// Had the most broadcast messages the frequency cap allows in the last 7 days.
    FrequencyCap,
    /// A variable maps to a field or attribute the contact has no value for, with no fallback.
    MissingVariable,
    // --- issue 17: CSV audience (rows of the upload that never became recipients) ---
    /// A CSV audience's row whose phone number is not valid.
    InvalidNumber,
    /// A CSV audience's row whose number an earlier row already has.
    Duplicate,
    /// A CSV audience's row that could not be read for another reason (a cell too long, not
    /// UTF-8, a NUL character, the wrong number of cells).
    InvalidRow,
}

impl Exclusion {
    pub const ALL: [Exclusion; 6] = [
        Exclusion::OptedOut,
        Exclusion::FrequencyCap,
        Exclusion::MissingVariable,
        Exclusion::InvalidNumber,
        Exclusion::Duplicate,
        Exclusion::InvalidRow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::OptedOut => "opted_out",
            Exclusion::FrequencyCap => "frequency_cap",
            Exclusion::MissingVariable => "missing_variable",
            Exclusion::InvalidNumber => "invalid_number",
            Exclusion::Duplicate => "duplicate",
            Exclusion::InvalidRow => "invalid_row",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Exclusion::OptedOut => "Opted out of this kind of channel",
            Exclusion::FrequencyCap => "Frequency cap reached",
            Exclusion::MissingVariable => "Missing a variable with no fallback",
            Exclusion::InvalidNumber => "Invalid phone number (CSV)",
            Exclusion::Duplicate => "Duplicate number (CSV)",
            Exclusion::InvalidRow => "Unreadable row (CSV)",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The audience

/// Who a broadcast goes to: members of any of `lists` (every contact when there are none),
/// minus members of `exclude_lists`, narrowed by `filter`. Lists are named by public id.
/// With `csv`, the audience is instead the good rows of an uploaded file (lists and filter are
/// then not used).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    #[serde(default)]
    pub lists: Vec<String>,
    #[serde(default)]
    pub exclude_lists: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Group>,
    /// Issue 17: a CSV upload as the audience (its rows are stored apart, by upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvAudience>,
    /// Issue 18: a follow-up's audience, frozen when "Send again to..." created it (its contacts
    /// are stored apart; lists and filter are then not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpAudience>,
}

// --- issue 18: "Send again to..." ---

/// Who a follow-up goes to, among the first broadcast's recipients. Each is defined on the
/// status of the recipient's message (resends not counted) and its attributed reply:
/// - `failed`: the message failed;
/// - `not_delivered`: the message went out (sent) or was tried, and no delivery was reported:
///   sent, failed or unknown;
/// - `not_read`: the message was sent or delivered, and not read;
/// - `not_replied`: the message was sent, delivered or read, and no reply was attributed;
/// - `replied`: a reply was attributed to the broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendAgainTo {
    Failed,
    NotDelivered,
    NotRead,
    NotReplied,
    Replied,
}

impl SendAgainTo {
    pub const ALL: [SendAgainTo; 5] = [
        SendAgainTo::Failed,
        SendAgainTo::NotDelivered,
        SendAgainTo::NotRead,
        SendAgainTo::NotReplied,
        SendAgainTo::Replied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SendAgainTo::Failed => "failed",
            SendAgainTo::NotDelivered => "not_delivered",
            SendAgainTo::NotRead => "not_read",
            SendAgainTo::NotReplied => "not_replied",
            SendAgainTo::Replied => "replied",
        }
    }

    /// For people and the follow-up's name: "not read".
    pub fn label(self) -> &'static str {
        match self {
            SendAgainTo::Failed => "failed",
            SendAgainTo::NotDelivered => "not delivered",
            SendAgainTo::NotRead => "not read",
            SendAgainTo::NotReplied => "not replied",
            SendAgainTo::Replied => "replied",
        }
    }

    /// The message statuses a recipient's message must have to be chosen (`replied` also
    /// needs, and `not_replied` needs the absence of, an attributed reply).
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            SendAgainTo::Failed => &["failed"],
            SendAgainTo::NotDelivered => &["sent", "failed", "unknown"],
            SendAgainTo::NotRead => &["sent", "delivered"],
            SendAgainTo::NotReplied | SendAgainTo::Replied => &["sent", "delivered", "read"],
        }
    }

    /// Who they are, after "the recipients who": "did not read it".
    pub fn who(self) -> &'static str {
        match self {
            SendAgainTo::Failed => "it failed for",
            SendAgainTo::NotDelivered => "it was not delivered to",
            SendAgainTo::NotRead => "did not read it",
            SendAgainTo::NotReplied => "did not reply",
            SendAgainTo::Replied => "replied",
        }
    }

    /// The follow-up's name: "<name> (again: not read)".
    pub fn follow_up_name(self, name: &str) -> String {
        let suffix = format!(" (again: {})", self.label());
        let room = 200usize.saturating_sub(suffix.chars().count());
        let base: String = name.chars().take(room).collect();
        format!("{base}{suffix}")
    }
}

impl FromStr for SendAgainTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SendAgainTo::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "\"{s}\" is not one of failed, not_delivered, not_read, not_replied, replied."
                )
            })
    }
}

/// A follow-up's audience: whom of which broadcast, and how many contacts were frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpAudience {
    /// The first broadcast's public id.
    pub of: String,
    pub to: SendAgainTo,
    pub contacts: i64,
}
// --- end issue 18 send again ---

// --- issue 17: a CSV upload as the audience ---

/// A CSV file uploaded as a broadcast's audience: which upload (the contact import that read
/// it), its columns, and what became of its rows. The rows themselves (contact and variables)
/// are in `broadcast_csv_rows` under the upload's import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvAudience {
    /// The public id of the import that read the file.
    pub upload: String,
    pub file_name: String,
    /// The header of the phone number's column.
    pub phone_column: String,
    /// The other columns' headers: each is a variable, mapped as `column:<header>`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Data rows read (the header not counted).
    pub rows: i64,
    /// Rows kept: one recipient each.
    pub good: i64,
    /// Rows left out for an invalid number.
    pub invalid_number: i64,
    /// Rows left out as a repeat of an earlier row's number.
    pub duplicate: i64,
    /// Rows left out for another problem.
    #[serde(default)]
    pub invalid_row: i64,
}

impl CsvAudience {
    /// The rows left out of the file, by reason (those with any).
    pub fn rejected(&self) -> Vec<(Exclusion, i64)> {
        [
            (Exclusion::InvalidNumber, self.invalid_number),
            (Exclusion::Duplicate, self.duplicate),
            (Exclusion::InvalidRow, self.invalid_row),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// The variable-mapping key that names a CSV column: `column:<header>`.
pub const COLUMN_PREFIX: &str = "column:";

/// The header a `column:<header>` key names, if it is one.
pub fn column_key(key: &str) -> Option<&str> {
    key.trim().strip_prefix(COLUMN_PREFIX)
}
// --- end issue 17 CSV audience ---

/// Conditions combined: every one (`all`) or at least one (`any`). Groups nest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "match", default)]
    pub combine: Combine,
    /// Required, so that a condition (which has none) is never read as an empty group.
    pub conditions: Vec<Node>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    #[default]
    All,
    Any,
}

/// A condition or a nested group (told apart by their keys: a group has `match`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    Group(Group),
    Condition(Condition),
}

/// One test on a contact. `field` is one of [`FIELDS`], or `attributes.<key>` for an attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The contact fields a condition may test, beside `attributes.<key>`.
pub const FIELDS: [&str; 10] = [
    "name",
    "email",
    "phone",
    "language",
    "time_zone",
    "created_at",
    "consent",
    "window",
    "last_inbound_at",
    "last_outbound_at",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Contains,
    Exists,
    NotExists,
    /// Numbers for attributes, times for dates.
    Gt,
    Gte,
    Lt,
    Lte,
    /// `window` only: the customer-service window is open now on the broadcast's channel.
    Open,
    /// `window` only.
    Closed,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Contains => "contains",
            Op::Exists => "exists",
            Op::NotExists => "not_exists",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Open => "open",
            Op::Closed => "closed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Op::Eq => "is",
            Op::Ne => "is not",
            Op::Contains => "contains",
            Op::Exists => "is set",
            Op::NotExists => "is not set",
            Op::Gt => "is more than / after",
            Op::Gte => "is at least / on or after",
            Op::Lt => "is less than / before",
            Op::Lte => "is at most / on or before",
            Op::Open => "is open",
            Op::Closed => "is closed",
        }
    }

    pub const ALL: [Op; 11] = [
        Op::Eq,
        Op::Ne,
        Op::Contains,
        Op::Exists,
        Op::NotExists,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Open,
        Op::Closed,
    ];

    fn needs_value(self) -> bool {
        !matches!(self, Op::Exists | Op::NotExists | Op::Open | Op::Closed)
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
    }
}

/// What a condition tests, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A text column of `contacts`.
    Text(&'static str),
    Attribute(String),
    /// A time: `created_at`, `last_inbound_at`, `last_outbound_at`.
    Time(&'static str),
    /// Consent on the broadcast channel's kind: `opted_in`, `opted_out` or `unknown`.
    Consent,
    /// The customer-service window on the broadcast's channel.
    Window,
}

/// A condition's value read as a time: an RFC 3339 instant, a date (midnight UTC), or "N days
/// ago" written `-Nd` (also `h` for hours).
pub fn parse_time(value: &str, now: DateTime<Utc>) -> Option<NaiveDateTime> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.naive_utc());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    let rest = v.strip_prefix('-')?;
    let (n, unit) = rest.split_at(rest.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let span = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        _ => return None,
    };
    Some((now - span).naive_utc())
}

impl Condition {
    /// What the condition tests, or why it cannot be used (for a person).
    pub fn subject(&self) -> Result<Subject, String> {
        let field = self.field.trim();
        let subject = if let Some(key) = field.strip_prefix("attributes.") {
            if key.trim().is_empty() {
                return Err("Name the attribute to test.".into());
            }
            Subject::Attribute(key.trim().to_owned())
        } else {
            match field {
                "name" => Subject::Text("name"),
                "email" => Subject::Text("email"),
                "phone" => Subject::Text("phone"),
                "language" => Subject::Text("language"),
                "time_zone" => Subject::Text("time_zone"),
                "created_at" => Subject::Time("created_at"),
                "last_inbound_at" => Subject::Time("last_inbound_at"),
                "last_outbound_at" => Subject::Time("last_outbound_at"),
                "consent" => Subject::Consent,
                "window" => Subject::Window,
                other => {
                    return Err(format!(
                        "\"{other}\" is not a field a filter can test (use one of {} or attributes.<name>).",
                        FIELDS.join(", ")
                    ));
                }
            }
        };
        let value = self.value.as_deref().map(str::trim).unwrap_or("");
        match (&subject, self.op) {
            (Subject::Window, Op::Open | Op::Closed) => return Ok(subject),
            (Subject::Window, _) => return Err("The window is either open or closed.".into()),
            (_, Op::Open | Op::Closed) => {
                return Err("Only the window is open or closed.".into());
            }
            (Subject::Consent, Op::Eq | Op::Ne) => {
                if !["opted_in", "opted_out", "unknown"].contains(&value) {
                    return Err("Consent is opted_in, opted_out or unknown.".into());
                }
                return Ok(subject);
            }
            (Subject::Consent, _) => return Err("Consent is compared with is or is not.".into()),
            (Subject::Time(_), Op::Contains) => {
                return Err("A date cannot contain text; compare it with before or after.".into());
            }
            (Subject::Text(_), op) if op.is_ordering() => {
                return Err("Text is compared with is, is not, contains or is set.".into());
            }
            _ => {}
        }
        if self.op.needs_value() && value.is_empty() {
            return Err("Enter the value to compare with.".into());
        }
        if let (Subject::Time(_), true) = (&subject, self.op.needs_value())
            && parse_time(value, Utc::now()).is_none()
        {
            return Err(format!(
                "\"{value}\" is not a date: write 2026-12-01, an RFC 3339 time, or -7d for seven days ago."
            ));
        }
        if matches!(subject, Subject::Attribute(_))
            && self.op.is_ordering()
            && value.parse::<f64>().is_err()
            && parse_time(value, Utc::now()).is_none()
        {
            return Err(format!(
                "\"{value}\" is neither a number nor a date to compare with."
            ));
        }
        Ok(subject)
    }
}

impl Audience {
    /// Every problem in the filter, against `audience.filter.<path>`.
    pub fn check(&self) -> Result<(), FieldProblems> {
        let mut problems = FieldProblems::default();
        if let Some(group) = &self.filter {
            check_group(group, "audience.filter", 0, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Whether the filter asks about the window (so the estimate depends on the channel).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
            && self.exclude_lists.is_empty()
            && self.filter.is_none()
            && self.csv.is_none()
            && self.follow_up.is_none()
    }
}

const MAX_DEPTH: usize = 4;
const MAX_CONDITIONS: usize = 50;

fn check_group(group: &Group, path: &str, depth: usize, problems: &mut FieldProblems) {
    if depth >= MAX_DEPTH {
        problems.add(path, format!("Groups nest at most {MAX_DEPTH} deep."));
        return;
    }
    if group.conditions.len() > MAX_CONDITIONS {
        problems.add(
            path,
            format!("A group holds at most {MAX_CONDITIONS} conditions."),
        );
    }
    for (i, node) in group.conditions.iter().enumerate() {
        let here = format!("{path}.conditions.{i}");
        match node {
            Node::Group(g) => check_group(g, &here, depth + 1, problems),
            Node::Condition(c) => {
                if let Err(reason) = c.subject() {
                    problems.add(here, reason);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The message and the schedule

/// What a broadcast sends: free text (SMS, or WhatsApp in window-aware mode) or an approved
/// template with its variables mapped per recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastMessage {
    Text {
        text: String,
    },
    Template {
        /// The template's public id.
        template: String,
        #[serde(default)]
        variables: VariableMapping,
        /// Window-aware mode (WhatsApp): this free text goes to recipients whose window is open
        /// when the dispatcher sends; the template to the others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_text: Option<String>,
    },
}

/// A wall-clock time in an IANA zone, turned into the instant it names. A time that does not
/// exist (skipped by a DST change) moves forward to the first that does; an ambiguous one (the
/// hour repeated when clocks go back) is the first of the two.
pub fn local_to_utc(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..(4 * 60) {
        match zone.from_local_datetime(&t) {
            chrono::LocalResult::Single(d) => return d.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            chrono::LocalResult::None => t += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&local)
}

/// An IANA zone name, checked.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("\"{name}\" is not an IANA time zone (for example Europe/Berlin)."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: &str, op: Op, value: Option<&str>) -> Condition {
        Condition {
            field: field.into(),
            op,
            value: value.map(Into::into),
        }
    }

    #[test]
    fn conditions_are_checked_with_reasons() {
        assert_eq!(
            cond("attributes.city", Op::Eq, Some("Paris")).subject(),
            Ok(Subject::Attribute("city".into()))
        );
        assert!(cond("nope", Op::Eq, Some("x")).subject().is_err());
        assert!(cond("name", Op::Gt, Some("x")).subject().is_err());
        assert!(cond("name", Op::Eq, None).subject().is_err());
        assert!(
            cond("created_at", Op::Gt, Some("yesterday"))
                .subject()
                .is_err()
        );
        assert!(cond("created_at", Op::Gt, Some("-7d")).subject().is_ok());
        assert!(cond("window", Op::Open, None).subject().is_ok());
        assert!(cond("window", Op::Eq, Some("x")).subject().is_err());
        assert!(cond("consent", Op::Eq, Some("opted_in")).subject().is_ok());
        assert!(cond("consent", Op::Eq, Some("maybe")).subject().is_err());
        assert!(
            cond("attributes.age", Op::Gte, Some("18"))
                .subject()
                .is_ok()
        );
        assert!(
            cond("attributes.age", Op::Gte, Some("old"))
                .subject()
                .is_err()
        );
    }

    #[test]
    fn an_audience_reads_from_json_with_nested_groups_and_reports_by_path() {
        let audience: Audience = serde_json::from_str(
            r#"{"lists": ["l1"], "filter": {"match": "any", "conditions": [
                {"field": "attributes.city", "op": "eq", "value": "Paris"},
                {"match": "all", "conditions": [{"field": "bogus", "op": "exists"}]}
            ]}}"#,
        )
        .expect("parses");
        let problems = audience.check().unwrap_err();
        assert!(
            problems
                .get("audience.filter.conditions.1.conditions.0")
                .is_some(),
            "{problems:?}"
        );
        let round: Audience =
            serde_json::from_str(&serde_json::to_string(&audience).unwrap()).unwrap();
        assert_eq!(round, audience);
    }

    #[test]
    fn local_times_follow_the_zone_across_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            local_to_utc(at("2026-01-15 09:00"), berlin).to_rfc3339(),
            "2026-01-15T08:00:00+00:00"
        );
        assert_eq!(
            local_to_utc(at("2026-07-15 09:00"), berlin).to_rfc3339(),
            "2026-07-15T07:00:00+00:00"
        );
        // 02:30 on 29 March 2026 does not exist in Berlin: 03:00 CEST is the first that does.
        assert_eq!(
            local_to_utc(at("2026-03-29 02:30"), berlin).to_rfc3339(),
            "2026-03-29T01:00:00+00:00"
        );
        // 02:30 on 25 October 2026 happens twice: the first (CEST).
        assert_eq!(
            local_to_utc(at("2026-10-25 02:30"), berlin).to_rfc3339(),
            "2026-10-25T00:30:00+00:00"
        );
        assert!(parse_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("-7d", now).unwrap().to_string(),
            "2026-11-26 12:00:00"
        );
        assert_eq!(
            parse_time("2026-11-01", now).unwrap().to_string(),
            "2026-11-01 00:00:00"
        );
        assert!(parse_time("-7w", now).is_none());
    }

    #[test]
    fn send_again_choices_read_back_and_name_the_follow_up_within_the_name_limit() {
        for to in SendAgainTo::ALL {
            assert_eq!(to.as_str().parse::<SendAgainTo>(), Ok(to));
        }
        assert!("unread".parse::<SendAgainTo>().is_err());
        assert_eq!(
            SendAgainTo::NotRead.follow_up_name("Winter sale"),
            "Winter sale (again: not read)"
        );
        let long = "x".repeat(200);
        let named = SendAgainTo::NotDelivered.follow_up_name(&long);
        assert_eq!(named.chars().count(), 200);
        assert!(named.ends_with(" (again: not delivered)"));
        // Read is never "not read"; a failure is never "not replied".
        assert!(!SendAgainTo::NotRead.statuses().contains(&"read"));
        assert!(!SendAgainTo::NotReplied.statuses().contains(&"failed"));
    }
}
