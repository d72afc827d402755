//! What a scan probes, cut into chunks, and which chunks are done: the scan's checkpoint.
//!
//! A scan's probes (addresses × ports) are cut into chunks of about
//! [`ScanConfig::checkpoint_probes`](crate::settings::ScanConfig::checkpoint_probes) probes: a
//! block of ports across a block of addresses, numbered port block by port block (the order
//! the built-in engine probes in, spreading its load across hosts). An engine reports each
//! chunk it finished ([`Event::Done`](super::Event::Done)), after every finding of that chunk;
//! the runner stores the set of done chunks with the findings, in one transaction. A replica
//! that takes the scan over (after a crash, a SIGKILL, a lost lease) reads it back
//! ([`Plan::resume`]) and hands the engine only what is left: what a crash costs is the chunks
//! that were in progress, not the scan.
//!
//! The checkpoint is stored as JSON (`{"hosts":4,"ports":512,"done":[[0,41],[43,43]]}`):
//! the chunk geometry it was made with, and the done chunks as inclusive ranges, which stay
//! few because chunks finish nearly in order. A checkpoint that cannot be read, or that does
//! not fit the scan, is ignored (the scan starts over, which loses time, never findings).

use serde::{Deserialize, Serialize};

use crate::{repository::ResolvedTarget, settings::DEFAULT_CHUNK_PROBES};

/// What to scan, and what of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    targets: Vec<ResolvedTarget>,
    ports: Vec<u16>,
    checkpoint: Checkpoint,
}

/// One chunk: a block of ports on a block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Its number, for [`Event::Done`](super::Event::Done).
    pub index: u32,
    /// Addresses, checked against the scope.
    pub targets: &'a [ResolvedTarget],
    /// Ports, sorted.
    pub ports: &'a [u16],
}

impl Chunk<'_> {
    /// Number of host:port probes.
    pub fn probes(&self) -> u64 {
        self.targets.len() as u64 * self.ports.len() as u64
    }
}

/// The stored form: the chunk geometry and the done chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    /// Addresses per chunk.
    hosts: u32,
    /// Ports per chunk.
    ports: u32,
    /// Done chunks: sorted, disjoint, non-adjacent inclusive ranges.
    done: Vec<(u32, u32)>,
}

impl Plan {
    /// The whole of `targets` × `ports` (sorted), in chunks of about
    /// [`DEFAULT_CHUNK_PROBES`] probes.
    pub fn new(targets: Vec<ResolvedTarget>, ports: Vec<u16>) -> Self {
        Self::chunked(targets, ports, DEFAULT_CHUNK_PROBES)
    }

    /// The whole of `targets` × `ports`, in chunks of about `chunk_probes` probes: a block of
    /// at most `chunk_probes` ports, on as many addresses as make up the rest.
    pub fn chunked(targets: Vec<ResolvedTarget>, ports: Vec<u16>, chunk_probes: u64) -> Self {
        // Chunks are numbered in 32 bits: a huge scan gets bigger chunks than asked.
        let probes = targets.len() as u64 * ports.len() as u64;
        let per_chunk = chunk_probes.max(probes.div_ceil(1 << 31)).max(1);
        let per_chunk = u32::try_from(per_chunk).unwrap_or(u32::MAX);
        let port_count = u32::try_from(ports.len()).unwrap_or(u32::MAX).max(1);
        let chunk_ports = port_count.min(per_chunk);
        let checkpoint = Checkpoint {
            hosts: (per_chunk / chunk_ports).max(1),
            ports: chunk_ports,
            done: Vec::new(),
        };
        Self {
            targets,
            ports,
            checkpoint,
        }
    }

    /// The plan of a scan taken over: `stored` is its checkpoint (empty when it had none).
    /// One that cannot be read or does not fit `targets` × `ports` is set aside with the
    /// reason, and the plan is the whole scan.
    pub fn resume(
        targets: Vec<ResolvedTarget>,
        ports: Vec<u16>,
        chunk_probes: u64,
        stored: &str,
    ) -> (Self, Option<String>) {
        let mut plan = Self::chunked(targets, ports, chunk_probes);
        if stored.is_empty() {
            return (plan, None);
        }
        let checkpoint = match serde_json::from_str::<Checkpoint>(stored) {
            Ok(c) => c,
            Err(e) => return (plan, Some(format!("unreadable checkpoint: {e}"))),
        };
        let fresh = plan.checkpoint.clone();
        plan.checkpoint = checkpoint;
        if let Err(why) = plan.check() {
            plan.checkpoint = fresh;
            return (plan, Some(why));
        }
        (plan, None)
    }

