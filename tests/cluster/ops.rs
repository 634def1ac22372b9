//! What an operator sees of a cluster: the link and directory series on each node's
//! `/metrics`, and the cluster view of the admin API (nodes, leases, load, rooms and the
//! nodes their members are on), with no user id in either.

use std::sync::Arc;

use sealroom_client::RoomSecret;
use sealroom_relay::admin::AdminTarget;
use sealroom_relay::http::{InternalOptions, InternalServer};
use sealroom_test_support::node::{http, metric};

use crate::cascade::wait_members;
use crate::redis::{self, Redis};
use crate::support::{TestNode, wait_links};

const TOKEN: &str = "cluster-ops-admin-token";

/// Ask `probe` again every few milliseconds until it gives a value (a safety bound of
/// 30 s ends a test that would otherwise hang; it is no timing assertion).
async fn poll_until_async<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("never happened: {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn internal(node: &TestNode, attach: bool) -> anyhow::Result<InternalServer> {
    let target: Arc<dyn AdminTarget> = node.relay.clone();
    let server = InternalServer::start(
        "127.0.0.1:0".parse()?,
        target,
        InternalOptions::default().admin_token(TOKEN),
    )
    .await?;
    if attach {
        server.state().attach_cluster(Arc::clone(&node.cluster));
    }
    Ok(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_admin_view_show_links_leases_and_where_members_are() -> anyhow::Result<()>
{
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for index in 1..=3 {
        let node = TestNode::with_directory(index, &redis.url()).await?;
        servers.push(internal(&node, true).await?);
        nodes.push(node);
    }
    wait_links(&nodes[0], &[2, 3]).await?;
    wait_links(&nodes[1], &[1, 3]).await?;
    wait_links(&nodes[2], &[1, 2]).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    let carol = nodes[2].join("carol", "r", &secret).await?;
    let dave = nodes[2].join("dave", "r", &secret).await?;
    wait_members(&alice, &["bob", "carol", "dave"]).await?;
    wait_members(&bob, &["alice", "carol", "dave"]).await?;
    let audio = bob.room.publish_audio(1).await?;
    let frames = 20u8;
    for n in 0..frames {
        audio.send(vec![n; 40])?;
    }
    for member in [&alice, &carol, &dave] {
        member
            .log
            .wait_for_payload("bob's last frame", &[frames - 1; 40])
            .await?;
    }

    // Bob's node sent each frame once over each link, whatever the members behind it
    // (node 3 has two); its series say so, by peer node and with no user in them.
    let out = |text: &str, peer: u16| {
        metric(
            text,
            &format!("sealroom_cluster_link_frames_total{{peer=\"{peer}\",direction=\"out\"}}"),
        )
    };
    let text = poll_until_async("node 2's link series are sampled", || async {
        let (_, text) = http(servers[1].local_addr(), "GET", "/metrics", None)
            .await
            .ok()?;
        (out(&text, 1) >= Some(f64::from(frames)) && out(&text, 3) >= Some(f64::from(frames)))
            .then_some(text)
    })
    .await?;
    assert_eq!(out(&text, 3), out(&text, 1), "{text}");
    for series in [
        "sealroom_cluster_links",
        "sealroom_cluster_directory_reachable",
        "sealroom_cluster_lease_held",
    ] {
        let want = if series == "sealroom_cluster_links" {
            2.0
        } else {
            1.0
        };
        assert_eq!(metric(&text, series), Some(want), "{series}\n{text}");
    }
    assert_eq!(metric(&text, "sealroom_cluster_nodes"), Some(3.0), "{text}");
    assert!(
        metric(&text, "sealroom_cluster_link_rtt_seconds{peer=\"3\"}").is_some_and(|r| r > 0.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "sealroom_cluster_link_bytes_total{peer=\"3\",direction=\"out\"}"
        )
        .is_some_and(|b| b > 0.0),
        "{text}"
    );
    // The relay's own series are still there, and the exposition ends once.
    assert!(metric(&text, "sealroom_members").is_some(), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    for user in ["alice", "bob", "carol", "dave"] {
        assert!(!text.contains(user), "{user} in the metrics");
    }

    // The admin view needs the token.
    let (status, _) = http(servers[0].local_addr(), "GET", "/admin/cluster", None).await?;
    assert_eq!(status, 401);
    let view = poll_until_async("the directory maps the room to its three nodes", || async {
        let (status, body) = http(
            servers[0].local_addr(),
            "GET",
            "/admin/cluster",
            Some(TOKEN),
        )
        .await
        .ok()?;
        let view: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200
            && view["rooms_from"] == "directory"
            && view["rooms"].as_array()?.len() == 1
            && view["rooms"][0]["nodes"].as_array()?.len() == 3)
            .then_some((view, body))
    })
    .await?;
    let (view, body) = view;
    assert_eq!(view["node"], 1);
    assert_eq!(view["directory"]["reachable"], true);
    let nodes_listed = view["nodes"].as_array().expect("nodes");
    assert_eq!(nodes_listed.len(), 3, "{body}");
    for (i, node) in nodes_listed.iter().enumerate() {
        assert_eq!(node["index"], i + 1, "{body}");
        assert!(node["expires_in_ms"].as_u64().is_some(), "a lease: {body}");
    }
    assert_eq!(nodes_listed[2]["members"], 2, "node 3's load: {body}");
    let links = view["links"].as_array().expect("links");
    assert_eq!(
        links.iter().map(|l| l["peer"].clone()).collect::<Vec<_>>(),
        [2, 3],
        "{body}"
    );
    let room = &view["rooms"][0];
    assert_eq!(room["room"], "r");
    assert_eq!(
        room["nodes"],
        serde_json::json!([
            {"node": 1, "members": 1},
            {"node": 2, "members": 1},
            {"node": 3, "members": 2},
        ]),
        "{body}"
    );
    for user in ["alice", "bob", "carol", "dave"] {
        assert!(!body.contains(user), "{user} in the cluster view");
    }

    // With Redis gone, the view falls back to what the node's links tell it, and says so.
    drop(redis);
    let (view, body) = poll_until_async("the view falls back to the links", || async {
        let (_, body) = http(
            servers[2].local_addr(),
            "GET",
            "/admin/cluster",
            Some(TOKEN),
        )
        .await
        .ok()?;
        let view: serde_json::Value = serde_json::from_str(&body).ok()?;
        (view["rooms_from"] == "links" && view["directory"]["reachable"] == false)
            .then_some((view, body))
    })
    .await?;
    assert_eq!(
        view["rooms"][0]["nodes"],
        serde_json::json!([
            {"node": 1, "members": 1},
            {"node": 2, "members": 1},
            {"node": 3, "members": 2},
        ]),
        "{body}"
    );
    let text = poll_until_async("node 3 sees the directory down", || async {
        let (_, text) = http(servers[2].local_addr(), "GET", "/metrics", None)
            .await
            .ok()?;
        (metric(&text, "sealroom_cluster_directory_reachable") == Some(0.0)).then_some(text)
    })
    .await?;
    assert_eq!(
        metric(&text, "sealroom_cluster_lease_held"),
        Some(0.0),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_a_cluster_says_so() -> anyhow::Result<()> {
    let node = TestNode::start(1, crate::support::CLUSTER_SECRET).await?;
    let server = internal(&node, false).await?;
    let (status, body) = http(server.local_addr(), "GET", "/admin/cluster", Some(TOKEN)).await?;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not in a cluster"), "{body}");
    let (_, text) = http(server.local_addr(), "GET", "/metrics", None).await?;
    assert!(!text.contains("sealroom_cluster_"), "{text}");
    Ok(())
}
