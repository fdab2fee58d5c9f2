//! Channel settings as people and clients change them. What the Settings › Channels form and
//! `POST`/`PATCH /api/v1/channels` ask for is checked field by field (the provider's own rules,
//! from `channels::validate`); secrets are sealed with the key derived from `HERALD_SECRET_KEY`
//! and never read back out to anyone; every change leaves an audit entry that names what changed
//! but never a secret's value. The page and the API call the same functions.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{Map, Value, json};

use crate::channels::{ChannelAdapter, SettingSpec, settings_for, validate};
use crate::dispatch::registry::{ChannelRegistry, RegistryError};
use crate::domain::audit::Actor;
use crate::domain::channel::{ChannelKind, Provider};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel, ChannelChanges, NewChannel};
use crate::storage::{DbConnection, audit, is_unique_violation};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_SENDER_CHARS: usize = 100;
/// Far above any provider's documented throughput (WhatsApp's highest tier is 1,000/s).
pub const MAX_RATE_LIMIT: i32 = 10_000;

/// Problems with what was asked, by field: `name`, `sender`, `rate_limit_per_second`, `kind`,
/// `simulates`, or `settings.<key>` for a provider setting.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldProblems(Vec<(String, String)>);

impl FieldProblems {
    /// Records the first problem of a field (later ones would only repeat it).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.get(&field).is_none() {
            self.0.push((field, message.into()));
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// The problem with one provider setting.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.get(&format!("settings.{key}"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, m)| (f.as_str(), m.as_str()))
    }

    /// Every problem on one line, fields named: for the API's `message`.
    pub fn summary(&self) -> String {
        self.iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why a save was refused; the person or client can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(FieldProblems),
    /// Another channel has this name (compared without case).
    NameTaken(String),
}

impl Refusal {
    pub fn name_taken_message(name: &str) -> String {
        format!("A channel named \"{name}\" already exists; choose another name.")
    }
}

/// What to change. `None` keeps the current value, or takes the default for a new channel.
#[derive(Debug, Default, Clone)]
pub struct ChannelDraft {
    pub name: Option<String>,
    /// What recipients see as the sender; empty takes it from the settings (Twilio's From,
    /// Infobip's sender).
    pub sender: Option<String>,
    /// As typed (`"80"`) or as the API sent it; empty means the provider's documented rate.
    pub rate_limit_per_second: Option<String>,
    /// Provider settings to change, secrets among them. A non-secret key given empty (or
    /// `null`) is removed, or takes its default; a secret given empty keeps the saved one; any
    /// other value replaces.
    pub settings: Map<String, Value>,
}

/// A channel as saved, secrets opened: the base an edit changes.
struct Current {
    name: String,
    sender: String,
    rate_limit_per_second: i32,
    settings: Map<String, Value>,
    secrets: Map<String, Value>,
    /// False when the sealed secrets could not be opened (another `HERALD_SECRET_KEY`): every
    /// secret must then be entered again.
    secrets_readable: bool,
}

impl Current {
    fn of(channel: &Channel, registry: &ChannelRegistry) -> Result<Current, AppError> {
        let settings = match serde_json::from_str::<Value>(&channel.settings) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "the stored settings of channel {} are not a JSON object",
                    channel.public_id
                )));
            }
        };
        let (secrets, secrets_readable) = match registry.open_secrets(channel) {
            Ok(Value::Object(map)) => (map, true),
            Ok(_) | Err(RegistryError::Json(_)) | Err(RegistryError::Settings(_)) => {
                (Map::new(), false)
            }
            Err(RegistryError::Secrets(e)) => {
                tracing::warn!(channel = %channel.name, error = %e, "saved channel secrets cannot be opened; they must be entered again");
                (Map::new(), false)
            }
        };
        Ok(Current {
            name: channel.name.clone(),
            sender: channel.sender.clone(),
            rate_limit_per_second: channel.rate_limit_per_second,
            settings,
            secrets,
            secrets_readable,
        })
    }
}

/// A draft that passed every check, ready to save.
#[derive(Debug, Clone, PartialEq)]
struct Checked {
    name: String,
    sender: String,
    rate_limit_per_second: i32,
    settings: Map<String, Value>,
    secrets: Map<String, Value>,
    /// Fields whose value changed (`name`, `settings.base_url`…); secrets are not listed here.
    changed: Vec<String>,
    /// Secrets given a new value (their names only).
    secrets_replaced: Vec<&'static str>,
}

