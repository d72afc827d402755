//! [`Store`] over sqlx's `Any` driver: SQLite or PostgreSQL, chosen by URL at start-up.
//!
//! Queries use `$n` placeholders, which both databases accept, and only the types both share
//! (BIGINT, DOUBLE PRECISION, TEXT), so each query is written once.

use std::time::Duration;

use async_trait::async_trait;
use phantom_proto::pb::{ScanState, Severity};
use sqlx::{
    AnyPool, Row,
    any::{AnyPoolOptions, AnyRow},
};

use super::{
    AnalysisRecord, EnrichmentJob, FindingRecord, InsertScan, NotificationRecord, ScanProgress,
    ScanRecord, Store, StoreError,
};
use crate::config::StorageConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: &'static str,
}

impl SqlStore {
    /// The database system, as OpenTelemetry names it (`db.system.name`).
    fn system(&self) -> &'static str {
        if self.backend == "postgres" {
            "postgresql"
        } else {
            "sqlite"
        }
    }

    /// Connects to the configured database (SQLite under `data_dir` when no URL is set) and
    /// applies pending migrations.
    pub async fn connect(config: &StorageConfig) -> Result<Self, StoreError> {
        Self::connect_url(
            &Self::url(config)?,
            config.max_connections,
            config.acquire_timeout,
        )
        .await
    }

    /// The URL of the configured database: `DATABASE_URL`, or SQLite in the data directory
    /// (created if needed, private to the user running PHANTOM: see [`private_sqlite_file`]).
    fn url(config: &StorageConfig) -> Result<String, StoreError> {
        if !config.database_url.is_empty() {
            return Ok(config.database_url.clone());
        }
        let file = private_sqlite_file(&config.data_dir)?;
        Ok(format!("sqlite://{}?mode=rwc", file.display()))
    }

    /// Connects to `url` and applies pending migrations.
    pub async fn connect_url(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let store = Self::open_url(url, max_connections, acquire_timeout).await?;
        MIGRATOR.run(&store.pool).await?;
        Ok(store)
    }

    /// Opens the configured database without touching its schema: for readers that must not
    /// migrate (the health-aggregator's probe).
    pub async fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        Self::open_url(
            &Self::url(config)?,
            config.max_connections,
            config.acquire_timeout,
        )
        .await
    }

    async fn open_url(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        };
        // sqlx's SQLite defaults give a 5 s busy timeout and foreign keys, but leave the
        // journal as SQLite's DELETE: WAL is asked for here. Readers then never block the
        // writer, and with `synchronous = NORMAL` a commit is one fsync of the log rather
        // than several (a committed transaction is still durable across a process crash; an
        // OS crash may lose the last ones, as with PostgreSQL's default of a WAL flush).
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout);
        if backend == "sqlite" {
            // Each pooled connection keeps its own page cache (SQLite's default: 2 MB): a burst
            // of replays that opened every connection kept about 4 MiB each, 35 MiB of a
            // 256 MiB pod, long after it ended. A 1 MiB cache per connection, and connections
            // idle for 30 s closed, give that memory back.
            options = options
                .idle_timeout(SQLITE_IDLE_TIMEOUT)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        use sqlx::Executor as _;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA cache_size = -1024").await?;
                        Ok(())
                    })
                });
        }
        let pool = options.connect(url).await?;
        Ok(Self { pool, backend })
    }
}

/// How long an idle SQLite connection (and its page cache) is kept.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The embedded database's file name in the data directory.
const SQLITE_FILE: &str = "phantom.db";

/// The part of a [`NotificationRecord::footprint`] that is not its text.
const FIXED_BYTES: u64 = std::mem::size_of::<NotificationRecord>() as u64;

/// The bytes of a notification's text: its footprint without [`FIXED_BYTES`] (stored as
/// `text_bytes`, so that replay pages are sized without reading payloads).
fn text_bytes(n: &NotificationRecord) -> u64 {
    (n.footprint() as u64).saturating_sub(FIXED_BYTES)
}

