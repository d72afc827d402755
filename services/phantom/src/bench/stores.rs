//! The database and cache suites: the stores every service uses, measured in process through
//! the same code the services go through (the pool of [`phantom_storage::Database`], the
//! [`phantom_storage::cache::CacheManager`] with its breaker and compression).
//!
//! Both use what the environment names, as the services would: `DATABASE_URL` (PostgreSQL)
//! or SQLite in a temporary directory; `REDIS_URL` or the in-process cache. The suite's
//! notes say which, and metrics of different backends should not be compared.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sqlx::AssertSqlSafe;

use phantom_storage::{
    Database, StorageConfig,
    cache::{CacheConfig, CacheManager, Entry, connect_backend},
};

use super::{
    Options,
    load::{self, Load, Mode, Outcome},
    model::Suite,
};

fn closed(options: &Options, concurrency: usize) -> Load {
    Load {
        mode: Mode::Closed { concurrency },
        duration: options.duration,
        warmup: options.warmup,
    }
}

/// A row's body: about what a finding weighs.
const BODY: &str = "{\"port\":443,\"service\":\"https\",\"banner\":\"nginx/1.25.3\",\"severity\":\"MEDIUM\",\"title\":\"TLS 1.0 enabled\"}";

/// The database suite: inserts, then point reads by primary key, through the pool, with as
/// many callers as the pool has connections.
pub async fn database(options: &Options) -> anyhow::Result<Suite> {
    let dir = tempfile::tempdir()?;
    let config = StorageConfig {
        database_url: std::env::var("DATABASE_URL").unwrap_or_default(),
        data_dir: dir.path().to_owned(),
        ..StorageConfig::default()
    };
    let db = Arc::new(Database::open(&config).await?);
    let table = format!("bench_rows_{}", std::process::id());
    // The table's name is made here (the pid keeps concurrent runs on one server apart),
    // never from input.
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"
    )))
    .execute(db.pool())
    .await?;
    let mut suite = Suite {
        name: "database".into(),
        ..Default::default()
    };
    suite.notes.push(format!(
        "{} through the services' pool ({} connections); {} callers",
        db.system(),
        config.max_connections,
        config.max_connections
    ));
    let callers = config.max_connections as usize;
    let next = Arc::new(AtomicU64::new(0));
    let insert = format!("INSERT INTO {table} (id, body) VALUES ($1, $2)");
    let writes = {
        let (db, next, insert) = (db.clone(), next.clone(), insert.clone());
        load::run(closed(options, callers), move || {
            let (db, next, insert) = (db.clone(), next.clone(), insert.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                sql_outcome(
                    sqlx::query(AssertSqlSafe(insert))
                        .bind(id)
                        .bind(BODY)
                        .execute(db.pool())
                        .await
                        .map(drop),
                )
            }
        })
        .await
    };
    super::push_measured(&mut suite, "insert", "ops/s", &writes);
    let rows = next.load(Ordering::Relaxed).max(1);
    let select = format!("SELECT body FROM {table} WHERE id = $1");
    let reads = {
        let (db, select) = (db.clone(), select.clone());
        load::run(closed(options, callers), move || {
            let (db, select) = (db.clone(), select.clone());
            async move {
                let id = fastrand::u64(0..rows) as i64;
                sql_outcome(
                    sqlx::query(AssertSqlSafe(select))
                        .bind(id)
                        .fetch_optional(db.pool())
                        .await
                        .map(|_| ()),
                )
            }
        })
        .await
    };
    super::push_measured(&mut suite, "select", "ops/s", &reads);
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(db.pool())
        .await?;
    Ok(suite)
}

fn sql_outcome(r: Result<(), sqlx::Error>) -> Outcome {
    match r {
        Ok(()) => Ok(()),
        Err(sqlx::Error::PoolTimedOut) => Err("POOL_TIMEOUT"),
        Err(_) => Err("ERROR"),
    }
}

/// The cache suite: reads of present keys (hits), of absent ones (misses), and writes,
/// through the services' cache manager (breaker, compression), by 16 callers; then reads of
/// an entry large enough to be compressed.
pub async fn cache(options: &Options) -> anyhow::Result<Suite> {
    let config = CacheConfig {
        redis_url: std::env::var("REDIS_URL").unwrap_or_default(),
        ..CacheConfig::default()
    };
    let cache = CacheManager::new("bench", connect_backend(&config).await?, &config);
    let mut suite = Suite {
        name: "cache".into(),
        ..Default::default()
    };
    suite.notes.push(format!(
        "{} cache through the services' cache manager; 16 callers",
        cache.backend()
    ));
    let keys = 1000u64;
    let prefix = format!("bench:{}:", std::process::id());
    let entry = Entry::new().ttl(Duration::from_secs(600));
    for i in 0..keys {
        cache
            .set(&format!("{prefix}{i}"), BODY.as_bytes(), &entry)
            .await;
    }
    let big = BODY.repeat(64);
    cache
        .set(&format!("{prefix}big"), big.as_bytes(), &entry)
        .await;
    let run = |what: &'static str| {
        let (cache, prefix, entry) = (cache.clone(), prefix.clone(), entry.clone());
        load::run(closed(options, 16), move || {
            let (cache, prefix, entry) = (cache.clone(), prefix.clone(), entry.clone());
            async move {
                let i = fastrand::u64(0..keys);
                match what {
                    "hit" => match cache.get(&format!("{prefix}{i}")).await {
                        Some(_) => Ok(()),
                        None => Err("MISS"),
                    },
                    "miss" => match cache.get(&format!("{prefix}absent:{i}")).await {
                        None => Ok(()),
                        Some(_) => Err("HIT"),
                    },
                    "big" => match cache.get(&format!("{prefix}big")).await {
                        Some(v) if v.len() == BODY.len() * 64 => Ok(()),
                        _ => Err("MISS"),
                    },
                    _ => {
                        cache
                            .set(&format!("{prefix}{i}"), BODY.as_bytes(), &entry)
                            .await;
                        Ok(())
                    }
                }
            }
        })
    };
    for what in ["hit", "miss", "set", "big"] {
        let m = run(what).await;
        let name = match what {
            "hit" => "get_hit",
            "miss" => "get_miss",
            "set" => "set",
            _ => "get_compressed_6k",
        };
        super::push_measured(&mut suite, name, "ops/s", &m);
    }
    for i in 0..keys {
        cache.invalidate(&format!("{prefix}{i}")).await;
    }
    cache.invalidate(&format!("{prefix}big")).await;
    Ok(suite)
}