impl Checked {
    fn changes_anything(&self) -> bool {
        !self.changed.is_empty() || !self.secrets_replaced.is_empty()
    }
}

/// What recipients see when the admin leaves the sender empty.
pub fn default_sender(provider: Provider, settings: &Map<String, Value>) -> String {
    let text = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_owned);
    match provider {
        Provider::Twilio => text("from").or_else(|| text("messaging_service_sid")),
        Provider::Infobip => text("sender"),
        Provider::Sandbox => Some("sandbox".into()),
        Provider::WhatsappCloud => None,
    }
    .unwrap_or_default()
}

/// The settings that decide where a channel connects: the address its requests go to, and the
/// account or number they name there. Changing one points the channel somewhere else, so its
/// saved secrets must be entered again: Herald never sends a saved secret to a new place
/// (not when saving, not with "Test connection").
pub fn connection_keys(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::WhatsappCloud => &["base_url", "phone_number_id", "waba_id"],
        Provider::Twilio => &["base_url", "account_sid"],
        Provider::Infobip => &["base_url"],
        Provider::Sandbox => &[],
    }
}

/// Checks a draft against the provider's rules and, for an edit, what is saved.
fn check(
    provider: Provider,
    current: Option<&Current>,
    draft: &ChannelDraft,
) -> Result<Checked, FieldProblems> {
    let mut problems = FieldProblems::default();
    let specs = settings_for(provider);
    let (mut settings, mut secrets) = current
        .map(|c| (c.settings.clone(), c.secrets.clone()))
        .unwrap_or_default();
    let mut secrets_replaced = Vec::new();
    for (key, value) in &draft.settings {
        let field = format!("settings.{key}");
        let Some(spec) = specs.iter().find(|s| s.key == key) else {
            let known: Vec<&str> = specs.iter().map(|s| s.key).collect();
            problems.add(
                field,
                format!(
                    "{} has no setting \"{key}\"; its settings are {}",
                    provider.label(),
                    known.join(", ")
                ),
            );
            continue;
        };
        let text = match value {
            Value::Null => None,
            Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                problems.add(field, format!("{} must be text", spec.label));
                continue;
            }
        };
        if spec.secret {
            // An empty secret keeps the saved one: it is never shown, so it cannot be re-typed.
            if let Some(text) = text {
                if secrets.get(key).and_then(Value::as_str) != Some(text.as_str()) {
                    secrets_replaced.push(spec.key);
                }
                secrets.insert(key.clone(), Value::String(text));
            }
        } else {
            match text {
                Some(t) => settings.insert(key.clone(), Value::String(t)),
                None => settings.remove(key),
            };
        }
    }
    // Defaults are saved as such, so the settings show what the adapter uses.
    for spec in specs.iter().filter(|s| !s.secret) {
        if let Some(default) = spec.default
            && !settings.contains_key(spec.key)
        {
            settings.insert(spec.key.to_owned(), Value::String(default.to_owned()));
        }
    }
    // Pointed somewhere else: every saved secret must be typed again (a secret left empty
    // would otherwise keep the saved one and go to the new address).
    if let Some(c) = current {
        let moved: Vec<&str> = specs
            .iter()
            .filter(|s| connection_keys(provider).contains(&s.key))
            .filter(|s| saved_value(c, s).as_ref() != settings.get(s.key))
            .map(|s| s.label)
            .collect();
        if !moved.is_empty() {
            for spec in specs.iter().filter(|s| s.secret) {
                let retyped = draft
                    .settings
                    .get(spec.key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.trim().is_empty());
                if c.secrets.contains_key(spec.key) && !retyped {
                    problems.add(
                        format!("settings.{}", spec.key),
                        format!(
                            "Enter it again: the {} changed, and Herald never sends a saved secret to a new address.",
                            moved.join(" and ")
                        ),
                    );
                }
            }
        }
    }
    if let Err(e) = validate(
        provider,
        &Value::Object(settings.clone()),
        &Value::Object(secrets.clone()),
    ) {
        for (key, message) in e.fields() {
            problems.add(format!("settings.{key}"), message);
        }
    }

    let name = draft
        .name
        .as_deref()
        .map(|n| n.trim().to_owned())
        .or_else(|| current.map(|c| c.name.clone()))
        .unwrap_or_default();
    if name.is_empty() {
        problems.add(
            "name",
            "Give the channel a name, e.g. \"Support WhatsApp\".",
        );
    } else if name.chars().count() > MAX_NAME_CHARS {
        problems.add(
            "name",
            format!("The name is longer than {MAX_NAME_CHARS} characters."),
        );
    } else if name.chars().any(char::is_control) {
        problems.add(
            "name",
            "The name cannot contain line breaks or control characters.",
        );
    }

    // A sender taken from the settings follows them; one the admin typed stays.
    let typed_sender = draft
        .sender
        .as_deref()
        .map(|s| s.trim().to_owned())
        .or_else(|| {
            current
                .filter(|c| c.sender != default_sender(provider, &c.settings))
                .map(|c| c.sender.clone())
        })
        .unwrap_or_default();
    let sender = if typed_sender.is_empty() {
        default_sender(provider, &settings)
    } else {
        typed_sender
    };
    if sender.chars().count() > MAX_SENDER_CHARS {
        problems.add(
            "sender",
            format!("The sender is longer than {MAX_SENDER_CHARS} characters."),
        );
    } else if sender.chars().any(char::is_control) {
        problems.add(
            "sender",
            "The sender cannot contain line breaks or control characters.",
        );
    }

    let rate_limit_per_second = match draft.rate_limit_per_second.as_deref().map(str::trim) {
        None => current.map_or(provider.default_rate_limit(), |c| c.rate_limit_per_second),
        Some("") => provider.default_rate_limit(),
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) if (1..=MAX_RATE_LIMIT).contains(&n) => n,
            _ => {
                problems.add(
                    "rate_limit_per_second",
                    format!(
                        "The rate limit is a whole number of messages per second from 1 to {MAX_RATE_LIMIT}, not \"{raw}\"."
                    ),
                );
                0
            }
        },
    };

    if !problems.is_empty() {
        return Err(problems);
    }
    let mut changed = Vec::new();
    if let Some(c) = current {
        if c.name != name {
            changed.push("name".to_owned());
        }
        if c.sender != sender {
            changed.push("sender".to_owned());
        }
        if c.rate_limit_per_second != rate_limit_per_second {
            changed.push("rate_limit_per_second".to_owned());
        }
        for spec in specs.iter().filter(|s| !s.secret) {
            if saved_value(c, spec).as_ref() != settings.get(spec.key) {
                changed.push(format!("settings.{}", spec.key));
            }
        }
        if !c.secrets_readable {
            // Every secret was entered again.
            secrets_replaced = specs.iter().filter(|s| s.secret).map(|s| s.key).collect();
        }
    }
    Ok(Checked {
        name,
        sender,
        rate_limit_per_second,
        settings,
        secrets,
        changed,
        secrets_replaced,
    })
}

