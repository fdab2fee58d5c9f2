//! Templates: the list with its filters, the form per kind of channel with a live preview, the
//! template page (versions, status, review actions, history), and the review workflow's
//! buttons. The rules are the domain's (`domain::template`), the state is storage's
//! (`storage::templates`), provider calls are the dispatcher's (`dispatch::templates`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::dispatch::hub::HubEvent;
use crate::dispatch::templates::{self as provider, Submitted, Synced};
use crate::domain::audit::Actor;
use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::fields::FieldProblems;
use crate::domain::role::Permission;
use crate::domain::sms::SmsEncoding;
use crate::domain::template::{
    ButtonDraft, CODE_EXPIRATION_MAX_MINUTES, OtpDraft, PlaceholderInfo, PlaceholderLocation,
    Preview, PreviewButton, ReviewAction, ReviewError, Reviewer, TemplateCategory, TemplateDraft,
    TemplateStage, VIBER_LANGUAGES, WHATSAPP_BUTTONS_MAX, WHATSAPP_FOOTER_MAX, WHATSAPP_HEADER_MAX,
    body_limit, preview as preview_draft, validate,
};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::DbConnection;
use crate::storage::audit::AuditEntry;
use crate::storage::channels::{self, Channel};
use crate::storage::templates::{
    self as store, Listed, StatusFilter, Template as StoredTemplate, TemplateError, TemplateFilter,
    Version,
};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, CurrentUser, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{format, render, render_with_status};

pub const PATH: &str = "/templates";

impl From<TemplateError> for AppError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Db(e) => e.into(),
            TemplateError::Duplicate { .. } => {
                AppError::invalid("duplicate_template", e.to_string())
            }
            TemplateError::Review(r) => match r {
                ReviewError::OwnTemplate | ReviewError::NotPermitted(_) => {
                    AppError::Refused(r.to_string())
                }
                ReviewError::InvalidTransition { .. } => AppError::conflict(r.to_string()),
                ReviewError::NoteRequired | ReviewError::NoteTooLong => {
                    AppError::invalid(r.code(), r.to_string())
                }
            },
            TemplateError::Conflict(m) => AppError::conflict(m),
            TemplateError::Locked(m) => AppError::invalid("locked", m),
        }
    }
}

fn template_or_404(conn: &mut DbConnection, public_id: &str) -> Result<StoredTemplate, AppError> {
    store::find_by_public_id(conn, public_id)?.ok_or_else(|| AppError::not_found("This template"))
}

fn channel_or_404(conn: &mut DbConnection, id: i64) -> Result<Channel, AppError> {
    channels::find(conn, id)?.ok_or_else(|| AppError::not_found("The template's channel"))
}

/// Who reviews templates for this channel, in words: "Meta", "Viber", "the sandbox"; empty
/// for SMS, which only Herald reviews.
pub fn reviewer_name(channel: &Channel) -> &'static str {
    match (channel.kind, channel.provider) {
        (ChannelKind::Sms, _) => "",
        (_, Provider::Sandbox) => "the sandbox",
        (ChannelKind::Whatsapp, _) => "Meta",
        (ChannelKind::Viber, _) => "Viber",
    }
}

/// How long the provider's review takes, when known, as a sentence.
fn review_time(channel: &Channel) -> &'static str {
    match (channel.kind, channel.provider) {
        (ChannelKind::Sms, _) => "",
        (_, Provider::Sandbox) => "The sandbox approves in a few seconds.",
        (ChannelKind::Whatsapp, _) => "Meta's review takes up to 24 hours.",
        (ChannelKind::Viber, _) => "",
    }
}

fn stage_label(stage: TemplateStage, channel: &Channel) -> String {
    let name = reviewer_name(channel);
    stage.label(if name.is_empty() {
        "the provider"
    } else {
        name
    })
}

fn stage_class(stage: TemplateStage) -> &'static str {
    match stage {
        TemplateStage::Sendable => "badge badge-ok",
        TemplateStage::Draft | TemplateStage::Superseded => "badge badge-muted",
        TemplateStage::InReview | TemplateStage::Approved | TemplateStage::Pending => {
            "badge badge-warn"
        }
        TemplateStage::Rejected
        | TemplateStage::ProviderRejected
        | TemplateStage::Paused
        | TemplateStage::Disabled => "badge badge-danger",
    }
}

/// Tells live pages a template changed.
fn changed(state: &AppState, template_id: i64) {
    state.hub.publish(HubEvent::Template { template_id });
}

fn reviewer(user: &CurrentUser) -> Reviewer {
    Reviewer {
        user_id: user.id,
        role: user.role,
    }
}

/// The signed-in person (these pages are for people; API keys have the JSON API).
fn person<P>(auth: &Auth<P>) -> Result<&CurrentUser, AppError> {
    auth.user()
        .ok_or_else(|| AppError::Refused("Templates are reviewed by people, signed in.".into()))
}

// ---------------------------------------------------------------------------------------------
// The list

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub language: String,
}

impl ListQuery {
    fn is_active(&self) -> bool {
        [&self.channel, &self.status, &self.category, &self.language]
            .iter()
            .any(|v| !v.trim().is_empty())
    }

    fn status(&self) -> Result<Option<StatusFilter>, AppError> {
        match self.status.trim() {
            "" => Ok(None),
            "sendable" => Ok(Some(StatusFilter::Sendable)),
            word => TemplateStage::parse(word)
                .map(|s| Some(StatusFilter::Current(s)))
                .ok_or_else(|| {
                    AppError::BadRequest(format!("\"{word}\" is not a template status."))
                }),
        }
    }
}

