//! Templates at the provider: submitting a template Herald approved (the adapter's
//! `submit_template`), asking for its status ("sync now", and a periodic sync for templates
//! still pending), and turning a valid template into the provider-neutral submission.
//! Provider calls run with no transaction open; their answers are stored afterwards.
//!
//! Status webhooks are preferred (see `events.rs`): Meta's management API allows a few hundred
//! calls an hour per account, so the periodic sync asks only about templates still pending,
//! at most [`SyncBudget::per_channel`] per channel and run, spaced apart, and never about one
//! it (or another instance) asked about within [`SyncBudget::recheck_after`].

use std::collections::HashMap;
use std::time::Duration;

use crate::channels::{
    self, ChannelAdapter, PlaceholderExample, ProviderTemplateStatus, TemplateButton, TemplateRef,
    TemplateSubmission,
};
use crate::dispatch::error::DispatchError;
use crate::dispatch::hub::{EventHub, HubEvent};
use crate::dispatch::registry::ChannelRegistry;
use crate::domain::audit::Actor;
use crate::domain::template::{
    Button, PlaceholderInfo, PlaceholderLocation, TemplateCategory, TemplateStage, ValidTemplate,
    placeholders,
};
use crate::storage::channels::{self as channel_store, Channel};
use crate::storage::templates::{self, SubmissionResult, Version};
use crate::storage::{Db, now};

/// A submission claimed this long ago with no answer recorded (the process died mid-call) may
/// be tried again.
const SUBMISSION_STALE_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The submission a provider reviews, for a WhatsApp or Viber template; `None` for SMS, which
/// no provider reviews.
pub fn submission_for(template: &ValidTemplate) -> Option<TemplateSubmission> {
    let category = match template.category()? {
        TemplateCategory::Marketing => channels::TemplateCategory::Marketing,
        TemplateCategory::Utility => channels::TemplateCategory::Utility,
        TemplateCategory::Authentication => channels::TemplateCategory::Authentication,
        TemplateCategory::Transactional => channels::TemplateCategory::Transactional,
        TemplateCategory::Otp => channels::TemplateCategory::Otp,
    };
    let infos = placeholders(template);
    let examples = |location: PlaceholderLocation| -> Vec<PlaceholderExample> {
        let mut out: Vec<PlaceholderExample> = Vec::new();
        for info in infos.iter().filter(|p| p.location == location) {
            let placeholder = token(info);
            if !out.iter().any(|e| e.placeholder == placeholder) {
                out.push(PlaceholderExample {
                    placeholder,
                    value: info.sample.clone(),
                });
            }
        }
        out
    };
    let buttons = template
        .buttons()
        .iter()
        .enumerate()
        .map(|(i, button)| match button {
            Button::QuickReply { text } => TemplateButton::QuickReply { text: text.clone() },
            Button::Url { text, url } => TemplateButton::Url {
                text: text.clone(),
                url: url.clone(),
                example_suffix: u8::try_from(i).ok().and_then(|index| {
                    infos
                        .iter()
                        .find(|p| p.location == PlaceholderLocation::Button { index })
                        .map(|p| p.sample.clone())
                }),
            },
            Button::PhoneNumber { text, phone_number } => TemplateButton::PhoneNumber {
                text: text.clone(),
                phone_number: phone_number.clone(),
            },
        })
        .collect();
    if let Some(auth) = template.authentication() {
        // Meta writes the text of authentication templates: only the options go.
        return Some(TemplateSubmission {
            name: template.name().as_str().to_owned(),
            language: template.language().as_str().to_owned(),
            category,
            parameter_format: template.parameter_format(),
            header_text: None,
            body_text: String::new(),
            footer_text: None,
            buttons: Vec::new(),
            header_examples: Vec::new(),
            body_examples: Vec::new(),
            replaces: None,
            authentication: Some(auth.clone()),
        });
    }
    Some(TemplateSubmission {
        name: template.name().as_str().to_owned(),
        language: template.language().as_str().to_owned(),
        category,
        parameter_format: template.parameter_format(),
        header_text: template.header().map(str::to_owned),
        body_text: template.body().to_owned(),
        footer_text: template.footer().map(str::to_owned),
        buttons,
        header_examples: examples(PlaceholderLocation::Header),
        body_examples: examples(PlaceholderLocation::Body),
        replaces: None,
        authentication: None,
    })
}

