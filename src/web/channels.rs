//! Settings › Channels (admins): the sender accounts Herald sends through. The list; adding a
//! channel (pick the kind and the provider, then a form generated from the provider's settings);
//! the channel's page with the webhook URL to paste into the provider's console, "test
//! connection", the settings form (secrets never shown again), disable/enable and delete.
//! What is saved and how is `service::channels`'s, shared with the API.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::channels::settings_for;
use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::fields::FieldProblems;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::channels::{
    self as service, ChannelDraft, NAME_TAKEN, TestResult, webhook_url,
};
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::web::chrome::Chrome;
use crate::web::format::field_of;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{format, paths, render, render_with_status};

fn channel_path(channel: &Channel) -> String {
    format!("{}/{}", paths::CHANNELS, channel.public_id)
}

// ---------------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------------

pub struct ChannelView {
    pub channel: Channel,
    pub webhook_url: Option<String>,
}

#[derive(Template)]
#[template(path = "channels/index.html")]
struct ChannelsPage {
    chrome: Chrome,
    channels: Vec<ChannelView>,
}

pub async fn index(
    _auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let list = service::list(&state).await?;
    let channels = list
        .into_iter()
        .map(|c| ChannelView {
            webhook_url: webhook_url(&state.public_url, &c),
            channel: c,
        })
        .collect();
    render(&ChannelsPage { chrome, channels })
}

// ---------------------------------------------------------------------------------------------
// The settings form, generated from the provider's setting keys
// ---------------------------------------------------------------------------------------------

/// One provider setting as the form shows it. A secret's value is never put in the page.
pub struct SettingField {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub secret: bool,
    pub required: bool,
    pub default: Option<&'static str>,
    /// The value to show (never a secret's).
    pub value: String,
    /// A secret that is saved: the field shows "saved — leave empty to keep".
    pub saved: bool,
    pub numeric: bool,
}

impl SettingField {
    pub fn name(&self) -> String {
        format!("settings.{}", self.key)
    }

    pub fn id(&self) -> String {
        format!("setting-{}", self.key)
    }
}

/// Where to find each value in the provider's console, and what it is for.
fn help(provider: Provider, key: &str) -> &'static str {
    match (provider, key) {
        (Provider::WhatsappCloud, "base_url") => {
            "Meta's Graph API. Change it only to point Herald at a test server."
        }
        (Provider::WhatsappCloud, "api_version") => {
            "The Graph API version Herald calls, e.g. v23.0."
        }
        (Provider::WhatsappCloud, "phone_number_id") => {
            "App Dashboard › WhatsApp › API Setup: the numeric ID of the sending number (not the number itself)."
        }
        (Provider::WhatsappCloud, "waba_id") => {
            "App Dashboard › WhatsApp › API Setup: the WhatsApp Business Account ID. Templates are created on it."
        }
        (Provider::WhatsappCloud, "access_token") => {
            "A system user's permanent token with the whatsapp_business_messaging and whatsapp_business_management permissions (Business Settings › System users)."
        }
        (Provider::WhatsappCloud, "app_secret") => {
            "App Dashboard › App settings › Basic › App secret. Herald checks every webhook's X-Hub-Signature-256 with it."
        }
        (Provider::WhatsappCloud, "verify_token") => {
            "Any phrase you choose. Type the same in App Dashboard › WhatsApp › Configuration › Verify token when you paste the webhook URL."
        }
        (Provider::Twilio, "base_url") => {
            "Twilio's REST API. Change it only to point Herald at a test server."
        }
        (Provider::Twilio, "account_sid") => {
            "Twilio Console › Account info: AC followed by 32 characters."
        }
        (Provider::Twilio, "auth_token") => {
            "Twilio Console › Account info. It authenticates sends and signs Twilio's webhooks."
        }
        (Provider::Twilio, "from") => {
            "What recipients see as the sender: the sending number in international format (+14155550100), a short code or an alphanumeric sender ID. Give this, a messaging service, or both."
        }
        (Provider::Twilio, "messaging_service_sid") => {
            "Messaging › Services: MG followed by 32 characters. Twilio then picks the sender from the service's pool."
        }
        (Provider::Infobip, "base_url") => {
            "Your account's API base URL from the Infobip portal's home page, e.g. https://xxxxx.api.infobip.com."
        }
        (Provider::Infobip, "api_key") => {
            "Infobip portal › Developers › API keys, with the Viber Business Messages scopes."
        }
        (Provider::Infobip, "sender") => {
            "What recipients see as the sender: the Viber business sender name registered with Infobip."
        }
        (Provider::Infobip, "webhook_secret") => {
            "At least 16 characters you choose. Herald puts it in the report URLs it gives Infobip and accepts Infobip's webhooks only when they carry it."
        }
        (Provider::Sandbox, "delivered_after_ms") => {
            "How long after a send the sandbox reports the message delivered."
        }
        (Provider::Sandbox, "read_after_ms") => {
            "How long after a send it reports the message read (not before delivered)."
        }
        (Provider::Sandbox, "approve_after_ms") => {
            "How long it takes to approve a submitted template."
        }
        _ => "",
    }
}