/// The status filter's choices: value and words.
pub const STATUS_CHOICES: [(&str, &str); 9] = [
    ("sendable", "Sendable"),
    ("draft", "Draft"),
    ("in_review", "In review"),
    ("rejected", "Rejected in review"),
    ("approved", "Approved, not yet at the provider"),
    ("pending", "Waiting for the provider"),
    ("provider_rejected", "Rejected by the provider"),
    ("paused", "Paused"),
    ("disabled", "Disabled"),
];

pub struct Row {
    pub public_id: String,
    pub name: String,
    pub language: String,
    pub channel: Channel,
    pub category: String,
    pub stage_label: String,
    pub stage_class: &'static str,
    pub version: i32,
    /// "version 1 sends until version 2 is approved", when another version is live.
    pub live_note: Option<String>,
    pub updated: String,
}

impl Row {
    fn new(l: Listed) -> Row {
        let live_note = l.live.as_ref().map(|live| {
            if live.stage == TemplateStage::Sendable {
                format!("version {} sends meanwhile", live.number)
            } else {
                format!(
                    "version {}: {}",
                    live.number,
                    stage_label(live.stage, &l.channel)
                )
            }
        });
        Row {
            stage_label: stage_label(l.current.stage, &l.channel),
            stage_class: stage_class(l.current.stage),
            version: l.current.number,
            updated: format::ago(Some(&l.template.updated_at)),
            public_id: l.template.public_id,
            name: l.template.name,
            language: l.template.language,
            category: l.template.category,
            channel: l.channel,
            live_note,
        }
    }
}

#[derive(Template)]
#[template(path = "templates/_results.html")]
struct Results {
    rows: Vec<Row>,
    filtered: bool,
    total: i64,
    can_draft: bool,
}

#[derive(Template)]
#[template(path = "templates/index.html")]
struct IndexPage {
    chrome: Chrome,
    results: Results,
    filter: ListQuery,
    channels: Vec<Channel>,
    languages: Vec<String>,
    statuses: &'static [(&'static str, &'static str)],
    categories: &'static [TemplateCategory],
    can_draft: bool,
}

impl IndexPage {
    fn channel_selected(&self, c: &Channel) -> bool {
        c.public_id == self.filter.channel
    }

    fn status_selected(&self, value: &str) -> bool {
        value == self.filter.status
    }

    fn category_selected(&self, c: &TemplateCategory) -> bool {
        c.as_str() == self.filter.category
    }

    fn language_selected(&self, l: &str) -> bool {
        l == self.filter.language
    }
}

pub async fn index(
    req: HttpRequest,
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let status = query.status()?;
    let q = query.clone();
    let (rows, total, all_channels, languages) = state
        .db
        .run(move |conn| {
            let all_channels = channels::list(conn)?;
            let channel_id = match q.channel.trim() {
                "" => None,
                id => Some(
                    all_channels
                        .iter()
                        .find(|c| c.public_id == id)
                        .map(|c| c.id)
                        .ok_or_else(|| AppError::not_found("This channel"))?,
                ),
            };
            let filter = TemplateFilter {
                channel_id,
                status,
                category: Some(q.category.trim().to_owned()).filter(|c| !c.is_empty()),
                language: Some(q.language.trim().to_owned()).filter(|l| !l.is_empty()),
                name: None,
            };
            let rows: Vec<Row> = store::list(conn, &filter)?
                .into_iter()
                .map(Row::new)
                .collect();
            Ok::<_, AppError>((
                rows,
                store::count(conn)?,
                all_channels,
                store::languages(conn)?,
            ))
        })
        .await?;
    let can_draft = auth.principal.role().can(Permission::DraftTemplates);
    let results = Results {
        rows,
        filtered: query.is_active(),
        total,
        can_draft,
    };
    if crate::web::htmx_targets(&req, "templates-results") {
        return render(&results);
    }
    render(&IndexPage {
        chrome,
        results,
        filter: query,
        channels: all_channels,
        languages,
        statuses: &STATUS_CHOICES,
        categories: &TemplateCategory::ALL,
        can_draft,
    })
}

// ---------------------------------------------------------------------------------------------
// The form and its live preview

/// The form's fields, read from the raw body: button rows and samples repeat.
struct FormInput {
    /// The version the form was opened on (edits only).
    version: Option<i32>,
    draft: TemplateDraft,
    /// The sample fields the form had, in order (to know when to redraw them).
    sample_keys: Vec<String>,
}

