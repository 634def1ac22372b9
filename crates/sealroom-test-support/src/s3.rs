//! An S3-compatible server for tests: moto's standalone server (`pip install
//! 'moto[server]==5.2.1'`) on a free loopback port, and a TCP proxy that can cut the way to
//! it to play a storage outage.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Whether the tests must fail rather than skip when a tool is missing.
pub fn strict() -> bool {
    std::env::var("SEALROOM_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// moto's standalone S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Start `moto_server`; `Ok(None)` when it is not installed (and the run is not strict).
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let port = {
            let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            probe.local_addr()?.port()
        };
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(err) if !strict() => {
                eprintln!(
                    "skipped: moto_server not found ({err}); install it with \
                     pip install 'moto[server]==5.2.1'"
                );
                return Ok(None);
            }
            Err(err) => bail!("moto_server not found ({err}): pip install 'moto[server]==5.2.1'"),
        };
        let moto = Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        for _ in 0..300 {
            if TcpStream::connect(moto.addr).await.is_ok() {
                return Ok(Some(moto));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("moto_server did not listen on {}", moto.addr)
    }

    /// Create a bucket (moto accepts unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let mut stream = TcpStream::connect(self.addr).await?;
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await?;
        let text = String::from_utf8_lossy(&answer);
        if !text.starts_with("HTTP/1.1 200") {
            bail!("bucket not created: {text}");
        }
        Ok(())
    }

    /// The S3 settings (`object_store` names) for the server or a proxy at `endpoint`.
    pub fn options(endpoint: SocketAddr) -> Vec<(&'static str, String)> {
        vec![
            ("endpoint", format!("http://{endpoint}")),
            ("region", String::from("us-east-1")),
            ("access_key_id", String::from("test")),
            ("secret_access_key", String::from("test")),
            ("allow_http", String::from("true")),
        ]
    }
}

/// A TCP proxy to `target` whose way can be cut (new and open connections are refused
/// and dropped) and restored.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let proxy = Self {
            addr,
            up: Arc::clone(&up),
            generation: Arc::clone(&generation),
        };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// Cut the way: open connections are dropped, new ones refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Restore it.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
