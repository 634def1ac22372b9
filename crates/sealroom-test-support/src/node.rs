//! A relay node process started from a test: the `sealroom relay` binary run from a config
//! file, what it prints, HTTP to its internal listener, tickets and joins through it.

use crate::{SAFETY, TempDir, unix_now};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sealroom_client::{Client, ClientConfig, Event, Events, Room, RoomSecret, Trust};
use sealroom_relay::Grants;

/// A command running the binary at `exe` (a test passes `env!("CARGO_BIN_EXE_sealroom")`),
/// with none of the developer's `RUST_LOG` or `SEALROOM_*` variables.
pub fn binary(exe: &str) -> Command {
    let mut command = Command::new(exe);
    // The tests decide the log level; a developer's RUST_LOG must not change what they see.
    command.env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("SEALROOM_") {
            command.env_remove(key);
        }
    }
    command
}

/// A relay node process.
pub struct Node {
    pub child: Child,
    pub listen: SocketAddr,
    pub internal: SocketAddr,
    pub cert_sha256: String,
    pub stderr_path: PathBuf,
    pub stdout: mpsc::Receiver<String>,
}

impl Node {
    /// Start `<sealroom> relay --config <path>` (`sealroom` from [`binary`]), logs to
    /// `<dir>/stderr.log`; wait for the banner.
    pub fn start(mut sealroom: Command, dir: &TempDir, config: &Path) -> anyhow::Result<Self> {
        let stderr_path = dir.0.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut child = sealroom
            .arg("relay")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawn sealroom relay")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut listen, mut internal, mut cert) = (None, None, None);
        while listen.is_none() || internal.is_none() || cert.is_none() {
            let Ok(line) = rx.recv_timeout(SAFETY) else {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                bail!("the relay printed no banner; its log:\n{log}");
            };
            let line = line.trim();
            if let Some(v) = line.strip_prefix("listen:") {
                listen = Some(v.trim().parse()?);
            } else if let Some(v) = line.strip_prefix("internal:") {
                internal = Some(v.trim().trim_start_matches("http://").parse()?);
            } else if let Some(v) = line.strip_prefix("cert-sha256:") {
                cert = Some(v.trim().to_owned());
            }
        }
        Ok(Self {
            child,
            listen: listen.context("listen")?,
            internal: internal.context("internal")?,
            cert_sha256: cert.context("cert")?,
            stderr_path,
            stdout: rx,
        })
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the process to exit (bounded by [`SAFETY`]): its standard output ends when
    /// it exits, which ends the reader thread and its channel; what it still printed is
    /// read and dropped.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = std::time::Instant::now() + SAFETY;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(self.child.wait()?),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    bail!("the relay did not exit; its log:\n{}", self.log());
                }
            }
        }
    }

    /// A client trusting this node's certificate.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(ClientConfig::new(Trust::pinned_hex(
            &self.cert_sha256,
        )?))?)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A ticket for `user` in `room` of `app`, signed with `secret` under `kid`.
pub fn ticket(app: &str, kid: &str, secret: &[u8], user: &str, room: &str) -> String {
    crate::mint_ticket(
        app,
        kid,
        secret,
        user,
        room,
        Grants::all(),
        unix_now() - 5,
        600,
    )
}

/// The room secret every member of the tests' rooms holds.
pub fn room_secret() -> RoomSecret {
    RoomSecret::from_bytes(*b"ops tests room secret, 32 bytes!")
}

/// Join `room` as `user` through `node`.
pub async fn join(
    node: &Node,
    client: &Client,
    ticket: String,
) -> Result<(Room, Events), sealroom_client::JoinError> {
    client
        .join(node.listen, "localhost", ticket, &room_secret())
        .await
}

/// The next event matching `pick`, skipping others (bounded by [`SAFETY`]).
pub async fn next_event<T>(
    events: &mut Events,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(SAFETY, async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(&event) {
                return Ok(found);
            }
        }
        bail!("the event stream ended")
    })
    .await
    .context("no such event in time")?
}

/// One HTTP/1.1 request; returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: relay\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw.get(9..12).context("short response")?.parse()?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no body")?;
    // axum answers small bodies with a length, never chunked, so the body is as sent.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked body not supported by this test helper");
    }
    Ok((status, body.to_owned()))
}

/// The value of one sample in an OpenMetrics text, e.g.
/// `metric(&text, "sealroom_frames_received_total{kind=\"data\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}
