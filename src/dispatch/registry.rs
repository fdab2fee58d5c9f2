//! Adapters for stored channels: settings from the row, secrets opened with the key derived
//! from `HERALD_SECRET_KEY`, one pooled HTTP client, cached until the channel changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::auth::sealed::{self, SealError};
use crate::channels::{Adapter, AdapterEnv, ChannelConfig, EventSink, SettingsError, http_client};
use crate::storage::channels::Channel;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Secrets(#[from] SealError),
    #[error("the channel's settings are not valid: {0}")]
    Settings(#[from] SettingsError),
    #[error("the channel's stored settings are not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub struct ChannelRegistry {
    env: AdapterEnv,
    key: [u8; 32],
    cache: Mutex<HashMap<i64, (NaiveDateTime, Adapter)>>,
}

impl ChannelRegistry {
    /// `send_timeout` bounds every provider call: a send that hangs longer becomes `unknown`.
    pub fn new(
        public_url: &str,
        key: [u8; 32],
        sandbox_events: EventSink,
        send_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(ChannelRegistry {
            env: AdapterEnv {
                public_url: public_url.trim_end_matches('/').to_owned(),
                http: http_client(send_timeout)?,
                sandbox_events,
            },
            key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The adapter for this channel as stored now.
    pub fn adapter(&self, channel: &Channel) -> Result<Adapter, RegistryError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, adapter)) = cache.get(&channel.id)
            && *at == channel.updated_at
        {
            return Ok(adapter.clone());
        }
        let adapter = Adapter::from_config(&self.config(channel)?, &self.env)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(channel.id, (channel.updated_at, adapter.clone()));
        }
        Ok(adapter)
    }

    /// Drops a deleted channel's adapter (and with it its secrets) from the cache.
    pub fn forget(&self, channel_id: i64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&channel_id);
        }
    }

    /// The provider-neutral configuration with the secrets opened.
    pub fn config(&self, channel: &Channel) -> Result<ChannelConfig, RegistryError> {
        Ok(ChannelConfig {
            kind: channel.kind,
            provider: channel.provider,
            public_id: channel.public_id.clone(),
            settings: serde_json::from_str(&channel.settings)?,
            secrets: self.open_secrets(channel)?,
        })
    }

    pub fn open_secrets(&self, channel: &Channel) -> Result<serde_json::Value, RegistryError> {
        match &channel.secrets {
            None => Ok(serde_json::json!({})),
            Some(sealed_value) => Ok(serde_json::from_str(&sealed::open(
                &self.key,
                sealed_value,
            )?)?),
        }
    }

    /// Seals secrets for storage (`None` when there are none).
    pub fn seal_secrets(&self, secrets: &serde_json::Value) -> Result<Option<String>, SealError> {
        match secrets {
            serde_json::Value::Object(map) if map.is_empty() => Ok(None),
            serde_json::Value::Null => Ok(None),
            other => sealed::seal(&self.key, &other.to_string()).map(Some),
        }
    }

    pub fn public_url(&self) -> &str {
        &self.env.public_url
    }
}
