//! The system: CPU and memory use against thresholds (`sysinfo`). The CPU counts only when
//! it stays above its threshold for [`CPU_STREAK`] checks in a row. The data directory's disk
//! is a component of its own ([`super::disk`]), critical when the database lives there; this
//! module measures it for both.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use super::{Check, CheckError, Found};

/// Checks in a row with the CPU above its threshold before the system counts as degraded.
pub const CPU_STREAK: u32 = 3;

/// The check of the machine the aggregator runs on.
pub struct SystemCheck {
    sys: Mutex<sysinfo::System>,
    /// Consecutive checks with the CPU above its threshold: one busy moment is not a
    /// degraded system.
    cpu_streak: AtomicU32,
    cpu: f64,
    memory: f64,
}

impl std::fmt::Debug for SystemCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemCheck")
            .field("cpu", &self.cpu)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl SystemCheck {
    /// The check of this machine, with the thresholds (percent) above which each counts.
    pub fn new(cpu: f64, memory: f64) -> Self {
        Self {
            sys: Mutex::new(sysinfo::System::new()),
            cpu_streak: AtomicU32::new(0),
            cpu,
            memory,
        }
    }
}

#[tonic::async_trait]
impl Check for SystemCheck {
    async fn check(&self, _timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let (cpu_used, mem_used) = {
            let mut sys = self
                .sys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // CPU use is measured between two refreshes: the previous round's and this one.
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            let total = sys.total_memory().max(1) as f64;
            (
                f64::from(sys.global_cpu_usage()),
                sys.used_memory() as f64 / total * 100.0,
            )
        };
        found
            .details
            .insert("cpu_percent".into(), format!("{cpu_used:.1}"));
        found
            .details
            .insert("memory_percent".into(), format!("{mem_used:.1}"));
        let (cpu, memory) = (self.cpu, self.memory);
        let mut over = Vec::new();
        let streak = if cpu_used > cpu {
            self.cpu_streak.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.cpu_streak.store(0, Ordering::Relaxed);
            0
        };
        if streak >= CPU_STREAK {
            over.push(format!("CPU {cpu_used:.0}% > {cpu}% for {streak} checks"));
        }
        if mem_used > memory {
            over.push(format!("memory {mem_used:.0}% > {memory}%"));
        }
        if !over.is_empty() {
            found.degraded = Some(over.join(", "));
        }
        Ok(found)
    }

    /// The probe reads local counters: its duration says nothing of the system's health.
    fn slow_degrades(&self) -> bool {
        false
    }
}

/// Use of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DiskSpace {
    /// Used, in percent, as `df` computes it: blocks used over blocks used plus blocks
    /// available to users (blocks reserved for root count as neither).
    pub(crate) used_percent: f64,
    /// Bytes available to users.
    pub(crate) available: u64,
}

/// The filesystem holding `path` (or its nearest existing ancestor).
pub(crate) fn disk_space(path: &std::path::Path) -> Option<DiskSpace> {
    let existing = path.ancestors().find(|p| p.exists())?;
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(existing).ok()?;
        let used = s.f_blocks.saturating_sub(s.f_bfree) as f64;
        let available = s.f_bavail as f64;
        if used + available > 0.0 {
            return Some(DiskSpace {
                used_percent: used / (used + available) * 100.0,
                available: s.f_bavail.saturating_mul(s.f_frsize),
            });
        }
    }
    let disks = sysinfo::Disks::new_with_refreshed_list();
    mount_of(existing, &disks).map(|d| {
        let total = d.total_space().max(1) as f64;
        DiskSpace {
            used_percent: (total - d.available_space() as f64) / total * 100.0,
            available: d.available_space(),
        }
    })
}

/// The mount point holding `path` among `mounts` (the longest prefix).
fn mount_of<'a>(path: &std::path::Path, mounts: &'a [sysinfo::Disk]) -> Option<&'a sysinfo::Disk> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_use_is_what_df_says() {
        let dir = std::env::temp_dir();
        let mine = disk_space(&dir.join("not/created/yet"))
            .expect("a filesystem")
            .used_percent;
        assert!((0.0..=100.0).contains(&mine), "{mine}");
        // `df` rounds up to a whole percent.
        if let Ok(out) = std::process::Command::new("df")
            .arg("--output=pcent")
            .arg(&dir)
            .output()
            && out.status.success()
            && let Some(df) = String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().trim_end_matches('%').parse::<f64>().ok())
        {
            assert!((df - mine).abs() <= 1.5, "df says {df}%, we say {mine:.1}%");
        }
    }
}
