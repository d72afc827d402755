//! The enrichment queue: degraded analyses upgraded in the background once the LLM answers.
//!
//! When the LLM is open, slow or out of budget, the caller gets the rules' analysis at once,
//! marked `degraded`, and the finding is queued (in the database, so a restart loses
//! nothing). This loop takes due findings, asks the LLM again, and on an answer upgrades the
//! stored analysis (a degraded one only: an analysis is never downgraded) and invalidates
//! its cache entry. Failures come back later with exponential backoff; nothing is tried while
//! the LLM's breaker is open, so an outage does not burn attempts.

use std::{sync::Arc, time::Duration};

use phantom_kit::{CancellationToken, time::now_micros};

use crate::{
    llm::LlmError,
    payload::decode,
    service::{Core, cache_key},
    settings::EnrichmentConfig,
};

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Analyses upgraded.
    pub enriched: u32,
    /// Attempts that failed (tried again later).
    pub failed: u32,
    /// Jobs put back untried (the LLM became unavailable mid-round).
    pub deferred: u32,
}

/// Runs enrichment rounds until `shutdown`.
pub async fn run(core: Arc<Core>, config: EnrichmentConfig, shutdown: CancellationToken) {
    if core.llm.is_none() {
        return; // Nothing is ever degraded without an LLM.
    }
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = core.enrich_wake.notified() => {}
        }
        // Keep going while whole batches are enriched: a recovered LLM drains the backlog.
        loop {
            let round = round(&core, &config).await;
            if round.enriched > 0 {
                tracing::info!(
                    enriched = round.enriched,
                    failed = round.failed,
                    deferred = round.deferred,
                    "Degraded analyses enriched"
                );
            }
            if round.enriched < config.batch || shutdown.is_cancelled() {
                break;
            }
        }
    }
}

/// One round: claims up to `batch` due findings and triages them, one at a time.
pub async fn round(core: &Core, config: &EnrichmentConfig) -> Round {
    let mut done = Round::default();
    let Some(llm) = &core.llm else {
        return done;
    };
    if !llm.available() {
        return done;
    }
    let now = now_micros();
    let jobs = match core
        .store
        .claim_enrichments(now, now + micros(config.lease), config.batch)
        .await
    {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::warn!(error = %err, "Could not read the enrichment queue");
            return done;
        }
    };
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let store = &core.store;
        let Some(finding) = decode(&job.payload) else {
            tracing::error!(fingerprint = %job.fingerprint, "Unreadable enrichment job dropped");
            let _ = store.finish_enrichment(&job.tenant, &job.fingerprint).await;
            continue;
        };
        // Already enriched (by another replica, or a later analysis): nothing to do.
        match store.get_analysis(&job.tenant, &job.fingerprint).await {
            Ok(Some(a)) if a.degraded => {}
            Ok(_) => {
                let _ = store.finish_enrichment(&job.tenant, &job.fingerprint).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "Could not read an analysis to enrich");
                let _ = store
                    .retry_enrichment(&job.tenant, &job.fingerprint, now, false, "")
                    .await;
                done.deferred += 1;
                continue;
            }
        }
        let (mut record, verdict) =
            Core::rules_analysis(&job.tenant, job.fingerprint.clone(), &finding);
        match llm.triage(&finding, &verdict, None).await {
            Ok(t) => {
                Core::annotate(&mut record, llm, t);
                if let Err(err) = store.upgrade_analysis(&record).await {
                    tracing::warn!(error = %err, "Could not store an enriched analysis");
                    let _ = store
                        .retry_enrichment(&job.tenant, &job.fingerprint, now, false, "")
                        .await;
                    continue;
                }
                let _ = store.finish_enrichment(&job.tenant, &job.fingerprint).await;
                core.cache
                    .invalidate(&cache_key(&job.tenant, &job.fingerprint))
                    .await;
                done.enriched += 1;
            }
            Err(
                err @ (LlmError::Open(_) | LlmError::Throttled(_) | LlmError::OutOfBudget { .. }),
            ) => {
                // Not an attempt: the LLM cannot be asked now. Put this and the rest back.
                let retry_at = now_micros()
                    + match &err {
                        LlmError::Throttled(d) | LlmError::OutOfBudget { retry_after: d, .. } => {
                            micros(*d)
                        }
                        _ => micros(config.interval),
                    };
                for j in std::iter::once(job).chain(jobs.by_ref()) {
                    let _ = store
                        .retry_enrichment(&j.tenant, &j.fingerprint, retry_at, false, "")
                        .await;
                    done.deferred += 1;
                }
                break;
            }
            Err(err) => {
                let backoff = config
                    .backoff
                    .saturating_mul(1 << job.attempts.min(16))
                    .min(config.max_backoff);
                let _ = store
                    .retry_enrichment(
                        &job.tenant,
                        &job.fingerprint,
                        now_micros() + micros(backoff),
                        true,
                        &err.to_string(),
                    )
                    .await;
                done.failed += 1;
            }
        }
    }
    done
}
