//! The template form per kind of channel, with its live preview: drafting and editing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::channel::ChannelKind;
use crate::domain::fields::FieldProblems;
use crate::domain::sms::SmsEncoding;
use crate::domain::template::{
    ButtonDraft, CODE_EXPIRATION_MAX_MINUTES, OtpDraft, PlaceholderInfo, PlaceholderLocation,
    Preview, PreviewButton, TemplateCategory, TemplateDraft, VIBER_LANGUAGES, WHATSAPP_BUTTONS_MAX,
    WHATSAPP_FOOTER_MAX, WHATSAPP_HEADER_MAX, body_limit, preview as preview_draft,
};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::storage::templates::{self as store, Template as StoredTemplate};
use crate::web::chrome::Chrome;
use crate::web::format::field_of;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{render, render_with_status};

use super::*;
use crate::service::ServiceError;
use crate::service::templates::{self as service, Loaded};

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
            name: field_of(pairs, "name"),
            language: field_of(pairs, "language"),
            category: field_of(pairs, "category"),
            body: field_of(pairs, "body"),
            ..TemplateDraft::default()
        };
        if kind == ChannelKind::Sms {
            draft.category.clear();
        }
        if kind == ChannelKind::Whatsapp {
            draft.header = field_of(pairs, "header");
            draft.footer = field_of(pairs, "footer");
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
                otp_type: field_of(pairs, "otp_type"),
                button_text: field_of(pairs, "otp_button_text"),
                autofill_text: field_of(pairs, "otp_autofill_text"),
                package_name: field_of(pairs, "otp_package_name"),
                signature_hash: field_of(pairs, "otp_signature_hash"),
                // A checkbox: present when ticked.
                security_recommendation: pairs
                    .iter()
                    .any(|(k, v)| k == "otp_security_recommendation" && !v.trim().is_empty()),
                code_expiration_minutes: field_of(pairs, "otp_code_expiration_minutes"),
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
            version: field_of(pairs, "version").trim().parse().ok(),
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
pub(super) struct PreviewPane {
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
    pub(super) fn new(
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
    let all = crate::service::channels::list(&state).await?;
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
    service::channel_for_draft(state, public_id)
        .await?
        .ok_or_else(|| AppError::BadRequest("Choose the channel the template is for.".into()))
}

/// The live preview: the bubble, the counts and, when the placeholders changed, the sample
/// fields (out of band, so typing in a sample never loses focus).
pub async fn preview(
    _auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let channel = channel_by_public_id(&state, field_of(&pairs, "channel")).await?;
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
    let channel = channel_by_public_id(&state, field_of(&pairs, "channel")).await?;
    let input = FormInput::parse(&pairs, channel.kind);
    let actor = auth.actor();
    let new_form = || FormState {
        template: None,
        editing: None,
        makes_new_version: false,
        name_locked: false,
    };
    match service::create_draft(&state, actor, channel.clone(), input.draft.clone()).await {
        Ok(t) => {
            session.success(format!(
                "{} ({}) is saved as a draft. Submit it for review when it is ready.",
                t.name, t.language
            ));
            Ok(redirect_response(&req, &format!("{PATH}/{}", t.public_id)))
        }
        Err(e) => match e.fields() {
            Some(errors) => invalid_form(
                chrome,
                channel,
                input.draft,
                errors.clone(),
                None,
                new_form(),
            ),
            None => Err(e.into()),
        },
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

/// The form's state for a template being edited.
fn form_state(loaded: &Loaded) -> FormState {
    let current = loaded.current();
    FormState {
        template: Some(loaded.template.clone()),
        editing: current.map(|v| v.number),
        makes_new_version: current.is_some_and(|v| !v.stage.is_editable_in_place()),
        name_locked: loaded.ever_approved(),
    }
}

pub async fn edit_form(
    _auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let loaded = service::load(&state, path.into_inner()).await?;
    let draft = loaded.current_or_not_found()?.draft.clone();
    render(&form_page(
        chrome,
        loaded.channel.clone(),
        draft,
        FieldProblems::default(),
        None,
        form_state(&loaded),
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
    let loaded = service::load(&state, path.into_inner()).await?;
    let user = person(&auth)?;
    let input = FormInput::parse(&body.into_inner(), loaded.channel.kind);
    let public_id = loaded.template.public_id.clone();
    let edited = service::edit(
        &state,
        auth.actor(),
        reviewer(user),
        public_id.clone(),
        input.version,
        input.draft.clone(),
    )
    .await;
    let (errors, banner) = match edited {
        Ok(store::Edited::InPlace(v)) => {
            session.success(format!("Version {} saved; it is a draft.", v.number));
            return Ok(redirect_response(&req, &format!("{PATH}/{public_id}")));
        }
        Ok(store::Edited::NewVersion(v)) => {
            session.success(format!(
                "Saved as version {}, a draft. Version {} keeps sending until version {} is approved.",
                v.number,
                v.number - 1,
                v.number
            ));
            return Ok(redirect_response(&req, &format!("{PATH}/{public_id}")));
        }
        Err(ServiceError::Conflict {
            code: service::CHANGED_MEANWHILE,
            message,
        }) => (FieldProblems::default(), Some(message)),
        Err(e) => match e.fields() {
            Some(errors) => (errors.clone(), None),
            None => return Err(e.into()),
        },
    };
    let form = form_state(&loaded);
    invalid_form(chrome, loaded.channel, input.draft, errors, banner, form)
}
