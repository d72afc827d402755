//! The command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use phantom_kit::{CancellationToken, server, telemetry};

use crate::config::{Config, ServiceName};

use crate::{commands, up};

/// PHANTOM: a resilient security-scanning backbone.
#[derive(Debug, Parser)]
#[command(name = "phantom", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables override it; see
    /// deploy/phantom.example.toml for every key.
    #[arg(long, global = true, env = "PHANTOM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

use crate::commands::Output;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services in one process, each on its own port, talking over gRPC.
    #[command(after_help = "Examples:\n  \
        phantom up\n  \
        DATABASE_URL=postgres://phantom@db/phantom REDIS_URL=redis://cache:6379 phantom up\n  \
        PHANTOM_SCAN_ORCHESTRATOR_ADDR=127.0.0.1:0 phantom up   # any free port, logged")]
    Up,

    /// Check the configuration (file and environment) and print it as the services would use
    /// it, passwords redacted.
    #[command(after_help = "Examples:\n  \
        phantom config\n  \
        phantom config --config deploy/phantom.example.toml\n  \
        DATABASE_URL=postgres://phantom:secret@db/phantom phantom config")]
    Config,

    /// Apply the database schema migrations, print which, and exit. The services apply
    /// pending migrations themselves at start-up; the Helm chart runs this first, as a
    /// pre-install/pre-upgrade Job, so the schema is in place before the Deployments roll.
    #[command(after_help = "Examples:\n  \
        phantom migrate\n  \
        DATABASE_URL=postgres://phantom:secret@db/phantom phantom migrate\n  \
        phantom migrate --config /etc/phantom/phantom.toml --wait 2m")]
    Migrate {
        /// How long to wait for the database to accept connections before giving up.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },

    /// Run one service (what a Kubernetes pod runs).
    #[command(after_help = "Examples:\n  \
        phantom serve scan-orchestrator\n  \
        PHANTOM_VULN_ANALYZER_URL=http://vuln-analyzer:50052 phantom serve scan-orchestrator\n  \
        phantom serve health-aggregator --config /etc/phantom/phantom.toml")]
    Serve {
        /// The service to run.
        #[arg(value_parser = parse_service)]
        service: ServiceName,
    },

    /// Submit a scan, follow its progress, and print its findings.
    #[command(after_help = "Examples:\n  \
        phantom scan 127.0.0.1 --ports 1-1024\n  \
        phantom scan 10.0.0.0/28 scanme.internal --ports 22,80,443 --output json\n  \
        phantom scan 192.168.1.10 --idempotency-key nightly-2026-11-29\n  \
        phantom scan 10.0.0.0/28 --output sarif > phantom.sarif\n  \
        phantom scan diff <scan-a> <scan-b>          # new, fixed, still open, by fingerprint")]
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Scan {
        /// Another action than a new scan.
        #[command(subcommand)]
        compare: Option<ScanAction>,
        /// Targets: IPv4/IPv6 addresses, CIDR blocks or hostnames.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Ports: "22,80,443,8000-8100". Default: the server's default list.
        #[arg(long, short)]
        ports: Option<String>,
        /// Engine: builtin, nmap or nuclei.
        #[arg(long, short, default_value = "builtin")]
        scanner: String,
        /// Retrying with the same key returns the first scan instead of starting another.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Submit and print the scan without waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The scan-orchestrator's URL.
        #[arg(
            long,
            env = "PHANTOM_SCAN_ORCHESTRATOR_URL",
            default_value = "http://127.0.0.1:50051"
        )]
        addr: String,
        #[command(flatten)]
        credentials: commands::remote::Credentials,
    },

    /// Watch assets: named target sets scanned on a schedule (cron in a time zone, or an
    /// interval). Each scan of an asset is compared with the previous one; `findings` shows
    /// what is new, still open, fixed or reopened, and `triage` records a person's verdict,
    /// which sticks across scans.
    #[command(after_help = "Examples:\n  \
        phantom schedule create web 10.0.0.0/28 --ports 22,80,443 --cron '0 3 * * *' --tz Europe/Paris --jitter 10m\n  \
        phantom schedule create lab 127.0.0.1 --every 6h --missed skip\n  \
        phantom schedule list\n  \
        phantom schedule findings web --change new,reopened\n  \
        phantom schedule triage web 9f2c... false-positive --reason 'our honeypot'\n  \
        phantom schedule triage web 9f2c... accepted-risk --reason 'replaced in Q1' --until 90d\n  \
        phantom schedule alert create high-and-up --min-severity high\n  \
        phantom schedule pause web")]
    Schedule {
        /// What to do.
        #[command(subcommand)]
        action: commands::schedule::Action,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
        output: Output,
        /// The scan-orchestrator's URL.
        #[arg(
            long,
            env = "PHANTOM_SCAN_ORCHESTRATOR_URL",
            default_value = "http://127.0.0.1:50051",
            global = true
        )]
        addr: String,
        #[command(flatten)]
        credentials: commands::remote::Credentials,
    },

    /// Follow the notifications of rooms as they are published; reconnect and resume, without
    /// losing or repeating one, when the connection breaks. Ctrl-C stops.
    #[command(after_help = "Examples:\n  \
        phantom watch system\n  \
        phantom watch scan/0197e0c4-5a1b-7c3d-9e2f-1a2b3c4d5e6f --min-priority high\n  \
        phantom watch system tenant/acme --after system:120 --output json | jq -r .payload\n  \
        phantom watch tenant/acme --types finding --min-severity high\n  \
        phantom watch system --after system:0   # everything the notifier kept, then live")]
    Watch {
        /// Rooms to follow: "system", "scan/<id>", "tenant/<id>", ...
        #[arg(required = true)]
        rooms: Vec<String>,
        /// Start after this sequence of a room ("room:sequence"; repeat it or separate with
        /// commas). "room:0" replays everything the notifier kept. Rooms without one start
        /// with the next notification.
        #[arg(long, value_delimiter = ',', value_parser = commands::watch::parse_after)]
        after: Vec<(String, u64)>,
        /// Only notifications at this priority or above.
        #[arg(long, value_enum)]
        min_priority: Option<commands::watch::MinPriority>,
        /// Only these types ("finding,scan.finished").
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Only findings of this severity or above (other notifications are not affected).
        #[arg(long, value_enum)]
        min_severity: Option<commands::watch::MinSeverity>,
        /// Output format: a table row or a JSON line per notification.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The notifier's URL.
        #[arg(
            long,
            env = "PHANTOM_NOTIFIER_URL",
            default_value = "http://127.0.0.1:50053"
        )]
        addr: String,
        #[command(flatten)]
        credentials: commands::remote::Credentials,
    },

    /// Benchmarks (never run by `make test`). With suite flags, the runner: runs the suites,
    /// prints their metrics, saves (`--save`), compares (`--compare`) and draws (`--report`)
    /// runs. Without, the quick one: one RPC with the layers on and off in process, twice the
    /// saturating load, the scanners against nmap. The subcommands are benchmarks of their
    /// own.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  \
        phantom bench --all --save before\n  \
        phantom bench --all --save after && phantom bench --compare before after --report cmp.html\n  \
        phantom bench --layers --repeat 5 --duration 10s\n  \
        phantom bench --chaos --report chaos.html\n  \
        phantom bench                          # the quick one\n  \
        phantom bench notify --subscribers 1000 --duration 5s"
    )]
    Bench {
        /// Another benchmark than the runner.
        #[command(subcommand)]
        suite: Option<BenchSuite>,
        #[command(flatten)]
        runner: BenchRunner,
        /// Length of each measurement.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Concurrent callers of the closed-loop runs.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },

    /// Manage credentials: API keys, in the configured database (the services need not
    /// run). Applies the key table's migration first if it is missing (idempotent), so it
    /// works on a fresh database.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        phantom auth key create --tenant acme --scopes scans:read,scans:write --name ci\n  \
        phantom auth key list\n  \
        phantom auth key revoke 3f9a1c2b4d5e"
    )]
    Auth(commands::auth::AuthCommand),

    /// Print the aggregated health of the system (exit status 1 when it is unhealthy).
    #[command(after_help = "Examples:\n  \
        phantom health\n  \
        phantom health --output json\n  \
        phantom health --addr http://health-aggregator.phantom.svc:50054")]
    Health {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The health-aggregator's URL.
        #[arg(
            long,
            env = "PHANTOM_HEALTH_AGGREGATOR_URL",
            default_value = "http://127.0.0.1:50054"
        )]
        addr: String,
        #[command(flatten)]
        credentials: commands::remote::Credentials,
    },
}

