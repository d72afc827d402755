//! What one hostile client can do to a server built by `phantom_kit::server`: call
//! made-up methods by the thousand, open streams by the thousand on one connection, send
//! bytes that are not the message they claim to be. Each runs against a real server on
//! loopback, through the shared layer stack.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt as _;
use phantom_kit::{CancellationToken, Context, config::ServerSettings, server};
use phantom_proto::pb::{self, vuln_analyzer_server::VulnAnalyzerServer};
use tonic::{
    Code, Request, Response, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

/// A service whose handlers are never reached by these tests: requests that do not decode
/// are refused before.
#[derive(Debug)]
struct Unreached;

#[tonic::async_trait]
impl pb::vuln_analyzer_server::VulnAnalyzer for Unreached {
    async fn analyze_findings(
        &self,
        _: Request<pb::AnalyzeFindingsRequest>,
    ) -> Result<Response<pb::AnalyzeFindingsResponse>, Status> {
        Err(Status::unimplemented("unreached"))
    }

    async fn score_cvss(
        &self,
        _: Request<pb::ScoreCvssRequest>,
    ) -> Result<Response<pb::ScoreCvssResponse>, Status> {
        Err(Status::unimplemented("unreached"))
    }

    async fn warm_scan(
        &self,
        _: Request<pb::WarmScanRequest>,
    ) -> Result<Response<pb::WarmScanResponse>, Status> {
        Err(Status::unimplemented("unreached"))
    }
}

/// Serves the vuln-analyzer's router (with [`Unreached`]) on loopback; the channel is one
/// HTTP/2 connection to it. Its metrics are in the context's registry.
async fn serve() -> (Channel, CancellationToken, Context) {
    let config = ServerSettings::default();
    let context = Context::default();
    let (router, health) = server::router(
        "vuln-analyzer",
        &config,
        &context,
        &["phantom.v1.VulnAnalyzer"],
    )
    .unwrap();
    let router = router.add_service(VulnAnalyzerServer::new(Unreached));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let shutdown_config = config.shutdown.clone();
    health.set_serving().await;
    tokio::spawn(async move {
        server::serve(
            "vuln-analyzer",
            router,
            listener,
            None,
            health,
            &shutdown_config,
            stop,
        )
        .await
        .unwrap();
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, shutdown, context)
}

/// Sends and receives message bytes as they are, whatever the method expects.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `path` with `message` as the request's bytes.
async fn call_raw(channel: &Channel, path: &str, message: &'static [u8]) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        Request::new(Bytes::from_static(message)),
        path.parse().unwrap(),
        RawCodec,
    )
    .await
    .map(Response::into_inner)
}

#[tokio::test]
async fn undecodable_request_bytes_answer_invalid_argument_without_echoing_them() {
    let (channel, shutdown, _) = serve().await;
    let cases: [(&str, &str, &'static [u8]); 3] = [
        (
            "invalid UTF-8 in a string field",
            "/phantom.v1.VulnAnalyzer/ScoreCvss",
            // Field 1 (vector), length 4: not UTF-8.
            b"\x0a\x04\xff\xfe\xc0\x80",
        ),
        (
            "a varint cut short",
            "/phantom.v1.Metrics/GetMetrics",
            b"\x08\x80",
        ),
        (
            "a length beyond the message",
            "/phantom.v1.VulnAnalyzer/ScoreCvss",
            b"\x0a\x7fCVSS",
        ),
    ];
    for (what, path, bytes) in cases {
        let status = call_raw(&channel, path, bytes).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{what}: {}",
            status.message()
        );
        let bad = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("{what}: no BadRequest detail"));
        assert!(!bad.field_violations.is_empty(), "{what}");
        assert!(
            !status.message().contains('\u{fffd}') && !status.message().contains("CVSS"),
            "{what}: the bytes are echoed: {}",
            status.message()
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn twenty_thousand_unknown_methods_leave_metrics_and_limiters_bounded() {
    let (channel, shutdown, context) = serve().await;
    let text = || phantom_kit::metrics::render(&context.registry.families()).len();
    let keys = || {
        context
            .registry
            .snapshot()
            .rate_limiters
            .iter()
            .map(|l| l.tracked_keys)
            .sum::<usize>()
    };
    // Known methods first, so that their own series exist before the measure starts.
    let _ = call_raw(&channel, "/phantom.v1.Metrics/GetMetrics", b"").await;
    let _ = call_raw(&channel, "/attacker.Svc/Warmup", b"").await;
    let (text_before, keys_before) = (text(), keys());
    let calls = (0..20_000).map(|i| {
        let channel = channel.clone();
        async move {
            let path = format!("/attacker.Svc{i}/Method{i}");
            let status = call_raw(&channel, &path, b"").await.unwrap_err();
            // The unknown methods share one bucket per caller: past its burst they are limited.
            assert!(
                matches!(status.code(), Code::Unimplemented | Code::ResourceExhausted),
                "{path}: {status:?}"
            );
        }
    });
    // 64 at a time: fast, but well under any stream limit.
    let mut calls = futures::stream::iter(calls).buffer_unordered(64);
    while calls.next().await.is_some() {}
    let (text_after, keys_after) = (text(), keys());
    assert!(
        text_after <= text_before + 16 * 1024,
        "GetMetrics grew from {text_before} to {text_after} bytes"
    );
    assert!(
        keys_after <= keys_before + 1,
        "limiters went from {keys_before} to {keys_after} buckets"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn one_connection_cannot_open_more_streams_than_the_server_advertises() {
    let (channel, shutdown, _) = serve().await;
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attempts = server::MAX_CONCURRENT_STREAMS as usize + 100;
    let mut streams = Vec::new();
    for _ in 0..attempts {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let opened = opened.clone();
        streams.push(tokio::spawn(async move {
            let stream = health
                .watch(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Held open: a client that does not read.
            std::future::pending::<()>().await;
            drop(stream);
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = opened.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        opened <= server::MAX_CONCURRENT_STREAMS as usize,
        "{opened} of {attempts} streams were accepted on one connection"
    );
    assert!(opened > 0);
    // The others wait on the client's side for a stream to end; none of them failed.
    assert!(streams.iter().all(|s| !s.is_finished()), "a stream failed");
    for s in streams {
        s.abort();
    }
    shutdown.cancel();
}
