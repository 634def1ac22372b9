//! A real Redis for the tests: Debian's `redis-server`, started per test on a free loopback
//! port (or on a test network's address, then with a password) with nothing persisted. When it runs as root it is bound to loopback, in protected
//! mode, with the debug, module and protected-config commands off.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_test_support::TempDir;

/// Whether `redis-server` can be run; without it, a test is skipped with the install hint,
/// unless `SEALROOM_TEST_STRICT=1` (as in CI), where that is a failure.
pub(crate) fn available() -> anyhow::Result<bool> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(true);
    }
    let hint = "redis-server is not installed: install it (Debian/Ubuntu: apt-get install -y redis-server) to run the cluster directory tests";
    if std::env::var("SEALROOM_TEST_STRICT").as_deref() == Ok("1") {
        bail!("{hint}");
    }
    eprintln!("skipped: {hint}");
    Ok(false)
}

/// A running `redis-server`.
pub(crate) struct Redis {
    pub(crate) port: u16,
    /// The address it is bound to.
    ip: Ipv4Addr,
    /// The default user's password (off loopback, where protected mode wants one).
    password: Option<String>,
    child: Option<Child>,
    dir: TempDir,
}

fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind((ip, 0))?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Redis {
    /// A Redis on a free loopback port.
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::start_on(Ipv4Addr::LOCALHOST)
    }

    /// A Redis on a free port of `ip` (an address of this machine), with a password
    /// (which its URL carries) unless `ip` is loopback.
    pub(crate) fn start_on(ip: Ipv4Addr) -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port(ip)?,
            ip,
            password: (!ip.is_loopback()).then(|| format!("test-pw-{}", std::process::id())),
            child: None,
            dir: TempDir::new("redis"),
        };
        redis.spawn()?;
        Ok(redis)
    }

    pub(crate) fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@{}:{}", self.ip, self.port),
            None => format!("redis://{}:{}", self.ip, self.port),
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", &self.ip.to_string()])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .args(
                self.password
                    .as_ref()
                    .map(|p| vec!["--requirepass".to_owned(), p.clone()])
                    .unwrap_or_default(),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            command
                .args(["--enable-debug-command", "no"])
                .args(["--enable-module-command", "no"])
                .args(["--enable-protected-configs", "no"]);
        }
        self.child = Some(command.spawn().context("start redis-server")?);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if ping(self.ip, self.port, self.password.as_deref()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server on port {} did not answer PING", self.port)
    }

    /// Kill it (SIGKILL): everything in it is lost.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen Redis dies of SIGKILL too; SIGCONT first lets it be reaped at once.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze it (SIGSTOP): connections stay open and commands get no answer, as when
    /// Redis is unreachable behind a network that drops packets.
    pub(crate) fn freeze(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Let it run again (SIGCONT), with everything it held.
    pub(crate) fn thaw(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("redis-server is not running")?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill {signal} redis-server failed");
        }
        Ok(())
    }

    /// Start it again on the same port, empty.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Whether `key` exists.
    pub(crate) fn exists(&self, key: &str) -> bool {
        command(
            self.ip,
            self.port,
            self.password.as_deref(),
            &format!("EXISTS {key}"),
        )
        .is_some_and(|r| r.starts_with(":1"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(ip: Ipv4Addr, port: u16, password: Option<&str>) -> bool {
    command(ip, port, password, "PING").is_some_and(|r| r.starts_with("+PONG"))
}

/// One inline command, its first reply line.
fn command(ip: Ipv4Addr, port: u16, password: Option<&str>, line: &str) -> Option<String> {
    let addr = SocketAddr::from((ip, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    if let Some(password) = password {
        stream
            .write_all(format!("AUTH {password}\r\n").as_bytes())
            .ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).ok()?;
        if !buf[..n].starts_with(b"+OK") {
            return None;
        }
    }
    stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