/// The provider's settings fields with `values` (non-secret) and which secrets are saved.
fn setting_fields(
    provider: Provider,
    values: &Map<String, Value>,
    saved_secrets: &[String],
) -> Vec<SettingField> {
    settings_for(provider)
        .iter()
        .map(|spec| SettingField {
            key: spec.key,
            label: spec.label,
            help: help(provider, spec.key),
            secret: spec.secret,
            required: spec.required,
            default: spec.default,
            value: if spec.secret {
                String::new()
            } else {
                match values.get(spec.key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                }
            },
            saved: spec.secret && saved_secrets.iter().any(|k| k == spec.key),
            numeric: provider == Provider::Sandbox,
        })
        .collect()
}

/// The form as typed (or as saved): everything but secrets.
#[derive(Default)]
pub struct FormValues {
    pub name: String,
    pub sender: String,
    pub rate_limit_per_second: String,
    pub settings: Map<String, Value>,
}

/// Reads the settings form: `name`, `sender`, `rate_limit_per_second` and `settings.<key>`.
fn read_form(pairs: &[(String, String)]) -> (ChannelDraft, FormValues) {
    let field = |name: &str| field_of(pairs, name);
    let settings: Map<String, Value> = pairs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("settings.")
                .map(|key| (key.to_owned(), Value::String(v.clone())))
        })
        .collect();
    let values = FormValues {
        name: field("name"),
        sender: field("sender"),
        rate_limit_per_second: field("rate_limit_per_second"),
        settings: settings.clone(),
    };
    let draft = ChannelDraft {
        name: Some(values.name.clone()),
        sender: Some(values.sender.clone()),
        rate_limit_per_second: Some(values.rate_limit_per_second.clone()),
        settings,
    };
    (draft, values)
}

fn typed_a_secret(provider: Provider, values: &FormValues) -> bool {
    settings_for(provider).iter().any(|s| {
        s.secret
            && values
                .settings
                .get(s.key)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.trim().is_empty())
    })
}

/// The problems to show at the fields when a save was refused; a taken name is a problem of
/// the name field. Anything else is not the form's to show.
fn problems_of(err: ServiceError) -> Result<FieldProblems, AppError> {
    match err {
        ServiceError::Conflict {
            code: NAME_TAKEN,
            message,
        } => {
            let mut p = FieldProblems::default();
            p.add("name", message);
            Ok(p)
        }
        ServiceError::Invalid { fields, .. } if !fields.is_empty() => Ok(fields),
        other => Err(other.into()),
    }
}

/// The problem with one provider setting, for the settings form.
fn setting_error<'a>(errors: &'a FieldProblems, key: &str) -> Option<&'a str> {
    errors.get(&format!("settings.{key}"))
}

// ---------------------------------------------------------------------------------------------
// Adding a channel
// ---------------------------------------------------------------------------------------------

pub struct KindChoice {
    pub kind: ChannelKind,
    pub real: Provider,
    pub description: &'static str,
}

#[derive(Template)]
#[template(path = "channels/choose.html")]
struct ChoosePage {
    chrome: Chrome,
    choices: Vec<KindChoice>,
}

#[derive(Template)]
#[template(path = "channels/new.html")]
struct NewChannelPage {
    chrome: Chrome,
    kind: ChannelKind,
    provider: Provider,
    form: FormValues,
    fields: Vec<SettingField>,
    errors: FieldProblems,
    retype_secrets: bool,
}

/// Twilio's From and Infobip's sender are the sender: the form shows one sender field (the
/// provider's, with its help), not a second "sender" beside it.
fn sender_in_settings(provider: Provider) -> bool {
    matches!(provider, Provider::Twilio | Provider::Infobip)
}

