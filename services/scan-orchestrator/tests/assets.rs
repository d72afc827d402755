//! Assets in the repository, on SQLite and on PostgreSQL: a due time fires once, and each
//! finished scan of an asset is compared with the previous one (new, still open, fixed,
//! reopened) with the triage sticking across scans.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL` (set by `make test`); without it the
//! PostgreSQL runs are skipped, unless `PHANTOM_REQUIRE_BACKENDS=1`.

use phantom_domain::{Fingerprint, Tenant};
use phantom_kit::time::now_micros;
use phantom_proto::pb::{self, FindingChange, ScanState, TriageState};
use phantom_scan_orchestrator::{
    repository::{
        self, ScanProgress, ScanRecord, ScanRepository, SqlScanRepository,
        assets::{AssetRecord, AssetRepository, Fired, Triage, Values},
        conformance::{sample_finding, sample_scan},
    },
    schedule::Schedule,
};
use phantom_storage::{Database, testing};

const OWNER: &str = "assets-test";

async fn store(db: Database) -> SqlScanRepository {
    for migrator in [
        repository::migrator(),
        phantom_vuln_analyzer::repository::migrator(),
    ] {
        db.migrate(migrator).await.unwrap();
    }
    SqlScanRepository::new(db)
}

fn tenant() -> Tenant {
    Tenant::parse(&format!("a-{}", uuid::Uuid::now_v7().simple())).unwrap()
}

fn asset(tenant: &Tenant, now: i64) -> AssetRecord {
    let schedule = Schedule::from_request(&pb::Schedule {
        every: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    })
    .unwrap();
    AssetRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.clone(),
        name: format!("web-{}", uuid::Uuid::now_v7().simple()),
        targets: vec!["127.0.0.1".into()],
        ports: "1-1024".into(),
        scanner: "builtin".into(),
        schedule,
        paused: false,
        next_due: now,
        next_run: now,
        last_scan_id: None,
        runs: 0,
        skipped: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Fires `asset`'s due time with a scan held by this test, which finds `ports` and succeeds.
/// Returns the scan and the asset as it is afterwards.
async fn run(
    s: &SqlScanRepository,
    asset: &AssetRecord,
    ports: &[u16],
) -> (ScanRecord, AssetRecord) {
    let mut scan = sample_scan(&asset.tenant);
    scan.asset_id = Some(asset.id.clone());
    scan.due_at = Some(asset.next_due);
    scan.state = ScanState::Running;
    scan.owner = OWNER.into();
    scan.lease_until = i64::MAX;
    let next = asset.next_due + 60_000_000;
    assert_eq!(
        s.fire(asset, Some(&scan), next, next, now_micros())
            .await
            .unwrap(),
        Fired::Started
    );
    let findings: Vec<_> = ports.iter().map(|p| sample_finding(&scan, *p)).collect();
    let progress = ScanProgress {
        probes_done: 1,
        progress_percent: 50,
        checkpoint: String::new(),
    };
    let saved = s
        .save_progress(&scan.tenant, &scan.id, OWNER, &findings, &progress)
        .await
        .unwrap();
    assert!(saved.held);
    s.finish_scan(
        &scan.tenant,
        &scan.id,
        ScanState::Succeeded,
        "",
        now_micros(),
        Some(OWNER),
    )
    .await
    .unwrap()
    .expect("the scan finished");
    let asset = s
        .get_asset(&asset.tenant, &asset.id)
        .await
        .unwrap()
        .unwrap();
    (scan, asset)
}

/// The scan's findings with `changes` (empty: its own), as `(port, change)`, by port.
async fn diff(
    s: &SqlScanRepository,
    scan: &ScanRecord,
    changes: &[FindingChange],
) -> Vec<(u16, FindingChange)> {
    let mut got: Vec<_> = s
        .list_findings(
            &scan.tenant,
            &scan.id,
            Values::of(changes.iter().map(|c| *c as i32)),
            None,
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.port, f.change))
        .collect();
    got.sort_unstable_by_key(|(p, _)| *p);
    got
}

async fn asset_findings(
    s: &SqlScanRepository,
    a: &AssetRecord,
) -> Vec<(u16, bool, FindingChange, u64, TriageState)> {
    let mut got: Vec<_> = s
        .list_asset_findings(
            &a.tenant,
            &a.id,
            Values::default(),
            Values::default(),
            None,
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.finding.port,
                f.present,
                f.change,
                f.times_seen,
                f.triage.state,
            )
        })
        .collect();
    got.sort_unstable_by_key(|f| f.0);
    got
}

