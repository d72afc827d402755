//! The embedded database's disk fills up under a running system, then space comes back: every
//! acknowledged write is still there (after a restart too, with no sequence number reused),
//! writes on the full disk answer UNAVAILABLE naming the cause, readiness is NOT_SERVING while
//! writes fail, and everything resumes by itself when space is freed.
//!
//! Runs on a small tmpfs the test mounts, so only as root (what `make test` runs as on CI);
//! elsewhere it says it skipped.

use std::{path::Path, process::Command, time::Duration};

use phantom_proto::pb::{self, notifier_client::NotifierClient};
use phantom_tests::{PATIENCE, Running, channel, config, http_get, wait_for_status};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Fills the filesystem of `dir` with a file of its own, until it is full.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![b'x'; 16 * 1024];
    while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
    // The last bytes a partial block can take.
    while file.write_all(b"x").and_then(|()| file.flush()).is_ok() {}
    path
}

fn note(n: usize) -> pb::Notification {
    pb::Notification {
        room: "team/disk".into(),
        r#type: "note".into(),
        payload: format!("note-{n}-{}", "p".repeat(512)),
        priority: pb::Priority::High as i32,
        ..Default::default()
    }
}

/// Every notification of `team/disk` the notifier at `addr` replays from the start.
async fn replayed(addr: std::net::SocketAddr) -> Vec<pb::Notification> {
    let mut notifier = NotifierClient::new(channel(addr).await);
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["team/disk".into()],
            after_sequence: [("team/disk".to_owned(), 0)].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    // The replay comes first; once a second passes with nothing, it is over.
    while let Ok(Ok(Some(message))) =
        tokio::time::timeout(Duration::from_secs(1), stream.message()).await
    {
        if let Some(pb::subscribe_response::Event::Notification(n)) = message.event {
            got.push(n);
        }
    }
    got
}

/// Polls `/health` until the system and its `data-disk` component report `system`, `disk`.
async fn until_health(http: std::net::SocketAddr, system: &str, disk: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, body) = http_get(http, "/health").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["status"] == system && v["checks"]["data-disk"]["status"] == disk {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never said {system} with the data disk {disk}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_write_and_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount("64m") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let running = Running::start(config(disk.path())).await;
    let addr = running.addrs.notifier;
    let mut notifier = NotifierClient::new(channel(addr).await);
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let stored = notifier.publish(note(n)).await.unwrap().into_inner();
        acknowledged.push(stored.payload);
    }

    let filler = fill(disk.path());
    // Until the database's own free pages run out, writes may still succeed: each one
    // acknowledged must be kept. Then writes fail, saying why.
    let mut refused = None;
    for n in 20..2000 {
        match notifier.publish(note(n)).await {
            Ok(stored) => acknowledged.push(stored.into_inner().payload),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a full disk refuses writes");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("disk is full"), "{refused:?}");
    wait_for_status(addr, "", ServingStatus::NotServing).await;
    // The system says so: the data disk is critical with the embedded database.
    until_health(running.addrs.http, "unhealthy", "unhealthy").await;
    // Still full: still refused, at once, the same way; reads go on.
    let again = notifier.publish(note(9999)).await.unwrap_err();
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");

    std::fs::remove_file(filler).unwrap();
    wait_for_status(addr, "", ServingStatus::Serving).await;
    until_health(running.addrs.http, "healthy", "healthy").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let after = loop {
        match notifier.publish(note(5000)).await {
            Ok(stored) => break stored.into_inner(),
            Err(status) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "writes never resumed: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    acknowledged.push(after.payload.clone());
    running.stop().await;

    // A new process on the same data: exactly what was acknowledged, each sequence once.
    let running = Running::start(config(disk.path())).await;
    let kept = replayed(running.addrs.notifier).await;
    let payloads: Vec<String> = kept.iter().map(|n| n.payload.clone()).collect();
    assert_eq!(
        payloads, acknowledged,
        "every acknowledged write, and no other"
    );
    let sequences: Vec<u64> = kept.iter().map(|n| n.sequence).collect();
    let expected: Vec<u64> = (1..=kept.len() as u64).collect();
    assert_eq!(sequences, expected, "no sequence number lost or reused");
    eprintln!(
        "full disk: {} writes acknowledged, the first refusal was {:?}",
        acknowledged.len(),
        refused.message()
    );
    running.stop().await;
}