/// Files SQLite keeps beside the database (write-ahead log, shared memory, rollback journal).
const SQLITE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The embedded database in `dir`, made private to the user running PHANTOM whatever the
/// umask: the directory 0700 when created here, the database file created 0600 before sqlx
/// opens it (SQLite gives its `-wal` and `-shm` files the database's mode).
///
/// A database or companion file left readable by others (by an older version) is tightened
/// to 0600, and so is an existing directory that holds nothing but these files; a directory
/// that holds anything else (a home directory, `/tmp`) is not PHANTOM's to change, and is
/// only warned about.
fn private_sqlite_file(dir: &std::path::Path) -> Result<std::path::PathBuf, StoreError> {
    let dir_error = |source| StoreError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let file = dir.join(SQLITE_FILE);
    let file_error = |source| StoreError::DataFile {
        path: file.clone(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let existed = dir.is_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_error)?;
        if !existed {
            // The umask may have taken more than group and other bits away.
            set_mode(dir, 0o700).map_err(dir_error)?;
        } else {
            tighten_dir(dir).map_err(dir_error)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&file)
            .map_err(file_error)?;
        tighten(&file).map_err(file_error)?;
        for suffix in SQLITE_COMPANIONS {
            let companion = dir.join(format!("{SQLITE_FILE}{suffix}"));
            if companion.exists() {
                tighten(&companion).map_err(|source| StoreError::DataFile {
                    path: companion.clone(),
                    source,
                })?;
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    Ok(file)
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes a database file 0600 if it is not already, saying so.
#[cfg(unix)]
fn tighten(file: &std::path::Path) -> std::io::Result<()> {
    let mode = mode_of(file)?;
    if mode != 0o600 {
        set_mode(file, 0o600)?;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %file.display(),
                mode = format!("{mode:o}"),
                "Database file was open to other users; it is now 0600"
            );
        }
    }
    Ok(())
}

/// Makes an existing data directory 0700 if it holds only the database's files; warns if it
/// is open to others and holds anything else.
#[cfg(unix)]
fn tighten_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mode = mode_of(dir)?;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = std::fs::read_dir(dir)?.all(|entry| {
        entry.is_ok_and(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == SQLITE_FILE
                || SQLITE_COMPANIONS
                    .iter()
                    .any(|s| name.strip_prefix(SQLITE_FILE) == Some(s))
        })
    });
    if ours {
        match set_mode(dir, 0o700) {
            Ok(()) => tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "Data directory was open to other users; it is now 0700"
            ),
            // A volume mounted for a group (Kubernetes' fsGroup) belongs to root: not ours to
            // change, and the database files in it are private anyway.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "Data directory is open to other users and not ours to change: left as it is (the database files are 0600)"
            ),
            Err(e) => return Err(e),
        }
    } else {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{mode:o}"),
            "Data directory is open to other users and holds other files: left as it is (the database files are 0600)"
        );
    }
    Ok(())
}

fn u64_of(row: &AnyRow, col: &'static str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        column: col,
        message: format!("negative value {v}"),
    })
}

fn json_of<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &'static str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        column: col,
        message: e.to_string(),
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn scan_of(row: &AnyRow) -> Result<ScanRecord, StoreError> {
    let state: i64 = row.try_get("state")?;
    let state = i32::try_from(state)
        .ok()
        .and_then(|s| ScanState::try_from(s).ok())
        .ok_or(StoreError::Corrupt {
            column: "scans.state",
            message: format!("unknown state {state}"),
        })?;
    Ok(ScanRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        state,
        targets: json_of(row, "targets")?,
        resolved: json_of(row, "resolved")?,
        ports: row.try_get("ports")?,
        scanner: row.try_get("scanner")?,
        progress_percent: u32::try_from(u64_of(row, "progress_percent")?).unwrap_or(100),
        findings_count: u64_of(row, "findings_count")?,
        probes_total: u64_of(row, "probes_total")?,
        probes_done: u64_of(row, "probes_done")?,
        idempotency_key: row.try_get("idempotency_key")?,
        error: row.try_get("error")?,
        request_id: row.try_get("request_id")?,
        trace_context: row.try_get("trace_context")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        owner: row.try_get("owner")?,
        lease_until: row.try_get("lease_until")?,
        claims: u64_of(row, "claims")?,
    })
}

fn finding_of(row: &AnyRow) -> Result<FindingRecord, StoreError> {
    let severity: i64 = row.try_get("severity")?;
    let analysis: Option<String> = row.try_get("analysis")?;
    Ok(FindingRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        scan_id: row.try_get("scan_id")?,
        target: row.try_get("target")?,
        hostname: row.try_get("hostname")?,
        port: u16::try_from(u64_of(row, "port")?).map_err(|_| StoreError::Corrupt {
            column: "findings.port",
            message: "port above 65535".into(),
        })?,
        protocol: row.try_get("protocol")?,
        service: row.try_get("service")?,
        banner: row.try_get("banner")?,
        engine: row.try_get("engine")?,
        check_id: row.try_get("check_id")?,
        title: row.try_get("title")?,
        severity: i32::try_from(severity)
            .ok()
            .and_then(|s| Severity::try_from(s).ok())
            .unwrap_or(Severity::Unspecified),
        cvss_score: row.try_get("cvss_score")?,
        cvss_vector: row.try_get("cvss_vector")?,
        cve_ids: json_of(row, "cve_ids")?,
        fingerprint: row.try_get("fingerprint")?,
        analysis: analysis
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                column: "findings.analysis",
                message: e.to_string(),
            })?,
        created_at: row.try_get("created_at")?,
    })
}

