//! Channels: the sender accounts Herald sends through, as people (Settings › Channels) and
//! clients (`/api/v1/channels`) change them. What they ask for is checked field by field (the
//! provider's own rules, from `channels::validate`); secrets are sealed with the key derived
//! from `HERALD_SECRET_KEY` and never read back out to anyone; every change leaves an audit
//! entry, in its transaction, that names what changed but never a secret's value.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{Map, Value, json};

use crate::channels::diagnosis::{Diagnosis, diagnose};
use crate::channels::{
    ChannelAdapter, SettingSpec, secret_problem, settings_for, validate, webhook_path,
};
use crate::dispatch::registry::{ChannelRegistry, RegistryError};
use crate::domain::audit::Actor;
use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::fields::FieldProblems;
use crate::service::idempotency::{self, IdempotencyKey};
use crate::service::paging::{Page, PageRequest};
use crate::service::{Change, ServiceError, ServiceResult, Services};
use crate::storage::channels::{self, Channel, ChannelChanges, NewChannel};
use crate::storage::{DbConnection, is_unique_violation};

/// Channels as sends found them a moment ago, by the name or public id the send gave.
pub type ChannelCache = crate::service::fresh::Fresh<Channel>;
/// How long a send trusts a channel it looked up. A change made through this process empties
/// the cache at once; another process's change is seen here within this time (and the
/// dispatcher asks the policy again, channel state included, when the message goes).
const CHANNEL_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// An empty [`ChannelCache`].
pub fn channel_cache() -> ChannelCache {
    ChannelCache::new(CHANNEL_FRESH_FOR, 256)
}

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_SENDER_CHARS: usize = 100;
/// Far above any provider's documented throughput (WhatsApp's highest tier is 1,000/s).
pub const MAX_RATE_LIMIT: i32 = 10_000;

/// The code of a refused channel form or body (422), with its `fields`: `name`, `sender`,
/// `rate_limit_per_second`, `kind`, `simulates`, `provider`, or `settings.<key>`.
pub const INVALID: &str = "invalid_channel";
/// Another channel has this name (409).
pub const NAME_TAKEN: &str = "name_taken";
/// Messages were sent through the channel, so it cannot be deleted (409).
pub const IN_USE: &str = "channel_in_use";

// ---------------------------------------------------------------------------------------------
// Words and read models the pages and the API share
// ---------------------------------------------------------------------------------------------

/// Where a provider posts its events for this channel; `None` for the sandbox.
pub fn webhook_url(public_url: &str, channel: &Channel) -> Option<String> {
    webhook_path(channel.provider, &channel.public_id).map(|path| format!("{public_url}{path}"))
}

/// Why a channel with messages stays.
pub fn in_use_message(channel: &Channel, messages: i64) -> String {
    let count = if messages == 1 {
        "1 message was".to_owned()
    } else {
        format!("{messages} messages were")
    };
    format!(
        "{} cannot be deleted: {count} sent through it, and their history needs it. Disable it instead: nothing more is sent through it.",
        channel.name
    )
}

/// Why a name cannot be used: another channel has it.
pub fn name_taken_message(name: &str) -> String {
    format!("A channel named \"{name}\" already exists; choose another name.")
}

fn name_taken(name: &str) -> ServiceError {
    ServiceError::conflict(NAME_TAKEN, name_taken_message(name))
}

