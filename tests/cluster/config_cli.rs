//! `sealroom relay` with a `[cluster]` section: `--check-config` prints the section in force
//! without its secrets, a mistake stops the node with the key named, and a node started
//! from such a file says in its banner that it is a cluster node.

use sealroom_test_support::TempDir;

use crate::procs::{NodeSpec, ProcNode, sealroom};
use crate::redis::{self, Redis};

const APPS: &str = r#"
[[apps]]
app = "acme"
secrets = [{ kid = "k1", secret = "acme ticket secret, 32 bytes ok" }]
"#;

#[test]
fn check_config_prints_the_cluster_section_without_its_secrets() {
    let dir = TempDir::new("cluster-check");
    let config = dir.write(
        "node.toml",
        &format!(
            r#"{APPS}
[cluster]
node_id = 4
listen = "127.0.0.1:7433"
secret = "the cluster secret, not to print"
peers = [{{ node_id = 5, address = "127.0.0.1:7434" }}]
[cluster.redis]
url = "redis://sealroom:redis-password-not-to-print@127.0.0.1:6379/1"
lease_ms = 2000
"#
        ),
    );
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(&config)
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("[cluster]"), "{stdout}");
    assert!(stdout.contains("node_id = 4"), "{stdout}");
    assert!(stdout.contains("lease_ms = 2000"), "{stdout}");
    assert!(stdout.contains("sealroom:***@127.0.0.1:6379/1"), "{stdout}");
    for secret in ["not to print", "redis-password-not-to-print"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
}

#[test]
fn nodes_share_one_file_with_their_index_and_addresses_from_the_environment() {
    let dir = TempDir::new("cluster-env");
    let config = dir.write(
        "node.toml",
        &format!(
            "{APPS}\n[cluster]\nlisten = \"0.0.0.0:7433\"\nsecret = \"the shared cluster secret, 32 b\"\n"
        ),
    );
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(&config)
        .env("SEALROOM_CLUSTER_NODE_ID", "7")
        .env("SEALROOM_CLUSTER_ADVERTISE", "10.1.2.7:7433")
        .env(
            "SEALROOM_CLUSTER_REDIS_URL",
            "redis://:env-password-not-to-print@10.1.2.1:6379",
        )
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("node_id = 7"), "{stdout}");
    assert!(stdout.contains("advertise = \"10.1.2.7:7433\""), "{stdout}");
    assert!(stdout.contains("10.1.2.1:6379"), "{stdout}");
    assert!(!stdout.contains("env-password-not-to-print"), "{stdout}");
    // Without the variable the shared file lacks the index, and says so.
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(&config)
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("[cluster] node_id is missing"), "{stderr}");
}

#[test]
fn a_cluster_mistake_stops_the_node_with_the_key_named() {
    let dir = TempDir::new("cluster-bad");
    for (section, says) in [
        (
            "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"short\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }]\n",
            "[cluster] secret is 5 bytes: give at least 16",
        ),
        (
            "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\n[cluster.redis]\nurl = \"redis://u:hidden-pw@h:notaport\"\n",
            "is not a Redis URL",
        ),
        (
            "[cluster]\nnode_id = 9\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\n",
            "no way to find other nodes",
        ),
    ] {
        let config = dir.write("node.toml", &format!("{APPS}\n{section}"));
        let out = sealroom()
            .args(["relay", "--config"])
            .arg(&config)
            .output()
            .expect("run sealroom");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {section}");
        assert!(stderr.contains(says), "{section}\n=> {stderr}");
        assert!(!stderr.contains("hidden-pw"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_says_so_in_its_banner_and_registers() -> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let node = ProcNode::start(&NodeSpec::loopback(5, &redis.url()))?;
    // The banner's cluster line follows the certificate's, which the start waited for.
    let line = loop {
        let line = node
            .node
            .stdout
            .recv_timeout(sealroom_test_support::SAFETY)
            .map_err(|_| anyhow::anyhow!("no cluster line in the banner"))?;
        if line.trim().starts_with("cluster:") {
            break line;
        }
    };
    assert!(line.contains("node 5 links 127.0.0.1:"), "{line}");
    sealroom_test_support::poll_until(
        "node 5 registers in the directory",
        || redis.exists("sealroom:node:5"),
        || node.node.log(),
    )
    .await?;
    // A node started from its config serves the cluster's series on `/metrics`.
    let internal = node.node.internal;
    let mut exposition = String::new();
    for _ in 0..100 {
        let (status, text) =
            sealroom_test_support::node::http(internal, "GET", "/metrics", None).await?;
        assert_eq!(status, 200, "{text}");
        exposition = text;
        if exposition.contains("sealroom_cluster_lease_held 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        exposition.contains("sealroom_cluster_lease_held 1")
            && exposition.contains("sealroom_cluster_directory_reachable 1"),
        "the cluster's series are missing from /metrics:\n{exposition}"
    );
    Ok(())
}