impl NewChannelPage {
    fn default_rate(&self) -> i32 {
        self.provider.default_rate_limit()
    }

    fn sender_in_settings(&self) -> bool {
        sender_in_settings(self.provider)
    }

    fn setting_error(&self, key: &str) -> Option<&str> {
        setting_error(&self.errors, key)
    }
}

#[derive(Deserialize)]
pub struct NewQuery {
    kind: Option<String>,
    provider: Option<String>,
}

fn description(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Whatsapp => {
            "Templates any time, free text within 24 hours of the customer's last message."
        }
        ChannelKind::Sms => "Text to any mobile number; STOP opts people out.",
        ChannelKind::Viber => "Viber Business Messages: templates and, in a session, free text.",
    }
}

/// Parses the kind and provider a form or link names.
fn target(kind: &str, provider: &str) -> Result<(ChannelKind, Provider), AppError> {
    let kind: ChannelKind = kind.parse().map_err(AppError::BadRequest)?;
    let provider: Provider = provider.parse().map_err(AppError::BadRequest)?;
    if provider != Provider::Sandbox && provider != kind.real_provider() {
        return Err(AppError::BadRequest(format!(
            "{} channels go through {} or the sandbox.",
            kind.label(),
            kind.real_provider().label()
        )));
    }
    Ok((kind, provider))
}

