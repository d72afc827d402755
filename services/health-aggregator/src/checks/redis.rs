//! The cache (Redis, when configured): `PING` latency, memory used and connected clients
//! (`INFO`).

use std::time::{Duration, Instant};

use fred::prelude::*;
use phantom_kit::config::redact;

use super::{Check, CheckError, Found};

/// The check of the cache.
pub struct RedisCheck {
    client: Client,
}

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck").finish_non_exhaustive()
    }
}

impl RedisCheck {
    /// The check of the Redis at `url`; `None` when the URL is not one. The check is timed
    /// per check, not by the client.
    pub fn new(url: &str) -> Option<Self> {
        phantom_layers::redis::connect(url, Duration::ZERO)
            .ok()
            .map(|client| Self { client })
    }
}

/// The client's error as a report may quote it: without the password of a URL it quotes.
fn failed(e: impl std::fmt::Display) -> CheckError {
    CheckError::Failed {
        reason: redact(&e.to_string()),
    }
}

#[tonic::async_trait]
impl Check for RedisCheck {
    async fn check(&self, _timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let started = Instant::now();
        let _: String = self.client.ping(None).await.map_err(failed)?;
        found.details.insert(
            "ping_ms".into(),
            format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        );
        let memory: String = self
            .client
            .info(Some(fred::types::InfoKind::Memory))
            .await
            .map_err(failed)?;
        let clients: String = self
            .client
            .info(Some(fred::types::InfoKind::Clients))
            .await
            .map_err(failed)?;
        for (key, info) in [
            ("used_memory", &memory),
            ("used_memory_human", &memory),
            ("maxmemory", &memory),
            ("connected_clients", &clients),
        ] {
            if let Some(v) = info_field(info, key) {
                found.details.insert(key.into(), v.to_owned());
            }
        }
        Ok(found)
    }
}

/// The value of `key` in an `INFO` answer.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_from_redis_info() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        assert_eq!(info_field(info, "used_memory_human"), Some("1.00K"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
