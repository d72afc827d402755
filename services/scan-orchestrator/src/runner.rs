//! Runs scans: from PENDING to a final state, surviving restarts.
//!
//! A scan's whole state is in the store. The runner takes stored scans (new ones from
//! CreateScan, unfinished ones at start-up), runs their engine, stores findings as they come
//! (deduplicated by fingerprint, so a scan resumed after a crash does not store a finding
//! twice), has them analyzed by the vuln-analyzer, and publishes progress through the
//! notifier. On shutdown it stops without touching the scan's state, so the next start
//! resumes it; only CancelScan makes a scan CANCELLED.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use phantom_domain::{Analysis, Fingerprint, ScanId, Severity};
use phantom_kit::{
    CancellationToken,
    client::GrpcChannel,
    telemetry::{self, event},
    time::now_micros,
};
use phantom_layers::{
    RequestId, Tenant,
    request_id::{self, CallContext},
};
use phantom_proto::pb::{
    self, notifier_client::NotifierClient, vuln_analyzer_client::VulnAnalyzerClient,
};
use phantom_storage::StoreError;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tracing::Instrument;

use crate::repository::{FindingRecord, ScanProgress, ScanRecord, ScanRepository, assets::Values};

use crate::{
    events::ScanEvent,
    ports,
    scanner::{EngineFinding, Event, OpenPort, Plan, Scanner},
};

/// Findings sent to the analyzer per call.
const ANALYZE_BATCH: u32 = 500;
/// Findings stored in one batch at most.
const FLUSH_AT: usize = 100;
/// Progress is stored and published at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Deadline of a best-effort notification.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// A change of one scan, for WatchScan.
#[derive(Debug, Clone)]
pub struct ScanUpdate {
    /// The scan after the change.
    pub scan: ScanRecord,
    /// What happened.
    pub message: String,
}

/// Runs scans in the background.
#[derive(Debug)]
pub struct Runner {
    store: Arc<dyn ScanRepository>,
    scanners: HashMap<&'static str, Arc<dyn Scanner>>,
    analyzer: VulnAnalyzerClient<GrpcChannel>,
    notifier: NotifierClient<GrpcChannel>,
    updates: broadcast::Sender<ScanUpdate>,
    running: Mutex<HashMap<ScanId, CancellationToken>>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// This replica's name in scan leases.
    owner: String,
    lease: Duration,
    claim_every: Duration,
    reanalyze_every: Duration,
    checkpoint_probes: u64,
    wake: Notify,
}

/// How a runner takes work.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Scans running at once in this replica; the rest wait as PENDING.
    pub max_concurrent: usize,
    /// How long a claim holds without renewal (a dead replica's scans wait this long).
    pub lease: Duration,
    /// How often the store is polled for claimable scans (new scans here wake it at once).
    pub claim_every: Duration,
    /// How often findings left unanalyzed (analyzer down when their scan ended) are retried.
    pub reanalyze_every: Duration,
    /// Probes per checkpoint chunk of a new scan (see [`crate::scanner::Plan`]).
    pub checkpoint_probes: u64,
}