/// The runner's flags.
#[derive(Debug, clap::Args)]
struct BenchRunner {
    /// Every suite but chaos.
    #[arg(long)]
    all: bool,
    /// The server stack against tonic alone, on the same RPC shape.
    #[arg(long)]
    layers: bool,
    /// Reads and writes through the storage the services use.
    #[arg(long)]
    database: bool,
    /// The cache.
    #[arg(long)]
    cache: bool,
    /// `/health` and the gRPC health checks.
    #[arg(long)]
    health: bool,
    /// The notifier's WebSocket gateway.
    #[arg(long)]
    websocket: bool,
    /// The notifier's delivery, CRITICAL under a LOW flood.
    #[arg(long)]
    notifier: bool,
    /// The built-in scanner against `nmap -sT -T5`.
    #[arg(long)]
    scan: bool,
    /// Twice the saturating load.
    #[arg(long)]
    load: bool,
    /// The chaos scenario: the same workload with the layers on, then off, under faults.
    #[arg(long)]
    chaos: bool,
    /// Runs of each suite; each metric keeps one sample per run (its median and spread).
    /// Default: 3, and 1 for chaos (one run takes about two minutes).
    #[arg(long)]
    repeat: Option<usize>,
    /// Warm-up before each measurement, not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: std::time::Duration,
    /// Save the run as NAME (`<results-dir>/NAME.json`).
    #[arg(long, value_name = "NAME")]
    save: Option<String>,
    /// Compare two saved runs (names or .json files): B against A, with a verdict per metric.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<String>>,
    /// Draw the run (or, with --compare and no suite, B and the comparison) into an HTML
    /// (or .svg) file.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Where runs are saved.
    #[arg(long, default_value = "bench-results")]
    results_dir: std::path::PathBuf,
    /// The phantom binary that runs the servers measured as separate processes (default:
    /// this one).
    #[arg(long)]
    phantom: Option<std::path::PathBuf>,
}

