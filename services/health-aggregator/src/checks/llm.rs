//! The LLM provider (when an API key is configured): `GET <base>/models`, which costs no
//! paid completion. A refused key is told apart from other HTTP errors.

use std::time::Duration;

use phantom_kit::config::redact;

use super::{Check, CheckError, Found};

/// The check of the LLM provider.
pub struct LlmCheck {
    http: reqwest::Client,
    url: String,
    key: String,
}

/// Never the key.
impl std::fmt::Debug for LlmCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmCheck").finish_non_exhaustive()
    }
}

impl LlmCheck {
    /// The check of the provider at `base_url` (`…/v1`) with `api_key`, connecting within
    /// `connect_timeout`.
    pub fn new(base_url: &str, api_key: &str, connect_timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .build()
                .unwrap_or_default(),
            url: format!("{}/models", base_url.trim_end_matches('/')),
            key: api_key.to_owned(),
        }
    }
}

#[tonic::async_trait]
impl Check for LlmCheck {
    async fn check(&self, timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let resp = self
            .http
            .get(&self.url)
            .bearer_auth(&self.key)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CheckError::Unreachable(redact(&e.without_url().to_string())))?;
        let status = resp.status();
        found
            .details
            .insert("http_status".into(), status.as_u16().to_string());
        match status.as_u16() {
            200..=299 => Ok(found),
            401 | 403 => Err(CheckError::KeyRefused { status }),
            _ => Err(CheckError::Http { status }),
        }
    }
}