fn field(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn repeated<'a>(pairs: &'a [(String, String)], name: &'a str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

impl FormInput {
    /// Reads the fields the channel's kind has; others are ignored (the form does not show
    /// them, so an error about them could not be shown either).
    fn parse(pairs: &[(String, String)], kind: ChannelKind) -> FormInput {
        let mut draft = TemplateDraft {
            name: field(pairs, "name"),
            language: field(pairs, "language"),
            category: field(pairs, "category"),
            body: field(pairs, "body"),
            ..TemplateDraft::default()
        };
        if kind == ChannelKind::Sms {
            draft.category.clear();
        }
        if kind == ChannelKind::Whatsapp {
            draft.header = field(pairs, "header");
            draft.footer = field(pairs, "footer");
            let kinds = repeated(pairs, "button_kind");
            let texts = repeated(pairs, "button_text");
            let urls = repeated(pairs, "button_url");
            let phones = repeated(pairs, "button_phone");
            let rows = kinds.len().max(texts.len());
            let at = |list: &[&str], i: usize| list.get(i).copied().unwrap_or_default().to_owned();
            draft.buttons = (0..rows)
                .map(|i| ButtonDraft {
                    kind: at(&kinds, i),
                    text: at(&texts, i),
                    url: at(&urls, i),
                    phone_number: at(&phones, i),
                })
                .collect();
            draft.otp = OtpDraft {
                otp_type: field(pairs, "otp_type"),
                button_text: field(pairs, "otp_button_text"),
                autofill_text: field(pairs, "otp_autofill_text"),
                package_name: field(pairs, "otp_package_name"),
                signature_hash: field(pairs, "otp_signature_hash"),
                // A checkbox: present when ticked.
                security_recommendation: pairs
                    .iter()
                    .any(|(k, v)| k == "otp_security_recommendation" && !v.trim().is_empty()),
                code_expiration_minutes: field(pairs, "otp_code_expiration_minutes"),
            };
        }
        let mut sample_keys = Vec::new();
        for (k, v) in pairs {
            if let Some(key) = k.strip_prefix("sample.") {
                sample_keys.push(key.to_owned());
                if !v.trim().is_empty() {
                    draft.samples.insert(key.to_owned(), v.clone());
                }
            }
        }
        FormInput {
            version: field(pairs, "version").trim().parse().ok(),
            draft,
            sample_keys,
        }
    }
}

/// One row of the button editor, with its errors.
pub struct ButtonRow {
    pub kind: String,
    pub text: String,
    pub url: String,
    pub phone: String,
    pub errors: Vec<String>,
}

/// One sample field, with its errors.
pub struct SampleField {
    pub key: String,
    pub label: String,
    pub value: String,
    pub errors: Vec<String>,
}

fn placeholder_label(info: &PlaceholderInfo) -> String {
    match info.location {
        PlaceholderLocation::Body => format!("{} in the text", info.placeholder),
        PlaceholderLocation::Header => format!("{} in the header", info.placeholder),
        PlaceholderLocation::Button { index } => {
            format!(
                "End of the link of button {} ({})",
                index + 1,
                info.placeholder
            )
        }
    }
}

/// The variables of a preview, each once, in order.
fn distinct_placeholders(preview: &Preview) -> Vec<&PlaceholderInfo> {
    let mut seen: Vec<&PlaceholderInfo> = Vec::new();
    for info in &preview.placeholders {
        if !seen.iter().any(|s| s.name == info.name) {
            seen.push(info);
        }
    }
    seen
}

fn sample_fields(
    preview: &Preview,
    draft: &TemplateDraft,
    errors: &FieldProblems,
) -> Vec<SampleField> {
    distinct_placeholders(preview)
        .into_iter()
        .map(|info| SampleField {
            key: info.name.clone(),
            label: placeholder_label(info),
            value: draft.samples.get(&info.name).cloned().unwrap_or_default(),
            errors: owned(errors.for_field(&format!("samples.{}", info.name))),
        })
        .collect()
}

fn owned(messages: Vec<&str>) -> Vec<String> {
    messages.into_iter().map(str::to_owned).collect()
}

/// The sample fields, alone (the preview redraws them out of band when placeholders change).
#[derive(Template)]
#[template(path = "templates/_samples.html")]
struct Samples {
    fields: Vec<SampleField>,
    kind: ChannelKind,
    oob: bool,
}

/// The SMS facts under the preview.
pub struct SmsFacts {
    pub encoding: &'static str,
    pub segments: usize,
    pub units: String,
    pub unicode_reason: Option<String>,
}

/// The phone-like preview with counts and what is left to fix.
#[derive(Template)]
#[template(path = "templates/_preview.html")]
struct PreviewPane {
    kind: ChannelKind,
    channel_name: String,
    header: Option<String>,
    body: String,
    footer: Option<String>,
    buttons: Vec<PreviewButton>,
    body_chars: usize,
    body_limit: usize,
    header_chars: Option<usize>,
    message_chars: usize,
    sms: Option<SmsFacts>,
    /// (where, what) for each problem validation still finds.
    problems: Vec<(String, String)>,
    /// Rendering a saved version: its problems are not the reader's to fix.
    show_problems: bool,
}

/// "buttons[1].url" -> "Button 2, link"; "samples.first_name" -> "Sample for first_name".
fn field_label(field: &str) -> String {
    if let Some(rest) = field.strip_prefix("buttons[")
        && let Some((index, part)) = rest.split_once("].")
    {
        let n = index.parse::<usize>().map(|i| i + 1).unwrap_or(0);
        let part = match part {
            "kind" => "type",
            "text" => "label",
            "url" => "link",
            "phone_number" => "phone number",
            other => other,
        };
        return format!("Button {n}, {part}");
    }
    if let Some(key) = field.strip_prefix("samples.") {
        return format!("Sample for {key}");
    }
    if let Some(part) = field.strip_prefix("otp.") {
        return match part {
            "otp_type" => "Code button",
            "button_text" => "Code button, label",
            "autofill_text" => "Code button, autofill label",
            "package_name" => "Code button, app package",
            "signature_hash" => "Code button, app signature hash",
            "code_expiration_minutes" => "Code expires after",
            other => other,
        }
        .to_owned();
    }
    match field {
        "name" => "Name",
        "language" => "Language",
        "category" => "Category",
        "header" => "Header",
        "body" => "Text",
        "footer" => "Footer",
        "buttons" => "Buttons",
        "image_url" => "Image",
        other => other,
    }
    .to_owned()
}

fn sms_facts(info: &crate::domain::sms::SmsInfo) -> SmsFacts {
    SmsFacts {
        encoding: match info.encoding {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "Unicode (UCS-2)",
        },
        segments: info.segments,
        units: format!(
            "{} {} used, {} left in this segment",
            info.units_used,
            match info.encoding {
                SmsEncoding::Gsm7 => "characters",
                SmsEncoding::Ucs2 => "UTF-16 units",
            },
            info.remaining_in_segment
        ),
        unicode_reason: info.unicode_reason(),
    }
}

impl PreviewPane {
    fn new(
        channel: &Channel,
        draft: &TemplateDraft,
        show_problems: bool,
    ) -> (PreviewPane, Preview) {
        let kind = channel.kind;
        let p = preview_draft(kind, draft);
        let body_chars = draft.body.replace("\r\n", "\n").trim().chars().count();
        let header = draft.header.trim();
        let pane = PreviewPane {
            kind,
            channel_name: channel.name.clone(),
            header: p.header.clone(),
            body: p.body.clone(),
            footer: p.footer.clone(),
            buttons: p.buttons.clone(),
            body_chars,
            body_limit: body_limit(kind),
            header_chars: (kind == ChannelKind::Whatsapp && !header.is_empty())
                .then(|| header.chars().count()),
            message_chars: p.text.chars().count(),
            sms: p.sms.as_ref().map(sms_facts),
            problems: p
                .problems
                .iter()
                .map(|e| (field_label(&e.field), e.message.clone()))
                .collect(),
            show_problems,
        };
        (pane, p)
    }
}

/// The create and edit form.
#[derive(Template)]
#[template(path = "templates/form.html")]
struct FormPage {
    chrome: Chrome,
    channel: Channel,
    /// The template being edited (None when creating).
    template: Option<StoredTemplate>,
    editing: Option<i32>,
    /// Saving makes a new version (the newest one was approved).
    makes_new_version: bool,
    name_locked: bool,
    draft: TemplateDraft,
    errors: FieldProblems,
    /// A problem with the whole form (someone else saved meanwhile).
    banner: Option<String>,
    buttons: Vec<ButtonRow>,
    samples: Samples,
    preview: PreviewPane,
    categories: &'static [TemplateCategory],
    viber_languages: &'static [&'static str],
    header_max: usize,
    footer_max: usize,
    buttons_max: usize,
    code_expiration_max: u8,
}