fn analysis_of(row: &AnyRow) -> Result<AnalysisRecord, StoreError> {
    analysis_with_prefix(row, "")
}

/// The analysis in the columns named `<prefix><column>` (a joined table's, aliased).
fn analysis_with_prefix(row: &AnyRow, prefix: &str) -> Result<AnalysisRecord, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    let severity: i64 = row.try_get(col("severity").as_str())?;
    let degraded: i64 = row.try_get(col("degraded").as_str())?;
    let suppression: i64 = row.try_get(col("suppression_suggested").as_str())?;
    let confidence: i64 = row.try_get(col("confidence").as_str())?;
    Ok(AnalysisRecord {
        tenant: row.try_get(col("tenant").as_str())?,
        fingerprint: row.try_get(col("fingerprint").as_str())?,
        score: row.try_get(col("score").as_str())?,
        severity: i32::try_from(severity).unwrap_or(0),
        analyzer: row.try_get(col("analyzer").as_str())?,
        confidence: u32::try_from(confidence).unwrap_or(0),
        summary: row.try_get(col("summary").as_str())?,
        remediation: row.try_get(col("remediation").as_str())?,
        degraded: degraded != 0,
        analyzed_at: row.try_get(col("analyzed_at").as_str())?,
        impact: row.try_get(col("impact").as_str())?,
        suppression_suggested: suppression != 0,
        suppression_reason: row.try_get(col("suppression_reason").as_str())?,
    })
}

/// A finding read with its fingerprint's current analysis joined (columns `a_*`): when the
/// verdict attached at scan time was degraded and has since been enriched, the enriched one
/// is what the finding shows.
fn finding_with_current_analysis(row: &AnyRow) -> Result<FindingRecord, StoreError> {
    let mut finding = finding_of(row)?;
    let joined: Option<String> = row.try_get("a_analyzer")?;
    if joined.is_some() && finding.analysis.as_ref().is_some_and(|a| a.degraded) {
        let current = analysis_with_prefix(row, "a_")?;
        if !current.degraded {
            finding.analysis = Some(current);
        }
    }
    Ok(finding)
}

