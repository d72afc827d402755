//! One CreateScan is one trace: the scan-orchestrator's, vuln-analyzer's and notifier's spans
//! of it reach an OTLP collector (an in-process one, `opentelemetry-proto`'s tonic server)
//! under one trace id, each callee's server span the child of its caller's client span.
//!
//! Alone in its file: it installs the process's global subscriber.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::span::SpanKind,
};
use phantom_kit::config::LogFormat;
use phantom_proto::pb::scan_orchestrator_client::ScanOrchestratorClient;
use phantom_tests::{PATIENCE, Running, channel, config};
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::TcpListenerStream;

/// What the collector received.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// One received span, flattened with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: SpanKind,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

impl Collector {
    fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for request in self.0.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                let service = resource.get("service.name").cloned().unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Span {
                            service: service.clone(),
                            name: s.name.clone(),
                            kind: s.kind(),
                            trace_id: s.trace_id.clone(),
                            span_id: s.span_id.clone(),
                            parent_span_id: s.parent_span_id.clone(),
                            attributes: attributes(&s.attributes),
                        });
                    }
                }
            }
        }
        out
    }
}

/// A listener that greets like an SSH server: a finding to analyze.
async fn ssh_port() -> u16 {
    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ssh.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
        }
    });
    port
}

/// The spans of the trace the CreateScan call `correlation_id` started, once the calls to
/// the analyzer and the notifier are in.
async fn trace_of(collector: &Collector, correlation_id: &str) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans = collector.spans();
        let create = spans.iter().find(|s| {
            s.name == "phantom.v1.ScanOrchestrator/CreateScan"
                && s.attributes.get("correlation_id").map(String::as_str) == Some(correlation_id)
        });
        if let Some(create) = create {
            let trace: Vec<Span> = spans
                .iter()
                .filter(|s| s.trace_id == create.trace_id)
                .cloned()
                .collect();
            let served = |service: &str| {
                trace
                    .iter()
                    .any(|s| s.service == service && s.kind == SpanKind::Server)
            };
            let scan_ended = trace.iter().any(|s| s.name == "scan");
            if served("vuln-analyzer") && served("notifier") && scan_ended {
                return trace;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace never arrived whole: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_scan_is_one_trace_across_the_three_services_with_client_spans_as_parents() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.telemetry.otlp_endpoint = format!("http://{collector_addr}");
    cfg.telemetry.sampling_ratio = 1.0;
    cfg.telemetry.export_interval = Duration::from_millis(100);
    let secrets = phantom_kit::telemetry::Secrets::new();
    let process = phantom_kit::telemetry::init_with_writer(
        &cfg.telemetry,
        &phantom::config::ServiceName::ALL.map(phantom::config::ServiceName::as_str),
        &secrets,
        LogFormat::Json,
        false,
        std::io::sink,
    );
    let port = ssh_port().await;
    let system = Running::start_in(cfg, &process, &secrets).await;

    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let request = phantom_tests::scan_request(port, "trace-test-1");
    let scan = scans.create_scan(request).await.unwrap().into_inner();
    let done = phantom_tests::wait_for_success(&mut scans, &scan.id).await;
    assert_eq!(done.findings_count, 1);

    let trace = trace_of(&collector, "trace-test-1").await;
    let services: HashSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["scan-orchestrator", "vuln-analyzer", "notifier"] {
        assert!(services.contains(service), "{service} missing: {trace:#?}");
    }

    // Every server span but the first is the child of a client span of its caller.
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (&s.span_id[..], s)).collect();
    let create = trace
        .iter()
        .find(|s| s.name == "phantom.v1.ScanOrchestrator/CreateScan")
        .unwrap();
    for server in trace
        .iter()
        .filter(|s| s.kind == SpanKind::Server && s.service != "scan-orchestrator")
    {
        let parent = by_id
            .get(&server.parent_span_id[..])
            .unwrap_or_else(|| panic!("the parent of {server:#?} is not in the trace"));
        assert_eq!(parent.kind, SpanKind::Client, "{server:#?} <- {parent:#?}");
        assert_eq!(parent.service, "scan-orchestrator");
        assert_eq!(parent.name, server.name);
    }
    let methods: HashSet<&str> = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .map(|s| s.name.as_str())
        .collect();
    assert!(methods.contains("phantom.v1.VulnAnalyzer/AnalyzeFindings"));
    assert!(methods.contains("phantom.v1.Notifier/Publish"));

    // The RPC conventions, on both sides of every call.
    for span in trace
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Server | SpanKind::Client))
        .filter(|s| s.attributes.contains_key("rpc.system"))
    {
        let (service, method) = span.name.split_once('/').unwrap();
        assert_eq!(span.attributes["rpc.system"], "grpc", "{span:#?}");
        assert_eq!(span.attributes["rpc.service"], service, "{span:#?}");
        assert_eq!(span.attributes["rpc.method"], method, "{span:#?}");
        assert_eq!(span.attributes["rpc.grpc.status_code"], "0", "{span:#?}");
        assert!(!span.attributes.contains_key("service"), "{span:#?}");
    }
    // The correlation id followed the request into the other services.
    for server in trace.iter().filter(|s| s.kind == SpanKind::Server) {
        assert_eq!(server.attributes["correlation_id"], "trace-test-1");
    }

    // The scan runs after CreateScan returned, yet in its trace, as its child.
    let scan_span = trace.iter().find(|s| s.name == "scan").unwrap();
    assert_eq!(scan_span.parent_span_id, create.span_id);
    assert_eq!(scan_span.service, "scan-orchestrator");
    assert_eq!(scan_span.attributes["scan_id"], scan.id);

    // Storage work shows as child spans, under the service that did it.
    let db = |service: &str, op: &str| {
        trace.iter().any(|s| {
            s.service == service
                && s.kind == SpanKind::Client
                && s.attributes.get("db.operation.name").map(String::as_str) == Some(op)
        })
    };
    assert!(db("scan-orchestrator", "insert_scan"), "{trace:#?}");
    assert!(db("scan-orchestrator", "save_progress"), "{trace:#?}");
    assert!(db("vuln-analyzer", "put_analysis"), "{trace:#?}");
    assert!(
        trace.iter().any(|s| s.service == "vuln-analyzer"
            && s.attributes.get("cache.operation").map(String::as_str) == Some("get_or_load")),
        "{trace:#?}"
    );
    let ids: HashSet<&[u8]> = trace.iter().map(|s| &s.span_id[..]).collect();
    for span in trace.iter().filter(|s| s.span_id != create.span_id) {
        assert!(
            ids.contains(&span.parent_span_id[..]),
            "{span:#?} has a parent outside the trace"
        );
    }

    // What reached the collector is counted in the metrics.
    let exported = process
        .snapshot()
        .counters
        .into_iter()
        .find(|c| {
            c.name == "phantom_trace_spans_total"
                && c.labels.get("outcome").map(String::as_str) == Some("exported")
        })
        .map_or(0, |c| c.value);
    assert!(
        exported as usize >= trace.len(),
        "{exported} counted, {} received",
        trace.len()
    );
    system.stop().await;
}
