//! Continuous scanning: assets (named target sets) scanned on schedules, and what changed
//! between their scans.
//!
//! - [`crate::schedule`]: when an asset is due (cron in a time zone, or an interval), the
//!   jitter, and what a missed due time does ([`schedule::decide`]).
//! - [`Scheduler`]: each replica looks for due assets every `scan.schedules.check_every` and
//!   fires them. Firing a due time is one transaction that stores the scan for that due time
//!   and moves the asset on, compare-and-set on the due time: of replicas firing it at once,
//!   one wins, and a unique index on `(asset_id, due_at)` backs it. The scan is then an
//!   ordinary leased job (see [`crate::runner`]). A run never overlaps the asset's previous
//!   one: a due time that finds it still going waits for it (missed runs run once) or is
//!   skipped.
//! - [`alerts`]: the tenant's alert rules look at each succeeded scan's new and reopened
//!   findings; what they fire goes to the notifier once, and a digest once a day.
//! - The diff of each finished scan, and the asset's findings with their triage, are kept by
//!   the repository as the scan succeeds (see [`crate::repository::assets`]).

pub mod alerts;

use std::{sync::Arc, time::Duration};

use phantom_kit::{CancellationToken, Ready, time::now_micros};

use crate::schedule::{self, Decision};
use crate::{
    repository::assets::{AssetRecord, AssetRepository, Fired},
    service::Core,
};

/// Assets fired per look at most (the rest wait for the next look).
const DUE_BATCH: u32 = 100;

/// Fires the assets' schedules on this replica.
#[derive(Debug)]
pub struct Scheduler {
    store: Arc<dyn AssetRepository>,
    core: Ready<Core>,
    alerter: alerts::Alerter,
    every: Duration,
    grace: Duration,
}

impl Scheduler {
    /// A scheduler over `store`, creating scans through `core` (scope, ports, quotas) once
    /// it is ready.
    pub fn new(
        store: Arc<dyn AssetRepository>,
        core: Ready<Core>,
        alerter: alerts::Alerter,
        every: Duration,
        grace: Duration,
    ) -> Self {
        Self {
            store,
            core,
            alerter,
            every,
            grace,
        }
    }

    /// Looks for due assets every `every` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.once(now_micros()).await {
                tracing::warn!(%error, "Schedules not checked; trying again");
            }
        }
    }

    /// One look: expires accepted risks, fires what is due at `now`, then has the alert
    /// rules look at the scans that succeeded since. Returns the scans started.
    pub async fn once(&self, now: i64) -> Result<usize, phantom_storage::StoreError> {
        let expired = self.store.expire_accepted_risks(now).await?;
        if expired > 0 {
            tracing::info!(
                findings = expired,
                "Accepted risks expired: the findings are open again"
            );
        }
        let Ok(core) = self.core.get() else {
            return Ok(0); // not ready yet
        };
        let mut started = 0;
        for asset in self.store.due_assets(now, DUE_BATCH).await? {
            if self.fire(core, &asset, now).await? {
                started += 1;
            }
        }
        if started > 0 {
            core.runner.wake();
        }
        self.alerter.once(now).await?;
        Ok(started)
    }

    /// Fires one due asset; true when this replica started its scan.
    async fn fire(
        &self,
        core: &Core,
        asset: &AssetRecord,
        now: i64,
    ) -> Result<bool, phantom_storage::StoreError> {
        let busy = self.store.asset_busy(&asset.id).await?;
        let decision = schedule::decide(
            &asset.schedule,
            asset.next_due,
            asset.created_at,
            now,
            busy,
            self.grace,
        );
        let (scan, next) = match decision {
            Decision::Wait => return Ok(false),
            Decision::Finished => {
                // A pattern that never matches again: the asset stays, paused, for a person
                // to look at.
                tracing::warn!(asset = %asset.name, tenant = %asset.tenant, "Schedule never fires again: asset paused");
                self.store
                    .set_paused(
                        &asset.tenant,
                        &asset.id,
                        true,
                        asset.next_due,
                        asset.next_run,
                        now,
                    )
                    .await?;
                return Ok(false);
            }
            Decision::Skip { next } => (None, next),
            Decision::Run { due, next } => {
                let scan = core
                    .prepare_scan(
                        asset.tenant.clone(),
                        &asset.targets,
                        &asset.ports,
                        &asset.scanner,
                        String::new(),
                    )
                    .await;
                let scan = match scan {
                    Ok(mut scan) => {
                        scan.asset_id = Some(asset.id.clone());
                        scan.due_at = Some(due);
                        scan
                    }
                    // Out of scope now, a name that no longer resolves, over quota: the due
                    // time is recorded as a failed scan saying why, not dropped.
                    Err(error) => {
                        tracing::warn!(asset = %asset.name, tenant = %asset.tenant, %error, "Scheduled scan refused");
                        core.failed_scan(asset, due, &error.to_string())
                    }
                };
                (Some(scan), next)
            }
        };
        let next_run = asset.schedule.run_at(next);
        match self
            .store
            .fire(asset, scan.as_ref(), next, next_run, now)
            .await?
        {
            Fired::Started => {
                let scan = scan.expect("a started fire has a scan");
                if scan.is_final() {
                    return Ok(false); // refused, and said so above
                }
                tracing::info!(asset = %asset.name, tenant = %asset.tenant, scan_id = %scan.id, "Scheduled scan created");
                Ok(true)
            }
            Fired::Skipped => {
                tracing::info!(asset = %asset.name, tenant = %asset.tenant, "Missed due time skipped");
                Ok(false)
            }
            Fired::Lost => Ok(false),
        }
    }
}