impl BenchRunner {
    fn suites(&self) -> Vec<crate::bench::SuiteName> {
        use crate::bench::SuiteName as S;
        let mut suites: Vec<S> = [
            (self.layers, S::Layers),
            (self.database, S::Database),
            (self.cache, S::Cache),
            (self.health, S::Health),
            (self.websocket, S::Websocket),
            (self.notifier, S::Notifier),
            (self.scan, S::Scan),
            (self.load, S::Load),
            (self.chaos, S::Chaos),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| s)
        .collect();
        if self.all {
            suites.extend(S::ALL);
        }
        suites.sort();
        suites.dedup();
        suites
    }

    fn active(&self) -> bool {
        !self.suites().is_empty() || self.compare.is_some()
    }
}

/// What `phantom scan` does besides a new scan.
#[derive(Debug, Subcommand)]
enum ScanAction {
    /// What changed from scan A to scan B, by fingerprint: new, fixed, still open
    /// (`--output sarif` marks each result's baselineState).
    #[command(after_help = "Examples:\n  \
        phantom scan diff 01a229eb-54ee-71ff-905c-4c5ed40b9748 01a229ec-33b0-7442-b44e-3c79206b0549\n  \
        phantom scan diff <a> <b> --output sarif > changes.sarif")]
    Diff {
        /// The earlier scan's id.
        a: String,
        /// The later scan's id.
        b: String,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The scan-orchestrator's URL.
        #[arg(
            long,
            env = "PHANTOM_SCAN_ORCHESTRATOR_URL",
            default_value = "http://127.0.0.1:50051"
        )]
        addr: String,
        #[command(flatten)]
        credentials: commands::remote::Credentials,
    },
}