/// `{{1}}` -> `1`: the placeholder as the provider's text has it.
fn token(info: &PlaceholderInfo) -> String {
    info.placeholder
        .trim_start_matches("{{")
        .trim_end_matches("}}")
        .to_owned()
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The provider took it, in this state (usually pending).
    Accepted(ProviderTemplateStatus),
    /// The provider (or the adapter, before sending) refused it; its words, verbatim.
    Failed(String),
    /// Nothing to submit: not approved in Herald, already at the provider, or SMS.
    NotNeeded,
    /// Another submission of this version is running.
    InFlight,
}

/// Submits a version Herald approved to its channel's provider, once, and records the answer.
pub async fn submit(
    db: &Db,
    hub: &EventHub,
    registry: &ChannelRegistry,
    version_id: i64,
    actor: &Actor,
) -> Result<Submitted, DispatchError> {
    let claimed = db
        .run(move |conn| {
            let Some(version) = templates::find_version(conn, version_id)? else {
                return Ok::<_, DispatchError>(None);
            };
            let template = templates::find(conn, version.template_id)?
                .ok_or_else(|| DispatchError::not_found("This template"))?;
            let channel = channel_store::find(conn, template.channel_id)?
                .ok_or_else(|| DispatchError::not_found("The template's channel"))?;
            if !version.state.awaits_provider_submission(channel.kind) {
                return Ok(Some((channel, version, None, false)));
            }
            let replaces = templates::provider_id_to_replace(conn, &version)?;
            let claimed =
                templates::claim_submission(conn, version.id, now() - SUBMISSION_STALE_AFTER)?;
            Ok(Some((channel, version, replaces, claimed)))
        })
        .await?;
    let Some((channel, version, replaces, claimed)) = claimed else {
        return Ok(Submitted::NotNeeded);
    };
    if !version.state.awaits_provider_submission(channel.kind) {
        return Ok(Submitted::NotNeeded);
    }
    if !claimed {
        return Ok(Submitted::InFlight);
    }
    let result = call_submit(registry, &channel, &version, replaces).await;
    let outcome = match &result {
        SubmissionResult::Accepted { status, .. } => Submitted::Accepted(status.clone()),
        SubmissionResult::Failed(text) => Submitted::Failed(text.clone()),
    };
    let actor = actor.clone();
    let template_id = version.template_id;
    db.run(move |conn| {
        templates::record_submission(conn, version_id, &result, &actor)?;
        Ok::<_, DispatchError>(())
    })
    .await?;
    hub.publish(HubEvent::Template { template_id });
    Ok(outcome)
}

async fn call_submit(
    registry: &ChannelRegistry,
    channel: &Channel,
    version: &Version,
    replaces: Option<String>,
) -> SubmissionResult {
    let valid = match version.valid(channel.kind) {
        Ok(v) => v,
        Err(errors) => {
            return SubmissionResult::Failed(format!(
                "This version no longer meets {}'s rules: {errors}",
                channel.kind.label()
            ));
        }
    };
    let Some(mut submission) = submission_for(&valid) else {
        return SubmissionResult::Failed(format!(
            "{} templates are not submitted to a provider.",
            channel.kind.label()
        ));
    };
    submission.replaces = replaces;
    let adapter = match registry.adapter(channel) {
        Ok(a) => a,
        Err(e) => {
            return SubmissionResult::Failed(format!(
                "The channel {} cannot be used: {e}",
                channel.name
            ));
        }
    };
    match adapter.submit_template(&submission).await {
        Ok(answer) => SubmissionResult::Accepted {
            provider_template_id: answer.provider_template_id,
            status: answer.status,
        },
        Err(e) => SubmissionResult::Failed(e.text()),
    }
}

/// What asking the provider about one version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    Changed,
    Unchanged,
    /// The provider (or the channel's settings) refused the question; verbatim.
    Failed(String),
}

/// The template a status query is about: the provider's id, and Herald's name and language.
struct Asked<'a> {
    provider_template_id: &'a str,
    name: &'a str,
    language: &'a str,
}

/// Asks the provider about one template. An answer about another template (another id, or
/// another name and language) is never taken as this one's verdict: it is logged and ignored.
async fn ask(
    registry: &ChannelRegistry,
    channel: &Channel,
    asked: &Asked<'_>,
) -> Result<ProviderTemplateStatus, String> {
    let adapter = registry
        .adapter(channel)
        .map_err(|e| format!("The channel {} cannot be used: {e}", channel.name))?;
    let answer = adapter
        .template_status(&TemplateRef::ProviderId(
            asked.provider_template_id.to_owned(),
        ))
        .await
        .map_err(|e| e.text())?;
    if !answer.is_about(asked.provider_template_id, asked.name, asked.language) {
        tracing::warn!(
            channel = %channel.name,
            asked = asked.provider_template_id,
            name = asked.name,
            language = asked.language,
            answered = %answer.describe(),
            "the provider's answer about a template was about another one; ignored"
        );
        return Err(format!(
            "the answer was about another template ({}), not {} in {} (id {}); it was ignored",
            answer.describe(),
            asked.name,
            asked.language,
            asked.provider_template_id
        ));
    }
    Ok(answer.status)
}

