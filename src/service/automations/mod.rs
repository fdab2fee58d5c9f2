//! Issue 20, automations: messages that go later or on their own. Scheduled single sends
//! (`send_at` on a send) wait as `scheduled` and are queued when their time comes
//! ([`scheduled`]). Everything here runs in `herald serve` (beside the dispatcher) and in
//! `herald worker`; several instances may run it at once, every change being conditional on
//! the state it changes.

pub mod reminders;
pub mod scheduled;
pub mod triggers;

use std::time::Duration;

use tokio::sync::watch;

use crate::dispatch::worker::Dispatcher;
use crate::domain::template::CONTACT_FIELDS;
use crate::service::{ServiceResult, Services};
use crate::storage::channels::{self, Channel};
use crate::storage::{contacts, templates};

/// How often the background step looks for due work when nothing woke it.
const PAUSE: Duration = Duration::from_secs(1);

/// Runs the automations' background step until `stop` turns true.
pub async fn run(dispatcher: Dispatcher, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = scheduled::promote(&dispatcher).await {
            tracing::warn!(error = ?e, "queueing scheduled messages failed; trying again");
        }
        if let Err(e) = reminders::step(&dispatcher).await {
            tracing::warn!(error = ?e, "sending due reminders failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(PAUSE) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// What the trigger and reminder forms offer: the channels, and the templates that may be sent
/// now as (channel name, template name, language).
pub struct Choices {
    pub channels: Vec<Channel>,
    pub templates: Vec<(String, String, String)>,
    /// Each template's variables (the names its placeholders fill, in order) by name and
    /// language; a name and language on several channels has the variables of all of them.
    pub variables: Vec<((String, String), Vec<String>)>,
    /// The contact fields and attributes (`attributes.<key>`) a variable can come from.
    pub fields: Vec<String>,
}

impl Choices {
    /// The variables of the template with this name and language, if it may be sent.
    pub fn variables_of(&self, name: &str, language: &str) -> Option<&[String]> {
        self.variables
            .iter()
            .find(|((n, l), _)| n == name && l == language)
            .map(|(_, v)| v.as_slice())
    }
}

pub async fn choices(svc: &Services) -> ServiceResult<Choices> {
    svc.read(|conn| {
        let channels = channels::list(conn)?;
        let mut templates = Vec::new();
        let mut variables: Vec<((String, String), Vec<String>)> = Vec::new();
        for (c, t) in templates::sendable_list(conn, &templates::TemplateFilter::default())? {
            let key = (
                t.template.name().to_string(),
                t.template.language().to_string(),
            );
            let at = match variables.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    variables.push((key.clone(), Vec::new()));
                    variables.len() - 1
                }
            };
            for p in t.placeholders() {
                if !variables[at].1.contains(&p.name) {
                    variables[at].1.push(p.name);
                }
            }
            templates.push((c.name, key.0, key.1));
        }
        let mut fields: Vec<String> = CONTACT_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        for k in contacts::attribute_keys(conn)? {
            fields.push(format!("attributes.{k}"));
        }
        Ok(Choices {
            channels,
            templates,
            variables,
            fields,
        })
    })
    .await
}

/// The approved template an automation sends on `channel`, found by name and language, or why it
/// cannot be sent, on the `template` field through `invalid` (each automation has its code).
fn sendable_template(
    conn: &mut crate::storage::DbConnection,
    channel: &Channel,
    name: &str,
    language: &str,
    invalid: impl Fn(&str, String) -> crate::service::ServiceError,
) -> ServiceResult<Box<templates::SendableTemplate>> {
    let wanted = crate::service::sends::TemplateRef::Name {
        name: name.to_owned(),
        language: language.to_owned(),
    };
    match crate::service::sends::find_template(conn, channel, &wanted)? {
        templates::TemplateLookup::Sendable(t) => Ok(t),
        templates::TemplateLookup::NotSendable { reason, .. } => Err(invalid(
            "template",
            format!("This template cannot be sent yet: {reason}"),
        )),
        templates::TemplateLookup::NotFound => Err(invalid(
            "template",
            "No such template on this channel.".to_owned(),
        )),
    }
}
