//! The behaviour every [`ScanRepository`] must have, as one suite run against each backend
//! (`services/scan-orchestrator/tests/repository.rs` runs it on SQLite and on PostgreSQL).
//!
//! Each check uses fresh tenants, so the suite can run against a shared database.

use phantom_domain::{Analysis, Fingerprint, ScanId, Severity, Tenant};
use phantom_kit::time::now_micros;
use phantom_proto::pb::ScanState;

use super::{
    FindingRecord, InsertScan, ResolvedTarget, Saved, ScanProgress, ScanRecord, ScanRepository,
    assets::Values,
};

fn tenant() -> Tenant {
    Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).expect("a tenant id")
}

/// A pending scan of `tenant`, for tests.
pub fn sample_scan(tenant: &Tenant) -> ScanRecord {
    ScanRecord {
        id: ScanId::generate(),
        tenant: tenant.clone(),
        state: ScanState::Pending,
        targets: vec!["127.0.0.1".into()],
        resolved: vec![ResolvedTarget {
            hostname: None,
            address: "127.0.0.1".parse().expect("address"),
        }],
        ports: "22,80".into(),
        scanner: "builtin".into(),
        progress_percent: 0,
        findings_count: 0,
        probes_total: 0,
        probes_done: 0,
        idempotency_key: None,
        error: String::new(),
        request_id: "req-1".into(),
        trace_context: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        created_at: now_micros(),
        started_at: None,
        finished_at: None,
        owner: String::new(),
        lease_until: 0,
        claims: 0,
        checkpoint: String::new(),
        asset_id: None,
        due_at: None,
    }
}

/// Stores `findings` of `scan` as a replica that does not hold it would; returns how many
/// were new.
async fn store_findings(
    store: &dyn ScanRepository,
    scan: &ScanRecord,
    findings: &[FindingRecord],
) -> u64 {
    let progress = ScanProgress {
        probes_done: 0,
        progress_percent: 0,
        checkpoint: String::new(),
    };
    let saved = store
        .save_progress(
            &scan.tenant,
            &scan.id,
            "not-the-holder",
            findings,
            &progress,
        )
        .await
        .unwrap();
    assert!(!saved.held);
    saved.new_findings
}

/// A finding of `scan` on `port` (fingerprint `fp-<port>`), for tests.
pub fn sample_finding(scan: &ScanRecord, port: u16) -> FindingRecord {
    FindingRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: scan.tenant.clone(),
        scan_id: scan.id.clone(),
        target: "127.0.0.1".into(),
        hostname: String::new(),
        port,
        protocol: "tcp".into(),
        service: "http".into(),
        banner: "HTTP/1.1 200 OK".into(),
        engine: "builtin".into(),
        check_id: "open-port".into(),
        title: format!("Port {port}/tcp open"),
        severity: Severity::Info,
        cvss_score: 0.0,
        cvss_vector: String::new(),
        cve_ids: vec!["CVE-2021-44228".into()],
        fingerprint: Fingerprint::new(format!("fp-{port}")),
        analysis: None,
        created_at: now_micros(),
        change: phantom_proto::pb::FindingChange::Unspecified,
    }
}

/// The vuln-analyzer's `analyses` table over the same database, which
/// [`ScanRepository::list_findings`] reads (a finding shows the current analysis of its
/// fingerprint): the harness running the suite provides it, with the analyzer's repository.
#[async_trait::async_trait]
pub trait AnalysesTable: Sync {
    /// Stores `analysis` as the analyzer would.
    async fn put_analysis(&self, analysis: &Analysis);
    /// Replaces a degraded analysis with `analysis`; whether it did.
    async fn upgrade_analysis(&self, analysis: &Analysis) -> bool;
}

/// Runs every check against `store`; `analyses` is the analyzer's table over the same
/// database.
pub async fn run_all(store: &dyn ScanRepository, analyses: &dyn AnalysesTable) {
    scans_round_trip_and_stay_in_their_tenant(store).await;
    idempotency_key_returns_the_first_scan(store).await;
    scans_list_newest_first_in_pages(store).await;
    scan_lifecycle_ends_in_exactly_one_final_state(store).await;
    claims_are_exclusive_and_lapsed_leases_are_taken_over(store).await;
    findings_are_deduplicated_per_scan_and_paged(store, analyses).await;
    usage_counts_active_scans_and_the_window_hosts_of_one_tenant(store).await;
}

