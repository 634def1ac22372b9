//! The SLA windows survive a restart of the node: kept in a small file next to the config,
//! restored at start; a corrupt file does not keep the node from starting.

use anyhow::Context;

use crate::support::{Node, TempDir, http, join, sealroom, ticket};

const APP: &str = "acme";
const KID: &str = "k1";
const SECRET: &[u8] = b"acme-sla-restart-ticket-secret";

fn config() -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
drain_secs = 1

[[apps]]
app = "{APP}"
secrets = [{{ kid = "{KID}", secret = "{secret}" }}]
"#,
        secret = std::str::from_utf8(SECRET).expect("utf-8 secret"),
    )
}

/// (succeeded, excluded) over every window `/sla` serves.
async fn totals(node: &Node) -> anyhow::Result<(u64, u64)> {
    let (status, body) = http(node.internal, "GET", "/sla", None).await?;
    assert_eq!(status, 200, "{body}");
    let sla: serde_json::Value = serde_json::from_str(&body)?;
    let windows = sla["windows"].as_array().context("windows")?;
    let total = |field: &str| {
        windows
            .iter()
            .map(|w| w[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    Ok((total("succeeded"), total("excluded")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_success_windows_survive_a_restart_and_a_corrupt_file_does_not_stop_the_node()
-> anyhow::Result<()> {
    let dir = TempDir::new("sla-restart");
    let path = dir.write("relay.toml", &config());
    let state = dir.path().join("relay.sla.json");

    let mut node = Node::start(sealroom(), &dir, &path)?;
    let client = node.client()?;
    let (room, _events) = join(&node, &client, ticket(APP, KID, SECRET, "alice", "r")).await?;
    let refused = join(
        &node,
        &client,
        ticket(APP, KID, b"not the app secret!!", "eve", "r"),
    )
    .await;
    assert!(refused.is_err(), "a forged ticket is refused");
    assert_eq!(totals(&node).await?, (1, 1));
    room.leave().await;
    client.close().await;
    node.terminate();
    assert!(node.wait()?.success());
    assert!(state.is_file(), "saved at shutdown next to the config");

    // The second run starts with the first run's windows and adds to them.
    let mut node = Node::start(sealroom(), &dir, &path)?;
    assert_eq!(totals(&node).await?, (1, 1), "{}", node.log());
    assert!(
        node.log().contains("SLA windows restored"),
        "{}",
        node.log()
    );
    let client = node.client()?;
    let (room, _events) = join(&node, &client, ticket(APP, KID, SECRET, "bob", "r")).await?;
    assert_eq!(totals(&node).await?, (2, 1));
    room.leave().await;
    client.close().await;
    node.terminate();
    assert!(node.wait()?.success());

    // A corrupt file: the node starts with empty windows, keeps the file aside, says so.
    std::fs::write(&state, "{ this is not the state file")?;
    let mut node = Node::start(sealroom(), &dir, &path)?;
    assert_eq!(totals(&node).await?, (0, 0));
    let log = node.log();
    assert!(log.contains("SLA state file unreadable"), "{log}");
    let aside = dir.path().join("relay.sla.json.corrupt");
    assert_eq!(
        std::fs::read_to_string(aside)?,
        "{ this is not the state file"
    );
    node.terminate();
    assert!(node.wait()?.success());
    Ok(())
}
