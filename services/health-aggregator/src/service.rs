//! The `phantom.v1.HealthAggregator` gRPC service and the loop that keeps its report fresh.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use phantom_kit::CancellationToken;
use phantom_proto::pb::{self, health_aggregator_server::HealthAggregator};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::checks::Checker;

/// A watcher gets a report at least this often even when nothing changes.
const WATCH_REFRESH: Duration = Duration::from_secs(30);

/// Runs the checks periodically and holds the latest report.
#[derive(Debug)]
pub struct Aggregator {
    checker: Checker,
    latest: watch::Sender<Option<pb::SystemHealth>>,
    started: std::time::Instant,
}

impl Aggregator {
    /// An aggregator over `checker`.
    pub fn new(checker: Checker) -> Arc<Self> {
        Arc::new(Self {
            checker,
            latest: watch::channel(None).0,
            started: std::time::Instant::now(),
        })
    }

    /// The checker.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The latest report, or a fresh one before the first round.
    pub async fn current(&self) -> pb::SystemHealth {
        if let Some(report) = self.latest.borrow().clone() {
            return report;
        }
        self.refresh().await
    }

    /// Runs a round of checks now and publishes the report.
    pub async fn refresh(&self) -> pb::SystemHealth {
        let report = self.checker.check_all().await;
        self.latest.send_replace(Some(report.clone()));
        report
    }

    /// Checks every `interval` until `shutdown`.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                // A watched service changed state: report it now, not at the next tick.
                () = self.checker.changed.notified() => {}
            }
            let report = self.refresh().await;
            if last_status != Some(report.status) {
                let failing: Vec<_> = report
                    .checks
                    .iter()
                    .filter(|c| c.status != pb::HealthStatus::Healthy as i32)
                    .map(|c| format!("{}: {}", c.name, c.message))
                    .collect();
                tracing::info!(status = crate::checks::status_name(report.status), failing = ?failing, "System health changed");
                last_status = Some(report.status);
            }
        }
    }

    fn subscribe(&self) -> watch::Receiver<Option<pb::SystemHealth>> {
        self.latest.subscribe()
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct HealthAggregatorService {
    aggregator: Arc<Aggregator>,
    shutdown: CancellationToken,
}

impl HealthAggregatorService {
    /// A service over `aggregator`; its streams end when `shutdown` fires.
    pub fn new(aggregator: Arc<Aggregator>, shutdown: CancellationToken) -> Self {
        Self {
            aggregator,
            shutdown,
        }
    }
}

/// Whether two reports differ in anything but timing.
fn changed(a: &pb::SystemHealth, b: &pb::SystemHealth) -> bool {
    a.status != b.status
        || a.checks.len() != b.checks.len()
        || a.checks
            .iter()
            .zip(&b.checks)
            .any(|(x, y)| x.name != y.name || x.status != y.status || x.message != y.message)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SystemHealth, Status>> + Send>>;

#[tonic::async_trait]
impl HealthAggregator for HealthAggregatorService {
    async fn get_system_health(
        &self,
        _request: Request<pb::GetSystemHealthRequest>,
    ) -> Result<Response<pb::SystemHealth>, Status> {
        Ok(Response::new(self.aggregator.current().await))
    }

    type WatchSystemHealthStream = WatchStream;

    async fn watch_system_health(
        &self,
        _request: Request<pb::WatchSystemHealthRequest>,
    ) -> Result<Response<Self::WatchSystemHealthStream>, Status> {
        let mut rx = self.aggregator.subscribe();
        let first = self.aggregator.current().await;
        let shutdown = self.shutdown.clone();
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("server shutting down"))).await;
                        return;
                    }
                    r = tokio::time::timeout(WATCH_REFRESH, rx.changed()) => match r {
                        Ok(Err(_)) => return,
                        Ok(Ok(())) => match rx.borrow_and_update().clone() {
                            Some(report) if changed(&last, &report) => report,
                            _ => continue,
                        },
                        Err(_quiet) => match rx.borrow().clone() {
                            Some(report) => report,
                            None => continue,
                        },
                    },
                };
                last = next.clone();
                if tx.send(Ok(next)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