impl Runner {
    /// A runner taking work from `store`. Call [`Runner::start`] to begin.
    pub fn new(
        store: Arc<dyn ScanRepository>,
        scanners: Vec<Arc<dyn Scanner>>,
        analyzer: VulnAnalyzerClient<GrpcChannel>,
        notifier: NotifierClient<GrpcChannel>,
        config: RunnerConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "phantom".to_owned());
        Arc::new(Self {
            store,
            scanners: scanners.into_iter().map(|s| (s.name(), s)).collect(),
            analyzer,
            notifier,
            updates: broadcast::channel(1024).0,
            running: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            shutdown,
            owner: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[24..]
            ),
            lease: config.lease,
            claim_every: config.claim_every,
            reanalyze_every: config.reanalyze_every,
            checkpoint_probes: config.checkpoint_probes,
            wake: Notify::new(),
        })
    }

    /// Starts claiming scans: unfinished ones (after a restart, or whose holder died) and new
    /// ones, as long as this replica has room.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().claim_loop());
        tokio::spawn(self.clone().reanalyze_loop());
    }

    /// No finding stays unanalyzed for good: findings of scans that ended while the analyzer
    /// was down are sent again, tenant by tenant, until it answers.
    async fn reanalyze_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.reanalyze_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let pending = match self.store.unanalyzed_findings(ANALYZE_BATCH).await {
                Ok(p) if p.is_empty() => continue,
                Ok(p) => p,
                Err(err) => {
                    tracing::warn!(error = %err, "Could not list unanalyzed findings");
                    continue;
                }
            };
            let mut by_tenant: HashMap<Tenant, Vec<FindingRecord>> = HashMap::new();
            for f in pending {
                by_tenant.entry(f.tenant.clone()).or_default().push(f);
            }
            for (tenant, findings) in by_tenant {
                let ctx = CallContext::background(RequestId::generate(), Some(tenant.clone()));
                let request: Vec<pb::Finding> = findings.iter().cloned().map(Into::into).collect();
                let mut analyzer = self.analyzer.clone();
                let answer = request_id::scope(ctx, async move {
                    analyzer
                        .analyze_findings(pb::AnalyzeFindingsRequest { findings: request })
                        .await
                })
                .await;
                let analyses = match answer {
                    Ok(resp) => resp.into_inner().analyses,
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), "Analyzer still unavailable; retrying later");
                        break;
                    }
                };
                for (finding, analysis) in findings.iter().zip(analyses) {
                    let record = Analysis::from_wire(&tenant, &analysis);
                    if let Err(err) = self
                        .store
                        .set_finding_analysis(&tenant, &finding.id, &record)
                        .await
                    {
                        tracing::warn!(error = %err, "Could not store a late analysis");
                    }
                }
                tracing::info!(tenant = %tenant, findings = findings.len(), "Late analyses stored");
            }
        }
    }

    /// Asks the claim loop to look for work now (a scan was just created here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn lease_until(&self) -> i64 {
        now_micros() + i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX / 2)
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.claim_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            while let Ok(permit) = self.permits.clone().try_acquire_owned() {
                let claimed = self
                    .store
                    .claim_scans(&self.owner, now_micros(), self.lease_until(), 1)
                    .await;
                match claimed {
                    Ok(mut scans) if !scans.is_empty() => {
                        let scan = scans.remove(0);
                        if scan.claims > 1 {
                            tracing::info!(scan_id = %scan.id, claims = scan.claims, "Taking over an interrupted scan");
                        }
                        self.spawn(scan, permit);
                    }
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "Could not claim scans");
                        break;
                    }
                }
            }
        }
    }

    /// The engines this runner has.
    pub fn has_scanner(&self, name: &str) -> bool {
        self.scanners.contains_key(name)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ScanRepository> {
        &self.store
    }

    /// Changes of every scan, as they happen.
    pub fn updates(&self) -> broadcast::Receiver<ScanUpdate> {
        self.updates.subscribe()
    }

    /// The token that stops streams and scans when the process shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs a claimed `scan` in the background, holding `permit`.
    fn spawn(self: &Arc<Self>, scan: ScanRecord, permit: OwnedSemaphorePermit) {
        let token = self.shutdown.child_token();
        self.running
            .lock()
            .expect("running lock")
            .insert(scan.id.clone(), token.clone());
        let ctx = CallContext::background(
            RequestId::parse(&scan.request_id).unwrap_or_else(RequestId::generate),
            Some(scan.tenant.clone()),
        );
        // The scan's span is a child of the CreateScan call's span (stored with the scan, as
        // the scan may run on another replica, or after a restart), though it outlives it:
        // so one CreateScan is one trace, holding the scan's storage work and its calls to
        // the analyzer and the notifier.
        let span = tracing::info_span!(
            parent: None,
            "scan",
            otel.name = "scan",
            service = crate::NAME,
            scan_id = %scan.id,
            correlation_id = %ctx.request_id,
            tenant = %scan.tenant,
            engine = %scan.scanner,
        );
        telemetry::continue_trace(&span, &scan.trace_context);
        let this = self.clone();
        tokio::spawn(request_id::scope(
            ctx,
            async move {
                let id = scan.id.clone();
                let lost = Arc::new(AtomicBool::new(false));
                let heartbeat = tokio::spawn(this.clone().heartbeat(id.clone(), token.clone(), lost.clone()));
                if let Err(err) = this.execute(scan, token, &lost).await {
                    tracing::error!(error = %err, "Scan runner failed on storage; the scan is taken over when its lease lapses");
                }
                heartbeat.abort();
                if this.shutdown.is_cancelled() && !lost.load(Ordering::SeqCst) {
                    // Hand the scan over at once rather than after the lease: another replica,
                    // or this one restarted, takes it from here.
                    let _ = this.store.renew_lease(&id, &this.owner, 0).await;
                }
                this.running.lock().expect("running lock").remove(&id);
                drop(permit);
            }
            .instrument(span),
        ));
    }

    /// Stops a running scan (its state was already set by the caller).
    pub fn cancel(&self, id: &ScanId) {
        if let Some(token) = self.running.lock().expect("running lock").get(id) {
            token.cancel();
        }
    }

    fn publish_update(&self, scan: ScanRecord, message: impl Into<String>) {
        let _ = self.updates.send(ScanUpdate {
            scan,
            message: message.into(),
        });
    }

    async fn refresh(
        &self,
        scan: &ScanRecord,
        message: impl Into<String>,
    ) -> Result<(), StoreError> {
        if let Some(now) = self.store.get_scan(&scan.tenant, &scan.id).await? {
            self.publish_update(now, message);
        }
        Ok(())
    }

    /// Publishes `event` to `room`. Best effort: a notifier that is down must not stop a scan.
    async fn notify(&self, room: String, event: ScanEvent) {
        let mut client = self.notifier.clone();
        let note = event.notification(room);
        match tokio::time::timeout(NOTIFY_TIMEOUT, client.publish(note)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "Notification not published")
            }
            Err(_) => tracing::debug!("Notification timed out"),
        }
    }

    /// Ends a scan this replica holds as FAILED with `error`, and says so.
    async fn fail(&self, scan: &ScanRecord, room: &str, error: String) -> Result<(), StoreError> {
        tracing::warn!(event = event::SCAN, error = %error, "Scan failed");
        let failed = self
            .store
            .finish_scan(
                &scan.tenant,
                &scan.id,
                pb::ScanState::Failed,
                &error,
                now_micros(),
                Some(&self.owner),
            )
            .await?;
        if let Some(done) = failed {
            self.publish_update(done, error.clone());
        }
        self.notify(
            room.to_owned(),
            ScanEvent::Failed {
                scan_id: scan.id.clone(),
                error,
            },
        )
        .await;
        Ok(())
    }

    /// Renews the lease of a running scan; when it cannot (taken over, or finished elsewhere
    /// by a cancel), stops the scan here.
    async fn heartbeat(
        self: Arc<Self>,
        id: ScanId,
        token: CancellationToken,
        lost: Arc<AtomicBool>,
    ) {
        let mut tick = tokio::time::interval((self.lease / 3).max(Duration::from_millis(50)));
        tick.tick().await;
        loop {
            tick.tick().await;
            match self
                .store
                .renew_lease(&id, &self.owner, self.lease_until())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(scan_id = %id, "Lease lost: stopping the scan here");
                    lost.store(true, Ordering::SeqCst);
                    token.cancel();
                    return;
                }
                Err(err) => {
                    tracing::warn!(scan_id = %id, error = %err, "Could not renew the lease")
                }
            }
        }
    }

    async fn execute(
        &self,
        scan: ScanRecord,
        token: CancellationToken,
        lost: &AtomicBool,
    ) -> Result<(), StoreError> {
        let room = format!("scan/{}", scan.id);
        let Some(scanner) = self.scanners.get(scan.scanner.as_str()).cloned() else {
            // Created on a replica that has the engine, claimed by one that has not.
            let msg = format!("engine {:?} is not available on this server", scan.scanner);
            return self.fail(&scan, &room, msg).await;
        };
        let ports = match ports::parse_stored(&scan.ports) {
            Ok(ports) => ports,
            Err(e) => {
                let msg = format!("its stored port specification cannot be read: {e}");
                return self.fail(&scan, &room, msg).await;
            }
        };
        // A scan taken over continues from its checkpoint: only chunks not done are run.
        let (mut plan, unusable) = Plan::resume(
            scan.resolved.clone(),
            ports,
            self.checkpoint_probes,
            &scan.checkpoint,
        );
        if let Some(why) = unusable {
            tracing::warn!(reason = %why, "Checkpoint set aside: the scan starts over");
        }
        let total = plan.probes();
        let before = plan.done_probes();
        if !self
            .store
            .mark_scan_running(&scan.tenant, &scan.id, total, now_micros(), &self.owner)
            .await?
        {
            return Ok(()); // cancelled while pending
        }
        if before > 0 {
            tracing::info!(
                event = event::SCAN,
                probes_done = before,
                probes_total = total,
                "Scan resumed from its checkpoint"
            );
        } else {
            tracing::info!(
                event = event::SCAN,
                targets = plan.targets().len(),
                ports = plan.ports().len(),
                engine = scanner.name(),
                "Scan started"
            );
        }
        let started = if before > 0 {
            "scan resumed"
        } else {
            "scan started"
        };
        self.refresh(&scan, started).await?;
        self.notify(
            room.clone(),
            ScanEvent::Started {
                scan_id: scan.id.clone(),
                targets: scan.targets.clone(),
                probes_total: total,
            },
        )
        .await;

        let (tx, mut rx) = mpsc::channel(1024);
        let engine = {
            let (token, plan) = (token.clone(), plan.clone());
            tokio::spawn(async move { scanner.scan(&plan, tx, token).await })
        };
        // A resumed scan starts from what it had stored; re-found findings are not new.
        let mut findings: u64 = scan.findings_count;
        let mut done = before;
        let mut reported_percent = 0u32;
        let mut last_store = tokio::time::Instant::now();
        // Findings are written in batches, with the progress and the checkpoint in the same
        // transaction: up to FLUSH_AT at once, and at least every PROGRESS_EVERY. A chunk is
        // done only after its findings were sent, so a stored checkpoint never claims a
        // chunk whose findings are lost; a crash costs the chunks in progress, found again
        // by the scan's next holder (findings are keyed by fingerprint).
        let mut pending: Vec<FindingRecord> = Vec::new();
        let mut held;
        loop {
            let event = rx.recv().await;
            let ended = event.is_none();
            match event {
                Some(Event::Open(open)) => pending.push(finding_record(&scan, &open)),
                Some(Event::Finding(found)) => pending.push(engine_finding_record(&scan, &found)),
                Some(Event::Progress(n)) => done = before + n,
                Some(Event::Done(chunk)) => plan.complete(chunk),
                None => {}
            }
            let due = last_store.elapsed() >= PROGRESS_EVERY;
            if !(due || ended || pending.len() >= FLUSH_AT) {
                continue;
            }
            let percent = percent(done.min(total), total);
            let progress = ScanProgress {
                probes_done: done.min(total),
                progress_percent: percent,
                checkpoint: plan.checkpoint(),
            };
            let saved = self
                .store
                .save_progress(&scan.tenant, &scan.id, &self.owner, &pending, &progress)
                .await?;
            if saved.new_findings > 0 {
                tracing::info!(
                    new = saved.new_findings,
                    batch = pending.len(),
                    "Findings stored"
                );
            }
            pending.clear();
            findings += saved.new_findings;
            held = saved.held;
            if ended || !held {
                // Done, or cancelled or taken over meanwhile: what was found is kept.
                break;
            }
            if !due {
                continue;
            }
            last_store = tokio::time::Instant::now();
            self.refresh(&scan, format!("{done}/{total} probes, {findings} findings"))
                .await?;
            if percent != reported_percent {
                reported_percent = percent;
                self.notify(
                    room.clone(),
                    ScanEvent::Progress {
                        scan_id: scan.id.clone(),
                        progress_percent: percent,
                        probes_done: done,
                        probes_total: total,
                        findings_count: findings,
                    },
                )
                .await;
            }
        }
        // An engine still running (the scan is no longer held here) stops at its next event.
        drop(rx);
        let outcome = engine.await;

        if self.shutdown.is_cancelled() {
            tracing::info!("Scan interrupted by shutdown; it is handed over");
            return Ok(());
        }
        if lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        if token.is_cancelled() {
            tracing::info!("Scan cancelled");
            self.notify(
                room,
                ScanEvent::Cancelled {
                    scan_id: scan.id.clone(),
                },
            )
            .await;
            return Ok(());
        }
        if !held {
            tracing::info!("Scan cancelled or taken over elsewhere: stopped here");
            return Ok(());
        }
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(join) => Some(format!("engine crashed: {join}")),
        };
        if let Some(error) = failure {
            return self.fail(&scan, &room, error).await;
        }

        self.refresh(&scan, "analyzing findings").await?;
        let analyzed = self.analyze(&scan, &room).await?;
        if let Some(done) = self
            .store
            .finish_scan(
                &scan.tenant,
                &scan.id,
                pb::ScanState::Succeeded,
                "",
                now_micros(),
                Some(&self.owner),
            )
            .await?
        {
            tracing::info!(
                event = event::SCAN,
                findings = done.findings_count,
                analyzed,
                duration_ms = done
                    .finished_at
                    .zip(done.started_at)
                    .map_or(0, |(end, start)| (end - start) / 1000),
                "Scan succeeded"
            );
            let message = format!("scan succeeded: {} findings", done.findings_count);
            self.notify(
                room,
                ScanEvent::Finished {
                    scan_id: scan.id.clone(),
                    state: pb::ScanState::Succeeded,
                    findings_count: done.findings_count,
                },
            )
            .await;
            self.publish_update(done, message);
        }
        Ok(())
    }

    /// Has every finding of the scan analyzed; returns how many were. An analyzer that is
    /// down leaves findings with the engine's verdict rather than failing the scan.
    async fn analyze(&self, scan: &ScanRecord, room: &str) -> Result<usize, StoreError> {
        let mut analyzer = self.analyzer.clone();
        let mut after: Option<String> = None;
        let mut analyzed = 0;
        let mut fingerprints = Vec::new();
        loop {
            let page = self
                .store
                .list_findings(
                    &scan.tenant,
                    &scan.id,
                    Values::default(),
                    after.as_deref(),
                    ANALYZE_BATCH,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let request: Vec<pb::Finding> = page.iter().cloned().map(Into::into).collect();
            let analyses = match analyzer
                .analyze_findings(pb::AnalyzeFindingsRequest { findings: request })
                .await
            {
                Ok(resp) => resp.into_inner().analyses,
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "Analyzer unavailable; findings keep the engine's verdict");
                    break;
                }
            };
            for (finding, analysis) in page.iter().zip(analyses) {
                let record = Analysis::from_wire(&scan.tenant, &analysis);
                self.store
                    .set_finding_analysis(&scan.tenant, &finding.id, &record)
                    .await?;
                analyzed += 1;
                fingerprints.push(analysis.fingerprint.clone());
                let severity = record.severity;
                if severity >= Severity::High {
                    tracing::info!(
                        event = event::VULNERABILITY,
                        finding_id = %finding.id,
                        target = %finding.target,
                        port = finding.port,
                        severity = pb::Severity::from(severity).as_str_name(),
                        score = analysis.score,
                        "Vulnerability found"
                    );
                    self.notify(
                        room.to_owned(),
                        ScanEvent::Finding {
                            scan_id: scan.id.clone(),
                            finding_id: finding.id.clone(),
                            target: finding.target.clone(),
                            port: finding.port,
                            severity,
                            score: analysis.score,
                            summary: analysis.summary.clone(),
                        },
                    )
                    .await;
                }
            }
            if page.len() < ANALYZE_BATCH as usize {
                break;
            }
        }
        // Prefetch: the scan's analyses, including those of fingerprints analyzed by earlier
        // scans, are cached under the scan's tag, ready for whoever reads them next.
        for chunk in fingerprints.chunks(10_000) {
            let request = pb::WarmScanRequest {
                scan_id: scan.id.to_string(),
                fingerprints: chunk.to_vec(),
            };
            if let Err(status) = analyzer.warm_scan(request).await {
                tracing::debug!(code = ?status.code(), "Analyses not warmed");
                break;
            }
        }
        Ok(analyzed)
    }
}