/// A plain setting as saved. A key saved without a value had its default: writing the default
/// is no change.
fn saved_value(current: &Current, spec: &SettingSpec) -> Option<Value> {
    current
        .settings
        .get(spec.key)
        .cloned()
        .or_else(|| spec.default.map(|d| Value::String(d.to_owned())))
}

/// The part of a database result that is the person's to fix: a duplicate name.
fn name_clash(
    conn: &mut DbConnection,
    name: &str,
    except: Option<i64>,
) -> Result<Option<Refusal>, DieselError> {
    Ok(channels::find_by_name(conn, name, except)?.map(|other| Refusal::NameTaken(other.name)))
}

/// A unique violation on save is a name taken meanwhile (by a request racing this one).
fn name_taken_on_clash<T>(
    result: Result<Result<T, Refusal>, DieselError>,
    name: String,
) -> Result<Result<T, Refusal>, AppError> {
    match result {
        Err(e) if is_unique_violation(&e) => Ok(Err(Refusal::NameTaken(name))),
        other => Ok(other?),
    }
}

fn seal(
    registry: &ChannelRegistry,
    secrets: &Map<String, Value>,
) -> Result<Option<String>, AppError> {
    registry
        .seal_secrets(&Value::Object(secrets.clone()))
        .map_err(AppError::internal)
}

