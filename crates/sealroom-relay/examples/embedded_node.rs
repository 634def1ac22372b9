//! An operator's own binary running a complete sealroom relay node: the QUIC relay, its
//! internal listener (metrics, health, readiness, SLA, admin API) and the graceful shutdown
//! on SIGTERM or Ctrl-C, as `sealroom relay` runs them.
//!
//! ```sh
//! cargo run -p sealroom-relay --example embedded_node -- examples/relay.toml
//! cargo run -p sealroom-relay --example embedded_node    # a development node on loopback
//! ```
//!
//! Here the binary also stops the node after a maintenance window of its own choosing, the
//! way any code holding a [`NodeHandle`] can.

use std::path::PathBuf;
use std::time::Duration;

use sealroom_relay::node::{Node, NodeConfig, NodeHandle, Overrides};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map(PathBuf::from);
    let config = NodeConfig::prepare(path.as_deref(), &Overrides::default())?;
    let node = Node::load(config).await?;
    print!("{}", node.banner());

    let handle: NodeHandle = node.handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        handle.shutdown();
    });
    node.run().await?;
    Ok(())
}
