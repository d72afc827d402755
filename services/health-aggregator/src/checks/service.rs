//! A PHANTOM service, through a `grpc.health.v1.Health/Watch` stream kept open to it
//! (reconnecting with backoff): a service stopping or turning NOT_SERVING is seen at once,
//! not at the next poll, and the aggregator is woken on every change.

use std::{sync::Arc, time::Duration};

use phantom_kit::CancellationToken;
use tokio::sync::{Notify, watch};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{Check, CheckError, Found};

/// What a service's Watch stream last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// No answer yet.
    Unknown,
    /// SERVING.
    Serving,
    /// Reachable, but not serving (starting, shutting down, a dependency missing).
    NotServing(String),
    /// Unreachable, or the stream broke.
    Down(String),
}

/// The check of one service: the latest word of its Watch stream.
#[derive(Debug)]
pub struct ServiceCheck {
    state: watch::Receiver<Watched>,
}

impl ServiceCheck {
    /// Starts watching the service behind `channel` until `shutdown`, waking `changed` on
    /// every change of its state.
    pub fn watch(
        channel: tonic::transport::Channel,
        changed: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(Watched::Unknown);
        tokio::spawn(watch_service(
            HealthClient::new(channel),
            tx,
            changed,
            shutdown,
        ));
        Self { state: rx }
    }
}

#[tonic::async_trait]
impl Check for ServiceCheck {
    async fn check(&self, _timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        found.details.insert("via".into(), "watch".into());
        let state = self.state.borrow().clone();
        match state {
            Watched::Serving => Ok(found),
            Watched::NotServing(reason) => Err(CheckError::NotServing { reason }),
            Watched::Down(reason) => Err(CheckError::Down { reason }),
            Watched::Unknown => Err(CheckError::NoAnswerYet),
        }
    }
}

/// Keeps a Watch stream open to one service, reconnecting with capped exponential backoff,
/// and publishes each change.
async fn watch_service(
    mut client: HealthClient<tonic::transport::Channel>,
    state: watch::Sender<Watched>,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let set = |w: Watched| {
        if state.send_if_modified(|cur| {
            let differ = *cur != w;
            *cur = w;
            differ
        }) {
            changed.notify_one();
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let opened = tokio::select! {
            () = shutdown.cancelled() => return,
            r = client.watch(request) => r,
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    // NOT_SERVING is a passing state (starting, draining). A draining server
                    // keeps this stream open to the end, while its successor may already
                    // answer: ask again every second until it says SERVING.
                    let recheck = matches!(*state.borrow(), Watched::NotServing(_));
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        m = stream.message() => m,
                        () = tokio::time::sleep(Duration::from_secs(1)), if recheck => break,
                    };
                    match next {
                        Ok(Some(msg)) => {
                            backoff = Duration::from_millis(100);
                            set(match msg.status() {
                                ServingStatus::Serving => Watched::Serving,
                                other => {
                                    Watched::NotServing(format!("reports {}", other.as_str_name()))
                                }
                            });
                        }
                        Ok(None) => {
                            set(Watched::Down("health stream ended".into()));
                            break;
                        }
                        Err(status) => {
                            set(Watched::Down(format!(
                                "{:?}: {}",
                                status.code(),
                                status.message()
                            )));
                            break;
                        }
                    }
                }
                if matches!(*state.borrow(), Watched::NotServing(_)) {
                    continue; // Re-watch at once.
                }
            }
            Err(status) => set(Watched::Down(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