async fn ask_and_record(
    db: &Db,
    registry: &ChannelRegistry,
    channel: &Channel,
    version_id: i64,
    asked: &Asked<'_>,
    actor: &Actor,
) -> Result<Synced, DispatchError> {
    let status = match ask(registry, channel, asked).await {
        Ok(status) => status,
        Err(text) => return Ok(Synced::Failed(text)),
    };
    let actor = actor.clone();
    let changed = db
        .run(move |conn| {
            Ok::<_, DispatchError>(templates::record_provider_status(
                conn, version_id, &status, &actor,
            )?)
        })
        .await?;
    Ok(if changed {
        Synced::Changed
    } else {
        Synced::Unchanged
    })
}

/// "Sync now": asks the provider about every version of the template it knows (the newest and
/// the one sending), and records what it says. Returns one outcome per version asked about.
pub async fn sync_template(
    db: &Db,
    hub: &EventHub,
    registry: &ChannelRegistry,
    template_id: i64,
    actor: &Actor,
) -> Result<Vec<(i32, Synced)>, DispatchError> {
    let (template, channel, asked) = db
        .run(move |conn| {
            let template = templates::find(conn, template_id)?
                .ok_or_else(|| DispatchError::not_found("This template"))?;
            let channel = channel_store::find(conn, template.channel_id)?
                .ok_or_else(|| DispatchError::not_found("The template's channel"))?;
            let asked: Vec<(i64, i32, String)> = templates::versions(conn, template.id)?
                .into_iter()
                .filter(|v| v.stage != TemplateStage::Superseded)
                .filter_map(|v| Some((v.id, v.number, v.provider_template_id?)))
                .collect();
            Ok::<_, DispatchError>((template, channel, asked))
        })
        .await?;
    let mut out = Vec::new();
    for (version_id, number, provider_id) in asked {
        let asked = Asked {
            provider_template_id: &provider_id,
            name: &template.name,
            language: &template.language,
        };
        let synced = ask_and_record(db, registry, &channel, version_id, &asked, actor).await?;
        out.push((number, synced));
    }
    hub.publish(HubEvent::Template { template_id });
    Ok(out)
}

/// How much of the provider's management budget the periodic sync may spend.
#[derive(Debug, Clone, Copy)]
pub struct SyncBudget {
    /// A template asked about more recently is skipped.
    pub recheck_after: Duration,
    /// At most this many status queries per channel in one run.
    pub per_channel: usize,
    /// The pause between two queries to the same channel.
    pub spacing: Duration,
}

impl Default for SyncBudget {
    /// Every 10 minutes, 20 queries a channel at most: 120 an hour, within Meta's 200 per hour
    /// for an account without a verified business.
    fn default() -> Self {
        SyncBudget {
            recheck_after: Duration::from_secs(600),
            per_channel: 20,
            spacing: Duration::from_secs(1),
        }
    }
}

/// What one run of the periodic sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub checked: usize,
    pub changed: usize,
    pub failed: usize,
}

/// One run of the periodic sync: asks the provider about templates still pending there, within
/// `budget`. The background task calls it every 10 minutes; tests call it directly.
pub async fn sync_pending(
    db: &Db,
    hub: &EventHub,
    registry: &ChannelRegistry,
    budget: &SyncBudget,
) -> Result<SyncReport, DispatchError> {
    let recheck = chrono::Duration::from_std(budget.recheck_after)
        .unwrap_or_else(|_| chrono::Duration::minutes(10));
    let limit = i64::try_from(budget.per_channel.saturating_mul(50)).unwrap_or(1000);
    let (items, channels) = db
        .run(move |conn| {
            let items = templates::awaiting_verdict(conn, now() - recheck, limit)?;
            let channels: HashMap<i64, Channel> = channel_store::list(conn)?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
            Ok::<_, DispatchError>((items, channels))
        })
        .await?;
    let actor = Actor::system("Template status sync");
    let mut report = SyncReport::default();
    let mut asked: HashMap<i64, usize> = HashMap::new();
    for item in items {
        let Some(channel) = channels.get(&item.channel_id) else {
            continue;
        };
        let count = asked.entry(channel.id).or_insert(0);
        if *count >= budget.per_channel || !channel.is_enabled() {
            continue;
        }
        if *count > 0 && !budget.spacing.is_zero() {
            tokio::time::sleep(budget.spacing).await;
        }
        let claim = item.clone();
        let claimed = db
            .run(move |conn| Ok::<_, DispatchError>(templates::claim_check(conn, &claim)?))
            .await?;
        if !claimed {
            continue;
        }
        *count += 1;
        report.checked += 1;
        let asked = Asked {
            provider_template_id: &item.provider_template_id,
            name: &item.name,
            language: &item.language,
        };
        match ask_and_record(db, registry, channel, item.version_id, &asked, &actor).await? {
            Synced::Changed => {
                report.changed += 1;
                hub.publish(HubEvent::Template {
                    template_id: item.template_id,
                });
            }
            Synced::Unchanged => {}
            Synced::Failed(text) => {
                report.failed += 1;
                tracing::warn!(channel = %channel.name, template = %item.provider_template_id, error = %text, "template status sync failed");
            }
        }
    }
    Ok(report)
}

