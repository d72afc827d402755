//! A TCP proxy on loopback between the system and one of its backends: what lets the bench
//! slow the backend down without touching it (PostgreSQL's latency spikes), and count what
//! the system sends to a backend while it is away (Redis stopped).
//!
//! Each accepted connection is paired with a connection to the backend. The requests (client
//! to backend) are held back by the current delay, in order: a delay set in the middle of a
//! connection's life slows the requests read from then on, never reorders them. The answers
//! pass as they come. A connection the backend refuses is closed at once, as the backend
//! itself would have refused it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinSet,
};

use super::Aborting;

/// What the backend speaks, for counting its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Not counted (PostgreSQL).
    Opaque,
    /// Redis' RESP: each command counts.
    Resp,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    protocol: Protocol,
    delay_us: AtomicU64,
    down: AtomicBool,
    wasted: AtomicU64,
}

/// A running proxy; it and its connections stop when it is dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: Aborting,
}

impl Proxy {
    /// A proxy on a free loopback port to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr, protocol: Protocol) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            protocol,
            delay_us: AtomicU64::new(0),
            down: AtomicBool::new(false),
            wasted: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            _accept: Aborting(accept),
        })
    }

    /// Where the system connects.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds every request read from now on back by `delay`.
    pub(crate) fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::SeqCst);
    }

    /// Marks the backend as stopped (or back): while it is, every connection attempt and
    /// every command that reaches the proxy is counted as wasted.
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Connection attempts and commands that reached the proxy while the backend was down.
    pub(crate) fn wasted(&self) -> u64 {
        self.shared.wasted.load(Ordering::SeqCst)
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped with this task: the connections end with the proxy.
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: let connections close rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        if shared.down.load(Ordering::SeqCst) {
            shared.wasted.fetch_add(1, Ordering::SeqCst);
        }
        let shared = shared.clone();
        connections.spawn(async move {
            let connect = TcpStream::connect(shared.upstream);
            let Ok(Ok(upstream)) = tokio::time::timeout(Duration::from_secs(1), connect).await
            else {
                return; // Refused: the client's connection closes, as the backend's would.
            };
            pipe(client, upstream, &shared).await;
        });
    }
}

/// Carries one connection until either side closes it.
async fn pipe(client: TcpStream, upstream: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = upstream.into_split();
    // Requests go through a queue to a writer that sends each when it is due.
    let (queue, mut due) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let requests = async {
        let mut commands = CommandCounter::default();
        let mut last_due = tokio::time::Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if shared.protocol == Protocol::Resp {
                let n = commands.feed(&buf[..n]);
                if shared.down.load(Ordering::SeqCst) {
                    shared.wasted.fetch_add(n, Ordering::SeqCst);
                }
            }
            let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
            last_due = last_due.max(tokio::time::Instant::now() + delay);
            if queue.send((last_due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        drop(queue);
    };
    let writer = async {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if up_w.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = up_w.shutdown().await;
    };
    let answers = async {
        let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    };
    // The backend closing (stopped, or it ended the session) ends the connection; the
    // client closing ends the requests, then the writer, then the backend's side.
    tokio::select! {
        _ = async { tokio::join!(requests, writer) } => {}
        () = answers => {}
    }
}

/// Counts the commands in a client's RESP stream, fed in chunks cut anywhere. A command is an
/// array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or an inline line (`PING\r\n`).
#[derive(Debug, Default)]
pub(crate) struct CommandCounter {
    /// The line being read (an array header, a bulk length or an inline command).
    line: Vec<u8>,
    /// Bulk strings still to come in the current command.
    items: u64,
    /// Bytes of the current bulk string (and its CRLF) still to skip.
    skip: u64,
}

impl CommandCounter {
    /// Reads `bytes`; returns how many commands began in them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut began = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64);
                self.skip -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(bytes);
                break;
            };
            self.line.extend_from_slice(&bytes[..nl]);
            bytes = &bytes[nl + 1..];
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            let number = || {
                std::str::from_utf8(&line[1..])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
            };
            if self.items == 0 {
                match line.first() {
                    Some(b'*') => {
                        began += 1;
                        self.items = number().map_or(0, |n| n.max(0).unsigned_abs());
                    }
                    Some(_) => began += 1,
                    None => {}
                }
            } else {
                self.items -= 1;
                // A bulk string's bytes and their CRLF; a null one (`$-1`) has neither.
                if line.first() == Some(&b'$') {
                    self.skip = number()
                        .filter(|&n| n >= 0)
                        .map_or(0, |n| n.unsigned_abs() + 2);
                }
            }
        }
        began
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_counted_however_the_stream_is_cut() {
        let stream: &[u8] =
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\nva\r\nl*ue\r\n$\r\n\
                             PING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        // The value of SET holds CRLF, '*' and '$': only the lengths tell where it ends.
        for cut in 1..stream.len() {
            let mut c = CommandCounter::default();
            let n = c.feed(&stream[..cut]) + c.feed(&stream[cut..]);
            assert_eq!(n, 4, "cut at {cut}");
        }
        let mut c = CommandCounter::default();
        let one_by_one: u64 = stream.iter().map(|b| c.feed(std::slice::from_ref(b))).sum();
        assert_eq!(one_by_one, 4);
    }

    /// One echoed PING through `echo`: how long it took.
    async fn round_trip(echo: &mut TcpStream) -> Duration {
        let started = tokio::time::Instant::now();
        echo.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 6];
        echo.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PING\r\n");
        started.elapsed()
    }

    #[tokio::test]
    async fn requests_are_held_back_by_the_delay_and_attempts_on_a_dead_backend_counted() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = backend.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream, Protocol::Resp).await.unwrap();
        let mut echo = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut echo).await < Duration::from_millis(100));
        proxy.set_delay(Duration::from_millis(200));
        assert!(round_trip(&mut echo).await >= Duration::from_millis(200));
        proxy.set_delay(Duration::ZERO);
        assert_eq!(proxy.wasted(), 0);
        proxy.set_down(true);
        round_trip(&mut echo).await;
        let _ = TcpStream::connect(proxy.addr()).await.unwrap();
        // One command on the open connection, one connection attempt.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(proxy.wasted(), 2);
    }
}