impl FormPage {
    fn field_errors(&self, field: &str) -> Vec<&str> {
        self.errors.for_field(field)
    }

    fn invalid(&self, field: &str) -> bool {
        !self.errors.for_field(field).is_empty()
    }

    fn language_is(&self, l: &str) -> bool {
        l == self.draft.language
    }

    fn category_is(&self, c: &TemplateCategory) -> bool {
        c.as_str() == self.draft.category.trim()
    }

    /// The draft is (meant to be) a WhatsApp authentication template.
    fn is_authentication(&self) -> bool {
        self.channel.kind == ChannelKind::Whatsapp
            && self
                .draft
                .category
                .trim()
                .eq_ignore_ascii_case(TemplateCategory::Authentication.as_str())
    }

    fn otp_type_is(&self, value: &str) -> bool {
        self.draft.otp.otp_type.trim().eq_ignore_ascii_case(value)
    }

    fn action(&self) -> String {
        match &self.template {
            Some(t) => format!("{PATH}/{}", t.public_id),
            None => PATH.to_owned(),
        }
    }
}

struct FormState {
    template: Option<StoredTemplate>,
    editing: Option<i32>,
    makes_new_version: bool,
    name_locked: bool,
}

fn form_page(
    chrome: Chrome,
    channel: Channel,
    draft: TemplateDraft,
    errors: FieldProblems,
    banner: Option<String>,
    state: FormState,
) -> FormPage {
    let (preview, p) = PreviewPane::new(&channel, &draft, true);
    let mut rows: Vec<ButtonDraft> = draft.buttons.clone();
    if channel.kind == ChannelKind::Whatsapp
        && (rows.is_empty() || rows.last().is_some_and(|b| !is_blank(b)))
        && rows.len() < WHATSAPP_BUTTONS_MAX
    {
        rows.push(ButtonDraft::default());
    }
    let buttons = rows
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let mut row_errors = Vec::new();
            for part in ["kind", "text", "url", "phone_number"] {
                row_errors.extend(owned(errors.for_field(&format!("buttons[{i}].{part}"))));
            }
            ButtonRow {
                kind: b.kind,
                text: b.text,
                url: b.url,
                phone: b.phone_number,
                errors: row_errors,
            }
        })
        .collect();
    let samples = Samples {
        fields: sample_fields(&p, &draft, &errors),
        kind: channel.kind,
        oob: false,
    };
    FormPage {
        chrome,
        categories: TemplateCategory::for_kind(channel.kind),
        channel,
        template: state.template,
        editing: state.editing,
        makes_new_version: state.makes_new_version,
        name_locked: state.name_locked,
        draft,
        errors,
        banner,
        buttons,
        samples,
        preview,
        viber_languages: &VIBER_LANGUAGES,
        header_max: WHATSAPP_HEADER_MAX,
        footer_max: WHATSAPP_FOOTER_MAX,
        buttons_max: WHATSAPP_BUTTONS_MAX,
        code_expiration_max: CODE_EXPIRATION_MAX_MINUTES,
    }
}

