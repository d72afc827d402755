//! The HTTP ports against hostile and ordinary clients, over loopback, on a paused clock:
//! tokio advances time only when every task waits, so a timeout fires exactly when it is due
//! whatever the machine's speed, and the assertions bound the virtual time it took.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{
        ConnectInfo,
        ws::{Message, WebSocketUpgrade},
    },
    http::{HeaderMap, header::AUTHORIZATION},
    response::Response,
    routing::{get, post},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, HttpLimits, serve};

/// How long a WebSocket stays quiet after its upgrade: longer than the idle timeout of the
/// tests that use it.
const QUIET: Duration = Duration::from_secs(5);

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/wait",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "done"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/authorization",
            get(|headers: HeaderMap| async move {
                match headers.get(AUTHORIZATION) {
                    Some(v) if v.is_sensitive() => "sensitive",
                    Some(_) => "plain",
                    None => "absent",
                }
            }),
        )
        .route(
            "/endless",
            get(|| async {
                Body::from_stream(futures::stream::repeat_with(|| {
                    Ok::<_, Infallible>(Bytes::from_static(&CHUNK))
                }))
            }),
        )
        .route("/ws", get(ws))
}

/// Upgrades, stays quiet for [`QUIET`], then sends the client's address as it saw it.
async fn ws(ws: WebSocketUpgrade, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        tokio::time::sleep(QUIET).await;
        let _ = socket.send(Message::Text(peer.to_string().into())).await;
        let _ = socket.send(Message::Close(None)).await;
    })
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(limits: HttpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            serve(
                "test",
                listener,
                app(),
                &limits,
                None,
                &Default::default(),
                shutdown,
            )
            .await
        }
    });
    Server {
        addr,
        shutdown,
        task,
    }
}

/// Reads (and discards) until the server closes the connection; how long that took, or
/// `None` if it was still open after `patience`. Panics past `max_bytes` read.
async fn closed_within(
    stream: &mut TcpStream,
    patience: Duration,
    max_bytes: usize,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    total += n;
                    assert!(total <= max_bytes, "still sending after {total} bytes");
                }
            }
        }
    };
    tokio::time::timeout(patience, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// One HTTP/1.1 request on `stream` (kept open), its response's status and body.
async fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a response: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the body");
        raw.extend_from_slice(&buf[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned(),
    )
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

#[tokio::test(start_paused = true)]
async fn the_defaults_disconnect_a_client_that_stalls_in_its_request_head() {
    let server = start(HttpLimits::default()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localh")
        .await
        .unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(600), 1 << 20)
        .await
        .expect("the slowloris connection was still open after 600 s");
    assert!(
        took >= DEFAULT_HEADER_READ_TIMEOUT && took < DEFAULT_IDLE_TIMEOUT,
        "closed after {took:?}, not by the header read timeout ({DEFAULT_HEADER_READ_TIMEOUT:?})"
    );
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_disconnected_by_the_header_read_timeout() {
    let server = start(HttpLimits::default()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(600), 0)
        .await
        .expect("the silent connection was still open after 600 s");
    assert!(
        took >= DEFAULT_HEADER_READ_TIMEOUT && took < DEFAULT_IDLE_TIMEOUT,
        "closed after {took:?}"
    );
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_connection_left_idle_is_closed() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        exchange(&mut client, &request("/")).await,
        (200, "ok".into())
    );
    let took = closed_within(&mut client, Duration::from_secs(600), 0)
        .await
        .expect("the idle keep-alive connection was still open after 600 s");
    assert!(
        took >= Duration::from_secs(2) && took < DEFAULT_IDLE_TIMEOUT,
        "closed after {took:?}"
    );
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_response_is_disconnected_by_the_idle_timeout() {
    let limits = HttpLimits {
        idle_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(request("/endless").as_bytes())
        .await
        .unwrap();
    // The server fills the socket's buffers, then waits on a reader that never reads.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        closed_within(&mut client, Duration::from_secs(600), 512 << 20)
            .await
            .is_some(),
        "the connection of a client that stopped reading was still open"
    );
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn connections_beyond_the_cap_are_closed_at_once_and_admitted_again_below_it() {
    let limits = HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(exchange(&mut first, &request("/")).await.0, 200);
    assert_eq!(exchange(&mut second, &request("/")).await.0, 200);
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut third, Duration::from_secs(600), 0)
        .await
        .expect("a connection beyond the cap was still open after 600 s");
    assert!(
        took < Duration::from_secs(1),
        "closed after {took:?}: by a timeout, not by the cap"
    );
    // One leaves: a newcomer gets its place (once the server has seen it leave).
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        let mut next = TcpStream::connect(server.addr).await.unwrap();
        let _ = next.write_all(request("/").as_bytes()).await;
        let mut buf = [0; 12];
        if next.read_exact(&mut buf).await.is_ok() {
            assert_eq!(&buf, b"HTTP/1.1 200");
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(admitted, "no connection admitted after one of two closed");
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_hangs_is_answered_408_by_the_request_timeout() {
    let limits = HttpLimits {
        request_timeout: Duration::from_secs(3),
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(600),
        exchange(&mut client, &request("/hang")),
    )
    .await
    .expect("no answer to a hanging handler after 600 s");
    assert_eq!(answer.0, 408);
    assert!(started.elapsed() >= Duration::from_secs(3));
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_refused_413() {
    let limits = HttpLimits {
        max_request_body: 1000,
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let small = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{}",
        "a".repeat(1000)
    );
    assert_eq!(exchange(&mut client, &small).await, (200, "1000".into()));
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let big = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\n\r\n{}",
        "a".repeat(1001)
    );
    assert_eq!(exchange(&mut client, &big).await.0, 413);
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn authorization_headers_are_marked_sensitive_before_handlers_and_traces_see_them() {
    let server = start(HttpLimits::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let request =
        "GET /authorization HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer abc\r\n\r\n";
    assert_eq!(
        exchange(&mut client, request).await,
        (200, "sensitive".into())
    );
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn handlers_see_the_client_address_on_a_kept_alive_connection() {
    let server = start(HttpLimits::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let me = client.local_addr().unwrap().to_string();
    assert_eq!(
        exchange(&mut client, &request("/peer")).await,
        (200, me.clone())
    );
    assert_eq!(exchange(&mut client, &request("/peer")).await, (200, me));
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_websocket_upgrade_works_and_outlives_the_idle_timeout() {
    let limits = HttpLimits {
        idle_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let server = start(limits).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let me = client.local_addr().unwrap().to_string();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut byte = [0; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).await.unwrap();
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The server's first frame, after a silence longer than the idle timeout: a text frame
    // (FIN, opcode 1), unmasked, with the address the handler saw.
    let mut frame = [0; 2];
    client.read_exact(&mut frame).await.unwrap();
    assert_eq!(frame[0], 0x81, "a final text frame");
    let mut text = vec![0; usize::from(frame[1])];
    client.read_exact(&mut text).await.unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), me);
    server.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_call_in_flight_finish_and_stops_accepting() {
    let server = start(HttpLimits::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(request("/wait").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.shutdown.cancel();
    let mut raw = String::new();
    client.read_to_string(&mut raw).await.unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.ends_with("done"),
        "{raw}"
    );
    tokio::time::timeout(Duration::from_secs(600), server.task)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}