fn percent(done: u64, total: u64) -> u32 {
    if total == 0 {
        return 0;
    }
    // 100 is reserved for success: a scan at its last probe is still analyzing.
    u32::try_from((done.saturating_mul(100) / total).min(99)).unwrap_or(99)
}

// What an engine says about a scanned service comes from whoever answered on the port: it is
// kept within the sizes (in bytes) the vuln-analyzer accepts, well below them, so a service
// that answers with megabytes can neither bloat the store nor make its scan's analysis fail.
/// Longest service name or check id kept from an engine (the analyzer takes 256 bytes).
const MAX_SERVICE_BYTES: usize = 128;
/// Longest banner or evidence kept from an engine.
const MAX_EVIDENCE_BYTES: usize = 256;
/// Longest title kept from an engine (the analyzer takes 1,024 bytes).
const MAX_TITLE_BYTES: usize = 512;
/// Longest CVSS vector kept from an engine (the analyzer parses at most 512 bytes).
const MAX_VECTOR_BYTES: usize = 512;
/// Most CVE ids kept from one engine finding, and the longest one (the analyzer takes 64 of
/// 128 bytes).
const MAX_CVE_IDS: usize = 32;
const MAX_CVE_BYTES: usize = 64;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn finding_record(scan: &ScanRecord, open: &OpenPort) -> FindingRecord {
    let mut f = FindingRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: scan.tenant.clone(),
        scan_id: scan.id.clone(),
        target: open.target.address.to_string(),
        hostname: open.target.hostname.clone().unwrap_or_default(),
        port: open.port,
        protocol: "tcp".into(),
        service: clip(&open.service, MAX_SERVICE_BYTES),
        banner: clip(&open.banner, MAX_EVIDENCE_BYTES),
        engine: scan.scanner.clone(),
        check_id: "open-port".into(),
        title: if open.service.is_empty() {
            format!("Port {}/tcp open", open.port)
        } else {
            format!(
                "Port {}/tcp open ({})",
                open.port,
                clip(&open.service, MAX_SERVICE_BYTES)
            )
        },
        severity: Severity::Info,
        cvss_score: 0.0,
        cvss_vector: String::new(),
        cve_ids: Vec::new(),
        fingerprint: Fingerprint::new(""),
        analysis: None,
        created_at: now_micros(),
        change: pb::FindingChange::Unspecified,
    };
    f.fingerprint = Fingerprint::of(&pb::Finding::from(f.clone()));
    f
}