fn is_blank(b: &ButtonDraft) -> bool {
    [&b.kind, &b.text, &b.url, &b.phone_number]
        .iter()
        .all(|s| s.trim().is_empty())
}

#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    channel: String,
}

/// Choosing the channel comes first: its kind decides the form.
#[derive(Template)]
#[template(path = "templates/choose_channel.html")]
struct ChooseChannel {
    chrome: Chrome,
    channels: Vec<Channel>,
}

pub async fn new_form(
    _auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, AppError> {
    let wanted = query.into_inner().channel;
    let all = state
        .db
        .run(|conn| Ok::<_, AppError>(channels::list(conn)?))
        .await?;
    let enabled: Vec<Channel> = all.into_iter().filter(Channel::is_enabled).collect();
    let Some(channel) = enabled
        .iter()
        .find(|c| c.public_id == wanted.trim())
        .cloned()
    else {
        return render(&ChooseChannel {
            chrome,
            channels: enabled,
        });
    };
    let draft = TemplateDraft {
        language: "en".into(),
        ..TemplateDraft::default()
    };
    render(&form_page(
        chrome,
        channel,
        draft,
        FieldProblems::default(),
        None,
        FormState {
            template: None,
            editing: None,
            makes_new_version: false,
            name_locked: false,
        },
    ))
}

async fn channel_by_public_id(state: &AppState, public_id: String) -> Result<Channel, AppError> {
    state
        .db
        .run(move |conn| {
            channels::find_by_public_id(conn, public_id.trim())?.ok_or_else(|| {
                AppError::BadRequest("Choose the channel the template is for.".into())
            })
        })
        .await
}

/// The live preview: the bubble, the counts and, when the placeholders changed, the sample
/// fields (out of band, so typing in a sample never loses focus).
pub async fn preview(
    _auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let channel = channel_by_public_id(&state, field(&pairs, "channel")).await?;
    let input = FormInput::parse(&pairs, channel.kind);
    let (pane, p) = PreviewPane::new(&channel, &input.draft, true);
    let mut html = pane.render()?;
    let names: Vec<String> = distinct_placeholders(&p)
        .into_iter()
        .map(|i| i.name.clone())
        .collect();
    if names != input.sample_keys {
        let samples = Samples {
            fields: sample_fields(&p, &input.draft, &FieldProblems::default()),
            kind: channel.kind,
            oob: true,
        };
        html.push_str(&samples.render()?);
    }
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::html())
        .body(html))
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let channel = channel_by_public_id(&state, field(&pairs, "channel")).await?;
    let input = FormInput::parse(&pairs, channel.kind);
    let actor = auth.actor();
    let new_form = || FormState {
        template: None,
        editing: None,
        makes_new_version: false,
        name_locked: false,
    };
    let valid = match validate(channel.kind, &input.draft) {
        Ok(v) => v,
        Err(errors) => return invalid_form(chrome, channel, input.draft, errors, None, new_form()),
    };
    let (ch, v) = (channel.clone(), valid.clone());
    let created = state
        .db
        .run(move |conn| Ok::<_, AppError>(store::create(conn, &ch, &v, &actor)))
        .await?;
    match created {
        Ok(t) => {
            changed(&state, t.id);
            session.success(format!(
                "{} ({}) is saved as a draft. Submit it for review when it is ready.",
                t.name, t.language
            ));
            Ok(redirect_response(&req, &format!("{PATH}/{}", t.public_id)))
        }
        Err(e @ TemplateError::Duplicate { .. }) => {
            let mut errors = FieldProblems::default();
            errors.add("name", e.to_string());
            invalid_form(chrome, channel, input.draft, errors, None, new_form())
        }
        Err(e) => Err(e.into()),
    }
}

fn invalid_form(
    chrome: Chrome,
    channel: Channel,
    draft: TemplateDraft,
    errors: FieldProblems,
    banner: Option<String>,
    state: FormState,
) -> Result<HttpResponse, AppError> {
    let status = if banner.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with_status(
        &form_page(chrome, channel, draft, errors, banner, state),
        status,
    )
}

/// The template, its channel and versions (newest first).
struct Loaded {
    template: StoredTemplate,
    channel: Channel,
    versions: Vec<Version>,
}

impl Loaded {
    fn current(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| Some(v.id) == self.template.current_version_id)
    }

    fn ever_approved(&self) -> bool {
        self.versions.iter().any(|v| {
            !matches!(
                v.stage,
                TemplateStage::Draft | TemplateStage::InReview | TemplateStage::Rejected
            )
        })
    }

    fn form_state(&self) -> FormState {
        let current = self.current();
        FormState {
            template: Some(self.template.clone()),
            editing: current.map(|v| v.number),
            makes_new_version: current.is_some_and(|v| !v.stage.is_editable_in_place()),
            name_locked: self.ever_approved(),
        }
    }
}

async fn load(state: &AppState, public_id: String) -> Result<Loaded, AppError> {
    state
        .db
        .run(move |conn| {
            let template = template_or_404(conn, &public_id)?;
            let channel = channel_or_404(conn, template.channel_id)?;
            let versions = store::versions(conn, template.id)?;
            Ok::<_, AppError>(Loaded {
                template,
                channel,
                versions,
            })
        })
        .await
}