/// Creates a channel. The outer error is Herald's; the inner one is the asker's to fix.
pub async fn create(
    state: &AppState,
    actor: Actor,
    kind: ChannelKind,
    provider: Provider,
    draft: ChannelDraft,
) -> Result<Result<Channel, Refusal>, AppError> {
    if provider != Provider::Sandbox && kind.real_provider() != provider {
        let mut problems = FieldProblems::default();
        problems.add(
            "provider",
            format!(
                "{} channels go through {} or the sandbox, not {}.",
                kind.label(),
                kind.real_provider().label(),
                provider.label()
            ),
        );
        return Ok(Err(Refusal::Invalid(problems)));
    }
    let checked = match check(provider, None, &draft) {
        Ok(c) => c,
        Err(problems) => return Ok(Err(Refusal::Invalid(problems))),
    };
    let sealed = seal(&state.channels, &checked.secrets)?;
    state
        .db
        .run(move |conn| {
            let name = checked.name.clone();
            let result = crate::storage::write_transaction(conn, |conn| {
                if let Some(refusal) = name_clash(conn, &checked.name, None)? {
                    return Ok(Err(refusal));
                }
                let settings = Value::Object(checked.settings.clone()).to_string();
                let channel = channels::insert(
                    conn,
                    &NewChannel {
                        kind,
                        provider,
                        name: &checked.name,
                        sender: &checked.sender,
                        settings: &settings,
                        secrets: sealed.as_deref(),
                        rate_limit_per_second: checked.rate_limit_per_second,
                    },
                )?;
                let secret_keys: Vec<&String> = checked.secrets.keys().collect();
                audit::record(
                    conn,
                    &actor,
                    "channel.created",
                    "channel",
                    Some(&channel.public_id),
                    json!({
                        "name": channel.name,
                        "kind": kind.as_str(),
                        "provider": provider.as_str(),
                        "rate_limit_per_second": channel.rate_limit_per_second,
                        "settings": checked.settings,
                        "secrets_set": secret_keys,
                    }),
                )?;
                Ok::<_, DieselError>(Ok(channel))
            });
            name_taken_on_clash(result, name)
        })
        .await
}

/// The channel with this public id, or a 404 that says so.
pub fn channel_or_404(conn: &mut DbConnection, public_id: &str) -> Result<Channel, AppError> {
    channels::find_by_public_id(conn, public_id)?
        .ok_or_else(|| AppError::NotFound(format!("There is no channel with id \"{public_id}\".")))
}

/// A saved edit: the channel as it is now, and whether anything changed.
pub struct Updated {
    pub channel: Channel,
    pub changed: bool,
}

/// Changes a channel's name, sender, rate limit and settings. Its kind and provider stay.
pub async fn update(
    state: &AppState,
    actor: Actor,
    public_id: String,
    draft: ChannelDraft,
) -> Result<Result<Updated, Refusal>, AppError> {
    let registry = state.channels.clone();
    state
        .db
        .run(move |conn| {
            let channel = channel_or_404(conn, &public_id)?;
            let current = Current::of(&channel, &registry)?;
            let checked = match check(channel.provider, Some(&current), &draft) {
                Ok(c) => c,
                Err(problems) => return Ok(Err(Refusal::Invalid(problems))),
            };
            if !checked.changes_anything() {
                return Ok(Ok(Updated {
                    channel,
                    changed: false,
                }));
            }
            // Unchanged secrets keep their sealed form: nothing is re-encrypted for nothing.
            let sealed = if checked.secrets_replaced.is_empty() {
                channel.secrets.clone()
            } else {
                seal(&registry, &checked.secrets)?
            };
            let name = checked.name.clone();
            let result = crate::storage::write_transaction(conn, |conn| {
                if let Some(refusal) = name_clash(conn, &checked.name, Some(channel.id))? {
                    return Ok(Err(refusal));
                }
                let settings = Value::Object(checked.settings.clone()).to_string();
                let saved = channels::update(
                    conn,
                    channel.id,
                    &ChannelChanges {
                        name: &checked.name,
                        sender: &checked.sender,
                        settings: &settings,
                        secrets: sealed.as_deref(),
                        rate_limit_per_second: checked.rate_limit_per_second,
                    },
                )?;
                audit::record(
                    conn,
                    &actor,
                    "channel.updated",
                    "channel",
                    Some(&saved.public_id),
                    json!({
                        "name": saved.name,
                        "changed": checked.changed,
                        "secrets_replaced": checked.secrets_replaced,
                    }),
                )?;
                Ok::<_, DieselError>(Ok(Updated {
                    channel: saved,
                    changed: true,
                }))
            });
            name_taken_on_clash(result, name)
        })
        .await
}

