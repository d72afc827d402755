//! Compression of cached values, and the cache's statistics.
//!
//! Every value is stored with a one-byte header naming its encoding, so the algorithm can be
//! changed in configuration without invalidating what is cached, and small values (below
//! `compress_above`) are stored as they are: compressing them costs more than it saves.

use std::{
    io::{Read, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Cache, CacheError};

/// Compression algorithms (the original design's gzip and zlib, plus zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Values are stored as they are.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zlib (RFC 1950).
    Zlib,
    /// Zstandard: the best ratio for the time here.
    Zstd,
}

const RAW: u8 = 0;
const GZIP: u8 = 1;
const ZLIB: u8 = 2;
const ZSTD: u8 = 3;

/// What compression has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompressionStats {
    /// Bytes handed to the cache.
    pub bytes_in: u64,
    /// Bytes it stored after compression.
    pub bytes_stored: u64,
    /// Reads whose stored value could not be decoded (treated as misses).
    pub corrupt: u64,
}

#[derive(Debug, Default)]
struct Stats {
    bytes_in: AtomicU64,
    bytes_stored: AtomicU64,
    corrupt: AtomicU64,
}

/// A cache that compresses what it stores in another.
#[derive(Debug, Clone)]
pub struct CompressedCache {
    inner: Arc<dyn Cache>,
    algorithm: Compression,
    above: usize,
    stats: Arc<Stats>,
}

fn encode(algorithm: Compression, value: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len() / 2 + 1);
    match algorithm {
        Compression::None => {
            out.push(RAW);
            out.extend_from_slice(value);
        }
        Compression::Gzip => {
            out.push(GZIP);
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            e.write_all(value)?;
            out = e.finish()?;
        }
        Compression::Zlib => {
            out.push(ZLIB);
            let mut e = flate2::write::ZlibEncoder::new(out, flate2::Compression::fast());
            e.write_all(value)?;
            out = e.finish()?;
        }
        Compression::Zstd => {
            out.push(ZSTD);
            out.extend(zstd::bulk::compress(value, 3)?);
        }
    }
    Ok(out)
}

/// Largest value decoded: a corrupt or hostile entry cannot make a read allocate without bound.
const MAX_DECODED: u64 = 64 * 1024 * 1024;

fn decode(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    let (&tag, body) = stored
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "empty value"))?;
    let mut out = Vec::new();
    match tag {
        RAW => out.extend_from_slice(body),
        GZIP => {
            flate2::read::GzDecoder::new(body)
                .take(MAX_DECODED)
                .read_to_end(&mut out)?;
        }
        ZLIB => {
            flate2::read::ZlibDecoder::new(body)
                .take(MAX_DECODED)
                .read_to_end(&mut out)?;
        }
        ZSTD => {
            zstd::stream::read::Decoder::new(body)?
                .take(MAX_DECODED)
                .read_to_end(&mut out)?;
        }
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown encoding {other}"),
            ));
        }
    }
    Ok(out)
}

impl CompressedCache {
    /// Stores in `inner`, compressing values above `above` bytes with `algorithm`.
    pub fn new(inner: Arc<dyn Cache>, algorithm: Compression, above: usize) -> Self {
        Self {
            inner,
            algorithm,
            above,
            stats: Arc::default(),
        }
    }

    /// What compression has done so far.
    pub fn stats(&self) -> CompressionStats {
        let s = &self.stats;
        CompressionStats {
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_stored: s.bytes_stored.load(Ordering::Relaxed),
            corrupt: s.corrupt.load(Ordering::Relaxed),
        }
    }

    fn decode_or_miss(&self, key: &str, stored: Vec<u8>) -> Option<Vec<u8>> {
        match decode(&stored) {
            Ok(v) => Some(v),
            Err(err) => {
                // A value this cache cannot read is as good as absent: the caller goes to
                // the source of truth, and the next write replaces it.
                tracing::warn!(key, error = %err, "Undecodable cache entry ignored");
                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[async_trait]
impl Cache for CompressedCache {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        Ok(self
            .inner
            .get_with_ttl(key)
            .await?
            .and_then(|(stored, ttl)| Some((self.decode_or_miss(key, stored)?, ttl))))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let algorithm = if value.len() > self.above {
            self.algorithm
        } else {
            Compression::None
        };
        let mut stored = encode(algorithm, value).unwrap_or_else(|_| {
            let mut raw = vec![RAW];
            raw.extend_from_slice(value);
            raw
        });
        if stored.len() > value.len() + 1 {
            // Incompressible: keep it raw.
            stored = encode(Compression::None, value).expect("raw encoding cannot fail");
        }
        self.stats
            .bytes_in
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes_stored
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        self.inner.set(key, &stored, ttl).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.expire(key, ttl).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        self.inner.delete_many(keys).await
    }

    async fn set_add(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.inner.set_add(set, members, ttl).await
    }

    async fn set_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        self.inner.set_members(set).await
    }

    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryCache;

    #[test]
    fn every_algorithm_round_trips() {
        let value: Vec<u8> = b"CVE-2021-44228 ".repeat(200);
        for algorithm in [
            Compression::None,
            Compression::Gzip,
            Compression::Zlib,
            Compression::Zstd,
        ] {
            let stored = encode(algorithm, &value).unwrap();
            assert_eq!(decode(&stored).unwrap(), value, "{algorithm:?}");
            if algorithm != Compression::None {
                assert!(
                    stored.len() < value.len() / 10,
                    "{algorithm:?}: {}",
                    stored.len()
                );
            }
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[ZSTD, 1, 2, 3]).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn compressed_cache_conforms_and_counts_what_it_saves() {
        let cache = CompressedCache::new(Arc::new(MemoryCache::new(100)), Compression::Zstd, 64);
        crate::cache::conformance::run_all(&cache).await;
        let big = b"open port 22/tcp ssh ".repeat(100);
        cache
            .set("big", &big, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(cache.get("big").await.unwrap(), Some(big.clone()));
        let s = cache.stats();
        assert!(s.bytes_in - s.bytes_stored > 1500, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupt_entry_is_a_miss_not_an_error() {
        let inner: Arc<dyn Cache> = Arc::new(MemoryCache::new(10));
        inner
            .set("k", &[ZLIB, 0xde, 0xad], Duration::from_secs(60))
            .await
            .unwrap();
        let cache = CompressedCache::new(inner, Compression::Zlib, 0);
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert_eq!(cache.stats().corrupt, 1);
    }
}
