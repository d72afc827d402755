//! The standing abuse suite: hostile requests against every public RPC, the HTTP port and the
//! WebSocket port of a running system, each with the exact answer it must get, a bound on
//! the size of that answer, and a bound on what it may cost the process (CPU time and memory,
//! measured from inside this process, which runs the whole system).
//!
//! The cases run one after another against one system, so that each one's cost is its own;
//! the table printed at the end (`cargo test --test abuse -- --nocapture`) gives every case's
//! cost, and the worst per class.
//!
//! Addresses the scope must refuse are only ever asked for with the `nuclei` engine, which
//! here is a stand-in that records what it was given and sends nothing: even if the scope check
//! were broken, no packet would leave for them, and the suite would see it in the record.

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use phantom_proto::pb;
use phantom_tests::{PATIENCE, Running, channel, config, http_get};
use prost::{
    Message,
    bytes::{Buf, BufMut, Bytes},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

// ---------------------------------------------------------------------------------------
// Measuring a case from inside the process.

/// CPU time this process has used (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    // Fields after the command name (which may hold spaces) start at field 3 (`state`).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // Linux reports in USER_HZ, 100 on every architecture Rust targets.
    ticks / 100.0
}

/// A value of `/proc/self/status`, in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so the next reading is this case's peak.
fn reset_peak() {
    // Where it cannot be reset, VmHWM stays the peak since the start: a looser bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const MIB: u64 = 1024 * 1024;

/// What one case cost.
#[derive(Debug, Clone, Copy)]
struct Cost {
    cpu: f64,
    /// Peak RSS during the case, above the RSS it started at.
    peak: u64,
    /// RSS after the case (and a short settle), above the RSS it started at.
    kept: i64,
}

// ---------------------------------------------------------------------------------------
// Talking to the system with any bytes at all.

/// A codec that sends the given bytes as they are and returns the reply's bytes: hostile
/// requests need not be valid messages.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A gRPC status (OK for a reply).
    Grpc(Code),
    /// An HTTP status.
    Http(u16),
    /// A WebSocket closed with this code.
    WsClose(u16),
    /// The server closed the connection.
    Closed,
    /// Anything else, described.
    Other(String),
}

/// The answer to a case: what came back and how many bytes it took.
#[derive(Debug, Clone)]
struct Answer {
    seen: Seen,
    bytes: usize,
    /// Anything else the case wants reported.
    note: String,
}

impl Answer {
    fn of(status: &Status) -> Self {
        // No error may carry a control character of the request back to a terminal or a log.
        if status.message().chars().any(char::is_control) {
            return Self {
                seen: Seen::Other(format!("a raw control character in {:?}", status.message())),
                bytes: status.message().len(),
                note: String::new(),
            };
        }
        let headers: usize = status
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        Self {
            seen: Seen::Grpc(status.code()),
            bytes: status.message().len() + status.details().len() + headers,
            note: status.message().chars().take(120).collect(),
        }
    }

    fn ok(bytes: usize) -> Self {
        Self {
            seen: Seen::Grpc(Code::Ok),
            bytes,
            note: String::new(),
        }
    }
}

async fn grpc(addr: SocketAddr) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    grpc.ready().await.expect("channel ready");
    grpc
}