pub async fn edit_form(
    _auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let loaded = load(&state, path.into_inner()).await?;
    let draft = loaded
        .current()
        .map(|v| v.draft.clone())
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    render(&form_page(
        chrome,
        loaded.channel.clone(),
        draft,
        FieldProblems::default(),
        None,
        loaded.form_state(),
    ))
}

pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let loaded = load(&state, path.into_inner()).await?;
    let user = person(&auth)?;
    let input = FormInput::parse(&body.into_inner(), loaded.channel.kind);
    let kind = loaded.channel.kind;
    let valid = match validate(kind, &input.draft) {
        Ok(v) => v,
        Err(errors) => {
            let form = loaded.form_state();
            return invalid_form(chrome, loaded.channel, input.draft, errors, None, form);
        }
    };
    let editing = input
        .version
        .or(loaded.current().map(|v| v.number))
        .unwrap_or(0);
    let (template, actor, by) = (loaded.template.clone(), auth.actor(), reviewer(user));
    let v = valid.clone();
    let edited = state
        .db
        .run(move |conn| Ok::<_, AppError>(store::edit(conn, &template, editing, &v, &actor, &by)))
        .await?;
    if edited.is_ok() {
        changed(&state, loaded.template.id);
    }
    let mut errors = FieldProblems::default();
    let banner = match edited {
        Ok(store::Edited::InPlace(v)) => {
            session.success(format!("Version {} saved; it is a draft.", v.number));
            return Ok(redirect_response(
                &req,
                &format!("{PATH}/{}", loaded.template.public_id),
            ));
        }
        Ok(store::Edited::NewVersion(v)) => {
            session.success(format!(
                "Saved as version {}, a draft. Version {} keeps sending until version {} is approved.",
                v.number,
                v.number - 1,
                v.number
            ));
            return Ok(redirect_response(
                &req,
                &format!("{PATH}/{}", loaded.template.public_id),
            ));
        }
        Err(e @ (TemplateError::Duplicate { .. } | TemplateError::Locked(_))) => {
            errors.add("name", e.to_string());
            None
        }
        Err(TemplateError::Conflict(m)) => Some(m),
        Err(e) => return Err(e.into()),
    };
    let form = loaded.form_state();
    invalid_form(chrome, loaded.channel, input.draft, errors, banner, form)
}

// ---------------------------------------------------------------------------------------------
// The template page

/// A version as the page shows it.
pub struct VersionView {
    pub number: i32,
    pub stage: TemplateStage,
    pub stage_label: String,
    pub stage_class: &'static str,
    pub author: String,
    pub editor: Option<String>,
    pub created: String,
    pub reviewer: Option<String>,
    pub reviewed: Option<String>,
    pub review_note: Option<String>,
    pub provider_template_id: Option<String>,
    pub provider_reason: Option<String>,
    pub provider_note: Option<String>,
    pub provider_error: Option<String>,
    pub provider_checked: Option<String>,
    pub submitting: bool,
    pub live: bool,
}

impl VersionView {
    fn new(v: &Version, channel: &Channel, live_id: Option<i64>) -> VersionView {
        VersionView {
            number: v.number,
            stage: v.stage,
            stage_label: stage_label(v.stage, channel),
            stage_class: stage_class(v.stage),
            author: v.author_label.clone(),
            editor: (v.editor_label != v.author_label).then(|| v.editor_label.clone()),
            created: format::datetime(&v.created_at),
            reviewer: v.reviewer_label.clone(),
            reviewed: v.reviewed_at.as_ref().map(format::datetime),
            review_note: v.review_note.clone(),
            provider_template_id: v.provider_template_id.clone(),
            provider_reason: v.state.provider.reason().map(str::to_owned),
            provider_note: v.provider_note.clone(),
            provider_error: v.provider_error.clone(),
            provider_checked: v
                .provider_checked_at
                .as_ref()
                .map(|at| format::ago(Some(at))),
            submitting: v.is_submitting(),
            live: live_id == Some(v.id),
        }
    }
}

/// The status card: the newest version's state and what the person may do about it. Polls
/// itself while a provider's verdict is awaited.
#[derive(Template)]
#[template(path = "templates/_status.html")]
struct StatusCard {
    public_id: String,
    csrf: String,
    kind: ChannelKind,
    reviewer_name: &'static str,
    review_time: &'static str,
    current: VersionView,
    /// The version that sends, when it is not the newest.
    live: Option<VersionView>,
    can_draft: bool,
    can_review: bool,
    /// The signed-in person wrote the newest version (and so may not review it).
    wrote_it: bool,
    note: String,
    note_error: Option<String>,
}

impl StatusCard {
    fn polling(&self) -> bool {
        self.current.submitting
            || self.current.stage == TemplateStage::Pending
            || self
                .live
                .as_ref()
                .is_some_and(|l| l.stage == TemplateStage::Pending)
    }

    /// What the page showed, so its polling hears only of changes.
    fn fingerprint(&self) -> String {
        let live = self.live.as_ref().map_or("-", |l| l.stage.as_str());
        format!(
            "{}.{}.{}.{live}",
            self.current.number,
            self.current.stage.as_str(),
            u8::from(self.current.submitting)
        )
    }

    fn has_provider(&self) -> bool {
        self.kind != ChannelKind::Sms
    }

    fn can_sync(&self) -> bool {
        self.has_provider()
            && (self.current.provider_template_id.is_some()
                || self
                    .live
                    .as_ref()
                    .is_some_and(|l| l.provider_template_id.is_some()))
    }
}