/// A tenant's usage counts its unfinished scans and the addresses of the scans it created in
/// the window, and nothing of another tenant's.
pub async fn usage_counts_active_scans_and_the_window_hosts_of_one_tenant(
    store: &dyn ScanRepository,
) {
    let t = tenant();
    assert_eq!(
        store.tenant_usage(&t, 0).await.unwrap(),
        super::TenantUsage::default()
    );
    let mut old = sample_scan(&t);
    old.created_at = 1_000;
    old.state = ScanState::Succeeded;
    let mut running = sample_scan(&t);
    running.created_at = 2_000;
    running.state = ScanState::Running;
    running.resolved.push(ResolvedTarget {
        hostname: None,
        address: "127.0.0.2".parse().expect("address"),
    });
    let mut pending = sample_scan(&t);
    pending.created_at = 3_000;
    for scan in [&old, &running, &pending] {
        store.insert_scan(scan).await.unwrap();
    }
    store.insert_scan(&sample_scan(&tenant())).await.unwrap();
    let usage = store.tenant_usage(&t, 1_500).await.unwrap();
    assert_eq!(
        usage,
        super::TenantUsage {
            active_scans: 2,
            hosts: 3,
            oldest: Some(2_000),
        }
    );
}

/// A stored scan reads back equal, and another tenant cannot see it.
pub async fn scans_round_trip_and_stay_in_their_tenant(store: &dyn ScanRepository) {
    let t = tenant();
    let scan = sample_scan(&t);
    assert!(matches!(
        store.insert_scan(&scan).await.unwrap(),
        InsertScan::Inserted
    ));
    assert_eq!(
        store.get_scan(&t, &scan.id).await.unwrap(),
        Some(scan.clone())
    );
    assert_eq!(store.get_scan(&tenant(), &scan.id).await.unwrap(), None);
    assert!(
        store
            .list_scans(&tenant(), None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A second scan with the same idempotency key is not stored; the first is returned.
pub async fn idempotency_key_returns_the_first_scan(store: &dyn ScanRepository) {
    let t = tenant();
    let first = ScanRecord {
        idempotency_key: Some("key-1".into()),
        ..sample_scan(&t)
    };
    store.insert_scan(&first).await.unwrap();
    let second = ScanRecord {
        idempotency_key: Some("key-1".into()),
        ..sample_scan(&t)
    };
    match store.insert_scan(&second).await.unwrap() {
        InsertScan::Existing(existing) => assert_eq!(existing.id, first.id),
        InsertScan::Inserted => panic!("duplicate idempotency key inserted"),
    }
    // The same key in another tenant is another scan.
    let other = ScanRecord {
        idempotency_key: Some("key-1".into()),
        ..sample_scan(&tenant())
    };
    assert!(matches!(
        store.insert_scan(&other).await.unwrap(),
        InsertScan::Inserted
    ));
}

/// Listing pages through every scan exactly once, newest first, with a state filter.
pub async fn scans_list_newest_first_in_pages(store: &dyn ScanRepository) {
    let t = tenant();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let s = sample_scan(&t);
        store.insert_scan(&s).await.unwrap();
        ids.push(s.id);
    }
    ids.reverse();
    let page1 = store.list_scans(&t, None, None, 2).await.unwrap();
    let page2 = store
        .list_scans(&t, None, Some(&page1[1].id), 2)
        .await
        .unwrap();
    let page3 = store
        .list_scans(&t, None, Some(&page2[1].id), 2)
        .await
        .unwrap();
    let seen: Vec<_> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(seen, ids);

    store
        .finish_scan(&t, &ids[0], ScanState::Cancelled, "", now_micros(), None)
        .await
        .unwrap();
    let cancelled = store
        .list_scans(&t, Some(ScanState::Cancelled), None, 10)
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].id, ids[0]);
}