/// The names of the channel's saved secrets (never their values); none when they cannot be
/// opened.
pub fn saved_secret_keys(registry: &ChannelRegistry, channel: &Channel) -> Vec<String> {
    match registry.open_secrets(channel) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// True when the channel's saved secrets cannot be opened with this `HERALD_SECRET_KEY`.
pub fn secrets_unreadable(registry: &ChannelRegistry, channel: &Channel) -> bool {
    matches!(
        registry.open_secrets(channel),
        Err(RegistryError::Secrets(_))
    )
}

/// Every channel, in the list's order.
pub async fn list(svc: &Services) -> ServiceResult<Vec<Channel>> {
    svc.read(|conn| Ok(channels::list(conn)?)).await
}

/// A page of channels, in the order they were made (the API's list).
pub async fn page(svc: &Services, request: PageRequest) -> ServiceResult<Page<Channel>> {
    svc.read(move |conn| {
        let rows = channels::page(conn, request.after, request.fetch())?;
        Ok(request.finish(rows, |c| c.id))
    })
    .await
}

/// The channel with this public id.
pub async fn get(svc: &Services, public_id: String) -> ServiceResult<Channel> {
    svc.read(move |conn| channel_or_not_found(conn, &public_id))
        .await
}

/// The channel with this public id and how many messages were sent through it (while there
/// are any, it cannot be deleted).
pub async fn get_with_usage(svc: &Services, public_id: String) -> ServiceResult<(Channel, i64)> {
    svc.read(move |conn| {
        let channel = channel_or_not_found(conn, &public_id)?;
        let messages = channels::messages_using(conn, channel.id)?;
        Ok((channel, messages))
    })
    .await
}

/// The channel with this public id, or a not-found that says so.
pub fn channel_or_not_found(conn: &mut DbConnection, public_id: &str) -> ServiceResult<Channel> {
    channels::find_by_public_id(conn, public_id)?.ok_or_else(|| {
        ServiceError::NotFound(format!("There is no channel with id \"{public_id}\"."))
    })
}

// ---------------------------------------------------------------------------------------------
// Checking what was asked, field by field
// ---------------------------------------------------------------------------------------------

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
    fn of(channel: &Channel, registry: &ChannelRegistry) -> ServiceResult<Current> {
        let settings = match serde_json::from_str::<Value>(&channel.settings) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                return Err(ServiceError::internal(anyhow::anyhow!(
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
            problems.add_first(
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
                problems.add_first(field, format!("{} must be text", spec.label));
                continue;
            }
        };
        if spec.secret {
            // An empty secret keeps the saved one: it is never shown, so it cannot be re-typed.
            if let Some(text) = text {
                if let Some(problem) = secret_problem(provider, key, &text) {
                    problems.add_first(field, problem);
                    continue;
                }
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
                    problems.add_first(
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
            problems.add_first(format!("settings.{key}"), message);
        }
    }

    let name = draft
        .name
        .as_deref()
        .map(|n| n.trim().to_owned())
        .or_else(|| current.map(|c| c.name.clone()))
        .unwrap_or_default();
    if name.is_empty() {
        problems.add_first(
            "name",
            "Give the channel a name, e.g. \"Support WhatsApp\".",
        );
    } else if name.chars().count() > MAX_NAME_CHARS {
        problems.add_first(
            "name",
            format!("The name is longer than {MAX_NAME_CHARS} characters."),
        );
    } else if name.chars().any(char::is_control) {
        problems.add_first(
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
        problems.add_first(
            "sender",
            format!("The sender is longer than {MAX_SENDER_CHARS} characters."),
        );
    } else if sender.chars().any(char::is_control) {
        problems.add_first(
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
                problems.add_first(
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

/// A name another channel has (compared without case) is refused.
fn refuse_name_clash(
    conn: &mut DbConnection,
    name: &str,
    except: Option<i64>,
) -> ServiceResult<()> {
    match channels::find_by_name(conn, name, except)? {
        Some(other) => Err(name_taken(&other.name)),
        None => Ok(()),
    }
}

/// A unique violation on save is a name taken meanwhile (by a request racing this one).
fn name_taken_on_clash(name: &str) -> impl FnOnce(DieselError) -> ServiceError + '_ {
    move |e| {
        if is_unique_violation(&e) {
            name_taken(name)
        } else {
            e.into()
        }
    }
}

fn seal(registry: &ChannelRegistry, secrets: &Map<String, Value>) -> ServiceResult<Option<String>> {
    registry
        .seal_secrets(&Value::Object(secrets.clone()))
        .map_err(ServiceError::internal)
}

// ---------------------------------------------------------------------------------------------
// Creating, changing, enabling and deleting
// ---------------------------------------------------------------------------------------------

/// Checks a new channel: the provider must fit the kind (or be the sandbox), and the draft
/// its rules.
fn check_new(
    kind: ChannelKind,
    provider: Provider,
    draft: &ChannelDraft,
) -> ServiceResult<Checked> {
    if provider != Provider::Sandbox && kind.real_provider() != provider {
        let mut problems = FieldProblems::default();
        problems.add_first(
            "provider",
            format!(
                "{} channels go through {} or the sandbox, not {}.",
                kind.label(),
                kind.real_provider().label(),
                provider.label()
            ),
        );
        return Err(ServiceError::invalid_fields(INVALID, problems));
    }
    check(provider, None, draft).map_err(|problems| ServiceError::invalid_fields(INVALID, problems))
}

/// Saves a checked new channel and its audit entry, inside `change`'s transaction.
fn create_in(
    change: &mut Change<'_>,
    kind: ChannelKind,
    provider: Provider,
    checked: &Checked,
    sealed: Option<&str>,
) -> ServiceResult<Channel> {
    refuse_name_clash(change.conn, &checked.name, None)?;
    let settings = Value::Object(checked.settings.clone()).to_string();
    let channel = channels::insert(
        change.conn,
        &NewChannel {
            kind,
            provider,
            name: &checked.name,
            sender: &checked.sender,
            settings: &settings,
            secrets: sealed,
            rate_limit_per_second: checked.rate_limit_per_second,
        },
    )
    .map_err(name_taken_on_clash(&checked.name))?;
    let secret_keys: Vec<&String> = checked.secrets.keys().collect();
    change.audit(
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
    Ok(channel)
}

/// Creates a channel. Refused as `invalid_channel` (with the fields at fault) or `name_taken`.
pub async fn create(
    svc: &Services,
    actor: Actor,
    kind: ChannelKind,
    provider: Provider,
    draft: ChannelDraft,
    once: Option<IdempotencyKey>,
) -> ServiceResult<Channel> {
    let checked = check_new(kind, provider, &draft)?;
    let sealed = seal(&svc.channels, &checked.secrets)?;
    svc.write(actor, move |change| {
        let channel = create_in(change, kind, provider, &checked, sealed.as_deref())?;
        idempotency::remember(change, once.as_ref(), "channel", &channel.public_id)?;
        Ok(channel)
    })
    .await
}

/// A saved edit: the channel as it is now, and whether anything changed.
pub struct Updated {
    pub channel: Channel,
    pub changed: bool,
}

/// Checks and saves an edit of the channel `public_id` with its audit entry, inside
/// `change`'s transaction. Nothing changed, nothing is written.
fn update_in(
    change: &mut Change<'_>,
    registry: &ChannelRegistry,
    public_id: &str,
    draft: &ChannelDraft,
) -> ServiceResult<Updated> {
    let channel = channel_or_not_found(change.conn, public_id)?;
    let current = Current::of(&channel, registry)?;
    let checked = check(channel.provider, Some(&current), draft)
        .map_err(|problems| ServiceError::invalid_fields(INVALID, problems))?;
    if !checked.changes_anything() {
        return Ok(Updated {
            channel,
            changed: false,
        });
    }
    // Unchanged secrets keep their sealed form: nothing is re-encrypted for nothing.
    let sealed = if checked.secrets_replaced.is_empty() {
        channel.secrets.clone()
    } else {
        seal(registry, &checked.secrets)?
    };
    refuse_name_clash(change.conn, &checked.name, Some(channel.id))?;
    let settings = Value::Object(checked.settings.clone()).to_string();
    let saved = channels::update(
        change.conn,
        channel.id,
        &ChannelChanges {
            name: &checked.name,
            sender: &checked.sender,
            settings: &settings,
            secrets: sealed.as_deref(),
            rate_limit_per_second: checked.rate_limit_per_second,
            connection_changed: !checked.secrets_replaced.is_empty()
                || checked.changed.iter().any(|c| c.starts_with("settings.")),
        },
    )
    .map_err(name_taken_on_clash(&checked.name))?;
    change.audit(
        "channel.updated",
        "channel",
        Some(&saved.public_id),
        json!({
            "name": saved.name,
            "changed": checked.changed,
            "secrets_replaced": checked.secrets_replaced,
        }),
    )?;
    Ok(Updated {
        channel: saved,
        changed: true,
    })
}

/// Changes a channel's name, sender, rate limit and settings. Its kind and provider stay.
/// Refused as `invalid_channel` (with the fields at fault) or `name_taken`.
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    draft: ChannelDraft,
) -> ServiceResult<Updated> {
    let registry = svc.channels.clone();
    let updated = svc
        .write(actor, move |change| {
            update_in(change, &registry, &public_id, &draft)
        })
        .await?;
    svc.channel_cache.clear();
    Ok(updated)
}

/// Enables or disables a channel inside `change`'s transaction. Doing what is already done
/// changes nothing.
fn set_enabled_in(
    change: &mut Change<'_>,
    public_id: &str,
    enabled: bool,
) -> ServiceResult<Channel> {
    let channel = channel_or_not_found(change.conn, public_id)?;
    if channel.is_enabled() == enabled {
        return Ok(channel);
    }
    let saved = channels::set_disabled(change.conn, channel.id, !enabled)?;
    change.audit(
        if enabled {
            "channel.enabled"
        } else {
            "channel.disabled"
        },
        "channel",
        Some(&saved.public_id),
        json!({ "name": saved.name }),
    )?;
    Ok(saved)
}

/// Enables or disables a channel (a disabled channel sends nothing; reports for messages it
/// already sent are still applied).
pub async fn set_enabled(
    svc: &Services,
    actor: Actor,
    public_id: String,
    enabled: bool,
) -> ServiceResult<Channel> {
    let channel = svc
        .write(actor, move |change| {
            set_enabled_in(change, &public_id, enabled)
        })
        .await?;
    svc.channel_cache.clear();
    Ok(channel)
}

/// Deletes the channel inside `change`'s transaction, unless a message uses it (refused as
/// `channel_in_use`, with the count in words).
fn delete_in(change: &mut Change<'_>, channel: &Channel) -> ServiceResult<()> {
    let messages = channels::messages_using(change.conn, channel.id)?;
    if messages > 0 {
        return Err(ServiceError::conflict(
            IN_USE,
            in_use_message(channel, messages),
        ));
    }
    channels::delete(change.conn, channel.id)?;
    change.audit(
        "channel.deleted",
        "channel",
        Some(&channel.public_id),
        json!({
            "name": channel.name,
            "kind": channel.kind.as_str(),
            "provider": channel.provider.as_str(),
        }),
    )
}

/// Deletes a channel that no message uses; messages sent through it need it for their
/// history, so it stays (refused as `channel_in_use`: disable it instead).
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<Channel> {
    let db = svc.db.clone();
    let deleted = db
        .run(move |conn| {
            let channel = channel_or_not_found(conn, &public_id)?;
            let result = crate::service::write(conn, &actor, |change| delete_in(change, &channel));
            match result {
                Ok(()) => Ok(channel),
                // A message was written between the count and the delete.
                Err(ServiceError::Internal(e))
                    if matches!(
                        e.downcast_ref::<DieselError>(),
                        Some(DieselError::DatabaseError(
                            DatabaseErrorKind::ForeignKeyViolation,
                            _
                        ))
                    ) =>
                {
                    let messages = channels::messages_using(conn, channel.id)?;
                    Err(ServiceError::conflict(
                        IN_USE,
                        in_use_message(&channel, messages),
                    ))
                }
                Err(e) => Err(e),
            }
        })
        .await?;
    svc.channels.forget(deleted.id);
    svc.channel_cache.clear();
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// Testing the connection
// ---------------------------------------------------------------------------------------------

/// What "Test connection" found: the provider's answer, or what went wrong in words, what
/// to check, and the provider's own code, words and link beneath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub ok: bool,
    pub message: String,
    pub diagnosis: Diagnosis,
    pub provider: Provider,
}

/// Calls the provider once with the saved settings (an authenticated read) and says what it
/// answered. Saves an audit entry, and when the test passed, the time (the getting-started
/// list ticks a real account only then).
pub async fn test_connection(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<TestResult> {
    let channel = get(svc, public_id.clone()).await?;
    let (result, class, code) = match svc.channels.adapter(&channel) {
        Err(e) => (
            TestResult {
                ok: false,
                message: "Herald cannot use this channel's saved settings.".into(),
                diagnosis: Diagnosis {
                    headline: "Herald cannot use this channel's saved settings.".into(),
                    checks: vec![format!("Edit the channel and enter them again: {e}.")],
                    ..Diagnosis::default()
                },
                provider: channel.provider,
            },
            Some("settings".to_owned()),
            None,
        ),
        Ok(adapter) => match adapter.test_connection().await {
            Ok(answer) => (
                TestResult {
                    ok: true,
                    message: answer,
                    diagnosis: Diagnosis::default(),
                    provider: channel.provider,
                },
                None,
                None,
            ),
            Err(e) => {
                let base_url = serde_json::from_str::<Value>(&channel.settings)
                    .ok()
                    .and_then(|s| s.get("base_url").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                let diagnosis = diagnose(channel.provider, &base_url, &e);
                (
                    TestResult {
                        ok: false,
                        message: diagnosis.headline.clone(),
                        diagnosis,
                        provider: channel.provider,
                    },
                    Some(e.class.as_str().to_owned()),
                    e.code.clone(),
                )
            }
        },
    };
    let details = json!({
        "name": channel.name,
        "ok": result.ok,
        "error_class": class,
        "error_code": code,
    });
    let (channel_id, ok) = (channel.id, result.ok);
    svc.write(actor, move |change| {
        channels::record_test(change.conn, channel_id, ok)?;
        change.audit("channel.tested", "channel", Some(&public_id), details)
    })
    .await?;
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// WhatsApp's messaging limit, read from Meta
// ---------------------------------------------------------------------------------------------

/// How often the messaging limits are read from Meta (Meta raises a limit within hours).
pub const MESSAGING_LIMIT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Reads the messaging limit Meta reports for each enabled WhatsApp Cloud API channel and
/// stores it in the channel's `messaging_limit` setting when it changed, with an audit entry.
/// A channel Meta says nothing about keeps the value set by hand; a failed call is logged and
/// tried again next time. Returns how many channels changed.
pub async fn refresh_messaging_limits(
    db: &crate::storage::Db,
    registry: &ChannelRegistry,
) -> ServiceResult<usize> {
    let whatsapp: Vec<Channel> = db
        .run(|conn| Ok::<_, ServiceError>(channels::list(conn)?))
        .await?
        .into_iter()
        .filter(|c| c.provider == Provider::WhatsappCloud && c.is_enabled())
        .collect();
    let mut changed = 0;
    for channel in whatsapp {
        let Ok(adapter) = registry.adapter(&channel) else {
            continue;
        };
        let limit = match adapter.messaging_limit().await {
            Ok(Some(limit)) => limit,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(channel = %channel.name, error = %e, "reading the messaging limit from Meta failed");
                continue;
            }
        };
        let id = channel.id;
        if db
            .run(move |conn| record_messaging_limit(conn, id, limit))
            .await?
        {
            changed += 1;
        }
    }
    Ok(changed)
}

fn record_messaging_limit(conn: &mut DbConnection, id: i64, limit: &str) -> ServiceResult<bool> {
    crate::service::write(conn, &Actor::system("Meta messaging limit"), |change| {
        let Some(channel) = channels::find(change.conn, id)? else {
            return Ok(false);
        };
        let mut settings: Map<String, Value> =
            serde_json::from_str(&channel.settings).unwrap_or_default();
        let before = settings
            .get("messaging_limit")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if before.as_deref() == Some(limit) {
            return Ok(false);
        }
        settings.insert("messaging_limit".into(), json!(limit));
        channels::set_settings(change.conn, id, &Value::Object(settings).to_string())?;
        change.audit(
            "channel.messaging_limit_read",
            "channel",
            Some(&channel.public_id),
            json!({ "messaging_limit": limit, "before": before }),
        )?;
        Ok(true)
    })
}

/// [`refresh_messaging_limits`] every [`MESSAGING_LIMIT_EVERY`], from start-up on.
pub async fn run_messaging_limit_refresh(
    db: crate::storage::Db,
    registry: std::sync::Arc<ChannelRegistry>,
) {
    let mut ticks = tokio::time::interval(MESSAGING_LIMIT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match refresh_messaging_limits(&db, &registry).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(channels = n, "messaging limits read from Meta"),
            Err(e) => tracing::warn!(error = ?e, "reading the messaging limits failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting<'a>(p: &'a FieldProblems, key: &str) -> Option<&'a str> {
        p.get(&format!("settings.{key}"))
    }

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
            "auth_token": "0123456789abcdef0123456789abcd01", "from": "+14155550100",
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
        assert_eq!(
            c.secrets.get("auth_token"),
            Some(&json!("0123456789abcdef0123456789abcd01"))
        );
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
            setting(&p, "account_sid")
                .unwrap()
                .contains("AC followed by 32")
        );
        assert!(setting(&p, "auth_token").unwrap().contains("must be text"));
        assert!(
            setting(&p, "colour")
                .unwrap()
                .contains("Twilio has no setting \"colour\"")
        );
        assert!(setting(&p, "from").is_some(), "a sender is required");
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
        assert_eq!(
            c.secrets.get("auth_token"),
            Some(&json!("0123456789abcdef0123456789abcd01"))
        );
        assert!(c.secrets_replaced.is_empty());
        assert_eq!(c.changed, vec!["sender", "settings.from"]);
        assert_eq!(c.rate_limit_per_second, 5, "an edit keeps the rate");

        let replace = draft(json!({"auth_token": "0123456789abcdef0123456789abcd02"}));
        let c = check(Provider::Twilio, Some(&current), &replace).unwrap();
        assert_eq!(
            c.secrets.get("auth_token"),
            Some(&json!("0123456789abcdef0123456789abcd02"))
        );
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
                setting(&p, "auth_token")
                    .unwrap()
                    .contains("never sends a saved secret to a new address"),
                "{moved}: {p:?}"
            );
        }
        // With the secret typed again, it saves.
        let c = check(
            Provider::Twilio,
            Some(&current),
            &draft(json!({"base_url": "https://api2.example", "auth_token": "0123456789abcdef0123456789abcd02"})),
        )
        .unwrap();
        assert_eq!(
            c.secrets.get("auth_token"),
            Some(&json!("0123456789abcdef0123456789abcd02"))
        );
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
        assert!(setting(&p, "auth_token").unwrap().contains("required"));
        let c = check(
            Provider::Twilio,
            Some(&current),
            &draft(json!({"auth_token": "0123456789abcdef0123456789abcd01"})),
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
        assert!(setting(&p, "read_after_ms").unwrap().contains("read after"));
    }

    #[test]
    fn a_channel_is_created_disabled_and_deleted_each_with_its_audit_entry() {
        use crate::service::{testing, write};
        use crate::storage::audit;
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let actor = Actor::system("channels unit test");
        let d = draft(json!({}));
        let checked = check_new(ChannelKind::Sms, Provider::Sandbox, &d).unwrap();
        let channel = write(&mut conn, &actor, |change| {
            create_in(change, ChannelKind::Sms, Provider::Sandbox, &checked, None)
        })
        .expect("created");
        let again = write(&mut conn, &actor, |change| {
            create_in(change, ChannelKind::Sms, Provider::Sandbox, &checked, None)
        })
        .unwrap_err();
        assert!(
            matches!(
                &again,
                ServiceError::Conflict {
                    code: NAME_TAKEN,
                    ..
                }
            ),
            "{again:?}"
        );
        let off = write(&mut conn, &actor, |change| {
            set_enabled_in(change, &channel.public_id, false)
        })
        .expect("disabled");
        assert!(!off.is_enabled());
        write(&mut conn, &actor, |change| delete_in(change, &channel)).expect("deleted");
        let actions: Vec<String> = audit::page(&mut conn, None, 100)
            .expect("audit")
            .into_iter()
            .filter(|e| e.actor_label == actor.label)
            .map(|e| e.action)
            .collect();
        for action in ["channel.created", "channel.disabled", "channel.deleted"] {
            assert!(actions.iter().any(|a| a == action), "{actions:?}");
        }
        assert_eq!(actions.len(), 3, "{actions:?}");
    }
}