pub struct HistoryItem {
    pub when: String,
    pub who: String,
    pub what: String,
    pub detail: String,
}

fn history_item(e: AuditEntry) -> HistoryItem {
    let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
    let text = |k: &str| details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let version = details
        .get("version")
        .and_then(serde_json::Value::as_i64)
        .map(|n| format!("version {n}"))
        .unwrap_or_default();
    let what = match e.action.as_str() {
        "template.drafted" => format!("drafted {version}"),
        "template.edited" => {
            if details
                .get("new_version")
                .and_then(serde_json::Value::as_bool)
                == Some(true)
            {
                format!("made a new draft, {version}")
            } else {
                format!("edited {version}")
            }
        }
        "template.submitted" => format!("submitted {version} for review"),
        "template.withdrawn" => format!("withdrew {version} from review"),
        "template.approved" => format!("approved {version}"),
        "template.rejected" => format!("rejected {version}"),
        "template.provider_status" => match text("status").as_deref() {
            Some("submitted") => format!("{version} submitted to the provider"),
            Some("submission_failed") => format!("{version} could not be submitted"),
            Some(status) => format!("{version}: {}", status.replace('_', " ")),
            None => version.clone(),
        },
        other => other.to_owned(),
    };
    let detail = ["note", "reason", "error", "renamed", "provider_template_id"]
        .iter()
        .filter_map(|k| text(k).map(|v| (k, v)))
        .map(|(k, v)| match *k {
            "provider_template_id" => format!("provider id {v}"),
            "renamed" => format!("now {v}"),
            _ => v,
        })
        .collect::<Vec<_>>()
        .join(" · ");
    HistoryItem {
        when: format::datetime(&e.occurred_at),
        who: e.actor_label,
        what,
        detail,
    }
}

#[derive(Template)]
#[template(path = "templates/show.html")]
struct ShowPage {
    chrome: Chrome,
    template: StoredTemplate,
    channel: Channel,
    status: StatusCard,
    preview: PreviewPane,
    placeholders: Vec<PlaceholderInfo>,
    versions: Vec<VersionView>,
    history: Vec<HistoryItem>,
    can_draft: bool,
}

fn status_card(
    loaded: &Loaded,
    user: &CurrentUser,
    csrf: String,
    note: String,
    note_error: Option<String>,
) -> Result<StatusCard, AppError> {
    let current = loaded
        .current()
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    let live_id = loaded.template.live_version_id;
    let live = loaded
        .versions
        .iter()
        .find(|v| Some(v.id) == live_id && v.id != current.id)
        .map(|v| VersionView::new(v, &loaded.channel, live_id));
    Ok(StatusCard {
        public_id: loaded.template.public_id.clone(),
        csrf,
        kind: loaded.channel.kind,
        reviewer_name: reviewer_name(&loaded.channel),
        review_time: review_time(&loaded.channel),
        current: VersionView::new(current, &loaded.channel, live_id),
        live,
        can_draft: user.can(Permission::DraftTemplates),
        can_review: user.can(Permission::ReviewTemplates),
        wrote_it: current.is_written_by(user.id),
        note,
        note_error,
    })
}

async fn show_page(
    state: &AppState,
    chrome: Chrome,
    user: &CurrentUser,
    public_id: String,
    note: String,
    note_error: Option<String>,
) -> Result<ShowPage, AppError> {
    let loaded = load(state, public_id).await?;
    let t = loaded.template.clone();
    let history = state
        .db
        .run(move |conn| Ok::<_, AppError>(store::history(conn, &t)?))
        .await?;
    let status = status_card(&loaded, user, chrome.csrf.clone(), note, note_error)?;
    let current = loaded
        .current()
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    let (preview, p) = PreviewPane::new(&loaded.channel, &current.draft, false);
    let live_id = loaded.template.live_version_id;
    Ok(ShowPage {
        status,
        preview,
        placeholders: p.placeholders,
        versions: loaded
            .versions
            .iter()
            .map(|v| VersionView::new(v, &loaded.channel, live_id))
            .collect(),
        history: history.into_iter().map(history_item).collect(),
        can_draft: user.can(Permission::DraftTemplates),
        template: loaded.template,
        channel: loaded.channel,
        chrome,
    })
}

pub async fn show(
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = person(&auth)?;
    let page = show_page(&state, chrome, user, path.into_inner(), String::new(), None).await?;
    render(&page)
}

#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    /// The fingerprint of the status the page shows.
    #[serde(default)]
    seen: String,
}