/// A unary call of `path` with `body` as the request's bytes.
async fn unary(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Answer {
    let path = path.parse().expect("a path");
    match grpc(addr)
        .await
        .unary(tonic::Request::new(body.into()), path, Raw)
        .await
    {
        Ok(reply) => Answer::ok(reply.into_inner().len()),
        Err(status) => Answer::of(&status),
    }
}

/// A server-streaming call: its status if it fails before its first message, else OK with the
/// first message's size.
async fn first_of_stream(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Answer {
    let path = path.parse().expect("a path");
    let mut grpc = grpc(addr).await;
    let stream = grpc
        .server_streaming(tonic::Request::new(body.into()), path, Raw)
        .await;
    match stream {
        Err(status) => Answer::of(&status),
        Ok(reply) => match tokio::time::timeout(PATIENCE, reply.into_inner().message()).await {
            Ok(Ok(Some(first))) => Answer::ok(first.len()),
            Ok(Ok(None)) => Answer::ok(0),
            Ok(Err(status)) => Answer::of(&status),
            Err(_) => Answer {
                seen: Seen::Other("no first message".into()),
                bytes: 0,
                note: String::new(),
            },
        },
    }
}

const CREATE_SCAN: &str = "/phantom.v1.ScanOrchestrator/CreateScan";
const GET_SCAN: &str = "/phantom.v1.ScanOrchestrator/GetScan";
const LIST_SCANS: &str = "/phantom.v1.ScanOrchestrator/ListScans";
const CANCEL_SCAN: &str = "/phantom.v1.ScanOrchestrator/CancelScan";
const WATCH_SCAN: &str = "/phantom.v1.ScanOrchestrator/WatchScan";
const LIST_FINDINGS: &str = "/phantom.v1.ScanOrchestrator/ListFindings";
const CREATE_ASSET: &str = "/phantom.v1.ScanOrchestrator/CreateAsset";
const GET_ASSET: &str = "/phantom.v1.ScanOrchestrator/GetAsset";
const LIST_ASSET_FINDINGS: &str = "/phantom.v1.ScanOrchestrator/ListAssetFindings";
const SET_TRIAGE: &str = "/phantom.v1.ScanOrchestrator/SetTriage";
const CREATE_ALERT_RULE: &str = "/phantom.v1.ScanOrchestrator/CreateAlertRule";
const ANALYZE: &str = "/phantom.v1.VulnAnalyzer/AnalyzeFindings";
const SCORE_CVSS: &str = "/phantom.v1.VulnAnalyzer/ScoreCvss";
const WARM_SCAN: &str = "/phantom.v1.VulnAnalyzer/WarmScan";
const PUBLISH: &str = "/phantom.v1.Notifier/Publish";
const SUBSCRIBE: &str = "/phantom.v1.Notifier/Subscribe";
const SYSTEM_HEALTH: &str = "/phantom.v1.HealthAggregator/GetSystemHealth";
const WATCH_HEALTH: &str = "/phantom.v1.HealthAggregator/WatchSystemHealth";
const GET_METRICS: &str = "/phantom.v1.Metrics/GetMetrics";

/// Appends a length-delimited field `tag` holding `value` (any bytes, UTF-8 or not).
fn field(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A message nested `depth` times in field 1 (an unknown or a message field, as it falls).
fn nested(depth: usize) -> Vec<u8> {
    let mut inner = Vec::new();
    for _ in 0..depth {
        let mut outer = Vec::new();
        field(&mut outer, 1, &inner);
        inner = outer;
    }
    inner
}

// ---------------------------------------------------------------------------------------
// The running system the suite attacks.

#[derive(Debug)]
struct Ctx {
    addrs: phantom::up::Addresses,
    /// A room with many large notifications, for replays that nobody reads.
    big_room: String,
}

/// The engine stand-in: records its arguments and its target list, answers nothing.
fn recording_engine(dir: &Path, record: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("recording-engine");
    let script = format!(
        "#!/bin/sh\n# Records what it was asked to scan; sends nothing.\n\
         echo \"$@\" >> '{rec}'\n\
         prev=''\nfor a in \"$@\"; do if [ \"$prev\" = -l ]; then cat \"$a\" >> '{rec}'; fi; prev=\"$a\"; done\n\
         exit 0\n",
        rec = record.display()
    );
    std::fs::write(&path, script).expect("writes the stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// One hostile request.
struct Case {
    /// What it is, as a claim-like name.
    name: &'static str,
    /// The kind of attack, for the summary.
    class: &'static str,
    /// The answer it must get (one of).
    expect: Vec<Seen>,
    /// Most bytes the answer may take.
    max_reply: usize,
    /// Most CPU time it may cost the process, in seconds.
    max_cpu: f64,
    /// Most the process's peak RSS may rise while it runs.
    max_peak: u64,
    attack: Box<dyn for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync>,
}

fn case<F>(name: &'static str, class: &'static str, expect: Vec<Seen>, attack: F) -> Case
where
    F: for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync + 'static,
{
    Case {
        name,
        class,
        expect,
        max_reply: 8 * 1024,
        max_cpu: 2.0,
        max_peak: 64 * MIB,
        attack: Box::new(attack),
    }
}

fn grpc_code(code: Code) -> Vec<Seen> {
    vec![Seen::Grpc(code)]
}

const INVALID: Code = Code::InvalidArgument;

/// The scope forms that must be refused, with the address each one hides.
const OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("169.254.169.254", "cloud metadata (IMDS)"),
    ("::ffff:169.254.169.254", "IMDS, IPv4-mapped"),
    ("64:ff9b::a9fe:a9fe", "IMDS through NAT64 (RFC 6052)"),
    (
        "64:ff9b:1:a9fe:a9:fe00::",
        "IMDS through local-use NAT64 /48 (RFC 8215)",
    ),
    ("::a9fe:a9fe", "IMDS, IPv4-compatible"),
    ("2002:a9fe:a9fe::1", "IMDS through 6to4 (RFC 3056)"),
    ("2001:0:a9fe:a9fe::1", "IMDS as a Teredo server (RFC 4380)"),
    (
        "2001:0:4136:e378:8000:63bf:5601:5601",
        "IMDS as a Teredo client (RFC 4380)",
    ),
    ("fd00:ec2::254", "AWS IMDS over IPv6"),
    ("168.63.129.16", "Azure WireServer"),
    ("100.100.100.200", "Alibaba Cloud metadata"),
    ("169.254.170.2", "AWS ECS task metadata"),
    ("0.0.0.0", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("fe80::1", "link-local"),
    ("64:ff9b::e000:1", "multicast through NAT64"),
    ("240.0.0.1", "reserved (IANA special-purpose)"),
];

/// Which service a call goes to.
#[derive(Debug, Clone, Copy)]
enum To {
    Scans,
    Analyzer,
    Notifier,
    Health,
}

impl To {
    fn addr(self, cx: &Ctx) -> SocketAddr {
        match self {
            Self::Scans => cx.addrs.scan_orchestrator,
            Self::Analyzer => cx.addrs.vuln_analyzer,
            Self::Notifier => cx.addrs.notifier,
            Self::Health => cx.addrs.health_aggregator,
        }
    }
}

/// A hostile gRPC call: `body` (built when the case runs, so its cost is measured with it) sent
/// to `path` of `to`, unary or, for `Subscribe`/`Watch…`, server-streaming.
fn call(
    name: &'static str,
    class: &'static str,
    expect: &[Code],
    to: To,
    path: &'static str,
    body: fn() -> Vec<u8>,
) -> Case {
    case(
        name,
        class,
        expect.iter().map(|c| Seen::Grpc(*c)).collect(),
        move |cx| {
            Box::pin(async move {
                let addr = to.addr(cx);
                if path.ends_with("/Subscribe") || path.contains("/Watch") {
                    first_of_stream(addr, path, body()).await
                } else {
                    unary(addr, path, body()).await
                }
            })
        },
    )
}

const INVALID_OR_NOT_FOUND: &[Code] = &[INVALID, Code::NotFound];

fn scan_request(targets: &[&str], ports: &str, scanner: &str, key: &str) -> Vec<u8> {
    pb::CreateScanRequest {
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        ports: ports.to_owned(),
        scanner: scanner.to_owned(),
        idempotency_key: key.to_owned(),
    }
    .encode_to_vec()
}

fn create(targets: &[&str], ports: &str, scanner: &str) -> Vec<u8> {
    scan_request(targets, ports, scanner, "")
}

fn publish(room: &str, kind: &str, payload: &str, priority: i32) -> Vec<u8> {
    pb::Notification {
        room: room.to_owned(),
        r#type: kind.to_owned(),
        payload: payload.to_owned(),
        priority,
        ..Default::default()
    }
    .encode_to_vec()
}

fn list_scans(page_size: i32, page_token: &str, state: i32) -> Vec<u8> {
    pb::ListScansRequest {
        page_size,
        page_token: page_token.to_owned(),
        state,
    }
    .encode_to_vec()
}

fn cvss(vector: String) -> Vec<u8> {
    pb::ScoreCvssRequest { vector }.encode_to_vec()
}

fn cases() -> Vec<Case> {
    use To::*;
    const OVERSIZE: &str = "oversize field";
    const REPEATED: &str = "repeated field";
    const MALFORMED: &str = "malformed protobuf";
    const CONTROL: &str = "control characters";
    const FORGED: &str = "forged field";
    let mut all = vec![
        // --- CreateScan -----------------------------------------------------------------
        call(
            "a 4 MB port spec is refused before it is parsed",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["127.0.0.1"], &"1-65535,".repeat(480_000), "nuclei"),
        ),
        // Whichever of the two is checked first, the spec costs one linear pass at most.
        call(
            "500 full ranges within the size limit parse in one pass",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || {
                create(
                    &["127.0.0.1", "-oN/tmp/x"],
                    &["1-65535"; 500].join(","),
                    "nuclei",
                )
            },
        ),
        call(
            "a port spec with 5,000 items is refused",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || {
                create(
                    &["127.0.0.1"],
                    &(1..=5000)
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    "nuclei",
                )
            },
        ),
        call(
            "a port spec with a NUL byte is refused",
            CONTROL,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["127.0.0.1"], "80\u{0}-443", "nuclei"),
        ),
        call(
            "a 3.9 MB target is refused with a short message",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&[&"a".repeat(3_900_000)], "80", "nuclei"),
        ),
        call(
            "100,000 targets are refused",
            REPEATED,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&vec!["127.0.0.1"; 100_000], "80", "nuclei"),
        ),
        call(
            "1,000 malformed targets get a bounded list of violations",
            REPEATED,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || {
                let bad: Vec<String> = (0..1000)
                    .map(|i| format!("bad target {i} {}", "x".repeat(200)))
                    .collect();
                create(
                    &bad.iter().map(String::as_str).collect::<Vec<_>>(),
                    "80",
                    "nuclei",
                )
            },
        ),
        call(
            "a /8 is refused before it is expanded",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["10.0.0.0/8"], "80", "nuclei"),
        ),
        call(
            "an IPv6 /64 is refused before it is expanded",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["fd00::/64"], "80", "nuclei"),
        ),
        call(
            "a 1 MB idempotency key is refused",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || scan_request(&["127.0.0.1"], "80", "nuclei", &"k".repeat(1 << 20)),
        ),
        call(
            "a 1 MB scanner name is refused",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["127.0.0.1"], "80", &"n".repeat(1 << 20)),
        ),
        call(
            "a target that looks like an engine option is refused",
            "injection",
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["--script=http-shellshock"], "80", "nuclei"),
        ),
        call(
            "a target with terminal escapes is refused",
            CONTROL,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || create(&["127.0.0.1\u{1b}]0;pwned\u{7}"], "80", "nuclei"),
        ),
        // --- Bytes that are not the message they claim to be --------------------------------
        call(
            "invalid UTF-8 in a target is INVALID_ARGUMENT, not INTERNAL",
            MALFORMED,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || {
                let mut body = Vec::new();
                field(&mut body, 1, b"127.0.0.\xff\xfe");
                body
            },
        ),
        call(
            "a broken varint is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || [&[0x08u8][..], &[0xff; 11]].concat(),
        ),
        call(
            "a length prefix longer than the message is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Scans,
            CREATE_SCAN,
            || vec![0x0a, 0xff, 0xff, 0x03, b'a'],
        ),
        call(
            "a wire type that does not exist is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Analyzer,
            SCORE_CVSS,
            || vec![0x0f, 0x01],
        ),
        call(
            "a field number 0 is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Notifier,
            PUBLISH,
            || vec![0x02, 0x01, b'a'],
        ),
        // Field 1 of AnalyzeFindingsRequest is a message: the decoder recurses.
        call(
            "a message nested 100,000 deep is INVALID_ARGUMENT",
            "deep protobuf",
            &[INVALID],
            Analyzer,
            ANALYZE,
            || nested(100_000),
        ),
        // The start of a group (field 15), 50,000 times, never ended.
        call(
            "a deep unknown group is INVALID_ARGUMENT",
            "deep protobuf",
            &[INVALID],
            Scans,
            GET_SCAN,
            || vec![0x7b; 50_000],
        ),
        call(
            "invalid UTF-8 in a Subscribe room is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                let mut body = Vec::new();
                field(&mut body, 1, b"\xc3\x28");
                body
            },
        ),
        call(
            "garbage to WatchSystemHealth is INVALID_ARGUMENT",
            MALFORMED,
            &[INVALID],
            Health,
            WATCH_HEALTH,
            || vec![0x0a, 0x80],
        ),
        // tonic answers OUT_OF_RANGE where the gRPC spec says RESOURCE_EXHAUSTED.
        call(
            "a message over the 4 MiB limit is refused before it is decoded",
            "oversize message",
            &[Code::ResourceExhausted, Code::OutOfRange],
            Analyzer,
            SCORE_CVSS,
            || cvss("A".repeat(5 << 20)),
        ),
        // --- The other scan RPCs ------------------------------------------------------------
        call(
            "GetScan of a 1 MB id answers without echoing it",
            OVERSIZE,
            INVALID_OR_NOT_FOUND,
            Scans,
            GET_SCAN,
            || {
                pb::GetScanRequest {
                    id: "x".repeat(1 << 20),
                }
                .encode_to_vec()
            },
        ),
        call(
            "GetScan of an id with escapes answers without echoing them",
            CONTROL,
            INVALID_OR_NOT_FOUND,
            Scans,
            GET_SCAN,
            || {
                pb::GetScanRequest {
                    id: "\u{1b}[2J\u{1b}]0;x\u{7}".into(),
                }
                .encode_to_vec()
            },
        ),
        call(
            "ListScans with a 1 MB page token is refused",
            OVERSIZE,
            &[INVALID],
            Scans,
            LIST_SCANS,
            || list_scans(10, &"t".repeat(1 << 20), 0),
        ),
        call(
            "ListScans with a forged page token is refused",
            FORGED,
            &[INVALID],
            Scans,
            LIST_SCANS,
            || list_scans(10, "' OR 1=1 --", 0),
        ),
        call(
            "ListScans with a negative page size is refused",
            FORGED,
            &[INVALID],
            Scans,
            LIST_SCANS,
            || list_scans(-1, "", 0),
        ),
        call(
            "ListScans with an enormous page size answers a bounded page",
            FORGED,
            &[Code::Ok, INVALID],
            Scans,
            LIST_SCANS,
            || list_scans(i32::MAX, "", 0),
        ),
        call(
            "ListScans with an unknown state is refused",
            FORGED,
            &[INVALID],
            Scans,
            LIST_SCANS,
            || list_scans(10, "", 999),
        ),
        call(
            "CancelScan of a path-like id is refused",
            FORGED,
            INVALID_OR_NOT_FOUND,
            Scans,
            CANCEL_SCAN,
            || {
                pb::CancelScanRequest {
                    id: "../../etc/passwd".into(),
                }
                .encode_to_vec()
            },
        ),
        call(
            "WatchScan of a 1 MB id answers without echoing it",
            OVERSIZE,
            INVALID_OR_NOT_FOUND,
            Scans,
            WATCH_SCAN,
            || {
                pb::WatchScanRequest {
                    id: "w".repeat(1 << 20),
                }
                .encode_to_vec()
            },
        ),
        call(
            "ListFindings with a huge scan id and a forged token is refused",
            FORGED,
            INVALID_OR_NOT_FOUND,
            Scans,
            LIST_FINDINGS,
            || {
                pb::ListFindingsRequest {
                    scan_id: "s".repeat(100_000),
                    page_size: 10,
                    page_token: "\u{0}\u{1}".repeat(1000),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "ListFindings filtering on 100,000 unknown changes is refused",
            FORGED,
            &[INVALID],
            Scans,
            LIST_FINDINGS,
            || {
                pb::ListFindingsRequest {
                    scan_id: uuid::Uuid::now_v7().to_string(),
                    changes: vec![i32::MAX; 100_000],
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        // --- assets ---------------------------------------------------------------------------
        call(
            "CreateAsset with a 1 MB name, a 100 KB cron pattern and a path for a time zone",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_ASSET,
            || {
                pb::CreateAssetRequest {
                    name: "n".repeat(1 << 20),
                    targets: vec!["127.0.0.1".into()],
                    schedule: Some(pb::Schedule {
                        cron: "*/1 ".repeat(25_000),
                        time_zone: "../../../../etc/passwd".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "CreateAsset whose interval and jitter are i64::MAX seconds or negative",
            FORGED,
            &[INVALID],
            Scans,
            CREATE_ASSET,
            || {
                pb::CreateAssetRequest {
                    name: "edge".into(),
                    targets: vec!["127.0.0.1".into()],
                    schedule: Some(pb::Schedule {
                        every: Some(prost_types::Duration {
                            seconds: i64::MAX,
                            nanos: 999_999_999,
                        }),
                        jitter: Some(prost_types::Duration {
                            seconds: -1,
                            nanos: -1,
                        }),
                        missed: i32::MAX,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "GetAsset by a 100 KB name of control characters",
            OVERSIZE,
            &[INVALID],
            Scans,
            GET_ASSET,
            || {
                pb::GetAssetRequest {
                    asset: "\u{0}\u{7}".repeat(50_000),
                }
                .encode_to_vec()
            },
        ),
        call(
            "ListAssetFindings filtering on unknown triage states",
            FORGED,
            &[INVALID],
            Scans,
            LIST_ASSET_FINDINGS,
            || {
                pb::ListAssetFindingsRequest {
                    asset: "web".into(),
                    triage: vec![-1, 0, 99],
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "CreateAlertRule with 100,000 ports, port 0 and 70000, and a 1 MB text",
            OVERSIZE,
            &[INVALID],
            Scans,
            CREATE_ALERT_RULE,
            || {
                pb::CreateAlertRuleRequest {
                    rule: Some(pb::AlertRule {
                        name: "flood".into(),
                        ports: [0, 70_000].repeat(50_000),
                        text: "t".repeat(1 << 20),
                        ..Default::default()
                    }),
                }
                .encode_to_vec()
            },
        ),
        call(
            "CreateAlertRule on FIXED changes, with a service full of terminal escapes",
            FORGED,
            &[INVALID],
            Scans,
            CREATE_ALERT_RULE,
            || {
                pb::CreateAlertRuleRequest {
                    rule: Some(pb::AlertRule {
                        name: "escapes".into(),
                        services: vec!["\u{1b}[2J\u{1b}]0;owned\u{7}".into()],
                        changes: vec![pb::FindingChange::Fixed as i32, i32::MIN],
                        min_severity: 99,
                        ..Default::default()
                    }),
                }
                .encode_to_vec()
            },
        ),
        call(
            "SetTriage accepting a risk until the end of time, with a 1 MB reason",
            FORGED,
            &[INVALID],
            Scans,
            SET_TRIAGE,
            || {
                pb::SetTriageRequest {
                    asset: "web".into(),
                    fingerprint: "f".repeat(100_000),
                    state: pb::TriageState::AcceptedRisk.into(),
                    reason: "r".repeat(1 << 20),
                    accepted_until: Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: i32::MAX,
                    }),
                }
                .encode_to_vec()
            },
        ),
        call(
            "SetTriage accepting a risk until i64::MAX seconds (overflow bait)",
            FORGED,
            &[INVALID, Code::NotFound],
            Scans,
            SET_TRIAGE,
            || {
                pb::SetTriageRequest {
                    asset: "web".into(),
                    fingerprint: "fp".into(),
                    state: pb::TriageState::AcceptedRisk.into(),
                    reason: "because".into(),
                    accepted_until: Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: 0,
                    }),
                }
                .encode_to_vec()
            },
        ),
        // --- vuln-analyzer --------------------------------------------------------------------
        call(
            "a CVSS vector with 10 KB of junk gets a reply a client can read",
            OVERSIZE,
            &[INVALID],
            Analyzer,
            SCORE_CVSS,
            || {
                cvss(format!(
                    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/{}",
                    "X:Y/".repeat(2500)
                ))
            },
        ),
        call(
            "a 3 MB CVSS vector is refused with a short message",
            OVERSIZE,
            &[INVALID],
            Analyzer,
            SCORE_CVSS,
            || cvss(format!("CVSS:3.1/{}", "AV:N/".repeat(600_000))),
        ),
        call(
            "a CVSS vector with escapes is refused",
            CONTROL,
            &[INVALID],
            Analyzer,
            SCORE_CVSS,
            || cvss("CVSS:3.1/AV:N\u{1b}[2J".into()),
        ),
        // 100,000 empty findings (field 1, length 0), written as bytes: the attacker's own
        // structs are not what this case measures.
        call(
            "AnalyzeFindings with 100,000 findings is refused before they are decoded",
            REPEATED,
            &[INVALID],
            Analyzer,
            ANALYZE,
            || [0x0a, 0x00].repeat(100_000),
        ),
        call(
            "AnalyzeFindings with a 3 MB banner is refused",
            OVERSIZE,
            &[INVALID],
            Analyzer,
            ANALYZE,
            || {
                let finding = pb::Finding {
                    target: "10.0.0.1".into(),
                    engine: "builtin".into(),
                    check_id: "open-port".into(),
                    banner: "d".repeat(3 << 20),
                    ..Default::default()
                };
                pb::AnalyzeFindingsRequest {
                    findings: vec![finding],
                }
                .encode_to_vec()
            },
        ),
        call(
            "WarmScan with 200,000 fingerprints is refused",
            REPEATED,
            &[INVALID],
            Analyzer,
            WARM_SCAN,
            || {
                pb::WarmScanRequest {
                    scan_id: "s".into(),
                    fingerprints: vec!["f".repeat(16); 200_000],
                }
                .encode_to_vec()
            },
        ),
        call(
            "WarmScan with a 1 MB scan id is refused",
            OVERSIZE,
            &[INVALID],
            Analyzer,
            WARM_SCAN,
            || {
                pb::WarmScanRequest {
                    scan_id: "s".repeat(1 << 20),
                    fingerprints: vec![],
                }
                .encode_to_vec()
            },
        ),
        // --- notifier -------------------------------------------------------------------------
        call(
            "Subscribe with 400,000 rooms is refused at once",
            "huge map",
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                let rooms = (0..400_000).map(|i| format!("{i:x}")).collect();
                pb::SubscribeRequest {
                    rooms,
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with 150,000 after_sequence keys is refused at once",
            "huge map",
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                let rooms = (0..100_000).map(|i| format!("{i:x}")).collect();
                let after_sequence = (0..150_000).map(|i| (format!("k{i:x}"), 1)).collect();
                pb::SubscribeRequest {
                    rooms,
                    after_sequence,
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with 60 rooms and 60 foreign after_sequence keys is refused",
            "huge map",
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                let rooms = (0..60).map(|i| format!("r{i}")).collect();
                let after_sequence = (0..60).map(|i| (format!("other{i}"), 1)).collect();
                pb::SubscribeRequest {
                    rooms,
                    after_sequence,
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with a 1 MB room name is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                pb::SubscribeRequest {
                    rooms: vec!["r".repeat(1 << 20)],
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with 100,000 types is refused",
            REPEATED,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                pb::SubscribeRequest {
                    rooms: vec!["system".into()],
                    types: vec!["t".into(); 100_000],
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with no rooms is refused",
            FORGED,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || pb::SubscribeRequest::default().encode_to_vec(),
        ),
        call(
            "Subscribe with a 1 MB epoch is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                pb::SubscribeRequest {
                    rooms: vec!["abuse".into()],
                    epoch: "e".repeat(1 << 20),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Subscribe with an epoch of control characters is refused",
            CONTROL,
            &[INVALID],
            Notifier,
            SUBSCRIBE,
            || {
                pb::SubscribeRequest {
                    rooms: vec!["abuse".into()],
                    epoch: "\u{1b}[2J\u{0}".into(),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Publish of a type with terminal escapes is refused",
            CONTROL,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("abuse", "\u{1b}]0;owned\u{7}\u{1b}[2J", "{}", 0),
        ),
        call(
            "Publish of a 1 MB type is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("abuse", &"t".repeat(1 << 20), "{}", 0),
        ),
        call(
            "Publish of a 3.9 MB payload is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("abuse", "note", &"p".repeat(3_900_000), 0),
        ),
        call(
            "Publish to a 1 MB room is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish(&"r".repeat(1 << 20), "note", "{}", 0),
        ),
        call(
            "Publish to a room with control characters is refused",
            CONTROL,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("room\u{0}\n\u{1b}", "note", "{}", 0),
        ),
        call(
            "Publish with no room is refused",
            FORGED,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("", "note", "{}", 0),
        ),
        call(
            "Publish with a 1 MB idempotency key is refused",
            OVERSIZE,
            &[INVALID],
            Notifier,
            PUBLISH,
            || {
                pb::Notification {
                    room: "abuse".into(),
                    r#type: "note".into(),
                    idempotency_key: "k".repeat(1 << 20),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Publish with control characters in its idempotency key is refused",
            CONTROL,
            &[INVALID],
            Notifier,
            PUBLISH,
            || {
                pb::Notification {
                    room: "abuse".into(),
                    r#type: "note".into(),
                    idempotency_key: "k\u{0}\n\u{1b}[2J".into(),
                    ..Default::default()
                }
                .encode_to_vec()
            },
        ),
        call(
            "Publish with an unknown priority is refused",
            FORGED,
            &[INVALID],
            Notifier,
            PUBLISH,
            || publish("abuse", "note", "{}", 77),
        ),
        // --- Methods that do not exist --------------------------------------------------------
        call(
            "an unknown method is UNIMPLEMENTED",
            "unknown method",
            &[Code::Unimplemented],
            Scans,
            "/phantom.v1.ScanOrchestrator/DropAllTables",
            Vec::new,
        ),
        call(
            "an unknown service is UNIMPLEMENTED",
            "unknown method",
            &[Code::Unimplemented],
            Notifier,
            "/evil.v1.Backdoor/Open",
            Vec::new,
        ),
        case(
            "a method name of 8 KB is refused without being echoed",
            "unknown method",
            grpc_code(Code::Unimplemented),
            |cx| {
                Box::pin(async move {
                    let path = format!("/phantom.v1.Notifier/{}", "M".repeat(8 * 1024));
                    unary(cx.addrs.notifier, &path, vec![]).await
                })
            },
        ),
        system_health_hides_credentials(),
        cvss_vectors_that_bend_the_rules(),
    ];
    all.push(unknown_method_flood());
    all.push(non_reading_streams());
    all.push(too_many_streams_per_connection());
    all.extend(OUT_OF_SCOPE.iter().map(|&(addr, why)| {
        let mut c = case(
            "an address the scope refuses, in every form",
            "scope",
            grpc_code(Code::PermissionDenied),
            move |cx| {
                Box::pin(async move {
                    let mut answer = unary(
                        cx.addrs.scan_orchestrator,
                        CREATE_SCAN,
                        create(&[addr], "80", "nuclei"),
                    )
                    .await;
                    answer.note = format!("{addr} ({why}): {}", answer.note);
                    answer
                })
            },
        );
        c.name = Box::leak(format!("{addr} is refused ({why})").into_boxed_str());
        c
    }));
    all.extend(http_cases());
    all.extend(ws_cases());
    all
}

/// GetSystemHealth with an LLM endpoint configured with credentials: none shows.
fn system_health_hides_credentials() -> Case {
    case(
        "GetSystemHealth never shows URL credentials",
        "secrets",
        grpc_code(Code::Ok),
        |cx| {
            Box::pin(async move {
                let path = SYSTEM_HEALTH.parse().expect("path");
                let body = Bytes::from(pb::GetSystemHealthRequest::default().encode_to_vec());
                let reply = grpc(cx.addrs.health_aggregator)
                    .await
                    .unary(tonic::Request::new(body), path, Raw)
                    .await;
                match reply {
                    Err(status) => Answer::of(&status),
                    Ok(reply) => {
                        let text = String::from_utf8_lossy(reply.get_ref()).into_owned();
                        let mut answer = Answer::ok(0);
                        if text.contains("hunter2") || text.contains("s3cr3t") {
                            answer.seen = Seen::Other("the reply shows a URL's password".into());
                        }
                        answer
                    }
                }
            })
        },
    )
}

/// CVSS vectors an attacker would send now that ScoreCvss reads whole vectors and v4.0 is
/// parsed strictly: huge ones, repeats, 10,000 metrics, out-of-order and wrong-case v4.0,
/// Unicode look-alikes that a Unicode-aware case fold would turn into valid metrics. Each must
/// be INVALID_ARGUMENT with a BadRequest on `vector`, never a panic or a score.
fn cvss_vectors_that_bend_the_rules() -> Case {
    case(
        "CVSS vectors that bend the rules are INVALID_ARGUMENT with a BadRequest on `vector`",
        "cvss",
        grpc_code(INVALID),
        |cx| {
            Box::pin(async move {
                use tonic_types::StatusExt as _;
                const V4: &str = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
                const V3: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
                let vectors = [
                    // Huge: 100 KB, and 10,000 metrics (all the same, all valid on their own).
                    format!("{V4}/{}", "E:A/".repeat(25_000)),
                    format!("CVSS:4.0/{}", ["AV:N"; 10_000].join("/")),
                    format!("CVSS:3.1/{}", ["E:H"; 10_000].join("/")),
                    // Repeats, short enough to be parsed.
                    format!("{V4}/E:X/E:X"),
                    format!("{V4}/E:A/E:P"),
                    V4.replace("SA:N", "SA:N/SA:N"),
                    format!("{V3}/E:H/E:H"),
                    format!("{V3}/AV:N"),
                    // v4.0 out of order, and in the wrong case.
                    V4.replace("AV:N/AC:L", "AC:L/AV:N"),
                    format!("{V4}/CR:H/E:A"),
                    format!("{V4}/U:Red/S:P"),
                    V4.to_lowercase(),
                    V4.replace("VC:H", "vc:H"),
                    V4.replace("VC:H", "VC:h"),
                    format!("{V4}/U:RED"),
                    // Unicode: Turkish dotless and dotted i, full-width letters, the Kelvin
                    // sign, a Cyrillic e, a combining accent, a zero-width joiner.
                    V4.replace("UI:N", "Uı:N"),
                    V4.replace("UI:N", "Uİ:N"),
                    V4.replace("AV:N", "ＡＶ:Ｎ"),
                    V4.replace("AV:N", "AV:Ｎ"),
                    V3.replace("AV:N", "ＡＶ:Ｎ"),
                    format!("{V4}/U:Rеd"),
                    format!("{V4}/AU:\u{212a}"),
                    V4.replace("AV:N", "AV:N\u{301}"),
                    V4.replace("AV:N", "A\u{200d}V:N"),
                    format!("{V3}/MS:\u{0130}"),
                    // Separators: empty components, a trailing slash, a missing value.
                    format!("{V4}/"),
                    V4.replace('/', "//"),
                    format!("{V4}/E:"),
                    format!("{V4}/E"),
                ];
                let path: http::uri::PathAndQuery = SCORE_CVSS.parse().expect("path");
                let mut client = grpc(cx.addrs.vuln_analyzer).await;
                let mut worst = Answer::ok(0);
                for vector in vectors {
                    let body = Bytes::from(cvss(vector.clone()));
                    client.ready().await.expect("channel ready");
                    let answer = match client
                        .unary(tonic::Request::new(body), path.clone(), Raw)
                        .await
                    {
                        Ok(_) => Answer {
                            seen: Seen::Other(format!("scored {:.80?}", vector)),
                            bytes: 0,
                            note: String::new(),
                        },
                        Err(status) => {
                            let mut answer = Answer::of(&status);
                            let on_vector = status.get_details_bad_request().is_some_and(|b| {
                                b.field_violations.iter().any(|v| v.field == "vector")
                            });
                            if answer.seen == Seen::Grpc(INVALID) && !on_vector {
                                answer.seen = Seen::Other(format!(
                                    "no BadRequest on `vector` for {:.80?}",
                                    vector
                                ));
                            }
                            answer
                        }
                    };
                    if answer.seen != Seen::Grpc(INVALID) {
                        return answer;
                    }
                    if answer.bytes > worst.bytes {
                        worst = answer;
                    }
                }
                worst
            })
        },
    )
}

/// 20,000 calls to distinct unknown methods: the metrics (and the process) must not grow
/// with them.
fn unknown_method_flood() -> Case {
    let mut c = case(
        "20,000 distinct unknown methods leave the metrics as they were",
        "unknown method",
        grpc_code(Code::Ok),
        |cx| {
            Box::pin(async move {
                let metrics = |addr| async move {
                    unary(
                        addr,
                        GET_METRICS,
                        pb::GetMetricsRequest::default().encode_to_vec(),
                    )
                    .await
                    .bytes
                };
                let before = metrics(cx.addrs.notifier).await;
                let ch = channel(cx.addrs.notifier).await;
                let calls = futures::stream::iter(0..20_000).map(|i| {
                    let ch = ch.clone();
                    async move {
                        let mut grpc = tonic::client::Grpc::new(ch);
                        let _ = grpc.ready().await;
                        let path = format!("/phantom.v1.Notifier/Nope{i}")
                            .parse()
                            .expect("path");
                        grpc.unary(tonic::Request::new(Bytes::new()), path, Raw)
                            .await
                            .err()
                    }
                });
                use futures::StreamExt;
                let codes: Vec<Option<Status>> = calls.buffer_unordered(64).collect().await;
                let unexpected: Vec<String> = codes
                    .iter()
                    .filter(|c| {
                        // UNIMPLEMENTED, or refused by the limiter; or the connection closed
                        // by the server's HTTP/2 reset-flood guard (h2 sends GOAWAY after
                        // too many streams it had to reset), which is a defence, not a fault.
                        !matches!(
                            c.as_ref().map(Status::code),
                            Some(Code::Unimplemented | Code::ResourceExhausted)
                        ) && !c.as_ref().is_some_and(|s| {
                            // The calls in flight when it does: cut off, or never sent.
                            matches!(s.code(), Code::Unknown | Code::Unavailable)
                                && s.message().contains("transport error")
                                || s.code() == Code::Cancelled
                                    && s.message() == "operation was canceled"
                        })
                    })
                    .map(|c| format!("{:?}", c.as_ref().map(|s| (s.code(), s.message()))))
                    .collect();
                let after = metrics(cx.addrs.notifier).await;
                let mut answer = Answer::ok(after);
                answer.note = format!(
                    "GetMetrics {before} B before, {after} B after; {} unexpected codes {:?}",
                    unexpected.len(),
                    unexpected.iter().take(3).collect::<Vec<_>>()
                );
                if after > before + 16 * 1024 || !unexpected.is_empty() {
                    answer.seen = Seen::Other(answer.note.clone());
                }
                answer
            })
        },
    );
    c.max_reply = 1 << 20;
    c.max_cpu = 60.0;
    c
}

/// 80 replaying Subscribe streams over a room of large notifications that never read: the
/// notifier's memory must stay bounded, and come back when they are cancelled.
fn non_reading_streams() -> Case {
    let mut c = case(
        "80 replaying streams that never read hold bounded memory",
        "non-reading stream",
        grpc_code(Code::Ok),
        |cx| {
            Box::pin(async move {
                let ch = channel(cx.addrs.notifier).await;
                let mut held = Vec::new();
                let mut refused = 0;
                for _ in 0..80 {
                    let mut grpc = tonic::client::Grpc::new(ch.clone());
                    grpc.ready().await.expect("ready");
                    let request = pb::SubscribeRequest {
                        rooms: vec![cx.big_room.clone()],
                        after_sequence: [(cx.big_room.clone(), 0)].into(),
                        ..Default::default()
                    };
                    let path = SUBSCRIBE.parse().expect("path");
                    match grpc
                        .server_streaming(
                            tonic::Request::new(Bytes::from(request.encode_to_vec())),
                            path,
                            Raw,
                        )
                        .await
                    {
                        Ok(stream) => held.push(stream),
                        Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
                        Err(s) => return Answer::of(&s),
                    }
                }
                // Let the server fill whatever it buffers for streams nobody reads.
                settle().await;
                let mut answer = Answer::ok(0);
                answer.note = format!(
                    "{} streams held, {refused} refused (limit per caller)",
                    held.len()
                );
                drop(held);
                answer
            })
        },
    );
    c.max_cpu = 20.0;
    c
}

/// Waits until this process's RSS stops moving (at most 10 s): buffers have filled.
async fn settle() {
    let mut last = status_bytes("VmRSS");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = status_bytes("VmRSS");
        if now.abs_diff(last) < MIB {
            break;
        }
        last = now;
    }
}

/// Every gRPC port advertises a bound on concurrent streams per HTTP/2 connection.
fn too_many_streams_per_connection() -> Case {
    case(
        "gRPC ports advertise MAX_CONCURRENT_STREAMS",
        "many streams",
        grpc_code(Code::Ok),
        |cx| {
            Box::pin(async move {
                let mut notes = Vec::new();
                let mut missing = false;
                for addr in [
                    cx.addrs.scan_orchestrator,
                    cx.addrs.vuln_analyzer,
                    cx.addrs.notifier,
                    cx.addrs.health_aggregator,
                ] {
                    match max_concurrent_streams(addr).await {
                        Some(n) if n <= 1024 => notes.push(format!("{addr}: {n}")),
                        other => {
                            missing = true;
                            notes.push(format!("{addr}: {other:?}"));
                        }
                    }
                }
                let mut answer = Answer::ok(0);
                answer.note = notes.join(", ");
                if missing {
                    answer.seen = Seen::Other(answer.note.clone());
                }
                answer
            })
        },
    )
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS an HTTP/2 server at `addr` advertises, if any.
async fn max_concurrent_streams(addr: SocketAddr) -> Option<u32> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .ok()?;
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(PATIENCE, tcp.read_exact(&mut head))
            .await
            .ok()?
            .ok()?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.ok()?;
        // A SETTINGS frame (type 4) that is not an ACK (flag 1).
        if head[3] == 4 && head[4] & 1 == 0 {
            return payload.chunks_exact(6).find_map(|s| {
                (u16::from_be_bytes([s[0], s[1]]) == 3)
                    .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP port.

/// Sends `raw` to `addr` and reads what comes back until the server closes or `PATIENCE`.
async fn http_raw(addr: SocketAddr, raw: Vec<u8>) -> Answer {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return Answer {
            seen: Seen::Closed,
            bytes: 0,
            note: "refused".into(),
        };
    };
    if tcp.write_all(&raw).await.is_err() {
        return Answer {
            seen: Seen::Closed,
            bytes: 0,
            note: "closed while writing".into(),
        };
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    Answer {
        seen: code.map_or(Seen::Closed, Seen::Http),
        bytes: reply.len(),
        note: text.lines().next().unwrap_or_default().to_owned(),
    }
}

fn http_cases() -> Vec<Case> {
    vec![
        case(
            "a Host header that is not ours is refused (DNS rebinding)",
            "http",
            vec![Seen::Http(421), Seen::Http(403)],
            |cx| {
                Box::pin(async move {
                    http_raw(cx.addrs.http, b"GET /health HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n".to_vec()).await
                })
            },
        ),
        case(
            "/health never shows URL credentials",
            "secrets",
            vec![Seen::Http(200), Seen::Http(503)],
            |cx| {
                Box::pin(async move {
                    let (code, body) = http_get(cx.addrs.http, "/health").await;
                    let mut answer = Answer {
                        seen: Seen::Http(code),
                        bytes: body.len(),
                        note: String::new(),
                    };
                    if body.contains("hunter2") || body.contains("s3cr3t") {
                        answer.seen = Seen::Other("/health shows a URL's password".into());
                    }
                    answer.bytes = 0;
                    answer
                })
            },
        ),
        case(
            "a 1 MB request header is refused",
            "http",
            vec![Seen::Http(431), Seen::Http(400), Seen::Closed],
            |cx| {
                Box::pin(async move {
                    let raw = format!(
                        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Junk: {}\r\nConnection: close\r\n\r\n",
                        "j".repeat(1 << 20)
                    );
                    http_raw(cx.addrs.http, raw.into_bytes()).await
                })
            },
        ),
        case(
            "10,000 request headers are refused",
            "http",
            vec![Seen::Http(431), Seen::Http(400), Seen::Closed],
            |cx| {
                Box::pin(async move {
                    let mut raw = String::from("GET /health HTTP/1.1\r\nHost: localhost\r\n");
                    for i in 0..10_000 {
                        raw.push_str(&format!("X-{i}: v\r\n"));
                    }
                    raw.push_str("Connection: close\r\n\r\n");
                    http_raw(cx.addrs.http, raw.into_bytes()).await
                })
            },
        ),
        case(
            "a 64 KB URI is refused",
            "http",
            vec![
                Seen::Http(414),
                Seen::Http(400),
                Seen::Http(431),
                Seen::Http(404),
                Seen::Closed,
            ],
            |cx| {
                Box::pin(async move {
                    let raw = format!(
                        "GET /health?{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                        "q".repeat(64 * 1024)
                    );
                    http_raw(cx.addrs.http, raw.into_bytes()).await
                })
            },
        ),
        case(
            "a 10 MB body is refused from its length, before it is sent",
            "http",
            vec![Seen::Http(413)],
            |cx| {
                Box::pin(async move {
                    let raw = format!(
                        "POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        10 << 20
                    );
                    http_raw(cx.addrs.http, raw.into_bytes()).await
                })
            },
        ),
        case(
            "garbage instead of HTTP is refused",
            "http",
            vec![Seen::Http(400), Seen::Closed],
            |cx| {
                Box::pin(async move {
                    http_raw(
                        cx.addrs.http,
                        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n"
                            .to_vec(),
                    )
                    .await
                })
            },
        ),
        case(
            "an unknown path is 404",
            "http",
            vec![Seen::Http(404)],
            |cx| {
                Box::pin(async move {
                    http_raw(cx.addrs.http, b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec()).await
                })
            },
        ),
        slowloris(
            "slowloris connections on the HTTP port are closed by the header timeout",
            |cx| cx.addrs.http,
        ),
        slowloris(
            "slowloris connections on the WebSocket port are closed by the header timeout",
            |cx| cx.addrs.ws,
        ),
        connection_flood(),
    ]
}

/// 100 connections that send half a request header and stall: each is closed by the server,
/// and `/health` answers all along.
fn slowloris(name: &'static str, port: fn(&Ctx) -> SocketAddr) -> Case {
    let mut c = case(name, "slow client", vec![Seen::Closed], move |cx| {
        Box::pin(async move {
            let addr = port(cx);
            let mut open = Vec::new();
            for _ in 0..100 {
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await
                    && tcp
                        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                        .await
                        .is_ok()
                {
                    open.push(tcp);
                }
            }
            let (code, _) = http_get(cx.addrs.http, "/health").await;
            // Every stalled connection must be closed by the server (a read returns 0 or fails).
            let closed = futures::future::join_all(open.iter_mut().map(|tcp| async move {
                let mut buf = [0u8; 1024];
                loop {
                    match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => return true,
                        Ok(Ok(_)) => {}
                        Err(_) => return false,
                    }
                }
            }))
            .await;
            let still_open = closed.iter().filter(|c| !**c).count();
            let mut answer = Answer {
                seen: Seen::Closed,
                bytes: 0,
                note: format!(
                    "/health answered {code} meanwhile; {still_open} of {} still open",
                    open.len()
                ),
            };
            if still_open > 0 || !(code == 200 || code == 503) {
                answer.seen = Seen::Other(answer.note.clone());
            }
            answer
        })
    });
    c.max_cpu = 10.0;
    c
}

/// More connections than the HTTP port's cap: the extra ones are closed at once, and the
/// port still serves once they are gone.
fn connection_flood() -> Case {
    let mut c = case(
        "connections beyond the HTTP port's cap are closed",
        "slow client",
        vec![Seen::Http(200), Seen::Http(503)],
        |cx| {
            Box::pin(async move {
                let mut open = Vec::new();
                for _ in 0..(HTTP_MAX_CONNECTIONS + 50) {
                    if let Ok(tcp) = tokio::net::TcpStream::connect(cx.addrs.http).await {
                        open.push(tcp);
                    }
                }
                // Those over the cap are closed as soon as they are accepted; those under it
                // stay open (the header timeout is far longer than this look).
                let closed = futures::future::join_all(open.iter_mut().map(|tcp| async move {
                    let mut buf = [0u8; 16];
                    matches!(
                        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await,
                        Ok(Ok(0) | Err(_))
                    )
                }))
                .await
                .into_iter()
                .filter(|c| *c)
                .count();
                drop(open);
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (code, body) = http_get(cx.addrs.http, "/health").await;
                let mut answer = Answer {
                    seen: Seen::Http(code),
                    bytes: body.len(),
                    note: format!("{closed} of {} closed at once", HTTP_MAX_CONNECTIONS + 50),
                };
                if closed != 50 {
                    answer.seen = Seen::Other(answer.note.clone());
                }
                answer.bytes = 0;
                answer
            })
        },
    );
    c.max_cpu = 10.0;
    c
}

/// The HTTP port's connection cap in this suite's configuration.
const HTTP_MAX_CONNECTIONS: usize = 200;

// ---------------------------------------------------------------------------------------
// The WebSocket port.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(addr: SocketAddr, query: &str, origin: Option<&str>) -> Result<Ws, Answer> {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let mut request = match format!("ws://{addr}/ws?{query}").into_client_request() {
        Ok(request) => request,
        Err(e) => {
            return Err(Answer {
                seen: Seen::Other(format!("the client cannot send it: {e}")),
                bytes: 0,
                note: String::new(),
            });
        }
    };
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(Answer {
            seen: Seen::Http(resp.status().as_u16()),
            bytes: resp.body().as_ref().map_or(0, Vec::len),
            note: String::new(),
        }),
        Err(e) => Err(Answer {
            seen: Seen::Other(e.to_string()),
            bytes: 0,
            note: String::new(),
        }),
    }
}

/// Sends `message` on a fresh subscription and returns the close code the server answers with.
async fn ws_close_after(
    addr: SocketAddr,
    message: tokio_tungstenite::tungstenite::Message,
) -> Answer {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = match ws_connect(addr, "rooms=system", None).await {
        Ok(ws) => ws,
        Err(answer) => return answer,
    };
    let _ = ws.send(message).await;
    let mut bytes = 0;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Answer {
                    seen: frame
                        .as_ref()
                        .map_or(Seen::Closed, |f| Seen::WsClose(u16::from(f.code))),
                    bytes,
                    note: String::new(),
                };
            }
            Ok(Some(Ok(m))) => bytes += m.len(),
            Ok(Some(Err(_)) | None) => {
                return Answer {
                    seen: Seen::Closed,
                    bytes,
                    note: String::new(),
                };
            }
            Err(_) => {
                return Answer {
                    seen: Seen::Other("never closed".into()),
                    bytes,
                    note: String::new(),
                };
            }
        }
    }
}

/// What an upgrade request too large to serve may get.
const TOO_BIG: &[Seen] = &[
    Seen::Http(400),
    Seen::Http(414),
    Seen::Http(431),
    Seen::Closed,
];

/// A WebSocket upgrade with the query `query()` (built when the case runs) that must be
/// refused before the upgrade: the answer is the refusal, OK if it was upgraded.
fn upgrade(
    name: &'static str,
    class: &'static str,
    expect: &[Seen],
    origin: Option<&'static str>,
    query: fn() -> String,
) -> Case {
    case(name, class, expect.to_vec(), move |cx| {
        Box::pin(async move {
            ws_connect(cx.addrs.ws, &query(), origin)
                .await
                .err()
                .unwrap_or_else(|| Answer::ok(0))
        })
    })
}

fn ws_cases() -> Vec<Case> {
    use tokio_tungstenite::tungstenite::Message;
    vec![
        upgrade(
            "a WebSocket from a foreign origin is refused before the upgrade",
            "websocket",
            &[Seen::Http(403)],
            Some("https://evil.example"),
            || "rooms=system".to_owned(),
        ),
        upgrade(
            "a WebSocket with 5,000 rooms is refused before the upgrade",
            "huge map",
            TOO_BIG,
            None,
            || {
                let rooms: Vec<String> = (0..5_000).map(|i| format!("{i:x}")).collect();
                format!("rooms={}", rooms.join(","))
            },
        ),
        upgrade(
            "a WebSocket resume list of 4,000 rooms is refused before the upgrade",
            "huge map",
            TOO_BIG,
            None,
            || {
                let after: Vec<String> = (0..4_000).map(|i| format!("{i:x}:1")).collect();
                format!("rooms=system&after={}", after.join(","))
            },
        ),
        upgrade(
            "a WebSocket room with escapes is refused before the upgrade",
            "control characters",
            &[Seen::Http(400)],
            None,
            || "rooms=%1B%5D0%3Bowned%07".to_owned(),
        ),
        upgrade(
            "a WebSocket resume epoch with escapes is refused before the upgrade",
            "control characters",
            &[Seen::Http(400)],
            None,
            || "rooms=system&after=system:1&epoch=%1B%5B2J%00".to_owned(),
        ),
        case(
            "an oversized WebSocket frame closes with 1009",
            "websocket",
            vec![Seen::WsClose(1009), Seen::Closed],
            |cx| {
                Box::pin(async move {
                    ws_close_after(cx.addrs.ws, Message::text("x".repeat(4 << 20))).await
                })
            },
        ),
        case(
            "a binary WebSocket frame closes with 1003",
            "websocket",
            vec![Seen::WsClose(1003)],
            |cx| {
                Box::pin(async move {
                    ws_close_after(cx.addrs.ws, Message::binary(vec![0u8; 64])).await
                })
            },
        ),
        case(
            "a WebSocket frame that is not JSON closes with 1007",
            "websocket",
            vec![Seen::WsClose(1007)],
            |cx| {
                Box::pin(
                    async move { ws_close_after(cx.addrs.ws, Message::text("{\"kind\":")).await },
                )
            },
        ),
        case(
            "a WebSocket frame of an unknown kind closes with 1008",
            "websocket",
            vec![Seen::WsClose(1008)],
            |cx| {
                Box::pin(async move {
                    ws_close_after(
                        cx.addrs.ws,
                        Message::text("{\"kind\":\"publish\",\"room\":\"scan/x\"}"),
                    )
                    .await
                })
            },
        ),
        case(
            "a WebSocket frame of deeply nested JSON closes the socket",
            "deep protobuf",
            vec![Seen::WsClose(1007), Seen::WsClose(1009)],
            |cx| {
                Box::pin(async move {
                    ws_close_after(cx.addrs.ws, Message::text("[".repeat(50_000))).await
                })
            },
        ),
    ]
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_precise_bounded_cheap_answers_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("engine-record");
    let engine = recording_engine(dir.path(), &record);
    let mut config = config(dir.path());
    config.scan.nuclei.path = engine.display().to_string();
    config.scan.nmap.path = engine.display().to_string();
    // A configured LLM endpoint with credentials in its URL: no answer may show them.
    config.analyzer.llm.base_url = "http://phantom:hunter2@127.0.0.1:9/v1?api_key=s3cr3t".into();
    // Long enough that the connections the cap admits are still open when the flood case
    // looks at them, short enough for the slowloris case.
    config.http.header_read_timeout = Duration::from_secs(15);
    config.http.max_connections = HTTP_MAX_CONNECTIONS;
    let system = Running::start(config).await;

    // What must survive the suite: a room of large notifications (also what the
    // non-reading streams replay) and the scans list.
    let big_room = "abuse/replay".to_owned();
    let mut notifier =
        pb::notifier_client::NotifierClient::new(channel(system.addrs.notifier).await);
    let payload = format!("{{\"blob\":\"{}\"}}", "z".repeat(30 * 1024));
    for _ in 0..500 {
        notifier
            .publish(pb::Notification {
                room: big_room.clone(),
                r#type: "blob".into(),
                payload: payload.clone(),
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            })
            .await
            .expect("a legitimate publish is accepted");
    }
    let mut scans = pb::scan_orchestrator_client::ScanOrchestratorClient::new(
        channel(system.addrs.scan_orchestrator).await,
    );
    let scans_before = scans
        .list_scans(pb::ListScansRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListScans")
        .into_inner()
        .scans
        .len();

    let cx = Ctx {
        addrs: system.addrs,

        big_room: big_room.clone(),
    };
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let all = cases();
    assert!(all.len() >= 60, "the suite has {} cases", all.len());
    for case in &all {
        let rss0 = status_bytes("VmRSS");
        reset_peak();
        let cpu0 = cpu_seconds();
        let answer = (case.attack)(&cx).await;
        let cpu = cpu_seconds() - cpu0;
        let peak = status_bytes("VmHWM").saturating_sub(rss0);
        let kept =
            i64::try_from(status_bytes("VmRSS")).unwrap_or(0) - i64::try_from(rss0).unwrap_or(0);
        let cost = Cost { cpu, peak, kept };
        let mut wrong = Vec::new();
        if !case.expect.contains(&answer.seen) {
            wrong.push(format!(
                "answered {:?}, expected one of {:?}",
                answer.seen, case.expect
            ));
        }
        if answer.bytes > case.max_reply {
            wrong.push(format!(
                "answer of {} bytes, over {}",
                answer.bytes, case.max_reply
            ));
        }
        if cost.cpu > case.max_cpu {
            wrong.push(format!(
                "cost {:.2} s of CPU, over {:.2}",
                cost.cpu, case.max_cpu
            ));
        }
        // Without a reset, VmHWM is the peak since the process started: still an upper bound.
        if cost.peak > case.max_peak {
            wrong.push(format!(
                "raised peak RSS by {} MiB, over {}",
                cost.peak / MIB,
                case.max_peak / MIB
            ));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} ({})",
                case.name,
                wrong.join("; "),
                answer.note
            ));
        }
        rows.push((case, answer, cost));
    }

    // Nothing stored, nothing sent, nothing lost.
    let scans_after = scans
        .list_scans(pb::ListScansRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListScans")
        .into_inner()
        .scans
        .len();
    if scans_after != scans_before {
        failures.push(format!(
            "hostile requests created {} scans",
            scans_after - scans_before
        ));
    }
    if let Ok(recorded) = std::fs::read_to_string(&record) {
        failures.push(format!("the engine was started for: {recorded}"));
    }
    let mut replay = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec![big_room.clone()],
            after_sequence: [(big_room.clone(), 0)].into(),
            ..Default::default()
        })
        .await
        .expect("a legitimate subscribe is accepted")
        .into_inner();
    let mut replayed = 0;
    while replayed < 500 {
        match tokio::time::timeout(PATIENCE, replay.message()).await {
            Ok(Ok(Some(pb::SubscribeResponse {
                event: Some(pb::subscribe_response::Event::Notification(n)),
            }))) => {
                replayed += 1;
                assert_eq!(
                    n.sequence, replayed,
                    "the room replays in order, with nothing missing"
                );
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("the replay stopped after {replayed}: {other:?}"),
        }
    }
    drop(replay);
    let (code, _) = http_get(system.addrs.http, "/health").await;
    assert!(
        code == 200 || code == 503,
        "/health answers after the suite: {code}"
    );
    system.stop().await;

    // The table, for the closing note: every case, then the worst per class.
    let mut worst: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    println!(
        "{:<78} {:>14} {:>7} {:>8} {:>9} {:>9}",
        "case", "answer", "bytes", "cpu s", "peak MiB", "kept MiB"
    );
    for (case, answer, cost) in &rows {
        println!(
            "{:<78} {:>14} {:>7} {:>8.2} {:>9.1} {:>9.1}",
            case.name.chars().take(78).collect::<String>(),
            format!("{:?}", answer.seen)
                .chars()
                .take(14)
                .collect::<String>(),
            answer.bytes,
            cost.cpu,
            cost.peak as f64 / MIB as f64,
            cost.kept as f64 / MIB as f64
        );
        let w = worst.entry(case.class).or_default();
        w.0 = w.0.max(cost.cpu);
        w.1 = w.1.max(cost.peak);
    }
    println!("\nworst per class:");
    for (class, (cpu, peak)) in &worst {
        println!(
            "  {class:<22} cpu {cpu:>6.2} s   peak +{:>6.1} MiB",
            *peak as f64 / MIB as f64
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were mishandled:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