fn engine_finding_record(scan: &ScanRecord, found: &EngineFinding) -> FindingRecord {
    let severity = match found.severity.as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    };
    let mut f = FindingRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: scan.tenant.clone(),
        scan_id: scan.id.clone(),
        target: found.target.address.to_string(),
        hostname: found.target.hostname.clone().unwrap_or_default(),
        port: found.port,
        protocol: "tcp".into(),
        service: clip(&found.service, MAX_SERVICE_BYTES),
        // What matched, and where: the evidence an analyst opens first.
        banner: clip(&found.evidence, MAX_EVIDENCE_BYTES),
        engine: scan.scanner.clone(),
        check_id: clip(&found.check_id, MAX_SERVICE_BYTES),
        title: clip(&found.title, MAX_TITLE_BYTES),
        severity,
        cvss_score: 0.0,
        cvss_vector: clip(&found.cvss_vector, MAX_VECTOR_BYTES),
        cve_ids: found
            .cve_ids
            .iter()
            .take(MAX_CVE_IDS)
            .map(|c| clip(c, MAX_CVE_BYTES))
            .collect(),
        fingerprint: Fingerprint::new(""),
        analysis: None,
        created_at: now_micros(),
        change: pb::FindingChange::Unspecified,
    };
    f.fingerprint = Fingerprint::of(&pb::Finding::from(f.clone()));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reaches_100_only_on_success() {
        assert_eq!(percent(0, 10), 0);
        assert_eq!(percent(5, 10), 50);
        assert_eq!(percent(10, 10), 99);
        assert_eq!(percent(0, 0), 0);
    }

    #[test]
    fn clipping_bounds_bytes_and_keeps_whole_characters() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("abc", 10), "abc");
        // "é" is two bytes: three bytes hold one of them, never half of the second.
        assert_eq!(clip(&"é".repeat(1000), 3), "é");
        assert_eq!(
            clip(&"é".repeat(1000), MAX_TITLE_BYTES).len(),
            MAX_TITLE_BYTES
        );
    }
}
