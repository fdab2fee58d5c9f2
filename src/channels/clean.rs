//! What Herald keeps of the text providers send, whatever they send: no NUL anywhere
//! (PostgreSQL's text cannot hold it, and a 500 makes a provider retry for days), display
//! names without control characters or bidirectional overrides (a name must not reorder the
//! page around it), and inbound text of bounded length. Applied once, to every event a webhook
//! or the sandbox produced, before anything is stored (`dispatch::events::apply`).

use super::{
    Address, InboundEvent, ProviderError, ProviderEvent, StatusEvent, TemplateStatusEvent,
};

/// The longest inbound text kept, in characters: the most any provider sends (a WhatsApp text
/// body holds 4096; Twilio joins an SMS to at most 1600, Viber sends at most 1000). Anything
/// longer is cut there and [`truncation_note`] says how long it was.
pub const MAX_INBOUND_TEXT_CHARS: usize = 4096;

/// The note appended to an inbound text cut at [`MAX_INBOUND_TEXT_CHARS`].
pub fn truncation_note(original_chars: usize) -> String {
    format!(" […cut by Herald: the provider sent {original_chars} characters]")
}

/// The most of a display name kept, in characters (a contact's name holds as much).
pub const MAX_DISPLAY_NAME_CHARS: usize = crate::domain::contact::MAX_NAME_CHARS;

/// The text without NUL characters; everything else verbatim.
pub fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}

fn strip_nul(text: &mut String) {
    if text.contains('\0') {
        *text = without_nul(text);
    }
}

/// Characters that change the direction of the text around them (embeddings, overrides,
/// isolates and marks), or break a name across lines.
fn is_layout_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'                 // Arabic letter mark
        | '\u{200E}' | '\u{200F}'  // left-to-right and right-to-left marks
        | '\u{202A}'..='\u{202E}'  // embeddings and overrides, pop
        | '\u{2066}'..='\u{2069}'  // isolates, pop
        | '\u{2028}' | '\u{2029}'  // line and paragraph separators
        | '\u{FEFF}' // byte-order mark / zero-width no-break space
    )
}

/// A display name a provider gave (a WhatsApp profile name): without control characters
/// (C0, DEL, C1) or bidirectional controls, whitespace runs made one space, at most
/// [`MAX_DISPLAY_NAME_CHARS`]; `None` when nothing is left.
pub fn display_name(name: &str) -> Option<String> {
    let kept: String = name
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !c.is_control() && !is_layout_control(*c))
        .collect();
    let joined = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = joined.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let cut = cut.trim_end().to_owned();
    (!cut.is_empty()).then_some(cut)
}

/// An inbound message's text: without NUL, at most [`MAX_INBOUND_TEXT_CHARS`] characters and
/// a note saying how long it was.
pub fn inbound_text(text: &str) -> String {
    let text = without_nul(text);
    let count = text.chars().count();
    if count <= MAX_INBOUND_TEXT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_INBOUND_TEXT_CHARS).collect();
    cut.push_str(&truncation_note(count));
    cut
}

fn clean_address(address: &mut Address) {
    if let Address::Raw(raw) = address {
        strip_nul(raw);
    }
}

fn clean_error(error: &mut ProviderError) {
    strip_nul(&mut error.code);
    strip_nul(&mut error.message);
}

