//! The `phantom` binary as a user runs it: `up` on port-0 addresses, `scan` and `health`
//! against it, SIGTERM, and configuration errors.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::BIN;
const PATIENCE: Duration = Duration::from_secs(60);

struct Up {
    child: Child,
    orchestrator: String,
    aggregator: String,
    _data: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts `phantom up` with every port 0 and reads the addresses it printed.
fn up() -> Up {
    let data = tempfile::tempdir().unwrap();
    let mut child = common::phantom_up(data.path())
        .env("PHANTOM__HEALTH__INTERVAL", "200ms")
        // This machine's load and disk are not what the test is about.
        .env("PHANTOM__HEALTH__CPU_THRESHOLD_PERCENT", "101")
        .env("PHANTOM__HEALTH__MEMORY_THRESHOLD_PERCENT", "101")
        .env("PHANTOM__HEALTH__DISK_THRESHOLD_PERCENT", "101")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr_of = |name: &str| loop {
        let line = lines
            .next()
            .expect("phantom up prints its addresses")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix(name) {
            return format!("http://{}", rest.trim());
        }
    };
    let orchestrator = addr_of("scan-orchestrator");
    let aggregator = addr_of("health-aggregator");
    // Drain the rest of stdout in the background so the child never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Up {
        child,
        orchestrator,
        aggregator,
        _data: data,
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "phantom did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_scan_health_and_sigterm_work_as_a_user_would_use_them() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = target.local_addr().unwrap().port();
    let mut up = up();

    // `phantom health` exits 0 once every service is up.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = Command::new(BIN)
            // As a user runs it: beside `phantom up`, with the same configuration (its data
            // directory holds the local admin key the command uses).
            .env("PHANTOM_DATA_DIR", up._data.path())
            .args(["health", "--addr", &up.aggregator])
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("HEALTHY") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .args([
            "scan",
            "127.0.0.1",
            "--ports",
            &port.to_string(),
            "--output",
            "json",
            "--addr",
            &up.orchestrator,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["scan"]["state"], "SUCCEEDED");
    assert_eq!(json["findings"][0]["port"], port);

    let out = Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .args([
            "scan",
            "127.0.0.1",
            "--ports",
            &port.to_string(),
            "--addr",
            &up.orchestrator,
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("SUCCEEDED") && table.contains(&format!("{port}/tcp")),
        "{table}"
    );

    // Refused input: exit status 2 and the field named.
    let out = Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .args(["scan", "169.254.169.254", "--addr", &up.orchestrator])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("targets[0]"));

    // SIGTERM: drain and exit 0.
    let kill = Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(wait_exit(&mut up.child).success());
}

#[test]
fn unknown_keys_and_bad_values_are_refused_at_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phantom.toml");
    std::fs::write(&file, "[scan]\nmax_hostz = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["up", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_hostz"));

    let out = Command::new(BIN)
        .args(["config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = Command::new(BIN)
        .args(["serve", "notifier"])
        .env("PHANTOM_NOTIFIER_ADDR", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PHANTOM_NOTIFIER_ADDR"));
}

#[test]
fn migrate_applies_the_schema_once_and_reports_it() {
    let data = tempfile::tempdir().unwrap();
    let migrate = || {
        Command::new(BIN)
            .arg("migrate")
            .env("PHANTOM_DATA_DIR", data.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let first = migrate();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("applied"), "{stdout}");

    let again = migrate();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(stdout.contains("up to date"), "{stdout}");
}

#[test]
fn migrate_gives_up_on_an_unreachable_database_after_its_wait() {
    // A port nothing listens on: connection refused at once, every time.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["migrate", "--wait", "2s"])
        .env(
            "DATABASE_URL",
            format!("postgres://phantom:secret@127.0.0.1:{port}/phantom"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("still unreachable") && stderr.contains("--wait 2s"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn every_command_documents_itself_with_examples() {
    for cmd in [
        "up",
        "serve",
        "scan",
        "health",
        "watch",
        "config",
        "migrate",
        "bench",
        "bench notify",
    ] {
        let out = Command::new(BIN)
            .args(cmd.split(' '))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{cmd}"
        );
    }
}