/// The periodic sync, forever: one run every `every`.
pub async fn run_periodic_sync(
    db: Db,
    hub: EventHub,
    registry: std::sync::Arc<ChannelRegistry>,
    every: Duration,
    budget: SyncBudget,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sync_pending(&db, &hub, &registry, &budget).await {
            Ok(report) if report.checked > 0 => {
                tracing::info!(?report, "template statuses synced with the providers")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "the template status sync failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::channels::{infobip_viber, whatsapp};
    use crate::domain::channel::ChannelKind;
    use crate::domain::template::{ButtonDraft, TemplateDraft, validate};

    fn samples(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_whatsapp_template_becomes_metas_creation_request() {
        let draft = TemplateDraft {
            name: "order_update".into(),
            language: "en_US".into(),
            category: "utility".into(),
            header: "Order {{1}} is on its way".into(),
            body: "Hi {{1}}, your order {{2}} has shipped and arrives soon.".into(),
            footer: "Reply STOP to opt out".into(),
            buttons: vec![
                ButtonDraft {
                    kind: "url".into(),
                    text: "Track it".into(),
                    url: "https://shop.example/track/{{1}}".into(),
                    ..ButtonDraft::default()
                },
                ButtonDraft {
                    kind: "phone_number".into(),
                    text: "Call us".into(),
                    phone_number: "+14155550100".into(),
                    ..ButtonDraft::default()
                },
            ],
            samples: samples(&[
                ("header", "#1234"),
                ("1", "Alex"),
                ("2", "#1234"),
                ("url_1", "1234"),
            ]),
            ..TemplateDraft::default()
        };
        let valid = validate(ChannelKind::Whatsapp, &draft).expect("valid");
        let submission = submission_for(&valid).expect("a submission");
        assert_eq!(submission.header_examples[0].placeholder, "1");
        assert_eq!(submission.header_examples[0].value, "#1234");
        assert_eq!(submission.body_examples.len(), 2);
        let body = whatsapp::template_body(&submission).expect("Meta's body");
        assert_eq!(body["category"], "UTILITY");
        assert_eq!(body["components"][0]["example"]["header_text"][0], "#1234");
        assert_eq!(
            body["components"][1]["example"]["body_text"][0],
            serde_json::json!(["Alex", "#1234"])
        );
        let buttons = &body["components"][3]["buttons"];
        assert_eq!(buttons[0]["example"][0], "https://shop.example/track/1234");
        assert_eq!(buttons[1]["phone_number"], "+14155550100");
    }

    #[test]
    fn a_viber_template_becomes_infobips_and_sms_has_none() {
        let draft = TemplateDraft {
            name: "shipped".into(),
            language: "en".into(),
            category: "transactional".into(),
            body: "Hello {{firstname}}, order {{orderno}} has shipped today.".into(),
            samples: samples(&[("firstname", "John"), ("orderno", "ORD-1")]),
            ..TemplateDraft::default()
        };
        let valid = validate(ChannelKind::Viber, &draft).expect("valid");
        let body = infobip_viber::template_body(&submission_for(&valid).expect("submission"))
            .expect("Infobip's body");
        assert_eq!(body["category"], "TRANSACTIONAL");
        assert_eq!(body["params"][0]["name"], "firstname");
        assert_eq!(body["params"][1]["example"], "ORD-1");

        let sms = TemplateDraft {
            name: "hello".into(),
            language: "en".into(),
            body: "Hello {{name}}".into(),
            ..TemplateDraft::default()
        };
        let valid = validate(ChannelKind::Sms, &sms).expect("valid");
        assert!(submission_for(&valid).is_none());
    }
}