/// The status card's polling: nothing (204) while the status is what the page shows; when it
/// changed, htmx reloads the page, so the versions and history change with it. Without htmx,
/// the card alone.
pub async fn status(
    req: HttpRequest,
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, AppError> {
    let user = person(&auth)?;
    let loaded = load(&state, path.into_inner()).await?;
    let card = status_card(&loaded, user, chrome.csrf, String::new(), None)?;
    if card.fingerprint() == query.seen {
        return Ok(HttpResponse::NoContent().finish());
    }
    if crate::web::is_htmx(&req) {
        return Ok(HttpResponse::Ok()
            .insert_header(("HX-Refresh", "true"))
            .finish());
    }
    render(&card)
}

// ---------------------------------------------------------------------------------------------
// The workflow's buttons

#[derive(Debug, Default, Deserialize)]
pub struct ReviewForm {
    /// The version number the person saw.
    #[serde(default)]
    version: i32,
    #[serde(default)]
    note: String,
}

async fn apply_review(
    state: &AppState,
    auth_user: &CurrentUser,
    actor: Actor,
    public_id: String,
    version: i32,
    action: ReviewAction,
    note: Option<String>,
) -> Result<store::Reviewed, AppError> {
    let by = reviewer(auth_user);
    let done = state
        .db
        .run(move |conn| {
            let template = template_or_404(conn, &public_id)?;
            Ok::<_, AppError>(store::review(
                conn,
                &template,
                version,
                action,
                note.as_deref(),
                &by,
                &actor,
            )?)
        })
        .await?;
    changed(state, done.template.id);
    Ok(done)
}

fn back(req: &HttpRequest, public_id: &str) -> HttpResponse {
    redirect_response(req, &format!("{PATH}/{public_id}"))
}

/// Submitting for review (`/templates/{id}/submit`) and withdrawing from it (`/withdraw`): the
/// author's side of the workflow.
pub async fn author_action(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let (id, word) = path.into_inner();
    let action = match word.as_str() {
        "submit" => ReviewAction::Submit,
        "withdraw" => ReviewAction::Withdraw,
        _ => {
            return Err(AppError::NotFound(
                "There is no page at this address.".into(),
            ));
        }
    };
    let user = person(&auth)?;
    let submitting = action == ReviewAction::Submit;
    let done = apply_review(
        &state,
        user,
        auth.actor(),
        id.clone(),
        form.version,
        action,
        None,
    )
    .await?;
    let n = done.version.number;
    session.success(if submitting {
        format!(
            "Version {n} is in review: a support lead or an admin who did not write it approves or rejects it."
        )
    } else {
        format!("Version {n} is a draft again.")
    });
    Ok(back(&req, &id))
}

/// Tells the person what the provider said to a submission.
fn submission_flash(session: &TypedSession, channel: &Channel, outcome: &Submitted) {
    let who = reviewer_name(channel);
    match outcome {
        Submitted::Accepted(crate::channels::ProviderTemplateStatus::Approved) => {
            session.success(format!("{who} approved it at once: it is sendable."))
        }
        Submitted::Accepted(_) => session.success(format!(
            "Submitted to {who}; it becomes sendable when {who} approves it. {}",
            review_time(channel)
        )),
        Submitted::Failed(text) => session.error(format!("{who} refused the submission: {text}")),
        Submitted::InFlight => session.success(format!("It is being submitted to {who}.")),
        Submitted::NotNeeded => {}
    }
}

pub async fn approve(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let user = person(&auth)?;
    let form = form.into_inner();
    let actor = auth.actor();
    let done = apply_review(
        &state,
        user,
        actor.clone(),
        id.clone(),
        form.version,
        ReviewAction::Approve,
        Some(form.note),
    )
    .await?;
    if done.awaits_provider() {
        session.success(format!(
            "Version {} approved in Herald.",
            done.version.number
        ));
        let outcome = provider::submit(
            &state.db,
            &state.hub,
            &state.channels,
            done.version.id,
            &actor,
        )
        .await?;
        submission_flash(&session, &done.channel, &outcome);
    } else {
        session.success(format!(
            "Version {} approved: it is sendable.",
            done.version.number
        ));
    }
    Ok(back(&req, &id))
}

pub async fn reject(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let user = person(&auth)?;
    let form = form.into_inner();
    let action = ReviewAction::Reject {
        note: form.note.clone(),
    };
    let result = apply_review(
        &state,
        user,
        auth.actor(),
        id.clone(),
        form.version,
        action,
        None,
    )
    .await;
    match result {
        Ok(done) => {
            session.success(format!(
                "Version {} rejected; its author sees your note.",
                done.version.number
            ));
            Ok(back(&req, &id))
        }
        // The note is the one field here: say so beside it, and keep what was typed.
        Err(AppError::Invalid { message, .. }) => {
            let page = show_page(&state, chrome, user, id, form.note, Some(message)).await?;
            render_with_status(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => Err(e),
    }
}

/// Submits the newest version to the provider again (after the provider refused it, or a
/// submission that never got an answer).
pub async fn resubmit(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let loaded = load(&state, id.clone()).await?;
    let current = loaded
        .current()
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    let outcome = provider::submit(
        &state.db,
        &state.hub,
        &state.channels,
        current.id,
        &auth.actor(),
    )
    .await?;
    if outcome == Submitted::NotNeeded {
        session.error(format!(
            "Version {} is not waiting to be submitted.",
            current.number
        ));
    }
    submission_flash(&session, &loaded.channel, &outcome);
    Ok(back(&req, &id))
}

/// "Sync now": asks the provider about the template's versions.
pub async fn sync(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let loaded = load(&state, id.clone()).await?;
    let who = reviewer_name(&loaded.channel);
    let results = provider::sync_template(
        &state.db,
        &state.hub,
        &state.channels,
        loaded.template.id,
        &auth.actor(),
    )
    .await?;
    if results.is_empty() {
        session.error(format!(
            "There is nothing to ask {who} yet: no version of this template was submitted."
        ));
    }
    for (number, synced) in results {
        match synced {
            Synced::Changed => {
                session.success(format!("Version {number}: {who} has a new verdict."))
            }
            Synced::Unchanged => session.success(format!("Version {number}: no change at {who}.")),
            Synced::Failed(text) => session.error(format!(
                "{who} did not answer about version {number}: {text}"
            )),
        }
    }
    Ok(back(&req, &id))
}