    /// Whether the checkpoint fits the plan: a geometry that cuts it, and done ranges that
    /// are ordered, apart, and within its chunks.
    fn check(&self) -> Result<(), String> {
        let c = &self.checkpoint;
        if c.hosts == 0 || c.ports == 0 {
            return Err(format!("checkpoint with empty chunks ({c:?})"));
        }
        let count = self.chunk_count();
        let mut next = 0u64;
        for &(first, last) in &c.done {
            if u64::from(first) < next || first > last || u64::from(last) >= count {
                return Err(format!(
                    "checkpoint's done chunks {first}..={last} do not fit a plan of {count} chunks"
                ));
            }
            next = u64::from(last) + 2;
        }
        Ok(())
    }

    /// Every address of the scan.
    pub fn targets(&self) -> &[ResolvedTarget] {
        &self.targets
    }

    /// Every port of the scan, sorted.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Number of host:port probes of the whole scan, done or not.
    pub fn probes(&self) -> u64 {
        self.targets.len() as u64 * self.ports.len() as u64
    }

    fn host_blocks(&self) -> u64 {
        (self.targets.len() as u64).div_ceil(u64::from(self.checkpoint.hosts))
    }

    fn chunk_count(&self) -> u64 {
        self.host_blocks() * (self.ports.len() as u64).div_ceil(u64::from(self.checkpoint.ports))
    }