fn notification_of(row: &AnyRow) -> Result<NotificationRecord, StoreError> {
    let priority: i64 = row.try_get("priority")?;
    Ok(NotificationRecord {
        tenant: row.try_get("tenant")?,
        room: row.try_get("room")?,
        sequence: u64_of(row, "sequence")?,
        id: row.try_get("id")?,
        priority: i32::try_from(priority).unwrap_or(0),
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        severity: i32::try_from(row.try_get::<i64, _>("severity")?).unwrap_or(0),
    })
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `SELECT <every scan column> FROM scans <rest>`, as one `&'static str` (sqlx takes only
/// static SQL without an explicit `AssertSqlSafe`).
macro_rules! scan_columns {
    () => {
        "id, tenant, state, targets, resolved, ports, scanner, progress_percent, \
         findings_count, probes_total, probes_done, idempotency_key, error, request_id, \
         created_at, started_at, finished_at, owner, lease_until, claims, trace_context"
    };
}

/// `SELECT <every scan column> FROM scans <rest>`.
macro_rules! select_scans {
    ($rest:literal) => {
        concat!("SELECT ", scan_columns!(), " FROM scans ", $rest)
    };
}

/// The job claim: takes the lease of claimable scans and returns them. `$lock` is the row
/// lock clause of the subquery (PostgreSQL's `FOR UPDATE SKIP LOCKED`; none on SQLite).
macro_rules! claim_scans {
    ($lock:literal) => {
        concat!(
            "UPDATE scans SET owner = $1, lease_until = $2, claims = claims + 1 \
             WHERE id IN (SELECT id FROM scans WHERE (state = $3 OR state = $4) \
             AND lease_until < $5 ORDER BY id LIMIT $6 ",
            $lock,
            ") RETURNING ",
            scan_columns!()
        )
    };
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "scan_counts", otel.kind = "client", db.system.name = self.system(), db.operation.name = "scan_counts"))]
    async fn scan_counts(&self) -> Result<Vec<(ScanState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM scans GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let state: i64 = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                Ok((
                    ScanState::try_from(i32::try_from(state).unwrap_or(0))
                        .unwrap_or(ScanState::Unspecified),
                    n.unsigned_abs(),
                ))
            })
            .collect()
    }

    fn pool_stats(&self) -> Option<super::PoolStats> {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(super::PoolStats {
            size,
            idle,
            in_use: size.saturating_sub(idle),
            max: self.pool.options().get_max_connections(),
        })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "ping", otel.kind = "client", db.system.name = self.system(), db.operation.name = "ping"))]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "insert_scan", otel.kind = "client", db.system.name = self.system(), db.operation.name = "insert_scan"))]
    async fn insert_scan(&self, scan: &ScanRecord) -> Result<InsertScan, StoreError> {
        let result = sqlx::query(
            "INSERT INTO scans (id, tenant, state, targets, resolved, ports, scanner, \
             progress_percent, findings_count, probes_total, probes_done, idempotency_key, \
             error, request_id, created_at, started_at, finished_at, owner, lease_until, claims, \
             trace_context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21)",
        )
        .bind(scan.id.clone())
        .bind(scan.tenant.clone())
        .bind(i64::from(scan.state as i32))
        .bind(serde_json::to_string(&scan.targets).expect("strings serialize"))
        .bind(serde_json::to_string(&scan.resolved).expect("addresses serialize"))
        .bind(scan.ports.clone())
        .bind(scan.scanner.clone())
        .bind(i64::from(scan.progress_percent))
        .bind(to_i64(scan.findings_count))
        .bind(to_i64(scan.probes_total))
        .bind(to_i64(scan.probes_done))
        .bind(scan.idempotency_key.clone())
        .bind(scan.error.clone())
        .bind(scan.request_id.clone())
        .bind(scan.created_at)
        .bind(scan.started_at)
        .bind(scan.finished_at)
        .bind(scan.owner.clone())
        .bind(scan.lease_until)
        .bind(to_i64(scan.claims))
        .bind(scan.trace_context.clone())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(InsertScan::Inserted),
            Err(err) if is_unique_violation(&err) && scan.idempotency_key.is_some() => {
                let row = sqlx::query(select_scans!("WHERE tenant = $1 AND idempotency_key = $2"))
                    .bind(scan.tenant.clone())
                    .bind(scan.idempotency_key.clone())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(InsertScan::Existing(Box::new(scan_of(&row)?)))
            }
            Err(err) => Err(err.into()),
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "get_scan", otel.kind = "client", db.system.name = self.system(), db.operation.name = "get_scan"))]
    async fn get_scan(&self, tenant: &str, id: &str) -> Result<Option<ScanRecord>, StoreError> {
        let row = sqlx::query(select_scans!("WHERE tenant = $1 AND id = $2"))
            .bind(tenant.to_owned())
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(scan_of).transpose()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list_scans", otel.kind = "client", db.system.name = self.system(), db.operation.name = "list_scans"))]
    async fn list_scans(
        &self,
        tenant: &str,
        state: Option<ScanState>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError> {
        // 0 stands for "any state" and "" for "from the newest": one static query serves all
        // combinations of filters.
        let rows = sqlx::query(select_scans!(
            "WHERE tenant = $1 AND ($2 = 0 OR state = $3) AND ($4 = '' OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(tenant.to_owned())
        .bind(state.map_or(0, |s| i64::from(s as i32)))
        .bind(state.map_or(0, |s| i64::from(s as i32)))
        .bind(before_id.unwrap_or_default().to_owned())
        .bind(before_id.unwrap_or_default().to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(scan_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_scans", otel.kind = "client", db.system.name = self.system(), db.operation.name = "claim_scans"))]
    async fn claim_scans(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError> {
        // PostgreSQL: replicas claiming at once skip each other's rows instead of waiting or
        // taking the same scan. SQLite: one writer at a time, so the plain subquery is enough.
        let sql = if self.backend == "postgres" {
            claim_scans!("FOR UPDATE SKIP LOCKED")
        } else {
            claim_scans!("")
        };
        let rows = sqlx::query(sql)
            .bind(owner.to_owned())
            .bind(lease_until)
            .bind(i64::from(ScanState::Pending as i32))
            .bind(i64::from(ScanState::Running as i32))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut scans: Vec<ScanRecord> = rows.iter().map(scan_of).collect::<Result<_, _>>()?;
        scans.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(scans)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "renew_lease", otel.kind = "client", db.system.name = self.system(), db.operation.name = "renew_lease"))]
    async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE scans SET lease_until = $1 WHERE id = $2 AND owner = $3 \
             AND (state = $4 OR state = $5)",
        )
        .bind(lease_until)
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "unfinished_scans", otel.kind = "client", db.system.name = self.system(), db.operation.name = "unfinished_scans"))]
    async fn unfinished_scans(&self) -> Result<Vec<ScanRecord>, StoreError> {
        let rows = sqlx::query(select_scans!("WHERE state = $1 OR state = $2 ORDER BY id"))
            .bind(i64::from(ScanState::Pending as i32))
            .bind(i64::from(ScanState::Running as i32))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(scan_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "mark_scan_running", otel.kind = "client", db.system.name = self.system(), db.operation.name = "mark_scan_running"))]
    async fn mark_scan_running(
        &self,
        tenant: &str,
        id: &str,
        probes_total: u64,
        now: i64,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE scans SET state = $1, probes_total = $2, \
             started_at = COALESCE(started_at, $3) \
             WHERE tenant = $4 AND id = $5 AND (state = $6 OR state = $7) AND owner = $8",
        )
        .bind(i64::from(ScanState::Running as i32))
        .bind(to_i64(probes_total))
        .bind(now)
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_scan_progress", otel.kind = "client", db.system.name = self.system(), db.operation.name = "record_scan_progress"))]
    async fn record_scan_progress(
        &self,
        tenant: &str,
        id: &str,
        progress: ScanProgress,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE scans SET probes_done = $1, progress_percent = $2, findings_count = $3 \
             WHERE tenant = $4 AND id = $5 AND state = $6 AND owner = $7",
        )
        .bind(to_i64(progress.probes_done))
        .bind(i64::from(progress.progress_percent))
        .bind(to_i64(progress.findings_count))
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "finish_scan", otel.kind = "client", db.system.name = self.system(), db.operation.name = "finish_scan"))]
    async fn finish_scan(
        &self,
        tenant: &str,
        id: &str,
        state: ScanState,
        error: &str,
        now: i64,
        owner: Option<&str>,
    ) -> Result<Option<ScanRecord>, StoreError> {
        // Success means every probe ran: progress is exactly 100 then, and only then. A
        // runner finishes only a scan it still holds; a cancel (no owner) finishes any.
        let done = sqlx::query(
            "UPDATE scans SET state = $1, error = $2, finished_at = $3, lease_until = 0, \
             progress_percent = CASE WHEN $4 = 1 THEN 100 ELSE progress_percent END, \
             probes_done = CASE WHEN $5 = 1 THEN probes_total ELSE probes_done END, \
             findings_count = (SELECT COUNT(*) FROM findings f WHERE f.scan_id = scans.id) \
             WHERE tenant = $6 AND id = $7 AND (state = $8 OR state = $9) \
             AND ($10 = '' OR owner = $11)",
        )
        .bind(i64::from(state as i32))
        .bind(error.to_owned())
        .bind(now)
        .bind(i64::from(state == ScanState::Succeeded))
        .bind(i64::from(state == ScanState::Succeeded))
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.unwrap_or_default().to_owned())
        .bind(owner.unwrap_or_default().to_owned())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_scan(tenant, id).await
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "insert_findings", otel.kind = "client", db.system.name = self.system(), db.operation.name = "insert_findings"))]
    async fn insert_findings(&self, findings: &[FindingRecord]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for f in findings {
            let done = sqlx::query(
                "INSERT INTO findings (id, tenant, scan_id, target, hostname, port, protocol, \
                 service, banner, engine, check_id, title, severity, cvss_score, cvss_vector, \
                 cve_ids, fingerprint, analysis, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19) ON CONFLICT (scan_id, fingerprint) DO NOTHING",
            )
            .bind(f.id.clone())
            .bind(f.tenant.clone())
            .bind(f.scan_id.clone())
            .bind(f.target.clone())
            .bind(f.hostname.clone())
            .bind(i64::from(f.port))
            .bind(f.protocol.clone())
            .bind(f.service.clone())
            .bind(f.banner.clone())
            .bind(f.engine.clone())
            .bind(f.check_id.clone())
            .bind(f.title.clone())
            .bind(i64::from(f.severity as i32))
            .bind(f.cvss_score)
            .bind(f.cvss_vector.clone())
            .bind(serde_json::to_string(&f.cve_ids).expect("strings serialize"))
            .bind(f.fingerprint.clone())
            .bind(
                f.analysis
                    .as_ref()
                    .map(|a| serde_json::to_string(a).expect("analysis serializes")),
            )
            .bind(f.created_at)
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "set_finding_analysis", otel.kind = "client", db.system.name = self.system(), db.operation.name = "set_finding_analysis"))]
    async fn set_finding_analysis(
        &self,
        tenant: &str,
        finding_id: &str,
        analysis: &AnalysisRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE findings SET analysis = $1, severity = $2, cvss_score = $3 \
             WHERE tenant = $4 AND id = $5",
        )
        .bind(serde_json::to_string(analysis).expect("analysis serializes"))
        .bind(i64::from(analysis.severity))
        .bind(analysis.score)
        .bind(tenant.to_owned())
        .bind(finding_id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list_findings", otel.kind = "client", db.system.name = self.system(), db.operation.name = "list_findings"))]
    async fn list_findings(
        &self,
        tenant: &str,
        scan_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FindingRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, \
             f.service, f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, \
             f.cvss_vector, f.cve_ids, f.fingerprint, f.analysis, f.created_at, \
             a.tenant AS a_tenant, a.fingerprint AS a_fingerprint, a.score AS a_score, \
             a.severity AS a_severity, a.analyzer AS a_analyzer, a.confidence AS a_confidence, \
             a.summary AS a_summary, a.remediation AS a_remediation, a.degraded AS a_degraded, \
             a.analyzed_at AS a_analyzed_at, a.impact AS a_impact, \
             a.suppression_suggested AS a_suppression_suggested, \
             a.suppression_reason AS a_suppression_reason \
             FROM findings f \
             LEFT JOIN analyses a ON a.tenant = f.tenant AND a.fingerprint = f.fingerprint \
             WHERE f.tenant = $1 AND f.scan_id = $2 AND f.id > $3 ORDER BY f.id LIMIT $4",
        )
        .bind(tenant.to_owned())
        .bind(scan_id.to_owned())
        .bind(after_id.unwrap_or_default().to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(finding_with_current_analysis).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "unanalyzed_findings", otel.kind = "client", db.system.name = self.system(), db.operation.name = "unanalyzed_findings"))]
    async fn unanalyzed_findings(&self, limit: u32) -> Result<Vec<FindingRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, \
             f.service, f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, \
             f.cvss_vector, f.cve_ids, f.fingerprint, f.analysis, f.created_at \
             FROM findings f JOIN scans s ON s.id = f.scan_id \
             WHERE f.analysis IS NULL AND s.state = $1 ORDER BY f.id LIMIT $2",
        )
        .bind(i64::from(ScanState::Succeeded as i32))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(finding_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "get_analysis", otel.kind = "client", db.system.name = self.system(), db.operation.name = "get_analysis"))]
    async fn get_analysis(
        &self,
        tenant: &str,
        fingerprint: &str,
    ) -> Result<Option<AnalysisRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, fingerprint, score, severity, analyzer, confidence, summary, \
             remediation, degraded, analyzed_at, impact, suppression_suggested, \
             suppression_reason FROM analyses WHERE tenant = $1 AND fingerprint = $2",
        )
        .bind(tenant.to_owned())
        .bind(fingerprint.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(analysis_of).transpose()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "put_analysis", otel.kind = "client", db.system.name = self.system(), db.operation.name = "put_analysis"))]
    async fn put_analysis(&self, a: &AnalysisRecord) -> Result<AnalysisRecord, StoreError> {
        sqlx::query(
            "INSERT INTO analyses (tenant, fingerprint, score, severity, analyzer, confidence, \
             summary, remediation, degraded, analyzed_at, impact, suppression_suggested, \
             suppression_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant, fingerprint) DO NOTHING",
        )
        .bind(a.tenant.clone())
        .bind(a.fingerprint.clone())
        .bind(a.score)
        .bind(i64::from(a.severity))
        .bind(a.analyzer.clone())
        .bind(i64::from(a.confidence))
        .bind(a.summary.clone())
        .bind(a.remediation.clone())
        .bind(i64::from(a.degraded))
        .bind(a.analyzed_at)
        .bind(a.impact.clone())
        .bind(i64::from(a.suppression_suggested))
        .bind(a.suppression_reason.clone())
        .execute(&self.pool)
        .await?;
        self.get_analysis(&a.tenant, &a.fingerprint)
            .await?
            .ok_or(StoreError::Corrupt {
                column: "analyses",
                message: "analysis vanished after insert".into(),
            })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "upgrade_analysis", otel.kind = "client", db.system.name = self.system(), db.operation.name = "upgrade_analysis"))]
    async fn upgrade_analysis(&self, a: &AnalysisRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE analyses SET score = $1, severity = $2, analyzer = $3, confidence = $4, \
             summary = $5, remediation = $6, degraded = $7, analyzed_at = $8, impact = $9, \
             suppression_suggested = $10, suppression_reason = $11 \
             WHERE tenant = $12 AND fingerprint = $13 AND degraded = 1",
        )
        .bind(a.score)
        .bind(i64::from(a.severity))
        .bind(a.analyzer.clone())
        .bind(i64::from(a.confidence))
        .bind(a.summary.clone())
        .bind(a.remediation.clone())
        .bind(i64::from(a.degraded))
        .bind(a.analyzed_at)
        .bind(a.impact.clone())
        .bind(i64::from(a.suppression_suggested))
        .bind(a.suppression_reason.clone())
        .bind(a.tenant.clone())
        .bind(a.fingerprint.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "enqueue_enrichment", otel.kind = "client", db.system.name = self.system(), db.operation.name = "enqueue_enrichment"))]
    async fn enqueue_enrichment(
        &self,
        tenant: &str,
        fingerprint: &str,
        payload: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO enrichment_queue (tenant, fingerprint, payload, next_attempt_at, \
             enqueued_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, fingerprint) DO NOTHING",
        )
        .bind(tenant.to_owned())
        .bind(fingerprint.to_owned())
        .bind(payload.to_owned())
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_enrichments", otel.kind = "client", db.system.name = self.system(), db.operation.name = "claim_enrichments"))]
    async fn claim_enrichments(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<EnrichmentJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, fingerprint, payload, attempts, next_attempt_at \
             FROM enrichment_queue WHERE next_attempt_at <= $1 \
             ORDER BY next_attempt_at, enqueued_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let tenant: String = row.try_get("tenant")?;
            let fingerprint: String = row.try_get("fingerprint")?;
            let due: i64 = row.try_get("next_attempt_at")?;
            // Optimistic: only one replica moves a row from the time it read.
            let taken = sqlx::query(
                "UPDATE enrichment_queue SET next_attempt_at = $1 \
                 WHERE tenant = $2 AND fingerprint = $3 AND next_attempt_at = $4",
            )
            .bind(lease_until)
            .bind(tenant.clone())
            .bind(fingerprint.clone())
            .bind(due)
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                let attempts: i64 = row.try_get("attempts")?;
                claimed.push(EnrichmentJob {
                    tenant,
                    fingerprint,
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(claimed)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "finish_enrichment", otel.kind = "client", db.system.name = self.system(), db.operation.name = "finish_enrichment"))]
    async fn finish_enrichment(&self, tenant: &str, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM enrichment_queue WHERE tenant = $1 AND fingerprint = $2")
            .bind(tenant.to_owned())
            .bind(fingerprint.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "retry_enrichment", otel.kind = "client", db.system.name = self.system(), db.operation.name = "retry_enrichment"))]
    async fn retry_enrichment(
        &self,
        tenant: &str,
        fingerprint: &str,
        next_attempt_at: i64,
        failed: bool,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE enrichment_queue SET next_attempt_at = $1, attempts = attempts + $2, \
             last_error = $3 WHERE tenant = $4 AND fingerprint = $5",
        )
        .bind(next_attempt_at)
        .bind(i64::from(failed))
        .bind(error.chars().take(500).collect::<String>())
        .bind(tenant.to_owned())
        .bind(fingerprint.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "enrichment_backlog", otel.kind = "client", db.system.name = self.system(), db.operation.name = "enrichment_backlog"))]
    async fn enrichment_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM enrichment_queue")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unsigned_abs())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "append_notification", otel.kind = "client", db.system.name = self.system(), db.operation.name = "append_notification"))]
    async fn append_notification(
        &self,
        n: &NotificationRecord,
    ) -> Result<NotificationRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The upsert takes a row lock on the room's counter (PostgreSQL) or the database write
        // lock (SQLite), so concurrent publishers to one room get distinct, gap-free numbers.
        let row = sqlx::query(
            "INSERT INTO room_sequences (tenant, room, sequence) VALUES ($1, $2, 1) \
             ON CONFLICT (tenant, room) DO UPDATE SET sequence = room_sequences.sequence + 1 \
             RETURNING sequence",
        )
        .bind(n.tenant.clone())
        .bind(n.room.clone())
        .fetch_one(&mut *tx)
        .await?;
        let sequence = u64_of(&row, "sequence")?;
        sqlx::query(
            "INSERT INTO notifications (tenant, room, sequence, id, priority, kind, payload, \
             created_at, severity, text_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(n.tenant.clone())
        .bind(n.room.clone())
        .bind(to_i64(sequence))
        .bind(n.id.clone())
        .bind(i64::from(n.priority))
        .bind(n.kind.clone())
        .bind(n.payload.clone())
        .bind(n.created_at)
        .bind(i64::from(n.severity))
        .bind(to_i64(text_bytes(n)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NotificationRecord {
            sequence,
            ..n.clone()
        })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications_after", otel.kind = "client", db.system.name = self.system(), db.operation.name = "notifications_after"))]
    async fn notifications_after(
        &self,
        tenant: &str,
        room: &str,
        after: u64,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        // The page ends where the running sum of the records' footprints (their stored
        // `text_bytes` and the fixed part) passes the budget, decided over the first `limit`
        // rows' sizes alone: no payload is read that the page does not return. The first row
        // always comes.
        let rows = sqlx::query(
            "SELECT tenant, room, sequence, id, priority, kind, payload, created_at, severity \
             FROM notifications \
             WHERE tenant = $1 AND room = $2 AND sequence > $3 AND sequence <= ( \
               SELECT MAX(sequence) FROM ( \
                 SELECT sequence, ROW_NUMBER() OVER (ORDER BY sequence) AS n, \
                        SUM(text_bytes + $6) OVER (ORDER BY sequence) AS upto \
                 FROM (SELECT sequence, text_bytes FROM notifications \
                       WHERE tenant = $1 AND room = $2 AND sequence > $3 \
                       ORDER BY sequence LIMIT $4) AS firsts \
               ) AS sized WHERE n = 1 OR upto <= $5) \
             ORDER BY sequence",
        )
        .bind(tenant.to_owned())
        .bind(room.to_owned())
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .bind(to_i64(max_bytes))
        .bind(to_i64(FIXED_BYTES))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notification_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "prune_notifications", otel.kind = "client", db.system.name = self.system(), db.operation.name = "prune_notifications"))]
    async fn latest_notification_sequence(
        &self,
        tenant: &str,
        room: &str,
    ) -> Result<u64, StoreError> {
        let row =
            sqlx::query("SELECT sequence FROM room_sequences WHERE tenant = $1 AND room = $2")
                .bind(tenant.to_owned())
                .bind(room.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map_or(Ok(0), |r| u64_of(r, "sequence"))
    }

    async fn prune_notifications(
        &self,
        older_than: i64,
        keep_per_room: u64,
    ) -> Result<u64, StoreError> {
        let by_age = sqlx::query("DELETE FROM notifications WHERE created_at < $1")
            .bind(older_than)
            .execute(&self.pool)
            .await?;
        let by_count = sqlx::query(
            "DELETE FROM notifications WHERE sequence <= \
             (SELECT r.sequence FROM room_sequences r \
              WHERE r.tenant = notifications.tenant AND r.room = notifications.room) - $1",
        )
        .bind(to_i64(keep_per_room))
        .execute(&self.pool)
        .await?;
        Ok(by_age.rows_affected() + by_count.rows_affected())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The mode of `path` in octal, as `ls` and `chmod` say it.
    fn mode(path: &std::path::Path) -> String {
        let mode = mode_of(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        format!("{mode:o}")
    }

    fn config(dir: &std::path::Path) -> StorageConfig {
        StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        }
    }

    #[tokio::test]
    async fn a_fresh_sqlite_store_is_private_to_its_user() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data").join("phantom");
        let store = SqlStore::connect(&config(&dir)).await.unwrap();
        // A write, so that the write-ahead log and its shared memory exist.
        store.ping().await.unwrap();
        store
            .insert_scan(&crate::storage::conformance::sample_scan("t"))
            .await
            .unwrap();
        assert_eq!(mode(&dir), "700", "the data directory");
        assert_eq!(mode(&dir.join("phantom.db")), "600", "the database");
        for companion in ["phantom.db-wal", "phantom.db-shm"] {
            assert_eq!(mode(&dir.join(companion)), "600", "{companion}");
        }
    }

    #[tokio::test]
    async fn an_existing_database_open_to_others_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755).unwrap();
        for file in ["phantom.db", "phantom.db-wal"] {
            std::fs::write(dir.join(file), b"").unwrap();
            set_mode(&dir.join(file), 0o644).unwrap();
        }
        let store = SqlStore::connect(&config(&dir)).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(mode(&dir), "700");
        assert_eq!(mode(&dir.join("phantom.db")), "600");
        assert_eq!(mode(&dir.join("phantom.db-wal")), "600");
    }

    #[tokio::test]
    async fn a_shared_directory_keeps_its_mode_but_not_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755).unwrap();
        std::fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        let store = SqlStore::connect(&config(&dir)).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(mode(&dir), "755", "not PHANTOM's directory: left alone");
        assert_eq!(mode(&dir.join("phantom.db")), "600");
    }
}
