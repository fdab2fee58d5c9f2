//! May this content go to this contact on this channel now? Every sender (composer, API,
//! broadcast) asks before queueing, and the dispatcher asks again at send time.

use chrono::{DateTime, Utc};

use crate::domain::channel::ChannelKind;
use crate::domain::consent::ConsentStatus;
use crate::domain::window::WindowState;

/// Viber allows at most this many business messages in a row without a reply in a session.
pub const VIBER_SESSION_MAX_CONSECUTIVE: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentIntent {
    FreeText,
    /// A template; `sendable` when approved internally and, where the channel reviews
    /// templates, by the provider.
    Template {
        sendable: bool,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct SendContext {
    pub kind: ChannelKind,
    pub channel_enabled: bool,
    pub consent: Option<ConsentStatus>,
    pub window: WindowState,
    /// Business messages sent since the customer last wrote (Viber's session rule).
    pub sent_since_last_inbound: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    ChannelDisabled,
    OptedOut,
    TemplateNotApproved,
    /// Free text outside the window; `closed_at` is when it closed (None: never opened).
    WindowClosed {
        closed_at: Option<DateTime<Utc>>,
    },
    SessionLimit,
}

impl Denial {
    /// The machine-readable code of the API's 422 answers.
    pub fn code(self) -> &'static str {
        match self {
            Denial::ChannelDisabled => "channel_disabled",
            Denial::OptedOut => "opted_out",
            Denial::TemplateNotApproved => "template_not_approved",
            Denial::WindowClosed { .. } => "window_closed",
            Denial::SessionLimit => "session_limit",
        }
    }

    pub fn message(self, kind: ChannelKind) -> String {
        match self {
            Denial::ChannelDisabled => "This channel is disabled.".into(),
            Denial::OptedOut => format!(
                "This contact opted out of {} messages; nothing can be sent until they opt back in.",
                kind.label()
            ),
            Denial::TemplateNotApproved => "This template is not approved for sending yet.".into(),
            Denial::WindowClosed {
                closed_at: Some(at),
            } => format!(
                "The {} 24-hour window closed at {} UTC: only approved templates can be sent until the customer writes again.",
                kind.label(),
                at.format("%-d %b %Y %H:%M")
            ),
            Denial::WindowClosed { closed_at: None } => format!(
                "The customer has not written on {}, so the 24-hour window is closed: send an approved template.",
                kind.label()
            ),
            Denial::SessionLimit => format!(
                "Viber allows {VIBER_SESSION_MAX_CONSECUTIVE} messages in a row without a reply; wait for the customer to answer or send a template."
            ),
        }
    }
}

pub fn may_send(ctx: &SendContext, content: ContentIntent) -> Result<(), Denial> {
    if !ctx.channel_enabled {
        return Err(Denial::ChannelDisabled);
    }
    if ctx.consent == Some(ConsentStatus::OptedOut) {
        return Err(Denial::OptedOut);
    }
    match content {
        ContentIntent::Template { sendable: false } => Err(Denial::TemplateNotApproved),
        ContentIntent::Template { sendable: true } => Ok(()),
        ContentIntent::FreeText => match ctx.window {
            WindowState::NotApplicable => Ok(()),
            WindowState::Closed { closed_at } => Err(Denial::WindowClosed { closed_at }),
            WindowState::Open { .. } => {
                if ctx.kind == ChannelKind::Viber
                    && ctx.sent_since_last_inbound >= VIBER_SESSION_MAX_CONSECUTIVE
                {
                    Err(Denial::SessionLimit)
                } else {
                    Ok(())
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::window;

    fn ctx(
        kind: ChannelKind,
        consent: Option<ConsentStatus>,
        last_inbound_hours_ago: Option<i64>,
    ) -> SendContext {
        let now = Utc::now();
        SendContext {
            kind,
            channel_enabled: true,
            consent,
            window: window::state(
                kind,
                last_inbound_hours_ago.map(|h| now - chrono::Duration::hours(h)),
                now,
            ),
            sent_since_last_inbound: 0,
        }
    }

    #[test]
    fn opted_out_contacts_get_nothing_at_all() {
        for kind in ChannelKind::ALL {
            let c = ctx(kind, Some(ConsentStatus::OptedOut), Some(1));
            assert_eq!(may_send(&c, ContentIntent::FreeText), Err(Denial::OptedOut));
            assert_eq!(
                may_send(&c, ContentIntent::Template { sendable: true }),
                Err(Denial::OptedOut)
            );
        }
    }

    #[test]
    fn free_text_needs_an_open_window_on_whatsapp_and_viber() {
        let wa = ctx(ChannelKind::Whatsapp, None, None);
        assert_eq!(
            may_send(&wa, ContentIntent::FreeText),
            Err(Denial::WindowClosed { closed_at: None })
        );
        assert!(may_send(&wa, ContentIntent::Template { sendable: true }).is_ok());
        assert!(
            may_send(
                &ctx(ChannelKind::Whatsapp, None, Some(23)),
                ContentIntent::FreeText
            )
            .is_ok()
        );
        assert!(matches!(
            may_send(
                &ctx(ChannelKind::Whatsapp, None, Some(25)),
                ContentIntent::FreeText
            ),
            Err(Denial::WindowClosed { closed_at: Some(_) })
        ));
        assert!(
            may_send(
                &ctx(ChannelKind::Sms, Some(ConsentStatus::OptedIn), None),
                ContentIntent::FreeText
            )
            .is_ok()
        );
    }

    #[test]
    fn unapproved_templates_and_disabled_channels_are_refused() {
        let c = ctx(ChannelKind::Whatsapp, None, Some(1));
        assert_eq!(
            may_send(&c, ContentIntent::Template { sendable: false }),
            Err(Denial::TemplateNotApproved)
        );
        let off = SendContext {
            channel_enabled: false,
            ..c
        };
        assert_eq!(
            may_send(&off, ContentIntent::FreeText),
            Err(Denial::ChannelDisabled)
        );
    }

    #[test]
    fn viber_sessions_allow_five_in_a_row() {
        let mut c = ctx(ChannelKind::Viber, None, Some(1));
        c.sent_since_last_inbound = 4;
        assert!(may_send(&c, ContentIntent::FreeText).is_ok());
        c.sent_since_last_inbound = 5;
        assert_eq!(
            may_send(&c, ContentIntent::FreeText),
            Err(Denial::SessionLimit)
        );
        assert!(may_send(&c, ContentIntent::Template { sendable: true }).is_ok());
    }

    #[test]
    fn denials_explain_themselves() {
        assert!(
            Denial::OptedOut
                .message(ChannelKind::Sms)
                .contains("opted out of SMS")
        );
        assert_eq!(
            Denial::WindowClosed { closed_at: None }.code(),
            "window_closed"
        );
    }
}
