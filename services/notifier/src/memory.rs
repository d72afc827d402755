//! How much memory this process may use, for the limits that are derived from it.
//!
//! A replica's connection and subscription caps are what fits in its memory at their worst
//! cost, not round numbers: `max_connections = 10000` WebSockets at ~140 KB each is 1.4 GB,
//! in a pod the chart gives 256 MiB. The memory is the cgroup's limit (v2
//! `memory.max`, else v1 `memory.limit_in_bytes`), or the machine's RAM without one.

use std::path::Path;

/// The share of the memory a derived cap may spend: a quarter, so that WebSocket sockets and
/// subscription buffers together stay under half, the other half being the process itself
/// (runtime, pools, requests in flight).
pub const SHARE_DIVISOR: u64 = 4;

/// What a memory limit is assumed to be when none can be read (no cgroup, no
/// `/proc/meminfo`): the chart's 256 MiB.
pub const FALLBACK_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes this process may use: the smallest of its cgroup's limit (v2, then v1) and the
/// machine's RAM.
pub fn available() -> u64 {
    available_under(Path::new("/"))
}

/// [`available`], reading the files under `root` (a test's fake `/`).
pub fn available_under(root: &Path) -> u64 {
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    let cgroup_v2 = read("sys/fs/cgroup/memory.max").and_then(|s| parse_limit(&s));
    let cgroup_v1 =
        read("sys/fs/cgroup/memory/memory.limit_in_bytes").and_then(|s| parse_limit(&s));
    let ram = read("proc/meminfo").and_then(|s| parse_meminfo(&s));
    // cgroup v1 says "no limit" with a huge number: the RAM bounds it.
    [cgroup_v2.or(cgroup_v1), ram]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(FALLBACK_BYTES)
}

/// A cgroup limit file: bytes, or `max` (none).
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&n| n > 0)
}

/// `MemTotal:  16314660 kB` from `/proc/meminfo`, in bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// How many items costing `each` bytes fit in [`SHARE_DIVISOR`]th of `memory`, at least
/// `floor` (a replica must serve someone) and at most `ceiling`.
pub fn fit(memory: u64, each: usize, floor: usize, ceiling: usize) -> usize {
    let each = u64::try_from(each.max(1)).unwrap_or(u64::MAX);
    let n = usize::try_from(memory / SHARE_DIVISOR / each).unwrap_or(usize::MAX);
    n.clamp(floor, ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const MEMINFO: &str = "MemTotal:       16314660 kB\nMemFree:         1000 kB\n";

    #[test]
    fn the_cgroup_v2_limit_is_the_memory_of_a_pod() {
        let dir = root(&[
            ("sys/fs/cgroup/memory.max", "268435456\n"),
            ("proc/meminfo", MEMINFO),
        ]);
        assert_eq!(available_under(dir.path()), 256 * 1024 * 1024);
    }

    #[test]
    fn without_a_v2_limit_the_v1_limit_then_the_ram_decide() {
        let v2_unlimited = root(&[
            ("sys/fs/cgroup/memory.max", "max\n"),
            ("proc/meminfo", MEMINFO),
        ]);
        assert_eq!(available_under(v2_unlimited.path()), 16_314_660 * 1024);
        let v1 = root(&[
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n"),
            ("proc/meminfo", MEMINFO),
        ]);
        assert_eq!(available_under(v1.path()), 512 * 1024 * 1024);
        let v1_unlimited = root(&[
            (
                "sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("proc/meminfo", MEMINFO),
        ]);
        assert_eq!(available_under(v1_unlimited.path()), 16_314_660 * 1024);
        assert_eq!(available_under(root(&[]).path()), FALLBACK_BYTES);
    }

    #[test]
    fn a_cap_is_what_fits_in_a_quarter_of_the_memory() {
        let pod = 256 * 1024 * 1024;
        assert_eq!(fit(pod, 160 * 1024, 16, 10_000), 409);
        assert_eq!(fit(64 * 1024 * 1024, 1 << 20, 16, 10_000), 16, "a floor");
        assert_eq!(fit(1 << 40, 1024, 16, 10_000), 10_000, "a ceiling");
    }
}