/// Enables or disables a channel (a disabled channel sends nothing; reports for messages it
/// already sent are still applied). Doing what is already done changes nothing.
pub async fn set_enabled(
    state: &AppState,
    actor: Actor,
    public_id: String,
    enabled: bool,
) -> Result<Channel, AppError> {
    state
        .db
        .run(move |conn| {
            let channel = channel_or_404(conn, &public_id)?;
            if channel.is_enabled() == enabled {
                return Ok(channel);
            }
            crate::storage::write_transaction(conn, |conn| {
                let saved = channels::set_disabled(conn, channel.id, !enabled)?;
                audit::record(
                    conn,
                    &actor,
                    if enabled {
                        "channel.enabled"
                    } else {
                        "channel.disabled"
                    },
                    "channel",
                    Some(&saved.public_id),
                    json!({ "name": saved.name }),
                )?;
                Ok::<_, AppError>(saved)
            })
        })
        .await
}

/// What a delete did.
pub enum Deleted {
    Deleted(Channel),
    /// Messages were sent through it: their history needs it, so it stays (disable it).
    InUse {
        channel: Channel,
        messages: i64,
    },
}

/// Deletes a channel that no message uses.
pub async fn delete(
    state: &AppState,
    actor: Actor,
    public_id: String,
) -> Result<Deleted, AppError> {
    let deleted = state
        .db
        .run(move |conn| {
            let channel = channel_or_404(conn, &public_id)?;
            let result = crate::storage::write_transaction(conn, |conn| {
                let messages = channels::messages_using(conn, channel.id)?;
                if messages > 0 {
                    return Ok(Some(messages));
                }
                channels::delete(conn, channel.id)?;
                audit::record(
                    conn,
                    &actor,
                    "channel.deleted",
                    "channel",
                    Some(&channel.public_id),
                    json!({
                        "name": channel.name,
                        "kind": channel.kind.as_str(),
                        "provider": channel.provider.as_str(),
                    }),
                )?;
                Ok::<_, DieselError>(None)
            });
            match result {
                Ok(None) => Ok(Deleted::Deleted(channel)),
                Ok(Some(messages)) => Ok(Deleted::InUse { channel, messages }),
                // A message was written between the count and the delete.
                Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                    let messages = channels::messages_using(conn, channel.id)?;
                    Ok(Deleted::InUse { channel, messages })
                }
                Err(e) => Err(AppError::from(e)),
            }
        })
        .await?;
    if let Deleted::Deleted(channel) = &deleted {
        state.channels.forget(channel.id);
    }
    Ok(deleted)
}

/// What the provider said to "test connection", or why it failed, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub ok: bool,
    pub message: String,
}

/// Calls the provider once with the saved settings (an authenticated read) and says what it
/// answered. Saves nothing but an audit entry.
pub async fn test_connection(
    state: &AppState,
    actor: Actor,
    public_id: String,
) -> Result<TestResult, AppError> {
    let lookup = public_id.clone();
    let channel = state
        .db
        .run(move |conn| channel_or_404(conn, &lookup))
        .await?;
    let (result, class, code) = match state.channels.adapter(&channel) {
        Err(e) => (
            TestResult {
                ok: false,
                message: format!("Herald cannot use this channel's saved settings: {e}"),
            },
            Some("settings".to_owned()),
            None,
        ),
        Ok(adapter) => match adapter.test_connection().await {
            Ok(answer) => (
                TestResult {
                    ok: true,
                    message: answer,
                },
                None,
                None,
            ),
            Err(e) => (
                TestResult {
                    ok: false,
                    message: format!("{}: {}", e.class, e.text()),
                },
                Some(e.class.as_str().to_owned()),
                e.code.clone(),
            ),
        },
    };
    let details = json!({
        "name": channel.name,
        "ok": result.ok,
        "error_class": class,
        "error_code": code,
    });
    state
        .db
        .run(move |conn| {
            audit::record(
                conn,
                &actor,
                "channel.tested",
                "channel",
                Some(&public_id),
                details,
            )?;
            Ok::<_, AppError>(())
        })
        .await?;
    Ok(result)
}

