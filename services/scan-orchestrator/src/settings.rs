//! The scan-orchestrator's settings: the `[scan]` section (engines, scope, leases) and what
//! the service is given to run (its server settings, database, and the peers it calls).
//! Parsed once, when the configuration is loaded; [`ScanConfig::validate`] checks what the
//! types cannot.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use ipnet::IpNet;

use phantom_kit::{
    client::Peer,
    config::{Invalid, ServerSettings},
};
use phantom_storage::{Migrator, StorageConfig};
use serde::{Deserialize, Serialize};

/// What the scan-orchestrator runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every PHANTOM server shares (tenancy, limits, shutdown).
    pub server: ServerSettings,
    /// The database.
    pub storage: StorageConfig,
    /// The migrations applied when the database is opened: this service's, and those of the
    /// tables it reads (the analyzer's analyses), as the composing binary lists them.
    pub migrations: Vec<&'static Migrator>,
    /// Scans: engines, scope, leases.
    pub scan: ScanConfig,
    /// Where the vuln-analyzer is, and the client policy to call it with.
    pub analyzer: Peer,
    /// Where the notifier is, and the client policy to call it with.
    pub notifier: Peer,
    /// The Redis the replicas share (`REDIS_URL`): the per-host caps (`scan.per_host_rate`,
    /// `scan.per_host_in_flight`) are kept there, for all replicas together. Empty: each
    /// replica keeps them on its own.
    pub redis_url: String,
}

/// Most `per_host_rate`: one connection a microsecond, the resolution of the shared limiter.
pub const MAX_PER_HOST_RATE: u32 = 1_000_000;
/// Most `per_host_in_flight`: more than a host's ports.
pub const MAX_PER_HOST_IN_FLIGHT: u32 = 65_536;

/// Probes per checkpoint chunk by default (and of a plan made without a setting).
pub const DEFAULT_CHUNK_PROBES: u64 = 4096;

/// The scan-orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Ports scanned when a request names none.
    pub default_ports: String,
    /// Most addresses one scan may cover after CIDR expansion and name resolution.
    pub max_hosts_per_scan: u32,
    /// What one tenant may ask for, whichever key or replica it calls.
    pub quota: QuotaConfig,
    /// Most connection attempts in flight for one scan.
    pub max_in_flight: usize,
    /// How long a TCP connect may take before the port counts as filtered.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for a service to speak first (its banner); 0s skips the banner probe
    /// (a plain connect sweep).
    #[serde(with = "humantime_serde")]
    pub banner_timeout: Duration,
    /// Most scans running at once in one replica; more wait as PENDING.
    pub max_concurrent_scans: usize,
    /// How long a replica's claim on a scan holds without renewal: a scan whose replica died
    /// is taken over this long after its last heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often each replica looks for claimable scans (scans created on it start at once).
    #[serde(with = "humantime_serde")]
    pub claim_every: Duration,
    /// How often findings left unanalyzed (the analyzer was down when their scan ended) are
    /// sent to the analyzer again.
    #[serde(with = "humantime_serde")]
    pub reanalyze_every: Duration,
    /// CIDRs targets may be in (a bare address is its /32 or /128). Empty means "anything
    /// not denied". Where an allowed and a
    /// denied block overlap, the more specific one decides (a deny on a tie).
    pub allowed_cidrs: Vec<Cidr>,
    /// CIDRs targets may not be in. The link-local, cloud metadata, multicast, broadcast and
    /// unspecified ranges are denied always, whatever these lists say.
    pub denied_cidrs: Vec<Cidr>,
    /// Domains hostname targets may be in (`example.com` allows it and its subdomains).
    /// Empty means any name whose addresses are in scope.
    pub allowed_domains: Vec<String>,
    /// Wall-clock limit of one builtin scan (nmap and nuclei have their own).
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// Connection attempts per second to any one host, across its ports and scans (0: no
    /// limit), evenly spaced (no burst): a per-host limit, not a global one, so scans cannot
    /// flood one target. Shared by every replica when Redis is configured (`REDIS_URL`),
    /// per replica otherwise (and while Redis is unreachable).
    pub per_host_rate: u32,
    /// Connections open at once to any one host, across its ports and scans (0: no limit).
    /// Shared by every replica as `per_host_rate` is.
    pub per_host_in_flight: u32,
    /// Probes per checkpoint chunk. A scan's probes are cut into chunks; which are done is
    /// stored with their findings, and a scan taken over (its replica crashed or lost the
    /// lease) redoes only the chunks that were in progress. Smaller chunks redo less after a
    /// crash; nmap and nuclei run once per chunk.
    pub checkpoint_probes: u64,
    /// The nmap engine.
    pub nmap: NmapConfig,
    /// The nuclei engine.
    pub nuclei: NucleiConfig,
    /// Assets' schedules.
    pub schedules: SchedulesConfig,
}

