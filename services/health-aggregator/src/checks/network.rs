//! The network: TCP reachability of the configured `host:port` targets, all at once.

use std::time::{Duration, Instant};

use super::{Check, CheckError, Found};

/// The check of the network targets.
#[derive(Debug)]
pub struct NetworkCheck {
    targets: Vec<String>,
}

impl NetworkCheck {
    /// The check of `targets` (`host:port`).
    pub fn new(targets: &[String]) -> Self {
        Self {
            targets: targets.to_vec(),
        }
    }
}

#[tonic::async_trait]
impl Check for NetworkCheck {
    async fn check(&self, timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let results = futures::future::join_all(self.targets.iter().map(|t| async move {
            let started = Instant::now();
            let r = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(t.as_str())).await;
            (t, r.is_ok_and(|c| c.is_ok()), started.elapsed())
        }))
        .await;
        let mut down = Vec::new();
        for (target, ok, took) in results {
            found.details.insert(
                target.clone(),
                if ok {
                    format!("{:.1} ms", took.as_secs_f64() * 1000.0)
                } else {
                    "unreachable".into()
                },
            );
            if !ok {
                down.push(target.clone());
            }
        }
        if down.is_empty() {
            Ok(found)
        } else {
            Err(CheckError::Unreachable(down.join(", ")))
        }
    }
}
