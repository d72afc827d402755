//! Databases built before each service owned its tables.
//!
//! Until then, one migration history (versions 1-7, kept here only as a fixture in
//! `tests/fixtures/legacy-migrations`) built every table. Such a database must open with the
//! services' own migrations, keep its data, and go on working; and a new database must get
//! the very schema that history built.

use std::time::Duration;

use phantom_domain::{Analysis, Fingerprint, ScanId, Severity};
use phantom_kit::time::now_micros;
use phantom_layers::Tenant;
use phantom_notifier::repository::{
    NotificationRecord, NotificationRepository as _, SqlNotificationRepository,
};
use phantom_proto::pb::ScanState;
use phantom_scan_orchestrator::repository::{
    FindingRecord, ScanRecord, ScanRepository as _, SqlScanRepository, conformance::sample_scan,
};
use phantom_storage::{Database, Dialect, Migrator, testing};
use phantom_vuln_analyzer::repository::{AnalysisRepository as _, SqlAnalysisRepository};
use sqlx::Row as _;

/// The shared migration history of versions 1-7.
static LEGACY: Migrator = sqlx::migrate!("fixtures/legacy-migrations");

/// Every service's migrations, as `phantom migrate` applies them.
fn migrators() -> [&'static Migrator; 3] {
    [
        phantom_scan_orchestrator::repository::migrator(),
        phantom_vuln_analyzer::repository::migrator(),
        phantom_notifier::repository::migrator(),
    ]
}

/// The tables of the legacy history.
const TABLES: [&str; 6] = [
    "scans",
    "findings",
    "analyses",
    "enrichment_queue",
    "room_sequences",
    "notifications",
];

fn finding(scan_id: &ScanId, tenant: &Tenant) -> FindingRecord {
    FindingRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.clone(),
        scan_id: scan_id.clone(),
        target: "127.0.0.1".into(),
        hostname: String::new(),
        port: 22,
        protocol: "tcp".into(),
        service: "ssh".into(),
        banner: "SSH-2.0-OpenSSH_9.6".into(),
        engine: "builtin".into(),
        check_id: "open-port".into(),
        title: "Port 22/tcp open".into(),
        severity: Severity::Info,
        cvss_score: 0.0,
        cvss_vector: String::new(),
        cve_ids: vec![],
        fingerprint: Fingerprint::new("fp-legacy"),
        analysis: None,
        created_at: now_micros(),
        change: phantom_proto::pb::FindingChange::Unspecified,
    }
}

fn analysis(tenant: &Tenant) -> Analysis {
    Analysis {
        tenant: tenant.clone(),
        fingerprint: Fingerprint::new("fp-legacy"),
        score: 5.3,
        severity: Severity::Medium,
        analyzer: "rules".into(),
        confidence: 70,
        summary: "ssh exposed".into(),
        remediation: "restrict".into(),
        degraded: false,
        analyzed_at: now_micros(),
        impact: String::new(),
        suppression_suggested: false,
        suppression_reason: String::new(),
        cvss: None,
    }
}

fn notification(tenant: &Tenant) -> NotificationRecord {
    NotificationRecord {
        tenant: tenant.clone(),
        room: "scans".into(),
        sequence: 0,
        id: uuid::Uuid::now_v7().to_string(),
        priority: 2,
        kind: "scan.finished".into(),
        payload: r#"{"state": "succeeded"}"#.into(),
        created_at: now_micros(),
        severity: 0,
    }
}

/// Versions recorded in `_sqlx_migrations`, in order.
async fn versions(db: &Database) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Stores `scan` with the INSERT of the legacy schema's time (the columns it had).
async fn insert_legacy_scan(db: &Database, scan: &ScanRecord) {
    sqlx::query(
        "INSERT INTO scans (id, tenant, state, targets, resolved, ports, scanner, \
         progress_percent, findings_count, probes_total, probes_done, idempotency_key, \
         error, request_id, created_at, started_at, finished_at, owner, lease_until, claims, \
         trace_context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21)",
    )
    .bind(scan.id.to_string())
    .bind(scan.tenant.to_string())
    .bind(i64::from(scan.state as i32))
    .bind(serde_json::to_string(&scan.targets).unwrap())
    .bind(serde_json::to_string(&scan.resolved).unwrap())
    .bind(scan.ports.clone())
    .bind(scan.scanner.clone())
    .bind(i64::from(scan.progress_percent))
    .bind(i64::try_from(scan.findings_count).unwrap())
    .bind(i64::try_from(scan.probes_total).unwrap())
    .bind(i64::try_from(scan.probes_done).unwrap())
    .bind(scan.idempotency_key.clone())
    .bind(scan.error.clone())
    .bind(scan.request_id.clone())
    .bind(scan.created_at)
    .bind(scan.started_at)
    .bind(scan.finished_at)
    .bind(scan.owner.clone())
    .bind(scan.lease_until)
    .bind(i64::try_from(scan.claims).unwrap())
    .bind(scan.trace_context.clone())
    .execute(db.pool())
    .await
    .unwrap();
}

