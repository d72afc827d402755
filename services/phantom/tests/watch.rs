//! `phantom watch` as a user runs it, against a notifier that restarts under it: every
//! notification printed once and in order, across a graceful restart (SIGTERM: the stream
//! ends with UNAVAILABLE) and a crash (SIGKILL: the connection breaks), what was published
//! while it was away replayed from its cursor.

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use phantom_proto::pb::{self, notifier_client::NotifierClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};
use tonic::transport::Channel;

use common::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_phantom");
const PATIENCE: Duration = Duration::from_secs(60);

/// `phantom serve notifier` on `port`, its database in `data`.
fn notifier(port: u16, data: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "notifier"])
        .env("PHANTOM_DATA_DIR", data)
        .env("PHANTOM_NOTIFIER_ADDR", format!("127.0.0.1:{port}"))
        .env("PHANTOM_WS_ADDR", "127.0.0.1:0")
        // Who may call is not this test's subject (tests/tests/identity.rs).
        .env("PHANTOM__AUTH__ENABLED", "false")
        .env_remove("PHANTOM_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A client of the notifier at `url`, once it answers (its store is open).
async fn client(url: &str) -> NotifierClient<Channel> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(mut c) = NotifierClient::connect(url.to_owned()).await
            && c.subscribe(pb::SubscribeRequest {
                rooms: vec!["probe".into()],
                ..Default::default()
            })
            .await
            .is_ok()
        {
            return c;
        }
        assert!(Instant::now() < deadline, "the notifier never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `n` notifications to `room`; returns their sequences.
async fn publish(
    client: &mut NotifierClient<Channel>,
    room: &str,
    priority: pb::Priority,
    n: usize,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        let stored = client
            .publish(pb::Notification {
                room: room.into(),
                priority: priority as i32,
                r#type: "scan.progress".into(),
                payload: format!("{{\"room\":\"{room}\"}}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seqs.push(stored.sequence);
    }
    seqs
}

async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

async fn exits(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits in time")
        .unwrap()
}

/// A `phantom watch` child: its stdout, line by line, and its stderr, kept.
struct Watcher {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn({
            let stderr = stderr.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    stderr.lock().unwrap().push(line);
                }
            }
        });
        Self {
            child,
            stdout,
            stderr,
        }
    }

    async fn line(&mut self) -> String {
        match tokio::time::timeout(PATIENCE, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "no line from phantom watch ({other:?}); its stderr: {:#?}",
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// The next `n` JSON lines.
    async fn notifications(&mut self, n: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for _ in 0..n {
            let line = self.line().await;
            out.push(serde_json::from_str(&line).expect(&line));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_notification_once_in_order_across_notifier_restarts() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = notifier(port, data.path());
    let mut c = client(&url).await;

    // Published before the watcher starts: it replays them (--after scan/a:0). "system"
    // starts live.
    assert_eq!(
        publish(&mut c, "scan/a", pb::Priority::High, 3).await,
        [1, 2, 3]
    );
    let mut watcher = Watcher::start(&[
        "scan/a", "system", "--after", "scan/a:0", "--output", "json", "--addr", &url,
    ]);
    let mut printed: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut record = |lines: Vec<serde_json::Value>| {
        for n in lines {
            printed
                .entry(n["room"].as_str().unwrap().to_owned())
                .or_default()
                .push(n["sequence"].as_u64().unwrap());
        }
    };
    let first = watcher.notifications(3).await;
    assert_eq!(first[0]["kind"], "notification");
    assert_eq!(first[0]["priority"], "HIGH");
    assert_eq!(first[0]["type"], "scan.progress");
    assert_eq!(first[0]["payload"], "{\"room\":\"scan/a\"}");
    record(first);

    // Live (the replay above ran after the subscription joined the live feed).
    publish(&mut c, "system", pb::Priority::Normal, 2).await;
    publish(&mut c, "scan/a", pb::Priority::High, 2).await;
    record(watcher.notifications(4).await);

    // A graceful restart: the stream ends with UNAVAILABLE. What is published as soon as
    // the new process answers is replayed or delivered live, depending on when the watcher
    // comes back; either way once.
    signal(&server, "TERM").await;
    assert!(exits(&mut server).await.success());
    server = notifier(port, data.path());
    let mut c = client(&url).await;
    publish(&mut c, "scan/a", pb::Priority::High, 3).await;
    publish(&mut c, "system", pb::Priority::Normal, 2).await;
    record(watcher.notifications(5).await);

    // A crash: the connection breaks under the stream.
    server.kill().await.unwrap();
    drop(c);
    let _server = notifier(port, data.path());
    let mut c = client(&url).await;
    publish(&mut c, "scan/a", pb::Priority::High, 3).await;
    publish(&mut c, "system", pb::Priority::Normal, 1).await;
    record(watcher.notifications(4).await);

    assert_eq!(
        printed,
        BTreeMap::from([
            ("scan/a".to_owned(), (1..=11).collect::<Vec<u64>>()),
            ("system".to_owned(), (1..=5).collect()),
        ]),
        "each once, in order; stderr: {:#?}",
        watcher.stderr.lock().unwrap()
    );
    let resubscribed = watcher
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("subscribing again"))
        .count();
    assert!(resubscribed >= 2, "it reconnected after each stop");

    // Nothing more arrives (no repeats held back), and SIGTERM stops it cleanly.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), watcher.stdout.next_line())
            .await
            .is_err(),
        "nothing printed twice"
    );
    signal(&watcher.child, "TERM").await;
    assert!(exits(&mut watcher.child).await.success());

    // The table, started after a sequence.
    let mut table = Watcher::start(&["scan/a", "--after", "scan/a:10", "--addr", &url]);
    let header = table.line().await;
    assert!(
        header.contains("SEQ") && header.contains("PAYLOAD"),
        "{header}"
    );
    let row = table.line().await;
    assert!(
        row.contains("scan/a") && row.contains(" 11 ") && row.contains("HIGH"),
        "{row}"
    );
    signal(&table.child, "INT").await;
    assert!(exits(&mut table.child).await.success());

    // A refusal is not retried: exit status 2, the field named.
    let out = Command::new(BIN)
        .args(["watch", "no spaces", "--addr", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rooms[0]"));
}
