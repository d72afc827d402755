use std::convert::Infallible;

use http::{Request, Response};
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use tonic::body::Body;
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::prelude::*;

use super::*;
use crate::{RequestIdLayer, request_id::CORRELATION_ID_HEADER};

/// Spans go to memory for the duration of the returned guard (this thread only).
fn collect() -> (InMemorySpanExporter, tracing::subscriber::DefaultGuard) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    (exporter, tracing::subscriber::set_default(subscriber))
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn a_server_span_is_the_child_of_the_callers_traceparent_and_ends_with_the_status() {
    let (spans, _guard) = collect();
    let server = ServerSpanLayer::new("vuln-analyzer").layer(RequestIdLayer::new("test").layer(
        service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(tonic::Status::not_found("no such finding").into_http::<Body>())
        }),
    ));
    let req = Request::builder()
        .uri("/phantom.v1.VulnAnalyzer/ScoreFinding")
        .header("traceparent", PARENT)
        .header(CORRELATION_ID_HEADER, "corr-1")
        .body(Body::empty())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    assert_eq!(res.headers()[CORRELATION_ID_HEADER], "corr-1");
    drop(res);

    let spans = spans.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span.name, "phantom.v1.VulnAnalyzer/ScoreFinding");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(span.parent_span_is_remote);
    for (key, want) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "phantom.v1.VulnAnalyzer"),
        ("rpc.method", "ScoreFinding"),
        ("rpc.grpc.status_code", "5"),
        ("correlation_id", "corr-1"),
        ("service", "vuln-analyzer"),
    ] {
        assert_eq!(attribute(span, key).as_deref(), Some(want), "{key}");
    }
    // NOT_FOUND is the caller's mistake, not the server's error.
    assert_eq!(span.status, opentelemetry::trace::Status::Unset);
}

#[tokio::test]
async fn a_call_made_while_serving_one_is_a_client_span_whose_child_is_the_callees_server_span() {
    let (spans, _guard) = collect();
    // The callee: reports the traceparent it received.
    let callee = service_fn(|req: Request<Body>| async move {
        let seen = req.headers()["traceparent"].clone();
        let mut res = Response::new(Body::empty());
        res.headers_mut()
            .insert("grpc-status", "0".parse().unwrap());
        res.headers_mut().insert("seen", seen);
        Ok::<_, Infallible>(res)
    });
    let client = ClientSpanLayer::new("scan-orchestrator").layer(callee);
    let handler = service_fn(move |_req: Request<Body>| {
        let client = client.clone();
        async move {
            let req = Request::builder()
                .uri("/phantom.v1.Notifier/Publish")
                .body(Body::empty())
                .unwrap();
            let res = client.oneshot(req).await?;
            let mut out = Response::new(Body::empty());
            out.headers_mut()
                .insert("seen", res.headers()["seen"].clone());
            out.headers_mut()
                .insert("grpc-status", "0".parse().unwrap());
            Ok::<_, Infallible>(out)
        }
    });
    let server = ServerSpanLayer::new("scan-orchestrator").layer(handler);
    let req = Request::builder()
        .uri("/phantom.v1.ScanOrchestrator/CreateScan")
        .body(Body::empty())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    let seen = res.headers()["seen"].to_str().unwrap().to_owned();
    drop(res);

    let spans = spans.get_finished_spans().unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    let client = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .unwrap();
    assert_eq!(client.name, "phantom.v1.Notifier/Publish");
    assert_eq!(client.parent_span_id, server.span_context.span_id());
    assert_eq!(
        client.span_context.trace_id(),
        server.span_context.trace_id()
    );
    assert_eq!(
        attribute(client, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    // What went out on the wire names the client span as the parent.
    assert_eq!(
        seen,
        format!(
            "00-{}-{}-01",
            client.span_context.trace_id(),
            client.span_context.span_id()
        )
    );
}

#[tokio::test]
async fn health_checks_get_no_span() {
    let (spans, _guard) = collect();
    let server = ServerSpanLayer::new("notifier").layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let req = Request::builder()
        .uri("/grpc.health.v1.Health/Check")
        .body(Body::empty())
        .unwrap();
    drop(server.oneshot(req).await.unwrap());
    assert!(spans.get_finished_spans().unwrap().is_empty());
    assert!(
        !opentelemetry::Context::current()
            .span()
            .span_context()
            .is_valid()
    );
}
