//! Fan-out across replicas through Redis pub/sub.
//!
//! Every replica publishes what it stored on one channel and delivers what the others
//! published to its own subscribers. A replica skips its own messages (it delivered them
//! locally already), and subscribers drop any notification they were already given, so
//! nothing arrives twice. Pub/sub is at-most-once: a message lost while Redis was away shows
//! up as a gap in a room's sequence at the next notification, and the subscriber fetches
//! the gap from the store, where every notification is before it is fanned out.

use std::{sync::Arc, time::Duration};

use fred::{clients::SubscriberClient, prelude::*};
use phantom_kit::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::{hub::Hub, repository::NotificationRecord};

const CHANNEL: &str = "phantom:notifications";

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    notification: NotificationRecord,
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
                    Ok(e) if e.origin != me => hub.fan_out(&Arc::new(e.notification)),
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
    pub async fn publish(&self, n: &NotificationRecord) {
        let envelope = Envelope {
            origin: self.origin.clone(),
            notification: n.clone(),
        };
        let Ok(text) = serde_json::to_string(&envelope) else {
            return;
        };
        if let Err(err) = self.publisher.publish::<i64, _, _>(CHANNEL, text).await {
            tracing::warn!(error = %err, "Notification not fanned out to other replicas");
        }
    }
}