/// PENDING -> RUNNING -> SUCCEEDED with progress 100; a later final state does not win.
pub async fn scan_lifecycle_ends_in_exactly_one_final_state(store: &dyn ScanRepository) {
    let t = tenant();
    let scan = ScanRecord {
        owner: "runner-a".into(),
        ..sample_scan(&t)
    };
    store.insert_scan(&scan).await.unwrap();
    assert_eq!(
        store
            .unfinished_scans()
            .await
            .unwrap()
            .iter()
            .filter(|s| s.id == scan.id)
            .count(),
        1
    );
    assert!(
        store
            .mark_scan_running(&t, &scan.id, 10, now_micros(), "runner-a")
            .await
            .unwrap()
    );
    let progress = ScanProgress {
        probes_done: 5,
        progress_percent: 50,
        checkpoint: r#"{"hosts":1,"ports":1,"done":[[0,4]]}"#.into(),
    };
    let found = [sample_finding(&scan, 80)];
    let saved = store
        .save_progress(&t, &scan.id, "runner-a", &found, &progress)
        .await
        .unwrap();
    assert_eq!(
        saved,
        Saved {
            new_findings: 1,
            held: true
        }
    );
    let running = store.get_scan(&t, &scan.id).await.unwrap().unwrap();
    assert_eq!(running.state, ScanState::Running);
    assert_eq!(running.progress_percent, 50);
    assert_eq!(running.probes_done, 5);
    assert_eq!(running.findings_count, 1);
    assert_eq!(running.checkpoint, progress.checkpoint);
    assert!(running.started_at.is_some());
    // Saved again (a resumed scan re-finds it): not new, not counted twice.
    let saved = store
        .save_progress(&t, &scan.id, "runner-a", &found, &progress)
        .await
        .unwrap();
    assert_eq!(saved.new_findings, 0);
    assert_eq!(
        store
            .get_scan(&t, &scan.id)
            .await
            .unwrap()
            .unwrap()
            .findings_count,
        1
    );
    let done = store
        .finish_scan(
            &t,
            &scan.id,
            ScanState::Succeeded,
            "",
            now_micros(),
            Some("runner-a"),
        )
        .await
        .unwrap()
        .expect("finished");
    assert_eq!(done.state, ScanState::Succeeded);
    assert_eq!(done.progress_percent, 100);
    assert_eq!(done.probes_done, 10);
    assert_eq!(done.findings_count, 1);
    assert!(done.finished_at.is_some());

    assert!(
        store
            .finish_scan(
                &t,
                &scan.id,
                ScanState::Failed,
                "late",
                now_micros(),
                Some("runner-a")
            )
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .mark_scan_running(&t, &scan.id, 10, now_micros(), "runner-a")
            .await
            .unwrap()
    );
    assert!(
        !store
            .save_progress(&t, &scan.id, "runner-a", &[], &progress)
            .await
            .unwrap()
            .held
    );
    assert!(
        store
            .unfinished_scans()
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != scan.id)
    );
}