/// True when the channel's saved secrets cannot be opened with this `HERALD_SECRET_KEY`.
pub fn secrets_unreadable(registry: &ChannelRegistry, channel: &Channel) -> bool {
    matches!(
        registry.open_secrets(channel),
        Err(RegistryError::Secrets(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(settings: Value) -> ChannelDraft {
        let Value::Object(settings) = settings else {
            unreachable!("an object")
        };
        ChannelDraft {
            name: Some("Shop SMS".into()),
            settings,
            ..ChannelDraft::default()
        }
    }

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn twilio() -> ChannelDraft {
        draft(json!({
            "base_url": "https://api.twilio.com", "account_sid": SID,
            "auth_token": "tok-1", "from": "+14155550100",
        }))
    }

    #[test]
    fn a_new_channel_takes_the_providers_rate_and_its_sender_from_the_settings() {
        let c = check(Provider::Twilio, None, &twilio()).unwrap();
        assert_eq!(
            c.rate_limit_per_second,
            Provider::Twilio.default_rate_limit()
        );
        assert_eq!(c.sender, "+14155550100");
        assert_eq!(c.secrets.get("auth_token"), Some(&json!("tok-1")));
        assert!(!c.settings.contains_key("auth_token"), "secrets stay apart");
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let mut d = draft(json!({"account_sid": "AB12", "auth_token": true, "colour": "red"}));
        d.name = Some("  ".into());
        d.rate_limit_per_second = Some("fast".into());
        let p = check(Provider::Twilio, None, &d).unwrap_err();
        assert!(p.get("name").unwrap().contains("name"));
        assert!(p.get("rate_limit_per_second").unwrap().contains("\"fast\""));
        assert!(
            p.setting("account_sid")
                .unwrap()
                .contains("AC followed by 32")
        );
        assert!(p.setting("auth_token").unwrap().contains("must be text"));
        assert!(
            p.setting("colour")
                .unwrap()
                .contains("Twilio has no setting \"colour\"")
        );
        assert!(p.setting("from").is_some(), "a sender is required");
        assert!(p.summary().contains("settings.account_sid: "));
    }

    fn saved() -> Current {
        let c = check(Provider::Twilio, None, &twilio()).unwrap();
        Current {
            name: c.name,
            sender: c.sender,
            rate_limit_per_second: 5,
            settings: c.settings,
            secrets: c.secrets,
            secrets_readable: true,
        }
    }

    #[test]
    fn an_empty_secret_keeps_the_saved_one_and_a_new_value_replaces_it() {
        let current = saved();
        let keep = draft(json!({"auth_token": "", "from": "+14155550199"}));
        let c = check(Provider::Twilio, Some(&current), &keep).unwrap();
        assert_eq!(c.secrets.get("auth_token"), Some(&json!("tok-1")));
        assert!(c.secrets_replaced.is_empty());
        assert_eq!(c.changed, vec!["sender", "settings.from"]);
        assert_eq!(c.rate_limit_per_second, 5, "an edit keeps the rate");

        let replace = draft(json!({"auth_token": "tok-2"}));
        let c = check(Provider::Twilio, Some(&current), &replace).unwrap();
        assert_eq!(c.secrets.get("auth_token"), Some(&json!("tok-2")));
        assert_eq!(c.secrets_replaced, vec!["auth_token"]);
        assert!(c.changed.is_empty());
    }

    #[test]
    fn pointing_a_channel_elsewhere_asks_for_its_secrets_again() {
        let current = saved();
        // A new base URL (or account) with the secret left empty: refused at the secret.
        for moved in [
            json!({"base_url": "https://evil.example"}),
            json!({"base_url": "https://evil.example", "auth_token": "  "}),
            json!({"account_sid": format!("AC{}", "f".repeat(32))}),
        ] {
            let p = check(Provider::Twilio, Some(&current), &draft(moved.clone())).unwrap_err();
            assert!(
                p.setting("auth_token")
                    .unwrap()
                    .contains("never sends a saved secret to a new address"),
                "{moved}: {p:?}"
            );
        }
        // With the secret typed again, it saves.
        let c = check(
            Provider::Twilio,
            Some(&current),
            &draft(json!({"base_url": "https://api2.example", "auth_token": "tok-2"})),
        )
        .unwrap();
        assert_eq!(c.secrets.get("auth_token"), Some(&json!("tok-2")));
        assert_eq!(c.changed, vec!["settings.base_url"]);
        // The same address written again (or its default) moves nothing.
        for same in [
            json!({"base_url": "https://api.twilio.com"}),
            json!({"base_url": ""}),
            json!({"from": "+14155550199"}),
        ] {
            assert!(check(Provider::Twilio, Some(&current), &draft(same)).is_ok());
        }
    }

    #[test]
    fn connection_keys_are_plain_settings_of_their_provider() {
        for provider in [
            Provider::WhatsappCloud,
            Provider::Twilio,
            Provider::Infobip,
            Provider::Sandbox,
        ] {
            for key in connection_keys(provider) {
                let spec = settings_for(provider).iter().find(|s| s.key == *key);
                assert!(spec.is_some_and(|s| !s.secret), "{provider:?} {key}");
            }
        }
    }

    #[test]
    fn unreadable_secrets_must_be_entered_again() {
        let current = Current {
            secrets: Map::new(),
            secrets_readable: false,
            ..saved()
        };
        let p = check(Provider::Twilio, Some(&current), &draft(json!({}))).unwrap_err();
        assert!(p.setting("auth_token").unwrap().contains("required"));
        let c = check(
            Provider::Twilio,
            Some(&current),
            &draft(json!({"auth_token": "tok-1"})),
        )
        .unwrap();
        assert_eq!(c.secrets_replaced, vec!["auth_token"]);
    }

    #[test]
    fn emptying_a_plain_setting_removes_it_or_takes_its_default() {
        let mut current = saved();
        current.settings.insert(
            "messaging_service_sid".into(),
            json!(format!("MG{}", &SID[2..])),
        );
        let d = draft(json!({"messaging_service_sid": null}));
        let c = check(Provider::Twilio, Some(&current), &d).unwrap();
        assert!(!c.settings.contains_key("messaging_service_sid"));
        assert_eq!(c.changed, vec!["settings.messaging_service_sid"]);

        let same = check(Provider::Twilio, Some(&saved()), &draft(json!({}))).unwrap();
        assert!(!same.changes_anything());

        let emptied = draft(json!({"base_url": ""}));
        let c = check(Provider::Twilio, Some(&saved()), &emptied).unwrap();
        assert_eq!(
            c.settings["base_url"], "https://api.twilio.com",
            "the default"
        );
    }

    #[test]
    fn a_default_written_out_is_no_change() {
        let seeded = Current {
            name: "Sandbox SMS".into(),
            sender: "sandbox".into(),
            rate_limit_per_second: 100,
            settings: Map::new(),
            secrets: Map::new(),
            secrets_readable: true,
        };
        let c = check(Provider::Sandbox, Some(&seeded), &ChannelDraft::default()).unwrap();
        assert!(!c.changes_anything(), "{:?}", c.changed);
        let d = draft(json!({"read_after_ms": "3000", "delivered_after_ms": 500}));
        let c = check(Provider::Sandbox, Some(&seeded), &d).unwrap();
        assert_eq!(c.changed, vec!["name", "settings.delivered_after_ms"]);
    }

    #[test]
    fn the_sandbox_needs_nothing_and_checks_its_delays() {
        let c = check(Provider::Sandbox, None, &draft(json!({}))).unwrap();
        assert_eq!(c.sender, "sandbox");
        assert_eq!(c.rate_limit_per_second, 100);
        let p = check(
            Provider::Sandbox,
            None,
            &draft(json!({"delivered_after_ms": 500, "read_after_ms": 100})),
        )
        .unwrap_err();
        assert!(p.setting("read_after_ms").unwrap().contains("read after"));
    }
}