/// Stores `f` with the INSERT of the legacy schema's time.
async fn insert_legacy_finding(db: &Database, f: &FindingRecord) {
    sqlx::query(
        "INSERT INTO findings (id, tenant, scan_id, target, hostname, port, protocol, service, \
         banner, engine, check_id, title, severity, cvss_score, cvss_vector, cve_ids, \
         fingerprint, analysis, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19)",
    )
    .bind(f.id.clone())
    .bind(f.tenant.to_string())
    .bind(f.scan_id.to_string())
    .bind(f.target.clone())
    .bind(f.hostname.clone())
    .bind(i64::from(f.port))
    .bind(f.protocol.clone())
    .bind(f.service.clone())
    .bind(f.banner.clone())
    .bind(f.engine.clone())
    .bind(f.check_id.clone())
    .bind(f.title.clone())
    .bind(i64::from(f.severity.as_i32()))
    .bind(f.cvss_score)
    .bind(f.cvss_vector.clone())
    .bind(serde_json::to_string(&f.cve_ids).unwrap())
    .bind(f.fingerprint.to_string())
    .bind(None::<String>)
    .bind(f.created_at)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Stores `a` as the analyzer did before analyses kept their CVSS vector.
async fn insert_legacy_analysis(db: &Database, a: &Analysis) {
    sqlx::query(
        "INSERT INTO analyses (tenant, fingerprint, score, severity, analyzer, confidence, \
         summary, remediation, degraded, analyzed_at, impact, suppression_suggested, \
         suppression_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(a.tenant.to_string())
    .bind(a.fingerprint.to_string())
    .bind(a.score)
    .bind(i64::from(a.severity.as_i32()))
    .bind(a.analyzer.clone())
    .bind(i64::from(a.confidence))
    .bind(a.summary.clone())
    .bind(a.remediation.clone())
    .bind(i64::from(a.degraded))
    .bind(a.analyzed_at)
    .bind(a.impact.clone())
    .bind(i64::from(a.suppression_suggested))
    .bind(a.suppression_reason.clone())
    .execute(db.pool())
    .await
    .unwrap();
}

/// Builds `url` with the legacy history, stores one of everything with the queries of the
/// time (unchanged since), then opens it as every service does and reads it all back.
async fn a_legacy_database_keeps_its_data(url: &str) {
    let t = Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let scan = sample_scan(&t);
    let found = finding(&scan.id, &t);
    let verdict = analysis(&t);
    let first = {
        let db = Database::open_url(url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        LEGACY.run(db.pool()).await.unwrap();
        assert_eq!(versions(&db).await, (1..=7).collect::<Vec<_>>());
        let scans = SqlScanRepository::new(db.clone());
        insert_legacy_scan(&db, &scan).await;
        insert_legacy_finding(&db, &found).await;
        scans
            .set_finding_analysis(&t, &found.id, &verdict)
            .await
            .unwrap();
        insert_legacy_analysis(&db, &verdict).await;
        let analyses = SqlAnalysisRepository::new(db.clone());
        analyses
            .enqueue_enrichment(&t, &found.fingerprint, "payload", now_micros())
            .await
            .unwrap();
        SqlNotificationRepository::new(db.clone())
            .append_notification(&notification(&t))
            .await
            .unwrap()
    };

    // Each service migrates on its own, in any order, and again at its next start.
    let db = Database::open_url(url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    for _ in 0..2 {
        db.migrate(phantom_notifier::repository::migrator())
            .await
            .unwrap();
        db.migrate(phantom_vuln_analyzer::repository::migrator())
            .await
            .unwrap();
        db.migrate(phantom_scan_orchestrator::repository::migrator())
            .await
            .unwrap();
    }
    let applied = versions(&db).await;
    assert_eq!(applied[..7], (1..=7).collect::<Vec<_>>());
    // The legacy seven, the three baselines, and what came after them: the scans' hosts
    // column (#14), the notifier's publish keys and the scans' checkpoints (#15), the
    // analyses' CVSS vector, the assets and the alert rules (#18).
    assert_eq!(applied.len(), 7 + 3 + 6, "{applied:?}");

    let scans = SqlScanRepository::new(db.clone());
    assert_eq!(scans.get_scan(&t, &scan.id).await.unwrap(), Some(scan));
    let listed = scans
        .list_findings(&t, &found.scan_id, Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        listed,
        vec![FindingRecord {
            analysis: Some(verdict.clone()),
            severity: Severity::Medium,
            cvss_score: 5.3,
            ..found
        }]
    );
    let analyses = SqlAnalysisRepository::new(db.clone());
    assert_eq!(
        analyses
            .get_analysis(&t, &Fingerprint::new("fp-legacy"))
            .await
            .unwrap(),
        Some(verdict)
    );
    assert!(analyses.enrichment_backlog().await.unwrap() >= 1);
    let notifications = SqlNotificationRepository::new(db.clone());
    assert_eq!(
        notifications
            .notifications_after(&t, "scans", 0, 10, 1 << 20)
            .await
            .unwrap(),
        vec![first.clone()]
    );
    // And it goes on: the room's sequence continues, new scans are stored.
    let second = notifications
        .append_notification(&notification(&t))
        .await
        .unwrap();
    assert_eq!(second.sequence, first.sequence + 1);
    let next = sample_scan(&t);
    scans.insert_scan(&next).await.unwrap();
    scans
        .finish_scan(&t, &next.id, ScanState::Cancelled, "", now_micros(), None)
        .await
        .unwrap();
}

/// The schema of the legacy tables, as text: columns (name, type, nullability, default, key),
/// indexes, and constraints, in a stable order.
async fn schema(db: &Database) -> Vec<String> {
    let mut described = Vec::new();
    for table in TABLES {
        let queries: &[&'static str] = match db.dialect() {
            Dialect::Sqlite => &[
                "SELECT name || ' ' || type || ' notnull=' || \"notnull\" || ' default=' || \
                 COALESCE(dflt_value, 'NULL') || ' pk=' || pk AS d \
                 FROM pragma_table_info($1) ORDER BY cid",
                "SELECT il.name || ' unique=' || il.\"unique\" || ' partial=' || il.partial || \
                 ' ' || ii.seqno || ':' || ii.name AS d \
                 FROM pragma_index_list($1) il, pragma_index_info(il.name) ii \
                 WHERE il.origin = 'c' ORDER BY il.name, ii.seqno",
                "SELECT \"table\" || '(' || \"to\" || ') from ' || \"from\" || ' on delete ' || \
                 on_delete AS d FROM pragma_foreign_key_list($1) ORDER BY id, seq",
            ],
            Dialect::Postgres => &[
                "SELECT column_name || ' ' || data_type || ' nullable=' || is_nullable || \
                 ' default=' || COALESCE(column_default, 'NULL') AS d \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                "SELECT indexdef AS d FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
                "SELECT conname || ' ' || pg_get_constraintdef(oid) AS d FROM pg_constraint \
                 WHERE conrelid = $1::regclass ORDER BY conname",
            ],
        };
        for query in queries {
            let rows = sqlx::query(*query)
                .bind(table)
                .fetch_all(db.pool())
                .await
                .unwrap();
            for row in rows {
                described.push(format!("{table}: {}", row.get::<String, _>("d")));
            }
        }
    }
    // 73 columns, and indexes besides: an empty answer must not pass for a match.
    assert!(described.len() > 73, "{described:#?}");
    described
}

/// A database the services' migrations build has the schema the legacy history built, once
/// the migrations that came after it are applied to both (as services apply them).
async fn a_new_database_gets_the_legacy_schema(legacy: Database, new: Database) {
    LEGACY.run(legacy.pool()).await.unwrap();
    for migrator in migrators() {
        legacy.migrate(migrator).await.unwrap();
        new.migrate(migrator).await.unwrap();
    }
    assert_eq!(schema(&new).await, schema(&legacy).await);
}

#[tokio::test]
async fn a_legacy_sqlite_database_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    a_legacy_database_keeps_its_data(&testing::sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn a_legacy_postgres_database_keeps_its_data() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    a_legacy_database_keeps_its_data(&url).await;
}

#[tokio::test]
async fn a_new_sqlite_database_gets_the_legacy_schema() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a_new_database_gets_the_legacy_schema(
        testing::sqlite(a.path()).await,
        testing::sqlite(b.path()).await,
    )
    .await;
}

#[tokio::test]
async fn a_new_postgres_database_gets_the_legacy_schema() {
    let (Some(legacy), Some(new)) = (
        testing::fresh_postgres().await,
        testing::fresh_postgres().await,
    ) else {
        return;
    };
    a_new_database_gets_the_legacy_schema(legacy, new).await;
}