/// How replicas fire the assets' schedules.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// How often each replica looks for assets whose run time has come (and expires accepted
    /// risks). A due time fires once whichever replica sees it first.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
    /// How late a due time may start and still count as on time: later (the system was down,
    /// or the previous run was still going), it is a missed run, run once or skipped as the
    /// asset's schedule says.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Most assets one tenant may have.
    pub max_assets_per_tenant: u32,
    /// Most alert rules one tenant may have.
    pub max_alert_rules_per_tenant: u32,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(1),
            grace: Duration::from_secs(60),
            max_assets_per_tenant: 1000,
            max_alert_rules_per_tenant: 100,
        }
    }
}

/// The nuclei engine, offered when its binary is found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NucleiConfig {
    /// The binary: a name looked up on `PATH`, or a path.
    pub path: String,
    /// Requests per second at most (`-rl`).
    pub rate_limit: u32,
    /// Wall-clock limit of one nuclei run; it is killed beyond.
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// nuclei processes running at once, across scans.
    pub max_processes: usize,
}

impl Default for NucleiConfig {
    fn default() -> Self {
        Self {
            path: "nuclei".to_owned(),
            rate_limit: 150,
            time_limit: Duration::from_secs(3600),
            max_processes: 1,
        }
    }
}

/// The nmap engine. It is offered when its binary is found; `CreateScan` with
/// `scanner = "nmap"` is refused with FAILED_PRECONDITION otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NmapConfig {
    /// The binary: a name looked up on `PATH`, or a path.
    pub path: String,
    /// Probe services for product and version (`-sV`): slower, more informative.
    pub version_detection: bool,
    /// Packets per second at most (`--max-rate`).
    pub max_rate: u32,
    /// Give up on a host after this long (`--host-timeout`).
    #[serde(with = "humantime_serde")]
    pub host_timeout: Duration,
    /// Wall-clock limit of one nmap run; it is killed beyond.
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// nmap processes running at once, across scans.
    pub max_processes: usize,
}

impl Default for NmapConfig {
    fn default() -> Self {
        Self {
            path: "nmap".to_owned(),
            version_detection: false,
            max_rate: 1000,
            host_timeout: Duration::from_secs(300),
            time_limit: Duration::from_secs(3600),
            max_processes: 2,
        }
    }
}

/// A tenant's scan quotas. Checked when a scan is created, against what the database holds:
/// every replica counts the same scans. Two creations racing on two replicas may both pass
/// the last free place (the check and the insert are not one transaction): the quota can be
/// exceeded by the number of concurrent `CreateScan` calls, never more.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Scans PENDING or RUNNING at once per tenant (0: no limit).
    pub max_active_scans: u64,
    /// Addresses per tenant over any 24 hours, summed over the scans it created (0: no limit).
    pub max_hosts_per_day: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_active_scans: 16,
            max_hosts_per_day: 65_536,
        }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            default_ports: "1-1024".to_owned(),
            max_hosts_per_scan: 256,
            quota: QuotaConfig::default(),
            max_in_flight: 512,
            connect_timeout: Duration::from_millis(1000),
            banner_timeout: Duration::from_millis(500),
            max_concurrent_scans: 4,
            lease: Duration::from_secs(15),
            claim_every: Duration::from_secs(1),
            reanalyze_every: Duration::from_secs(30),
            allowed_cidrs: Vec::new(),
            denied_cidrs: Vec::new(),
            allowed_domains: Vec::new(),
            time_limit: Duration::from_secs(3600),
            per_host_rate: 0,
            per_host_in_flight: 0,
            checkpoint_probes: DEFAULT_CHUNK_PROBES,
            nmap: NmapConfig::default(),
            nuclei: NucleiConfig::default(),
            schedules: SchedulesConfig::default(),
        }
    }
}

