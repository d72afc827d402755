//! The accept loop, the per-connection task, and the layer stack every request goes through.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::ConnectInfo,
    http::{
        Request, StatusCode,
        header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION},
    },
};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::{
    limit::RequestBodyLimitLayer,
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnFailure, TraceLayer},
};
use tracing::Level;

use super::{
    config::{HttpLimits, MAX_HEAD_BYTES},
    io::{Guarded, Phase},
};
use crate::tls::{Alpn, Conn, Tls};

/// Serves `router` on `listener` within `limits` until `shutdown` fires; then stops
/// accepting, lets requests in flight finish (each within the request timeout), closes
/// idle connections, and returns once every connection task has ended. Upgraded
/// connections (WebSockets) are the application's to end; they keep counting against the
/// cap until they do.
///
/// Over TLS (`http/1.1` in ALPN) when `tls` is given: each connection's handshake runs in
/// its own task, within the handshake timeout and holding its place under the cap, before
/// hyper reads a byte.
///
/// Handlers get the client's address as `ConnectInfo<SocketAddr>`, and the connection's
/// [`phantom_layers::auth::Peer`] (with the service a client certificate names) as an
/// extension. `what` names the port in logs and in
/// `phantom_http_connections_refused_total{listener}` (in `registry`, the registry of the
/// service that owns the port).
pub async fn serve(
    what: &str,
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    tls: Option<&Tls>,
    registry: &phantom_layers::registry::Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(
        listener = what,
        addr = ?listener.local_addr().ok(),
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        tls = tls.is_some(),
        "HTTP server listening"
    );
    let app = stack(router, limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let places = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let refused = registry.counter(
        "phantom_http_connections_refused_total",
        "Connections to an HTTP port closed as soon as accepted: the port had its maximum open.",
        &[("listener", what)],
    );
    // Every connection task holds a sender; the receiver sees the channel close when the
    // last one has ended.
    let (running, mut all_ended) = mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(what, &err, &shutdown).await;
                    continue;
                }
            },
        };
        // Closed at once, rather than left in the backlog: the client learns now, and an
        // attacker's connections cost nothing but the accept.
        let Ok(place) = places.clone().try_acquire_owned() else {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(listener = what, peer = %peer, "Connection refused: too many open");
            continue;
        };
        tokio::spawn(connection(
            Connection {
                stream,
                peer,
                place,
                tls: tls.cloned(),
                app: app.clone(),
                http: http.clone(),
                idle_timeout: limits.idle_timeout,
                shutdown: shutdown.clone(),
            },
            running.clone(),
        ));
    }
    drop(listener);
    drop(running);
    let _ = all_ended.recv().await;
    Ok(())
}

/// The layers every request goes through, outermost first.
fn stack(router: Router, limits: &HttpLimits) -> Router {
    router.layer(
        ServiceBuilder::new()
            // First, credentials are marked sensitive, so that nothing below (the trace,
            // a handler's `Debug` of its headers) can print them.
            .layer(SetSensitiveRequestHeadersLayer::new([
                AUTHORIZATION,
                PROXY_AUTHORIZATION,
                COOKIE,
            ]))
            // Then each request gets its span (DEBUG, like the gRPC side's per-call lines),
            // so even a request refused below is traced with its status. A 5xx is not an
            // operator's ERROR here: `/health` answers 503 whenever the system is down.
            .layer(
                TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
            )
            // Then the body: 413 before a handler buffers more than the limit.
            .layer(RequestBodyLimitLayer::new(limits.max_request_body))
            // Innermost, the handler's time: a hung dependency answers 408 rather than
            // holding the connection.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.request_timeout,
            )),
    )
}

/// What one connection task needs.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    place: OwnedSemaphorePermit,
    tls: Option<Tls>,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    idle_timeout: Duration,
    shutdown: CancellationToken,
}

/// Serves one connection until it closes; on shutdown, finishes its request in flight and
/// closes it. `_running` is dropped when the task ends.
async fn connection(c: Connection, _running: mpsc::Sender<()>) {
    crate::tls::tune(&c.stream);
    let peer = c.peer;
    let conn = match &c.tls {
        None => Conn::plain(c.stream, peer),
        // Before hyper's header-read timer starts: the handshake has its own bound.
        Some(tls) => tokio::select! {
            () = c.shutdown.cancelled() => return,
            accepted = tls.accept(c.stream, peer, Alpn::Http1) => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::debug!(peer = %peer, error = %err, "TLS handshake failed");
                    return;
                }
            },
        },
    };
    let identity = conn.peer().clone();
    let phase = Arc::new(Phase::default());
    let io = TokioIo::new(Guarded::new(conn, c.idle_timeout, phase.clone(), c.place));
    let app = c.app;
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        // What `into_make_service_with_connect_info` gave handlers: the notifier limits
        // connections per client address.
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(identity.clone());
        let handling = phase.handling();
        let phase = phase.clone();
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                phase.upgraded();
            }
            drop(handling);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = c.http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = c.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = served {
        // Timeouts and clients that went away: routine on a port open to anyone.
        tracing::debug!(peer = %peer, error = %err, "HTTP connection ended");
    }
}

/// An accept that failed: a connection that died in the backlog is nothing; anything else
/// (out of file descriptors) is logged and waited out for a second, rather than retried in a
/// busy loop.
async fn accept_failed(what: &str, err: &std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(listener = what, error = %err, "Cannot accept connections; retrying in 1 s");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}
