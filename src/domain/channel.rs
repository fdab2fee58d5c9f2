//! Channel kinds (the rules a message follows) and providers (who carries it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of conversation a channel carries; decides templates, windows and encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Whatsapp,
    Sms,
    Viber,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Viber];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Sms => "sms",
            ChannelKind::Viber => "viber",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp => "WhatsApp",
            ChannelKind::Sms => "SMS",
            ChannelKind::Viber => "Viber",
        }
    }

    /// The provider that carries this kind when it is not the sandbox.
    pub fn real_provider(self) -> Provider {
        match self {
            ChannelKind::Whatsapp => Provider::WhatsappCloud,
            ChannelKind::Sms => Provider::Twilio,
            ChannelKind::Viber => Provider::Infobip,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "whatsapp" => Ok(ChannelKind::Whatsapp),
            "sms" => Ok(ChannelKind::Sms),
            "viber" => Ok(ChannelKind::Viber),
            _ => Err(format!(
                "unknown channel kind \"{s}\": expected whatsapp, sms or viber"
            )),
        }
    }
}

/// Who carries the messages of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Sandbox,
    WhatsappCloud,
    Twilio,
    Infobip,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::WhatsappCloud => "whatsapp_cloud",
            Provider::Twilio => "twilio",
            Provider::Infobip => "infobip",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Sandbox => "Sandbox",
            Provider::WhatsappCloud => "WhatsApp Cloud API",
            Provider::Twilio => "Twilio",
            Provider::Infobip => "Infobip",
        }
    }

    /// The provider's documented sending rate per account, used when a channel sets none.
    /// WhatsApp Cloud API: 80 messages/s per business number by default. Twilio: a long code
    /// is queued at 1 segment/s in the US, but most accounts send through messaging services
    /// with higher limits, so the default is conservative and editable. Infobip Viber: not
    /// published per sender; Herald starts at 20/s.
    pub fn default_rate_limit(self) -> i32 {
        match self {
            Provider::Sandbox => 100,
            Provider::WhatsappCloud => 80,
            Provider::Twilio => 10,
            Provider::Infobip => 20,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sandbox" => Ok(Provider::Sandbox),
            "whatsapp_cloud" => Ok(Provider::WhatsappCloud),
            "twilio" => Ok(Provider::Twilio),
            "infobip" => Ok(Provider::Infobip),
            _ => Err(format!("unknown provider \"{s}\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in ChannelKind::ALL {
            assert_eq!(kind.as_str().parse::<ChannelKind>(), Ok(kind));
            assert_ne!(kind.real_provider(), Provider::Sandbox);
        }
        assert!("fax".parse::<ChannelKind>().unwrap_err().contains("fax"));
    }

    #[test]
    fn whatsapp_defaults_to_metas_documented_rate() {
        assert_eq!(Provider::WhatsappCloud.default_rate_limit(), 80);
    }
}