impl ProviderEvent {
    /// The event as Herald keeps it: see the module documentation. Nothing is refused: a
    /// signed event is applied with what is left.
    pub fn cleaned(self) -> ProviderEvent {
        match self {
            ProviderEvent::Inbound(mut e) => {
                let InboundEvent {
                    event_id,
                    from,
                    text,
                    provider_message_id,
                    profile_name,
                    account,
                    ..
                } = &mut e;
                strip_nul(event_id);
                clean_address(from);
                *text = inbound_text(text);
                strip_nul(provider_message_id);
                *profile_name = profile_name.as_deref().and_then(display_name);
                if let Some(a) = account {
                    strip_nul(a);
                }
                ProviderEvent::Inbound(e)
            }
            ProviderEvent::Status(mut e) => {
                let StatusEvent {
                    event_id,
                    provider_message_id,
                    error,
                    account,
                    payload,
                    ..
                } = &mut e;
                strip_nul(event_id);
                strip_nul(provider_message_id);
                if let Some(p) = payload {
                    strip_nul(p);
                }
                if let Some(error) = error {
                    clean_error(error);
                }
                if let Some(a) = account {
                    strip_nul(a);
                }
                ProviderEvent::Status(e)
            }
            ProviderEvent::TemplateStatus(mut e) => {
                let TemplateStatusEvent {
                    event_id,
                    provider_template_id,
                    name,
                    language,
                    status,
                    reason,
                } = &mut e;
                strip_nul(event_id);
                strip_nul(provider_template_id);
                for text in [name, language, reason].into_iter().flatten() {
                    strip_nul(text);
                }
                match status {
                    super::ProviderTemplateStatus::Rejected { reason }
                    | super::ProviderTemplateStatus::Paused { reason }
                    | super::ProviderTemplateStatus::Disabled { reason } => {
                        if let Some(r) = reason {
                            strip_nul(r);
                        }
                    }
                    super::ProviderTemplateStatus::Other(word) => strip_nul(word),
                    super::ProviderTemplateStatus::Pending
                    | super::ProviderTemplateStatus::Approved => {}
                }
                ProviderEvent::TemplateStatus(e)
            }
            ProviderEvent::Unrecognised { description } => ProviderEvent::Unrecognised {
                description: without_nul(&description),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::channels::{DeliveryStatus, ErrorClass, ProviderTemplateStatus};

    #[test]
    fn display_names_lose_controls_and_direction_overrides() {
        assert_eq!(
            display_name("Eve\u{202E}gnp.exe\u{0}\u{7}").as_deref(),
            Some("Evegnp.exe")
        );
        assert_eq!(
            display_name(
                " Ada \u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{061C}Lovelace\u{FEFF}"
            )
            .as_deref(),
            Some("Ada Lovelace")
        );
        assert_eq!(
            display_name("Ada\r\nLovelace\u{2028}\tII\u{85}\u{9B}").as_deref(),
            Some("Ada Lovelace II")
        );
        // Letters, accents, emoji (with their joiners) and right-to-left scripts stay.
        assert_eq!(
            display_name("José 👩\u{200D}💻 محمد").as_deref(),
            Some("José 👩\u{200D}💻 محمد")
        );
        assert_eq!(display_name("\u{0}\u{202E}\u{1b} "), None);
        let long = "x".repeat(MAX_DISPLAY_NAME_CHARS + 50);
        assert_eq!(
            display_name(&long).map(|n| n.chars().count()),
            Some(MAX_DISPLAY_NAME_CHARS)
        );
    }

    #[test]
    fn inbound_text_loses_nul_and_is_cut_with_a_note() {
        assert_eq!(
            inbound_text("Hello\u{0} world\n\tbye"),
            "Hello world\n\tbye"
        );
        let exactly = "é".repeat(MAX_INBOUND_TEXT_CHARS);
        assert_eq!(inbound_text(&exactly), exactly);
        let long = format!("{}{}", "a".repeat(MAX_INBOUND_TEXT_CHARS), "b".repeat(904));
        let kept = inbound_text(&long);
        assert_eq!(
            kept,
            format!(
                "{}{}",
                "a".repeat(MAX_INBOUND_TEXT_CHARS),
                truncation_note(5000)
            )
        );
        assert!(kept.ends_with("the provider sent 5000 characters]"));
    }

    #[test]
    fn every_string_of_every_event_loses_nul() {
        let inbound = ProviderEvent::Inbound(InboundEvent {
            event_id: "wa:msg:\u{0}1".into(),
            from: Address::Raw("bot\u{0}".into()),
            text: "hi\u{0}".into(),
            received_at: Utc::now(),
            provider_message_id: "wamid.\u{0}1".into(),
            profile_name: Some("\u{202E}Eve\u{0}".into()),
            account: Some("1\u{0}".into()),
        })
        .cleaned();
        let ProviderEvent::Inbound(e) = inbound else {
            panic!("{inbound:?}")
        };
        assert_eq!(
            (
                e.event_id.as_str(),
                e.from.to_string().as_str(),
                e.text.as_str(),
                e.provider_message_id.as_str(),
                e.profile_name.as_deref(),
                e.account.as_deref()
            ),
            ("wa:msg:1", "bot", "hi", "wamid.1", Some("Eve"), Some("1"))
        );
        let status = ProviderEvent::Status(StatusEvent {
            event_id: "s\u{0}".into(),
            provider_message_id: "m\u{0}".into(),
            status: DeliveryStatus::Failed,
            at: Utc::now(),
            error: Some(ProviderError {
                code: "1\u{0}".into(),
                message: "bad\u{0}".into(),
                class: ErrorClass::Permanent,
            }),
            account: None,
            payload: None,
        })
        .cleaned();
        let ProviderEvent::Status(e) = status else {
            panic!("{status:?}")
        };
        let error = e.error.unwrap();
        assert_eq!(
            (
                e.event_id.as_str(),
                e.provider_message_id.as_str(),
                error.code.as_str(),
                error.message.as_str()
            ),
            ("s", "m", "1", "bad")
        );
        let template = ProviderEvent::TemplateStatus(TemplateStatusEvent {
            event_id: "t\u{0}".into(),
            provider_template_id: "9\u{0}".into(),
            name: Some("n\u{0}".into()),
            language: Some("en\u{0}".into()),
            status: ProviderTemplateStatus::Rejected {
                reason: Some("why\u{0}".into()),
            },
            reason: Some("why\u{0}".into()),
        })
        .cleaned();
        assert!(!format!("{template:?}").contains("\\0"), "{template:?}");
        assert!(!format!("{template:?}").contains("\\u{0}"), "{template:?}");
    }
}