/// `GET /settings/channels/new`: pick the kind and provider; with `?kind=&provider=`, the form.
pub async fn new_form(
    _auth: Auth<perm::ManageChannels>,
    chrome: Chrome,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, AppError> {
    let (Some(kind), Some(provider)) = (query.kind.as_deref(), query.provider.as_deref()) else {
        let choices = ChannelKind::ALL
            .iter()
            .map(|&kind| KindChoice {
                kind,
                real: kind.real_provider(),
                description: description(kind),
            })
            .collect();
        return render(&ChoosePage { chrome, choices });
    };
    let (kind, provider) = target(kind, provider)?;
    let defaults: Map<String, Value> = settings_for(provider)
        .iter()
        .filter_map(|s| {
            s.default
                .map(|d| (s.key.to_owned(), Value::String(d.into())))
        })
        .collect();
    render(&NewChannelPage {
        chrome,
        kind,
        provider,
        fields: setting_fields(provider, &defaults, &[]),
        form: FormValues {
            settings: defaults,
            ..FormValues::default()
        },
        errors: FieldProblems::default(),
        retype_secrets: false,
    })
}

/// `POST /settings/channels`.
pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let (kind, provider) = target(&field_of(&pairs, "kind"), &field_of(&pairs, "provider"))?;
    let (draft, values) = read_form(&pairs);
    match service::create(&state, auth.actor(), kind, provider, draft, None).await {
        Ok(channel) => {
            let next = if channel.is_sandbox() {
                "It needs no account: sends are simulated.".to_owned()
            } else {
                format!(
                    "Paste its webhook URL into {}'s console, then test the connection.",
                    provider.label()
                )
            };
            session.success(format!("{} was added. {next}", channel.name));
            Ok(redirect_response(&req, &channel_path(&channel)))
        }
        Err(err) => {
            let errors = problems_of(err)?;
            let retype_secrets = typed_a_secret(provider, &values);
            render_with_status(
                &NewChannelPage {
                    chrome,
                    kind,
                    provider,
                    fields: setting_fields(provider, &values.settings, &[]),
                    form: values,
                    errors,
                    retype_secrets,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One channel
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "channels/show.html")]
struct ChannelPage {
    chrome: Chrome,
    channel: Channel,
    webhook_url: Option<String>,
    /// `HERALD_PUBLIC_URL` (or the bound address): what providers' signatures are checked
    /// against.
    public_url: String,
    form: FormValues,
    fields: Vec<SettingField>,
    errors: FieldProblems,
    /// Messages sent through the channel: it cannot be deleted while there are any.
    messages: i64,
    secrets_unreadable: bool,
    created: String,
    updated: String,
}

impl ChannelPage {
    fn default_rate(&self) -> i32 {
        self.channel.provider.default_rate_limit()
    }

    fn sender_in_settings(&self) -> bool {
        sender_in_settings(self.channel.provider)
    }

    fn setting_error(&self, key: &str) -> Option<&str> {
        setting_error(&self.errors, key)
    }

    /// Providers only call public https:// addresses.
    fn public_url_is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    fn is(&self, provider: &str) -> bool {
        self.channel.provider.as_str() == provider
    }
}

/// The saved form: settings as stored, and which secrets are saved (never their values).
fn saved_form(channel: &Channel, state: &AppState) -> (FormValues, Vec<String>) {
    let settings = match serde_json::from_str::<Value>(&channel.settings) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let saved_secrets = service::saved_secret_keys(&state.channels, channel);
    // A sender taken from the settings shows empty, so it keeps following them.
    let sender = if channel.sender == service::default_sender(channel.provider, &settings) {
        String::new()
    } else {
        channel.sender.clone()
    };
    (
        FormValues {
            name: channel.name.clone(),
            sender,
            rate_limit_per_second: channel.rate_limit_per_second.to_string(),
            settings,
        },
        saved_secrets,
    )
}

async fn channel_page(
    state: &AppState,
    chrome: Chrome,
    public_id: String,
    typed: Option<(FormValues, FieldProblems)>,
) -> Result<HttpResponse, AppError> {
    let (channel, messages) = service::get_with_usage(state, public_id).await?;
    let (saved, saved_secrets) = saved_form(&channel, state);
    let status = if typed.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (form, errors) = typed.unwrap_or((saved, FieldProblems::default()));
    render_with_status(
        &ChannelPage {
            fields: setting_fields(channel.provider, &form.settings, &saved_secrets),
            webhook_url: webhook_url(&state.public_url, &channel),
            public_url: state.public_url.clone(),
            secrets_unreadable: service::secrets_unreadable(&state.channels, &channel),
            created: format::datetime(&channel.created_at),
            updated: format::ago(Some(&channel.updated_at)),
            chrome,
            channel,
            form,
            errors,
            messages,
        },
        status,
    )
}

/// `GET /settings/channels/{id}`.
pub async fn show(
    _auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    channel_page(&state, chrome, path.into_inner(), None).await
}

/// `POST /settings/channels/{id}`: saves the settings form.
pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let (draft, values) = read_form(&body);
    match service::update(&state, auth.actor(), public_id.clone(), draft).await {
        Ok(updated) => {
            if updated.changed {
                session.success(format!("{} was saved.", updated.channel.name));
            } else {
                session.success("Nothing changed.");
            }
            Ok(redirect_response(&req, &channel_path(&updated.channel)))
        }
        Err(err) => {
            let errors = problems_of(err)?;
            channel_page(&state, chrome, public_id, Some((values, errors))).await
        }
    }
}

#[derive(Template)]
#[template(path = "channels/_test_result.html")]
struct TestResultView {
    result: TestResult,
}

/// `POST /settings/channels/{id}/test` (htmx): one authenticated call to the provider with the
/// saved settings; answers with what the provider said. Saves nothing.
pub async fn test(
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let result = service::test_connection(&state, auth.actor(), path.into_inner()).await?;
    render(&TestResultView { result })
}

async fn set_enabled(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    session: TypedSession,
    public_id: String,
    enabled: bool,
) -> Result<HttpResponse, AppError> {
    let channel = service::set_enabled(&state, auth.actor(), public_id, enabled).await?;
    if enabled {
        session.success(format!("{} is enabled again.", channel.name));
    } else {
        session.success(format!(
            "{} is disabled: nothing is sent through it. Reports about messages it already sent are still recorded.",
            channel.name
        ));
    }
    Ok(redirect_response(&req, &channel_path(&channel)))
}

/// `POST /settings/channels/{id}/disable`.
pub async fn disable(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_enabled(req, auth, state, session, path.into_inner(), false).await
}

/// `POST /settings/channels/{id}/enable`.
pub async fn enable(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_enabled(req, auth, state, session, path.into_inner(), true).await
}

/// `POST /settings/channels/{id}/delete`: only when no message used the channel.
pub async fn delete(
    req: HttpRequest,
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    match service::delete(&state, auth.actor(), public_id.clone()).await {
        Ok(channel) => {
            session.success(format!("{} was deleted.", channel.name));
            Ok(redirect_response(&req, paths::CHANNELS))
        }
        Err(ServiceError::Conflict {
            code: service::IN_USE,
            message,
        }) => {
            session.error(message);
            Ok(redirect_response(
                &req,
                &format!("{}/{public_id}", paths::CHANNELS),
            ))
        }
        Err(e) => Err(e.into()),
    }
}