async fn scans_are_compared_by_fingerprint_and_triage_sticks(s: &SqlScanRepository) {
    use FindingChange::{Fixed, New, Reopened, StillOpen};
    let t = tenant();
    let now = now_micros();
    let a = asset(&t, now);
    assert!(s.insert_asset(&a).await.unwrap());
    assert!(
        !s.insert_asset(&AssetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            ..a.clone()
        })
        .await
        .unwrap(),
        "a second asset of the same name"
    );

    // 1: 22 and 80 open: both new.
    let (s1, a) = run(s, &a, &[22, 80]).await;
    assert_eq!(diff(s, &s1, &[]).await, [(22, New), (80, New)]);
    // 2: unchanged: nothing new, nothing fixed.
    let (s2, a) = run(s, &a, &[22, 80]).await;
    assert_eq!(diff(s, &s2, &[]).await, [(22, StillOpen), (80, StillOpen)]);
    assert!(
        diff(s, &s2, &[New, Fixed, Reopened]).await.is_empty(),
        "an unchanged scan creates and closes nothing"
    );
    // Triage on scan 2's findings: 22 a false positive, 80 said fixed.
    let triage = |state, reason: &str| Triage {
        state,
        reason: reason.into(),
        principal: "key:alice".into(),
        at: now_micros(),
        accepted_until: 0,
    };
    let fp22 = Fingerprint::new("fp-22".to_owned()).to_string();
    let fp80 = Fingerprint::new("fp-80".to_owned()).to_string();
    let set = s
        .set_triage(
            &t,
            &a.id,
            &fp22,
            &triage(TriageState::FalsePositive, "our honeypot"),
            &uuid::Uuid::now_v7().to_string(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.triage.principal, "key:alice");
    s.set_triage(
        &t,
        &a.id,
        &fp80,
        &triage(TriageState::Fixed, "closed in the firewall"),
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        s.set_triage(
            &t,
            &a.id,
            "fp-none",
            &triage(TriageState::Fixed, "x"),
            &uuid::Uuid::now_v7().to_string()
        )
        .await
        .unwrap()
        .is_none()
    );
    assert!(
        s.set_triage(
            &tenant(),
            &a.id,
            &fp22,
            &triage(TriageState::Fixed, "x"),
            &uuid::Uuid::now_v7().to_string()
        )
        .await
        .unwrap()
        .is_none(),
        "another tenant's asset"
    );

    // 3: 80 closed, 443 opened.
    let (s3, a) = run(s, &a, &[22, 443]).await;
    assert_eq!(diff(s, &s3, &[]).await, [(22, StillOpen), (443, New)]);
    assert_eq!(diff(s, &s3, &[Fixed]).await, [(80, Fixed)]);
    assert_eq!(diff(s, &s3, &[New, Fixed]).await, [(80, Fixed), (443, New)]);
    assert_eq!(
        asset_findings(s, &a).await,
        [
            (22, true, StillOpen, 3, TriageState::FalsePositive),
            (80, false, Fixed, 2, TriageState::Fixed),
            (443, true, New, 1, TriageState::Open),
        ]
    );
    // 4: 80 back: reopened, and its FIXED triage reopens; the false positive sticks.
    let (s4, a) = run(s, &a, &[22, 80, 443]).await;
    assert_eq!(
        diff(s, &s4, &[]).await,
        [(22, StillOpen), (80, Reopened), (443, StillOpen)]
    );
    let all = s
        .list_asset_findings(&t, &a.id, Values::default(), Values::default(), None, 100)
        .await
        .unwrap();
    let f80 = all.iter().find(|f| f.finding.port == 80).unwrap();
    assert_eq!(f80.triage.state, TriageState::Open);
    assert_eq!(f80.triage.principal, "phantom");
    assert_eq!(f80.reopened, 1);
    assert_eq!(f80.first_scan_id, s1.id.to_string());
    assert_eq!(f80.last_scan_id, s4.id.to_string());
    // Filters: by change and by triage.
    let reopened = s
        .list_asset_findings(
            &t,
            &a.id,
            Values::of([Reopened as i32]),
            Values::default(),
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(reopened.len(), 1);
    let fps = s
        .list_asset_findings(
            &t,
            &a.id,
            Values::default(),
            Values::of([TriageState::FalsePositive as i32]),
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(fps.iter().map(|f| f.finding.port).collect::<Vec<_>>(), [22]);
    // Another tenant sees nothing of it.
    assert!(s.get_asset(&tenant(), &a.id).await.unwrap().is_none());
    assert!(
        s.list_asset_findings(
            &tenant(),
            &a.id,
            Values::default(),
            Values::default(),
            None,
            100
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(a.runs, 4);
}

async fn an_accepted_risk_reopens_when_it_expires(s: &SqlScanRepository) {
    let t = tenant();
    let a = asset(&t, now_micros());
    assert!(s.insert_asset(&a).await.unwrap());
    let (_, a) = run(s, &a, &[8080]).await;
    let fp = Fingerprint::new("fp-8080".to_owned()).to_string();
    let until = now_micros() + 1_000_000;
    let accepted = Triage {
        state: TriageState::AcceptedRisk,
        reason: "legacy app, replaced next quarter".into(),
        principal: "key:bob".into(),
        at: now_micros(),
        accepted_until: until,
    };
    s.set_triage(&t, &a.id, &fp, &accepted, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap()
        .unwrap();
    // Not yet.
    s.expire_accepted_risks(until - 1).await.unwrap();
    assert_eq!(asset_findings(s, &a).await[0].4, TriageState::AcceptedRisk);
    // Expired: open again, said so by the system.
    assert!(s.expire_accepted_risks(until).await.unwrap() >= 1);
    let f = &s
        .list_asset_findings(&t, &a.id, Values::default(), Values::default(), None, 10)
        .await
        .unwrap()[0];
    assert_eq!(f.triage.state, TriageState::Open);
    assert_eq!(f.triage.principal, "phantom");
    assert_eq!(f.triage.accepted_until, 0);
}

async fn a_due_time_fires_once_and_a_skip_moves_on(s: &SqlScanRepository) {
    let t = tenant();
    let now = now_micros();
    let a = asset(&t, now);
    assert!(s.insert_asset(&a).await.unwrap());
    assert_eq!(
        s.due_assets(now, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|d| d.id == a.id)
            .count(),
        1
    );
    // Two replicas fire the same due time at once: one wins.
    let scan = |owner: &str| {
        let mut scan = sample_scan(&t);
        scan.asset_id = Some(a.id.clone());
        scan.due_at = Some(a.next_due);
        scan.owner = owner.into();
        scan
    };
    let (one, two) = (scan("r1"), scan("r2"));
    let next = a.next_due + 60_000_000;
    let (x, y) = tokio::join!(
        s.fire(&a, Some(&one), next, next, now),
        s.fire(&a, Some(&two), next, next, now)
    );
    let mut fired = [x.unwrap(), y.unwrap()];
    fired.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(fired, [Fired::Lost, Fired::Started]);
    assert!(s.asset_busy(&a.id).await.unwrap());
    let a = s.get_asset(&t, &a.id).await.unwrap().unwrap();
    assert_eq!((a.runs, a.next_due), (1, next));
    // The same due time again (a stale read): lost, nothing stored.
    let stale = AssetRecord {
        next_due: now,
        ..a.clone()
    };
    assert_eq!(
        s.fire(&stale, Some(&scan("r3")), next, next, now)
            .await
            .unwrap(),
        Fired::Lost
    );
    // A skip moves the asset on without a scan.
    let later = next + 60_000_000;
    assert_eq!(
        s.fire(&a, None, later, later, now).await.unwrap(),
        Fired::Skipped
    );
    let a = s.get_asset(&t, &a.id).await.unwrap().unwrap();
    assert_eq!((a.runs, a.skipped, a.next_due), (1, 1, later));
    // Paused: never due.
    s.set_paused(&t, &a.id, true, a.next_due, a.next_run, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.due_assets(i64::MAX, 1000)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != a.id)
    );
    // Deleted: gone, its scans kept.
    assert!(s.delete_asset(&t, &a.id).await.unwrap());
    assert!(s.get_asset(&t, &a.id).await.unwrap().is_none());
    assert!(
        s.get_scan(&t, &one.id).await.unwrap().is_some()
            || s.get_scan(&t, &two.id).await.unwrap().is_some()
    );
    assert!(!s.delete_asset(&t, &a.id).await.unwrap());
}

async fn all(s: &SqlScanRepository) {
    scans_are_compared_by_fingerprint_and_triage_sticks(s).await;
    an_accepted_risk_reopens_when_it_expires(s).await;
    a_due_time_fires_once_and_a_skip_moves_on(s).await;
}

#[tokio::test]
async fn sqlite_assets_conform() {
    let dir = tempfile::tempdir().unwrap();
    all(&store(testing::sqlite(dir.path()).await).await).await;
}

#[tokio::test]
async fn postgres_assets_conform() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    all(&store(db).await).await;
}