/// Two replicas claiming at once never get the same scan; a holder that stops renewing loses
/// the scan to the next claim, and the old holder can no longer write to it.
pub async fn claims_are_exclusive_and_lapsed_leases_are_taken_over(store: &dyn ScanRepository) {
    let t = tenant();
    let mut ours = Vec::new();
    for _ in 0..6 {
        let s = sample_scan(&t);
        store.insert_scan(&s).await.unwrap();
        ours.push(s.id);
    }
    let now = now_micros();
    let lease = now + 60_000_000;
    let (a, b) = futures::join!(
        store.claim_scans("replica-a", now, lease, 1000),
        store.claim_scans("replica-b", now, lease, 1000),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mine = |v: &Vec<ScanRecord>| {
        v.iter()
            .filter(|s| ours.contains(&s.id))
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };
    let (ma, mb) = (mine(&a), mine(&b));
    assert_eq!(
        ma.len() + mb.len(),
        6,
        "every scan claimed once: {ma:?} {mb:?}"
    );
    assert!(
        ma.iter().all(|id| !mb.contains(id)),
        "no scan claimed twice"
    );
    assert!(a.iter().chain(&b).all(|s| s.claims >= 1));

    // Nothing is claimable while the leases hold.
    let again = store
        .claim_scans("replica-c", now, lease, 1000)
        .await
        .unwrap();
    assert!(again.iter().all(|s| !ours.contains(&s.id)));

    // replica-a stops renewing: once its lease lapses, replica-c takes its scans over.
    let (held_by_a, held_by_b) = if ma.is_empty() {
        (&mb, "replica-b")
    } else {
        (&ma, "replica-a")
    };
    let first = &held_by_a[0];
    assert!(store.renew_lease(first, held_by_b, lease).await.unwrap());
    // What the holder checkpointed is what the next holder gets.
    let checkpoint = |c: &str| ScanProgress {
        probes_done: 1,
        progress_percent: 10,
        checkpoint: c.into(),
    };
    assert!(
        store
            .mark_scan_running(&t, first, 10, now, held_by_b)
            .await
            .unwrap()
    );
    assert!(
        store
            .save_progress(&t, first, held_by_b, &[], &checkpoint("first holder's"))
            .await
            .unwrap()
            .held
    );
    let expired = store
        .claim_scans("replica-c", lease + 1, lease + 60_000_000, 1000)
        .await
        .unwrap();
    let taken = expired
        .iter()
        .find(|s| &s.id == first)
        .expect("taken over after the lapse");
    assert_eq!(taken.owner, "replica-c");
    assert_eq!(taken.claims, 2);
    assert_eq!(taken.checkpoint, "first holder's");
    assert!(
        !store
            .save_progress(&t, first, held_by_b, &[], &checkpoint("too late"))
            .await
            .unwrap()
            .held,
        "the old holder's checkpoint is not stored"
    );
    assert_eq!(
        store.get_scan(&t, first).await.unwrap().unwrap().checkpoint,
        "first holder's"
    );
    assert!(
        !store
            .renew_lease(first, held_by_b, lease + 120_000_000)
            .await
            .unwrap(),
        "the old holder lost it"
    );
    assert!(
        !store
            .mark_scan_running(&t, first, 1, now, held_by_b)
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_scan_running(&t, first, 1, now, "replica-c")
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_scan(&t, first, ScanState::Succeeded, "", now, Some(held_by_b))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .finish_scan(&t, first, ScanState::Succeeded, "", now, Some("replica-c"))
            .await
            .unwrap()
            .is_some()
    );
}

/// The same fingerprint is stored once per scan; pages cover every finding once.
pub async fn findings_are_deduplicated_per_scan_and_paged(
    store: &dyn ScanRepository,
    analyses: &dyn AnalysesTable,
) {
    let t = tenant();
    let scan = sample_scan(&t);
    store.insert_scan(&scan).await.unwrap();
    let batch: Vec<_> = [22, 80, 443]
        .into_iter()
        .map(|p| sample_finding(&scan, p))
        .collect();
    assert_eq!(store_findings(store, &scan, &batch).await, 3);
    let again: Vec<_> = [80, 8080]
        .into_iter()
        .map(|p| sample_finding(&scan, p))
        .collect();
    assert_eq!(store_findings(store, &scan, &again).await, 1);

    let page1 = store
        .list_findings(&t, &scan.id, Values::default(), None, 2)
        .await
        .unwrap();
    let page2 = store
        .list_findings(&t, &scan.id, Values::default(), Some(&page1[1].id), 2)
        .await
        .unwrap();
    let ports: Vec<_> = page1.iter().chain(&page2).map(|f| f.port).collect();
    assert_eq!(ports, vec![22, 80, 443, 8080]);
    assert_eq!(page1[0], batch[0]);
    assert!(
        store
            .list_findings(&tenant(), &scan.id, Values::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let analysis = Analysis {
        tenant: t.clone(),
        fingerprint: Fingerprint::new("fp-22"),
        score: 5.3,
        severity: Severity::Medium,
        analyzer: "rules".into(),
        confidence: 70,
        summary: "ssh".into(),
        remediation: "restrict".into(),
        degraded: false,
        analyzed_at: now_micros(),
        impact: String::new(),
        suppression_suggested: false,
        suppression_reason: String::new(),
        cvss: None,
    };
    // Unanalyzed findings of finished scans are listed for a later analysis; those of a
    // running scan are not (their scan analyzes them when it ends).
    let pending = |v: Vec<FindingRecord>| v.into_iter().filter(|f| f.scan_id == scan.id).count();
    assert_eq!(
        pending(store.unanalyzed_findings(10_000).await.unwrap()),
        0,
        "scan not finished"
    );
    store
        .finish_scan(&t, &scan.id, ScanState::Succeeded, "", now_micros(), None)
        .await
        .unwrap();
    assert_eq!(pending(store.unanalyzed_findings(10_000).await.unwrap()), 4);
    store
        .set_finding_analysis(&t, &batch[0].id, &analysis)
        .await
        .unwrap();
    assert_eq!(pending(store.unanalyzed_findings(10_000).await.unwrap()), 3);
    let f = &store
        .list_findings(&t, &scan.id, Values::default(), None, 1)
        .await
        .unwrap()[0];
    assert_eq!(f.analysis.as_ref(), Some(&analysis));
    assert_eq!(f.severity, Severity::Medium);
    assert!((f.cvss_score - 5.3).abs() < f64::EPSILON);

    // A degraded verdict attached at scan time shows the enriched one once it exists.
    let degraded = Analysis {
        fingerprint: batch[1].fingerprint.clone(),
        degraded: true,
        ..analysis.clone()
    };
    analyses.put_analysis(&degraded).await;
    store
        .set_finding_analysis(&t, &batch[1].id, &degraded)
        .await
        .unwrap();
    let shown = |v: Vec<FindingRecord>| v[1].analysis.clone().unwrap();
    assert_eq!(
        shown(
            store
                .list_findings(&t, &scan.id, Values::default(), None, 10)
                .await
                .unwrap()
        ),
        degraded
    );
    let enriched = Analysis {
        analyzer: "llm:test".into(),
        degraded: false,
        impact: "session hijack".into(),
        ..degraded.clone()
    };
    assert!(analyses.upgrade_analysis(&enriched).await);
    assert_eq!(
        shown(
            store
                .list_findings(&t, &scan.id, Values::default(), None, 10)
                .await
                .unwrap()
        ),
        enriched
    );
}
