//! The server side: connections accepted plaintext or over TLS, with the [`Peer`] each one
//! is, as tonic's incoming stream or one at a time (the HTTP ports).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use phantom_layers::auth::Peer;
use rustls_pki_types::CertificateDer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::server::TlsStream;

use super::{Alpn, Tls};

/// Idle time before the kernel probes a TCP connection, for peers gone without a FIN: under
/// the usual 350 s idle timeout of cloud NATs and load balancers.
pub const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// Handshakes in progress at once on one listener; a connection accepted beyond it is
/// closed at once. Each costs a task and a few KiB until it completes or times out, so a
/// flood of silent clients holds at most this many, for at most the handshake timeout.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// Handshaken connections waiting for tonic to take them.
const READY_QUEUE: usize = 64;

/// One accepted connection, plaintext or TLS, and who is at its other end: what tonic's
/// server is given, and what it sets on every request as the [`Peer`] extension.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    peer: Peer,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    // Boxed: a TLS session is a few hundred bytes more than a socket.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// A plaintext connection from `addr`: it names no service.
    pub fn plain(stream: TcpStream, addr: SocketAddr) -> Self {
        Self {
            io: Io::Plain(stream),
            peer: Peer {
                remote_addr: Some(addr),
                service: None,
            },
        }
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The certificate the client presented and rustls verified, if any (TLS only).
    pub fn client_certificate(&self) -> Option<&CertificateDer<'static>> {
        match &self.io {
            Io::Plain(_) => None,
            Io::Tls(tls) => tls.get_ref().1.peer_certificates()?.first(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Tls {
    /// Completes the server handshake of `stream` (from `addr`) for a listener speaking
    /// `alpn`, within the handshake timeout, with the current configuration. The connection
    /// names a service when the client presented a certificate (rustls verified it against
    /// the CA) whose URI SAN is `spiffe://<trust-domain>/<service>`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        alpn: Alpn,
    ) -> io::Result<Conn> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config(alpn));
        let tls = tokio::time::timeout(self.handshake_timeout(), acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let service = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(service_of);
        Ok(Conn {
            io: Io::Tls(Box::new(tls)),
            peer: Peer {
                remote_addr: Some(addr),
                service,
            },
        })
    }
}

/// The connections of `listener` for tonic's `serve_with_incoming_shutdown`: plaintext when
/// `tls` is `None`, TLS (`h2`) otherwise. Every socket gets `TCP_NODELAY` (calls are small;
/// Nagle would delay them) and TCP keep-alive.
///
/// Handshakes run in tasks of their own, each within the handshake timeout and at most
/// [`MAX_CONCURRENT_HANDSHAKES`] at once, and connections are yielded as their handshakes
/// complete: a slow or silent client delays no one else. The listener closes when the stream
/// is dropped (tonic drops it when it stops serving).
pub fn incoming(listener: TcpListener, tls: Option<Tls>) -> Incoming {
    let (ready, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(listener, tls, ready));
    Incoming { rx }
}

/// Connections of a listener, as they are ready to serve (see [`incoming`]).
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Conn>,
}

impl futures::Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<Tls>, ready: mpsc::Sender<Conn>) {
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let (stream, addr) = tokio::select! {
            () = ready.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        tracing::warn!(error = %err, "Cannot accept connections; retrying in 1 s");
                        tokio::select! {
                            () = ready.closed() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        tune(&stream);
        let Some(tls) = &tls else {
            if ready.send(Conn::plain(stream, addr)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(slot) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(peer = %addr, "Connection refused: too many TLS handshakes in progress");
            continue;
        };
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            let accepted = tls.accept(stream, addr, Alpn::H2).await;
            drop(slot);
            match accepted {
                Ok(conn) => {
                    // Fails only when the server stopped: the connection is then dropped.
                    let _ = ready.send(conn).await;
                }
                // Scanners, health checkers that only open TCP, clients with a certificate
                // from another CA: routine on a port open to a network.
                Err(err) => tracing::debug!(peer = %addr, error = %err, "TLS handshake failed"),
            }
        });
    }
}

/// An accept error that concerns one connection (it died in the backlog), not the listener.
fn is_connection_error(err: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// `TCP_NODELAY` and keep-alive, as tonic sets on the listeners it binds itself.
pub(crate) fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// The service a verified client certificate names: the last path segment of its one
/// `spiffe://` URI SAN, if that is a service name (`[a-z0-9-]`, 1-63 characters).
fn service_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut spiffe = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                Some(*uri)
            }
            _ => None,
        });
    let uri = spiffe.next()?;
    // A SPIFFE identity has exactly one URI SAN; two would leave the name ambiguous.
    if spiffe.next().is_some() {
        return None;
    }
    spiffe_service(uri).map(str::to_owned)
}

/// The service of a SPIFFE ID `spiffe://<trust-domain>/<path>`: its last path segment, if it
/// is a service name.
pub fn spiffe_service(uri: &str) -> Option<&str> {
    let (domain, path) = uri.strip_prefix("spiffe://")?.split_once('/')?;
    let name = path.rsplit('/').next()?;
    let valid = !domain.is_empty()
        && (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(name)
}
