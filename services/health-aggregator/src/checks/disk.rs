//! The disk that holds the data directory: degraded past the disk threshold, failed when it
//! is full. With the embedded database (SQLite in the data directory) this component is
//! critical: a full disk there means every write fails, whatever the services' own
//! readiness says, so `/health` must say the system is down rather than merely degraded.

use std::{path::PathBuf, time::Duration};

use super::{Check, CheckError, Found, system::disk_space};

/// Free bytes below which the data disk counts as full: a SQLite transaction needs room for
/// its log and its pages.
pub const FULL_BELOW: u64 = 16 * 1024 * 1024;

/// The data directory's disk.
#[derive(Debug)]
pub struct DiskCheck {
    data_dir: PathBuf,
    threshold_percent: f64,
}

impl DiskCheck {
    /// The check of the filesystem holding `data_dir`, degraded past `threshold_percent`.
    pub fn new(data_dir: &std::path::Path, threshold_percent: f64) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            threshold_percent,
        }
    }
}

#[tonic::async_trait]
impl Check for DiskCheck {
    async fn check(&self, _timeout: Duration) -> Result<Found, CheckError> {
        let Some(space) = disk_space(&self.data_dir) else {
            return Err(CheckError::Failed {
                reason: format!("cannot read the disk of {}", self.data_dir.display()),
            });
        };
        if space.available < FULL_BELOW {
            return Err(CheckError::Failed {
                reason: format!(
                    "the data disk is full: {} KiB left under {}",
                    space.available / 1024,
                    self.data_dir.display()
                ),
            });
        }
        let mut found = Found::default();
        found
            .details
            .insert("used_percent".into(), format!("{:.1}", space.used_percent));
        found.details.insert(
            "available_mib".into(),
            (space.available / (1024 * 1024)).to_string(),
        );
        if space.used_percent > self.threshold_percent {
            found.degraded = Some(format!(
                "disk {:.0}% > {}%",
                space.used_percent, self.threshold_percent
            ));
        }
        Ok(found)
    }

    /// A filesystem call: its duration says nothing of the disk's health.
    fn slow_degrades(&self) -> bool {
        false
    }
}
