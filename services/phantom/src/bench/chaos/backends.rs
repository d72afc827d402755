//! The chaos run's own PostgreSQL and Redis, started as `tests/support/with-backends.sh`
//! starts the test suite's (the same binaries, options and user), but apart from them: the
//! faults stop and slow these, and no other test should feel it.
//!
//! Each is optional: without the binaries, the system runs on its embedded database or its
//! in-process cache, and the fault on that backend is skipped (the suite's notes say so).

use std::{
    net::SocketAddr,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::bench::attacks::free_port;

/// The first `/usr/lib/postgresql/*/bin` holding `initdb`, as with-backends.sh picks it.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.into_iter().next()
}

/// `name` on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root: PostgreSQL refuses to, so its commands then run as
/// the `postgres` user.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `program` with `args` (as `postgres` when root), failing with its output.
async fn run_pg(program: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut command = if is_root() {
        let mut c = tokio::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", program.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {}: {}{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A throwaway PostgreSQL cluster on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _work: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster; `None` when PostgreSQL is not installed.
    pub(crate) async fn start() -> anyhow::Result<Option<Self>> {
        let Some(bin) = pg_bin() else {
            return Ok(None);
        };
        let work = tempfile::Builder::new()
            .prefix("phantom-chaos.")
            .tempdir()?;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
        let data = work.path().join("pg");
        std::fs::create_dir(&data)?;
        if is_root() {
            let status = tokio::process::Command::new("chown")
                .arg("postgres")
                .arg(&data)
                .status()
                .await?;
            anyhow::ensure!(
                status.success(),
                "cannot give {} to postgres",
                data.display()
            );
        }
        let port = free_port()?.port();
        let dir = data.to_str().context("temporary directory is not UTF-8")?;
        run_pg(
            &bin.join("initdb"),
            &["-D", dir, "-A", "trust", "-U", "postgres"],
        )
        .await?;
        let log = format!("{dir}/log");
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        );
        run_pg(
            &bin.join("pg_ctl"),
            &["-D", dir, "-l", &log, "-w", "-o", &options, "start"],
        )
        .await?;
        Ok(Some(Self {
            bin,
            data,
            port,
            _work: work,
        }))
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Creates the database `name`.
    pub(crate) async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let port = self.port.to_string();
        run_pg(
            &self.bin.join("createdb"),
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        )
        .await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = command
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A throwaway Redis on a free loopback port, without persistence (a restart empties it, as
/// an in-memory cache's would), stopped when dropped.
#[derive(Debug)]
pub(crate) struct Redis {
    binary: PathBuf,
    port: u16,
    work: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl Redis {
    /// Starts one; `None` when `redis-server` is not installed.
    pub(crate) async fn start() -> anyhow::Result<Option<Self>> {
        let Some(binary) = on_path("redis-server") else {
            return Ok(None);
        };
        let mut redis = Self {
            binary,
            port: free_port()?.port(),
            work: tempfile::Builder::new()
                .prefix("phantom-chaos.")
                .tempdir()?,
            child: None,
        };
        redis.restart().await?;
        Ok(Some(redis))
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it (SIGTERM, as a stopped service gets) and waits until it is gone.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Stops it if it runs and starts it again, empty, on the same port; returns once it
    /// answers PING.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let child = tokio::process::Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.work.path())
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.ping().await {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} did not answer PING",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn ping(&self) -> bool {
        let ping = async {
            let mut s = tokio::net::TcpStream::connect(self.addr()).await.ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        };
        tokio::time::timeout(Duration::from_millis(500), ping)
            .await
            .ok()
            .flatten()
            .is_some()
    }
}
