//! Fan-out across replicas through Redis pub/sub.
//!
//! Every replica publishes what it stored on one channel and delivers what the others
//! published to its own subscribers. A replica skips its own messages (it delivered them
//! locally already), and subscribers drop any notification they were already given, so
//! nothing arrives twice. Pub/sub is at-most-once: a message lost while Redis was away shows
//! up as a gap in a room's sequence at the next notification, and the subscriber fetches
//! the gap from the store, where every notification is before it is fanned out.
//!
//! A message carries the log's epoch its notification was appended in, so the other
//! replicas' subscribers of an older epoch learn that the log was reset (see [`crate::log`]).

use std::{sync::Arc, time::Duration};

use fred::{clients::SubscriberClient, prelude::*};
use phantom_kit::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::{hub::Hub, log::Stored, repository::NotificationRecord};

const CHANNEL: &str = "phantom:notifications";

/// One message on the channel. Fields are only ever added (with a default), so replicas of
/// two versions understand each other during a rolling upgrade.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    notification: NotificationRecord,
    /// The log's epoch the notification's sequence belongs to; empty from a replica that
    /// predates epochs (then not checked).
    #[serde(default)]
    epoch: String,
}

/// This replica's side of the fan-out.
#[derive(Clone)]
pub struct RedisFanout {
    publisher: Client,
    origin: String,
}

impl std::fmt::Debug for RedisFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFanout")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl RedisFanout {
    /// Connects to `url` and starts delivering other replicas' notifications to `hub` until
    /// `shutdown`. Connections are made (and remade) in the background.
    pub fn start(
        url: &str,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
    ) -> Result<Self, fred::error::Error> {
        let command_timeout = Duration::from_secs(2);
        let publisher = phantom_layers::redis::connect(url, command_timeout)?;
        let subscriber: SubscriberClient =
            phantom_layers::redis::builder(url, command_timeout)?.build_subscriber_client()?;
        drop(subscriber.connect());
        // Resubscribes after every reconnection.
        drop(subscriber.manage_subscriptions());
        let origin = uuid::Uuid::now_v7().simple().to_string();
        let me = origin.clone();
        tokio::spawn(async move {
            let mut messages = subscriber.message_rx();
            loop {
                if let Err(err) = subscriber.subscribe(CHANNEL).await {
                    tracing::warn!(error = %err, "Notification fan-out: subscribe failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                break;
            }
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    m = messages.recv() => m,
                };
                let message = match message {
                    Ok(m) => m,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Subscribers see the gap at their next notification and fill it.
                        tracing::warn!(missed = n, "Notification fan-out lagged");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                match serde_json::from_str::<Envelope>(&text) {
                    Ok(e) if e.origin != me => hub.fan_out(&Arc::new(e.notification), &e.epoch),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "Malformed fan-out message ignored"),
                }
            }
            let _ = subscriber.quit().await;
        });
        Ok(Self { publisher, origin })
    }

    /// Sends `n` to the other replicas. Best effort: on failure their subscribers fill the
    /// gap from the store at the room's next notification.
    pub async fn publish(&self, n: &Stored) {
        let envelope = Envelope {
            origin: self.origin.clone(),
            notification: n.record.clone(),
            epoch: n.epoch.clone(),
        };
        let Ok(text) = serde_json::to_string(&envelope) else {
            return;
        };
        if let Err(err) = self.publisher.publish::<i64, _, _>(CHANNEL, text).await {
            tracing::warn!(error = %err, "Notification not fanned out to other replicas");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> NotificationRecord {
        NotificationRecord {
            tenant: phantom_domain::Tenant::parse("t").unwrap(),
            room: "r".into(),
            sequence: 3,
            id: "i".into(),
            priority: 2,
            kind: "k".into(),
            payload: String::new(),
            created_at: 0,
            severity: 0,
        }
    }

    #[test]
    fn the_epoch_travels_with_the_notification_and_older_messages_still_read() {
        let sent = Envelope {
            origin: "a".into(),
            notification: record(),
            epoch: "e1".into(),
        };
        let text = serde_json::to_string(&sent).unwrap();
        let got: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(got.epoch, "e1");
        assert_eq!(got.notification, sent.notification);
        // From a replica that predates epochs: read, with no epoch (not checked).
        let older = serde_json::json!({"origin": "b", "notification": record()}).to_string();
        let got: Envelope = serde_json::from_str(&older).unwrap();
        assert_eq!(got.epoch, "");
    }
}