    /// Chunk `index` (below [`Plan::chunk_count`]).
    fn chunk(&self, index: u32) -> Chunk<'_> {
        let blocks = self.host_blocks();
        let (port_block, host_block) = (u64::from(index) / blocks, u64::from(index) % blocks);
        let span = |block: u64, size: u32, len: usize| {
            let start = usize::try_from(block * u64::from(size))
                .unwrap_or(len)
                .min(len);
            start..(start + size as usize).min(len)
        };
        Chunk {
            index,
            targets: &self.targets[span(host_block, self.checkpoint.hosts, self.targets.len())],
            ports: &self.ports[span(port_block, self.checkpoint.ports, self.ports.len())],
        }
    }

    /// The chunks not done, in order.
    pub fn chunks(&self) -> impl Iterator<Item = Chunk<'_>> + '_ {
        let count = u32::try_from(self.chunk_count()).unwrap_or(u32::MAX);
        let mut done = self.checkpoint.done.iter().peekable();
        (0..count)
            .filter(move |&i| {
                while done.next_if(|&&(_, last)| last < i).is_some() {}
                done.peek().is_none_or(|&&(first, _)| first > i)
            })
            .map(|i| self.chunk(i))
    }

    /// Probes of the chunks done.
    pub fn done_probes(&self) -> u64 {
        self.checkpoint
            .done
            .iter()
            .flat_map(|&(first, last)| first..=last)
            .map(|i| self.chunk(i).probes())
            .sum()
    }

    /// Records chunk `index` as done. An index out of the plan, or done already, changes
    /// nothing.
    pub fn complete(&mut self, index: u32) {
        if u64::from(index) >= self.chunk_count() {
            return;
        }
        let done = &mut self.checkpoint.done;
        // The first range that ends at or after index - 1: the one index joins, if any.
        let at = done.partition_point(|&(_, last)| last.saturating_add(1) < index);
        match done.get(at).copied() {
            Some((first, last)) if first <= index && index <= last => {}
            Some((first, last)) if last.saturating_add(1) == index => {
                done[at].1 = index;
                // It may close the gap to the next range.
                if let Some(&(next_first, next_last)) = done.get(at + 1)
                    && next_first == index + 1
                {
                    done[at] = (first, next_last);
                    done.remove(at + 1);
                }
            }
            Some((first, last)) if first == index + 1 => done[at] = (index, last),
            _ => done.insert(at, (index, index)),
        }
    }

    /// Whether every chunk is done.
    pub fn finished(&self) -> bool {
        self.chunks().next().is_none()
    }

    /// The checkpoint, as stored.
    pub fn checkpoint(&self) -> String {
        serde_json::to_string(&self.checkpoint).expect("a checkpoint serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u8) -> Vec<ResolvedTarget> {
        (0..n)
            .map(|i| ResolvedTarget {
                hostname: None,
                address: std::net::IpAddr::from([127, 0, 0, i]),
            })
            .collect()
    }

    fn covered(plan: &Plan) -> Vec<(std::net::IpAddr, u16)> {
        let mut probes: Vec<_> = plan
            .chunks()
            .flat_map(|c| {
                c.targets
                    .iter()
                    .flat_map(|t| c.ports.iter().map(|p| (t.address, *p)))
                    .collect::<Vec<_>>()
            })
            .collect();
        probes.sort_unstable();
        probes
    }

    #[test]
    fn chunks_cover_every_probe_once_whatever_the_shape() {
        for (n_hosts, n_ports, per_chunk) in [
            (1, 1, 4096),
            (1, 10_000, 4096),
            (7, 10, 32),
            (7, 10, 5),
            (3, 1000, 1),
            (200, 3, 4096),
        ] {
            let ports: Vec<u16> = (1..=n_ports).collect();
            let plan = Plan::chunked(hosts(n_hosts), ports.clone(), per_chunk);
            let mut every: Vec<_> = hosts(n_hosts)
                .iter()
                .flat_map(|t| ports.iter().map(|p| (t.address, *p)))
                .collect();
            every.sort_unstable();
            assert_eq!(
                covered(&plan),
                every,
                "{n_hosts} × {n_ports} by {per_chunk}"
            );
            assert!(plan.chunks().all(|c| c.probes() <= per_chunk.max(1)));
            assert_eq!(plan.done_probes(), 0);
        }
    }

    #[test]
    fn chunks_go_port_block_by_port_block_across_hosts() {
        let plan = Plan::chunked(hosts(4), (1..=8).collect(), 8);
        let order: Vec<(usize, u16)> = plan
            .chunks()
            .map(|c| (c.targets.len(), c.ports[0]))
            .collect();
        // 8 ports a chunk: one host each, every port.
        assert_eq!(order, vec![(1, 1), (1, 1), (1, 1), (1, 1)]);
        let plan = Plan::chunked(hosts(4), (1..=8).collect(), 4);
        let firsts: Vec<(std::net::IpAddr, u16)> = plan
            .chunks()
            .map(|c| (c.targets[0].address, c.ports[0]))
            .collect();
        assert_eq!(
            firsts
                .iter()
                .map(|(a, p)| (a.to_string(), *p))
                .collect::<Vec<_>>(),
            [
                ("127.0.0.0", 1),
                ("127.0.0.1", 1),
                ("127.0.0.2", 1),
                ("127.0.0.3", 1),
                ("127.0.0.0", 5),
                ("127.0.0.1", 5),
                ("127.0.0.2", 5),
                ("127.0.0.3", 5)
            ]
            .map(|(a, p)| (a.to_owned(), p))
        );
    }

    #[test]
    fn completed_chunks_merge_into_ranges_in_any_order() {
        let mut plan = Plan::chunked(hosts(1), (1..=100).collect(), 10);
        for i in [3, 1, 2, 0, 9, 7, 3, 8, 200] {
            plan.complete(i);
        }
        assert_eq!(plan.checkpoint.done, vec![(0, 3), (7, 9)]);
        assert_eq!(
            plan.chunks().map(|c| c.index).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert_eq!(plan.done_probes(), 70);
        plan.complete(5);
        assert_eq!(plan.checkpoint.done, vec![(0, 3), (5, 5), (7, 9)]);
        plan.complete(4);
        plan.complete(6);
        assert_eq!(plan.checkpoint.done, vec![(0, 9)]);
        assert!(plan.finished());
    }

    #[test]
    fn a_stored_checkpoint_resumes_where_it_left_off() {
        let mut plan = Plan::chunked(hosts(2), (1..=50).collect(), 10);
        for i in 0..6 {
            plan.complete(i);
        }
        let stored = plan.checkpoint();
        // The setting changed since: the stored geometry still rules.
        let (resumed, warning) = Plan::resume(hosts(2), (1..=50).collect(), 999, &stored);
        assert_eq!(warning, None);
        assert_eq!(resumed, plan);
        assert_eq!(resumed.done_probes(), 60);
        assert_eq!(covered(&resumed).len(), 40);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_is_set_aside() {
        let whole = Plan::chunked(hosts(2), (1..=50).collect(), 10);
        for stored in [
            "not json",
            r#"{"hosts":0,"ports":10,"done":[]}"#,
            r#"{"hosts":1,"ports":10,"done":[[0,10]]}"#,
            r#"{"hosts":1,"ports":10,"done":[[3,1]]}"#,
            r#"{"hosts":1,"ports":10,"done":[[0,3],[2,5]]}"#,
            r#"{"hosts":1,"ports":10,"done":[[0,3],[4,5]]}"#,
            r#"{"hosts":1,"ports":10,"done":[],"extra":1}"#,
        ] {
            let (plan, warning) = Plan::resume(hosts(2), (1..=50).collect(), 10, stored);
            assert!(warning.is_some(), "{stored}");
            assert_eq!(plan, whole, "{stored}");
        }
    }
}