impl ScanConfig {
    /// Checks what the types cannot; keys are relative to `[scan]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at_least_one = |key: &str, v: usize| {
            if v == 0 {
                Err(Invalid::new(key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        at_least_one("max_in_flight", self.max_in_flight)?;
        at_least_one("max_concurrent_scans", self.max_concurrent_scans)?;
        if self.lease < Duration::from_millis(300) {
            return Err(Invalid::new("lease", "must be at least 300ms"));
        }
        if self.reanalyze_every.is_zero() {
            return Err(Invalid::new("reanalyze_every", "must be more than 0s"));
        }
        if self.claim_every.is_zero() {
            return Err(Invalid::new("claim_every", "must be more than 0s"));
        }
        at_least_one("max_hosts_per_scan", self.max_hosts_per_scan as usize)?;
        if self.schedules.check_every.is_zero() {
            return Err(Invalid::new(
                "schedules.check_every",
                "must be more than 0s",
            ));
        }
        if self.checkpoint_probes == 0 {
            return Err(Invalid::new("checkpoint_probes", "must be at least 1"));
        }
        if self.per_host_rate > MAX_PER_HOST_RATE {
            return Err(Invalid::new(
                "per_host_rate",
                format!("must be at most {MAX_PER_HOST_RATE} (0: no limit)"),
            ));
        }
        if self.per_host_in_flight > MAX_PER_HOST_IN_FLIGHT {
            return Err(Invalid::new(
                "per_host_in_flight",
                format!("must be at most {MAX_PER_HOST_IN_FLIGHT} (0: no limit)"),
            ));
        }
        Ok(())
    }
}

/// A CIDR block of `scan.allowed_cidrs` or `scan.denied_cidrs`: `10.0.0.0/8`, or a bare
/// address, which means its /32 (IPv4) or /128 (IPv6). Parsed when the configuration is
/// loaded (a value that is neither is refused then, naming its key); serialized as the block's
/// text (`10.0.0.1` as `10.0.0.1/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    /// The block, as written (host bits kept: `10.0.0.5/24` stays so).
    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl From<IpNet> for Cidr {
    fn from(net: IpNet) -> Self {
        Self(net)
    }
}

/// A value that is neither a CIDR block nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR block or address")]
pub struct NotACidr(pub String);

impl FromStr for Cidr {
    type Err = NotACidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| NotACidr(s.to_owned()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = NotACidr;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> Self {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_host_caps_out_of_range_are_refused_naming_the_key() {
        let refused = |c: ScanConfig| c.validate().unwrap_err().to_string();
        let e = refused(ScanConfig {
            per_host_rate: MAX_PER_HOST_RATE + 1,
            ..ScanConfig::default()
        });
        assert!(e.contains("per_host_rate"), "{e}");
        let e = refused(ScanConfig {
            per_host_in_flight: u32::MAX,
            ..ScanConfig::default()
        });
        assert!(e.contains("per_host_in_flight"), "{e}");
        ScanConfig {
            per_host_rate: MAX_PER_HOST_RATE,
            per_host_in_flight: MAX_PER_HOST_IN_FLIGHT,
            ..ScanConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn cidrs_are_blocks_or_bare_addresses() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "2001:db8::1".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string(),
            "\"10.0.0.0/33\" is not a CIDR block or address"
        );
        let list: Vec<Cidr> = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"["10.0.0.0/8","::1/128"]"#
        );
    }
}