/// The benchmarks besides the runner.
#[derive(Debug, Subcommand)]
enum BenchSuite {
    /// The reference server of the layers suite: tonic alone, a fixed ScoreCvss answer.
    /// Prints its address, serves until stopped.
    #[command(hide = true)]
    Reference {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Delivery latency of the notifier, from the start of each Publish call to each
    /// subscriber: many subscribers to one room, CRITICAL notifications alone and then through
    /// a flood of LOW ones, in an in-process notifier whose SQLite database is in a temporary
    /// directory (under $TMPDIR).
    #[command(after_help = "Examples:\n  \
        phantom bench notify\n  \
        phantom bench notify --subscribers 200 --duration 10s\n  \
        phantom bench notify --connections 1 --flooders 4 --critical-every 50ms\n  \
        TMPDIR=/dev/shm phantom bench notify   # the database in memory: no disk in the figures")]
    Notify {
        /// Length of each phase (CRITICAL alone, then with the LOW flood).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Subscribers to the room.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// HTTP/2 connections the subscribers share.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Concurrent publishers of the LOW flood, each publishing as fast as it is answered.
        #[arg(long, default_value_t = 2)]
        flooders: usize,
        /// A CRITICAL notification is published this often.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        critical_every: std::time::Duration,
    },
    /// The four attacks that used to take a process down (a 4 MB port spec, huge Subscribe
    /// maps, replaying streams that never read, 20,000 unknown methods), replayed against a
    /// `phantom up` started as a separate process, while `/health` is polled every 50 ms and
    /// the system's RSS is sampled. Fails when /health was slower than the limit or the RSS
    /// grew more than allowed.
    #[command(after_help = "Examples:\n  \
        phantom bench attacks\n  \
        phantom bench attacks --phantom /tmp/old/phantom   # an older build, for before/after")]
    Attacks {
        /// The phantom binary that runs the attacked system (default: this one).
        #[arg(long)]
        phantom: Option<std::path::PathBuf>,
        /// The most `/health` may take at any moment.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        max_health_latency: std::time::Duration,
        /// The most the system's RSS may grow above where it started, in MiB.
        #[arg(long, default_value_t = 64)]
        max_rss_growth_mib: u64,
    },
    /// One service (`phantom serve vuln-analyzer`, a separate process) offered twice the
    /// calls it can answer, while liveness is asked on its probe port every 100 ms: the
    /// probe's latency idle and loaded, and the service's RSS before, during and after.
    #[command(after_help = "Examples:\n  \
        phantom bench probes\n  \
        phantom bench probes --duration 30s")]
    Probes {
        /// The phantom binary that runs the service (default: this one).
        #[arg(long)]
        phantom: Option<std::path::PathBuf>,
        /// How long the overload lasts.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Three `phantom serve vuln-analyzer` processes behind PHANTOM's client, one stalled
    /// 40 ms of every 200 ms: the latency p50, p99 and max with hedging off, then on, in the
    /// same run.
    #[command(after_help = "Examples:
          phantom bench hedging
          phantom bench hedging --delay 10ms --duration 20s")]
    Hedging {
        /// The phantom binary that runs the replicas (default: this one).
        #[arg(long)]
        phantom: Option<std::path::PathBuf>,
        /// Length of each run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Concurrent callers.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How long a call waits before its hedge is sent (about the p99 of a healthy
        /// replica: sooner doubles the work, later leaves the tail).
        #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
        delay: std::time::Duration,
    },
}

/// The data directory of the configuration at `path` (and the environment): where
/// `phantom up` keeps the local admin key the client commands use on this machine.
fn data_dir(path: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    Config::load(path).ok().map(|c| c.storage.data_dir)
}

fn parse_service(s: &str) -> Result<ServiceName, String> {
    s.parse()
}

impl Cli {
    /// Runs the command and returns the process's exit status.
    pub async fn run(self) -> ExitCode {
        match self.command {
            Command::Config => match Config::load(self.config.as_deref()) {
                Ok(c) => {
                    crate::commands::outln!("{}", c.to_redacted_toml().trim_end());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("phantom: {err}");
                    ExitCode::from(2)
                }
            },
            Command::Migrate { wait } => match Config::load(self.config.as_deref()) {
                Ok(c) => commands::migrate::run(&c.storage, wait).await,
                Err(err) => {
                    eprintln!("phantom: {err}");
                    ExitCode::from(2)
                }
            },
            Command::Up | Command::Serve { .. } => {
                let mut config = match Config::load(self.config.as_deref()) {
                    Ok(c) => c,
                    Err(err) => {
                        eprintln!("phantom: {err}");
                        return ExitCode::from(2);
                    }
                };
                // `serve` is what runs in a pod: JSON lines for the collector, terminal or
                // not, unless asked otherwise. `up` is for people: text on a terminal.
                if matches!(self.command, Command::Serve { .. })
                    && config.telemetry.log_format == phantom_kit::config::LogFormat::Auto
                {
                    config.telemetry.log_format = phantom_kit::config::LogFormat::Json;
                }
                // The process's secrets: the configuration's, masked in every log line and
                // report from the first one on.
                let secrets = telemetry::Secrets::new();
                config.register_secrets(&secrets);
                // Held to the end: dropping it writes the last queued log lines.
                let (process, _log) = telemetry::init(
                    &config.telemetry,
                    &ServiceName::ALL.map(ServiceName::as_str),
                    &secrets,
                );
                let shutdown = CancellationToken::new();
                server::cancel_on_signals(shutdown.clone());
                let result = match self.command {
                    Command::Up => up::up(config, &process, &secrets, shutdown).await,
                    Command::Serve { service } => {
                        up::serve(service, config, &process, &secrets, shutdown).await
                    }
                    _ => unreachable!("matched above"),
                };
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "Stopped with an error");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Scan {
                compare:
                    Some(ScanAction::Diff {
                        a,
                        b,
                        output,
                        addr,
                        mut credentials,
                    }),
                ..
            } => {
                credentials.data_dir = data_dir(self.config.as_deref());
                commands::diff::run(&addr, &credentials, &a, &b, output).await
            }
            Command::Scan {
                compare: None,
                targets,
                ports,
                scanner,
                idempotency_key,
                no_wait,
                output,
                addr,
                mut credentials,
            } => {
                credentials.data_dir = data_dir(self.config.as_deref());
                commands::scan::run(commands::scan::Args {
                    addr,
                    targets,
                    ports: ports.unwrap_or_default(),
                    scanner,
                    idempotency_key: idempotency_key.unwrap_or_default(),
                    wait: !no_wait,
                    output,
                    credentials,
                })
                .await
            }
            Command::Schedule {
                action,
                output,
                addr,
                mut credentials,
            } => {
                credentials.data_dir = data_dir(self.config.as_deref());
                commands::schedule::run(&addr, &credentials, action, output).await
            }
            Command::Health {
                output,
                addr,
                mut credentials,
            } => {
                credentials.data_dir = data_dir(self.config.as_deref());
                commands::health::run(&addr, &credentials, output).await
            }
            Command::Watch {
                rooms,
                after,
                min_priority,
                types,
                min_severity,
                output,
                addr,
                mut credentials,
            } => {
                credentials.data_dir = data_dir(self.config.as_deref());
                commands::watch::run(commands::watch::Args {
                    addr,
                    rooms,
                    after,
                    min_priority,
                    types,
                    min_severity,
                    output,
                    credentials,
                })
                .await
            }
            Command::Auth(command) => commands::auth::run(self.config.as_deref(), command).await,
            Command::Bench {
                suite,
                runner,
                duration,
                concurrency,
            } => {
                let (_, _log) = telemetry::init(
                    &phantom_kit::config::TelemetryConfig {
                        log_filter: "warn".into(),
                        ..Default::default()
                    },
                    &ServiceName::ALL.map(ServiceName::as_str),
                    &telemetry::Secrets::new(),
                );
                let result = match suite {
                    None if runner.active() => bench_runner(runner, duration, concurrency).await,
                    Some(BenchSuite::Reference { listen }) => {
                        crate::bench::reference::serve(listen).await
                    }
                    None => {
                        crate::bench::rpc::run(crate::bench::rpc::BenchArgs {
                            duration,
                            concurrency,
                        })
                        .await
                    }
                    Some(BenchSuite::Notify {
                        duration,
                        subscribers,
                        connections,
                        flooders,
                        critical_every,
                    }) => crate::bench::notify::run(crate::bench::notify::NotifyArgs {
                        duration,
                        subscribers,
                        connections,
                        flooders,
                        critical_every,
                    })
                    .await
                    .map(drop),
                    Some(BenchSuite::Attacks {
                        phantom,
                        max_health_latency,
                        max_rss_growth_mib,
                    }) => {
                        crate::bench::attacks::run(crate::bench::attacks::AttackArgs {
                            phantom,
                            max_health_latency,
                            max_rss_growth_mib,
                        })
                        .await
                    }
                    Some(BenchSuite::Hedging {
                        phantom,
                        duration,
                        concurrency,
                        delay,
                    }) => {
                        crate::bench::hedging::run(crate::bench::hedging::HedgeArgs {
                            phantom,
                            duration,
                            concurrency,
                            delay,
                        })
                        .await
                    }
                    Some(BenchSuite::Probes { phantom, duration }) => {
                        crate::bench::probes::run(crate::bench::probes::ProbeArgs {
                            phantom,
                            duration,
                        })
                        .await
                    }
                };
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("phantom bench: {err:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}

/// `phantom bench` with runner flags.
async fn bench_runner(
    runner: BenchRunner,
    duration: std::time::Duration,
    concurrency: usize,
) -> anyhow::Result<()> {
    use crate::bench;

    let suites = runner.suites();
    let compared = match &runner.compare {
        Some(names) => {
            let a = bench::load(&runner.results_dir, &names[0])?;
            let b = bench::load(&runner.results_dir, &names[1])?;
            println!("{}", bench::comparison_table(&a, &b));
            Some((a, b))
        }
        None => None,
    };
    if suites.is_empty() {
        if let (Some(path), Some((a, b))) = (&runner.report, &compared) {
            let (deltas, _) = bench::model::compare(a, b, bench::MIN_CHANGE);
            bench::report::write(path, b, Some((a, &deltas)))?;
            println!("report: {}", path.display());
        }
        return Ok(());
    }
    let options = bench::Options {
        duration,
        warmup: runner.warmup,
        concurrency,
        phantom: match runner.phantom {
            Some(p) => p,
            None => std::env::current_exe()?,
        },
        smoke: false,
    };
    // Chaos runs once unless asked otherwise: one run is two minutes.
    let (chaos, others): (Vec<_>, Vec<_>) =
        suites.iter().partition(|s| **s == bench::SuiteName::Chaos);
    let mut results = bench::run(&others, runner.repeat.unwrap_or(3), &options).await?;
    if !chaos.is_empty() {
        let more = bench::run(&chaos, runner.repeat.unwrap_or(1), &options).await?;
        results.suites.extend(more.suites);
        results.failed.extend(more.failed);
        results.config.insert(
            "chaos_repeat".into(),
            runner.repeat.unwrap_or(1).to_string(),
        );
    }
    if let Some(name) = &runner.save {
        let path = bench::save(&mut results, &runner.results_dir, name)?;
        println!("saved: {}", path.display());
    }
    if let Some(path) = &runner.report {
        bench::report::write(path, &results, None)?;
        println!("report: {}", path.display());
    }
    anyhow::ensure!(
        results.failed.is_empty(),
        "suites failed: {}",
        results.failed.join(", ")
    );
    Ok(())
}
