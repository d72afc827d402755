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
    up_in(tempfile::tempdir().unwrap(), &[])
}

/// [`up`] on the data directory `data`, with `env` besides.
fn up_in(data: tempfile::TempDir, env: &[(&str, &str)]) -> Up {
    let mut child = common::phantom_up(data.path())
        .envs(env.iter().copied())
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

/// `phantom <args>` beside `up`, as its user.
fn phantom(up: &Up, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .env("PHANTOM_SCAN_ORCHESTRATOR_URL", &up.orchestrator)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_asset_is_scheduled_compared_triaged_and_alerted_on_from_the_cli() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = target.local_addr().unwrap().port().to_string();
    let up = up();
    let deadline = Instant::now() + PATIENCE;
    while !Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .args(["health", "--addr", &up.aggregator])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "never healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // An interval asset runs at once.
    ok(phantom(
        &up,
        &[
            "schedule",
            "create",
            "lab",
            "127.0.0.1",
            "--ports",
            &port,
            "--every",
            "1h",
        ],
    ));
    let deadline = Instant::now() + PATIENCE;
    let fingerprint = loop {
        let findings = ok(phantom(&up, &["schedule", "findings", "lab", "-o", "json"]));
        if let Some(line) = findings.lines().next() {
            let f: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(f["port"].to_string(), port);
            assert_eq!(f["change"], "new");
            break f["fingerprint"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the first run never came");
        std::thread::sleep(Duration::from_millis(200));
    };
    let list = ok(phantom(&up, &["schedule", "list", "-o", "json"]));
    let asset: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(asset["name"], "lab");
    assert_eq!(asset["schedule"], "every 1h");
    let scan = asset["last_scan_id"].as_str().unwrap().to_owned();

    // Triage, with the reason and who set it shown.
    let triaged = ok(phantom(
        &up,
        &[
            "schedule",
            "triage",
            "lab",
            &fingerprint,
            "false-positive",
            "--reason",
            "the test's listener",
        ],
    ));
    assert!(triaged.contains("false positive"), "{triaged}");
    // An accepted risk needs an end: exit 2 naming the field.
    let refused = phantom(
        &up,
        &[
            "schedule",
            "triage",
            "lab",
            &fingerprint,
            "accepted-risk",
            "--reason",
            "x",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("accepted_until"));

    // The scan against itself: nothing new, nothing fixed.
    let diff = ok(phantom(&up, &["scan", "diff", &scan, &scan]));
    assert!(diff.contains("0 new, 0 fixed, 1 still open"), "{diff}");

    ok(phantom(
        &up,
        &[
            "schedule",
            "alert",
            "create",
            "high-and-up",
            "--min-severity",
            "high",
        ],
    ));
    let rules = ok(phantom(&up, &["schedule", "alert", "list"]));
    assert!(
        rules.contains("high-and-up") && rules.contains("HIGH"),
        "{rules}"
    );

    let paused = ok(phantom(&up, &["schedule", "pause", "lab"]));
    assert!(paused.contains("paused"), "{paused}");
    ok(phantom(&up, &["schedule", "delete", "lab"]));
    let missing = phantom(&up, &["schedule", "findings", "lab"]);
    assert_eq!(missing.status.code(), Some(2));
    drop(target);
}

#[test]
fn every_command_documents_itself_with_examples() {
    for cmd in [
        "up",
        "serve",
        "scan",
        "scan diff",
        "schedule",
        "health",
        "watch",
        "config",
        "migrate",
        "bench",
        "bench notify",
        "auth",
        "auth key",
        "auth key create",
        "auth key list",
        "auth key revoke",
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

/// A short key cache, so a revocation shows within the test: the configuration `phantom up`
/// and the `auth` commands of these tests share.
const CACHE_TTL: (&str, &str) = ("PHANTOM__AUTH__CACHE_TTL", "300ms");

/// `phantom auth <args>` on the embedded database of `data`, the key secret left to the data
/// directory, as a user beside `phantom up` runs it.
fn auth(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env("PHANTOM_DATA_DIR", data)
        .env(CACHE_TTL.0, CACHE_TTL.1)
        .env_remove("DATABASE_URL")
        .env_remove("PHANTOM_AUTH_KEY_SECRET")
        .arg("auth")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `phantom health` against `up` with `token`, instead of the local admin key.
fn health_with(up: &Up, token: &str) -> std::process::Output {
    Command::new(BIN)
        .env("PHANTOM_DATA_DIR", up._data.path())
        .env("PHANTOM_TOKEN", token)
        .args(["health", "--addr", &up.aggregator])
        .output()
        .unwrap()
}

#[test]
fn a_key_created_by_the_cli_authenticates_with_its_scopes_until_revoked() {
    let data = tempfile::tempdir().unwrap();

    // Before the system ever ran: the command makes the table and the key secret itself.
    let created: serde_json::Value = serde_json::from_str(&stdout(&auth(
        data.path(),
        &[
            "key", "create", "--tenant", "acme", "--scopes", "admin", "--name", "ops", "--output",
            "json",
        ],
    )))
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("phk_{id}_")), "{created}");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["scopes"], serde_json::json!(["admin"]));
    assert!(created["expires_at"].is_string(), "90 days by default");

    let text = stdout(&auth(
        data.path(),
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "scans:read",
            "--expires",
            "never",
        ],
    ));
    let reader = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("phk_"))
        .unwrap_or_else(|| panic!("the key on a line of its own: {text}"))
        .to_owned();
    assert!(
        text.contains(&format!("export PHANTOM_TOKEN={reader}")),
        "{text}"
    );
    assert!(text.contains("never"), "{text}");

    // Listed, without a secret.
    let listed = stdout(&auth(data.path(), &["key", "list"]));
    assert!(listed.contains(&id) && listed.contains("ops"), "{listed}");
    for secret in [&key[17..], &reader[17..]] {
        assert!(!listed.contains(secret), "a secret is listed: {listed}");
    }
    let json = stdout(&auth(data.path(), &["key", "list", "--output", "json"]));
    assert!(!json.contains(&key[17..]), "{json}");

    // The system, started afterwards on the same data directory, accepts it.
    let up = up_in(data, &[CACHE_TTL]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = health_with(&up, &key);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("HEALTHY") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key never worked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A key without `admin` is refused the health report, naming the scope.
    let out = health_with(&up, &reader);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Revoked while the system runs: refused within the cache TTL.
    let revoked = stdout(&auth(up._data.path(), &["key", "revoke", &id]));
    assert!(
        revoked.contains(&id) && revoked.contains("auth.cache_ttl (300ms)"),
        "{revoked}"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = health_with(&up, &key);
        if out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stderr).contains("Unauthenticated")
        {
            break;
        }
        assert!(Instant::now() < deadline, "still accepted after revocation");
        std::thread::sleep(Duration::from_millis(100));
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(&auth(
        up._data.path(),
        &["key", "list", "--tenant", "acme", "--output", "json"],
    )))
    .unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(row["revoked_at"].is_string(), "{row}");
    assert!(row["last_used_at"].is_string(), "{row}");
    assert!(
        row.get("key").is_none() && row.get("hash").is_none(),
        "{row}"
    );
    // Again: already revoked, said so, not an error.
    let again = stdout(&auth(up._data.path(), &["key", "revoke", &id]));
    assert!(again.contains("already revoked"), "{again}");
}

#[test]
fn auth_key_mistakes_exit_2_saying_what_is_wrong() {
    let data = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], says: &str| {
        let out = auth(data.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    let create = ["key", "create", "--tenant", "acme", "--scopes"];
    refused(
        &[&create[..], &["scans:read,scans:reed"]].concat(),
        "\"scans:reed\"",
    );
    refused(&[&create[..], &[""]].concat(), "at least one scope");
    refused(
        &["key", "create", "--tenant", "Acme!", "--scopes", "all"],
        "[a-z0-9-]",
    );
    refused(
        &[&create[..], &["all", "--expires", "soon"]].concat(),
        "never",
    );
    refused(
        &[&create[..], &["all", "--expires", "0s"]].concat(),
        "more than 0",
    );
    refused(&["key", "revoke", "ffffffffffff"], "no API key");

    // The scopes a key may hold are in its help.
    let help = stdout(&auth(data.path(), &["key", "create", "--help"]));
    for scope in phantom_layers::auth::Scope::ALL {
        assert!(
            help.contains(scope.as_str()),
            "{scope} missing from: {help}"
        );
    }
    assert!(help.contains("`all`"), "{help}");
}
