//! Continuous scanning on two scan-orchestrator replicas sharing PostgreSQL: an asset scanned
//! every two seconds, against loopback listeners that open and close between runs. Each due
//! time runs once, whichever replica fires it; each scan's findings are exactly new, still open,
//! fixed or reopened as the listeners changed; an unchanged run creates and closes nothing; and
//! triage set on one scan is still there on the next.

use std::{
    collections::{BTreeMap, HashSet},
    net::TcpListener,
    time::Duration,
};

use phantom_proto::pb::{
    self, FindingChange, TriageState, scan_orchestrator_client::ScanOrchestratorClient,
};
use phantom_tests::{Running, channel, config, next_asset_run, resume_asset, second_orchestrator};
use tonic::transport::Channel;

type Client = ScanOrchestratorClient<Channel>;

/// The ports of `scan` with their change (FIXED ones asked for too).
async fn diff(client: &mut Client, scan_id: &str) -> BTreeMap<u32, FindingChange> {
    let page = client
        .list_findings(pb::ListFindingsRequest {
            scan_id: scan_id.to_owned(),
            page_size: 1000,
            changes: vec![
                FindingChange::New as i32,
                FindingChange::StillOpen as i32,
                FindingChange::Fixed as i32,
                FindingChange::Reopened as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    page.findings.iter().map(|f| (f.port, f.change())).collect()
}

fn listen(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_two_replicas_runs_each_due_time_once_and_reports_what_changed() {
    use FindingChange::{Fixed, New, Reopened, StillOpen};
    let Some(db) = phantom_kit::testing::postgres_url() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.storage.database_url = db.clone();
    cfg.tenancy.default_tenant =
        phantom_layers::Tenant::parse(&format!("schedules-{}", std::process::id())).unwrap();
    cfg.scan.banner_timeout = Duration::from_millis(200);
    cfg.scan.claim_every = Duration::from_millis(200);
    cfg.scan.schedules.check_every = Duration::from_millis(200);
    let a = Running::start(cfg.clone()).await;

    // Replica B: another orchestrator on the same database.
    let (stop_b, b) = second_orchestrator(&cfg, &a).await;

    // Three ports the test opens and closes: x and y open at first, z not.
    let (x, y, z) = {
        let l: Vec<_> = (0..3).map(|_| listen(0)).collect();
        let ports: Vec<u16> = l.iter().map(|l| l.local_addr().unwrap().port()).collect();
        (ports[0], ports[1], ports[2])
    };
    let mut open_x = Some(listen(x));
    let mut open_y = Some(listen(y));

    let mut client = ScanOrchestratorClient::new(channel(a.addrs.scan_orchestrator).await);
    let asset = client
        .create_asset(pb::CreateAssetRequest {
            name: "loopback".into(),
            targets: vec!["127.0.0.1".into()],
            ports: format!("{x},{y},{z}"),
            schedule: Some(pb::Schedule {
                every: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A second asset of the same name is refused.
    let again = client
        .create_asset(pb::CreateAssetRequest {
            name: "loopback".into(),
            targets: vec!["127.0.0.1".into()],
            schedule: asset.schedule.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let (x, y, z) = (u32::from(x), u32::from(y), u32::from(z));

    // Run 1: x and y new.
    let s1 = next_asset_run(&mut client, "loopback", 0).await;
    assert_eq!(diff(&mut client, &s1.id).await, [(x, New), (y, New)].into());
    resume_asset(&mut client, "loopback").await;

    // Run 2, nothing changed: nothing new, nothing fixed.
    let s2 = next_asset_run(&mut client, "loopback", 1).await;
    assert_eq!(
        diff(&mut client, &s2.id).await,
        [(x, StillOpen), (y, StillOpen)].into()
    );
    // Triage on run 2: x is a false positive.
    let fp_x = client
        .list_findings(pb::ListFindingsRequest {
            scan_id: s2.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
        .into_iter()
        .find(|f| f.port == x)
        .unwrap()
        .fingerprint;
    let triaged = client
        .set_triage(pb::SetTriageRequest {
            asset: "loopback".into(),
            fingerprint: fp_x.clone(),
            state: TriageState::FalsePositive.into(),
            reason: "the test's own listener".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(triaged.triage.unwrap().state(), TriageState::FalsePositive);
    // y closes, z opens.
    open_y.take();
    let open_z = listen(u16::try_from(z).unwrap());
    resume_asset(&mut client, "loopback").await;

    // Run 3: y fixed, z new.
    let s3 = next_asset_run(&mut client, "loopback", 2).await;
    assert_eq!(
        diff(&mut client, &s3.id).await,
        [(x, StillOpen), (y, Fixed), (z, New)].into()
    );
    // y opens again.
    open_y = Some(listen(u16::try_from(y).unwrap()));
    resume_asset(&mut client, "loopback").await;

    // Run 4: y reopened.
    let s4 = next_asset_run(&mut client, "loopback", 3).await;
    assert_eq!(
        diff(&mut client, &s4.id).await,
        [(x, StillOpen), (y, Reopened), (z, StillOpen)].into()
    );

    // The triage of run 2 is still there, across runs 3 and 4.
    let findings = client
        .list_asset_findings(pb::ListAssetFindingsRequest {
            asset: "loopback".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    let by_port: BTreeMap<u32, &pb::AssetFinding> = findings
        .iter()
        .map(|f| (f.finding.as_ref().unwrap().port, f))
        .collect();
    assert_eq!(by_port.len(), 3);
    assert_eq!(
        by_port[&x].triage.as_ref().unwrap().state(),
        TriageState::FalsePositive
    );
    assert_eq!(by_port[&x].times_seen, 4);
    assert_eq!(by_port[&y].reopened, 1);
    assert_eq!(by_port[&z].first_scan_id, s3.id);

    // Each due time ran once: four scans of the asset, four distinct due times, one each.
    let scans: Vec<pb::Scan> = client
        .list_scans(pb::ListScansRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .scans
        .into_iter()
        .filter(|s| s.asset_id == asset.id)
        .collect();
    assert_eq!(scans.len(), 4, "one scan per run: {scans:?}");
    let dues: HashSet<i64> = scans
        .iter()
        .map(|s| {
            s.due_at.as_ref().unwrap().seconds * 1000
                + i64::from(s.due_at.as_ref().unwrap().nanos) / 1_000_000
        })
        .collect();
    assert_eq!(dues.len(), 4, "each due time ran once");
    let a_now = client
        .get_asset(pb::GetAssetRequest {
            asset: asset.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a_now.runs, 4);
    assert!(a_now.paused);

    stop_b.cancel();
    b.await.unwrap().unwrap();
    a.stop().await;
    drop((open_x.take(), open_y, open_z));
}

/// A due time that cannot start (here the tenant's daily hosts quota is spent) is not
/// dropped: it is stored as a FAILED scan of the asset saying why, and the schedule goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_time_refused_at_its_start_is_stored_failed_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.scan.claim_every = Duration::from_millis(200);
    cfg.scan.schedules.check_every = Duration::from_millis(200);
    cfg.scan.quota.max_hosts_per_day = 1;
    let system = Running::start(cfg).await;
    let listener = listen(0);
    let port = listener.local_addr().unwrap().port();
    let mut client = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    client
        .create_asset(pb::CreateAssetRequest {
            name: "quota".into(),
            targets: vec!["127.0.0.1".into()],
            ports: port.to_string(),
            schedule: Some(pb::Schedule {
                every: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    // The first run spends the day's one host; the next due time is refused.
    let deadline = std::time::Instant::now() + phantom_tests::PATIENCE;
    let refused = loop {
        let a = client
            .get_asset(pb::GetAssetRequest {
                asset: "quota".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if a.runs >= 2 {
            break client
                .get_scan(pb::GetScanRequest { id: a.last_scan_id })
                .await
                .unwrap()
                .into_inner();
        }
        assert!(std::time::Instant::now() < deadline, "no second due time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.state(), pb::ScanState::Failed);
    assert!(
        refused.error.contains("could not start") && refused.error.contains("max_hosts_per_day"),
        "{}",
        refused.error
    );
    assert!(refused.due_at.is_some());
    system.stop().await;
}
