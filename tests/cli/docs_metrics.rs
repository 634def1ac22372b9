//! The metrics README.md and docs/OPERATIONS.md list are what `/metrics` serves: every
//! family a node exports is named in both, every drop reason, join outcome and violation
//! kind it exports is listed in the operations guide, and neither names a family that does
//! not exist. The families of a node in a cluster (the cluster's registry, which `/metrics`
//! appends on such a node) are held to the same rule.

use std::collections::BTreeSet;

use crate::support::{Node, TempDir, http, sealroom};

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
[[apps]]
app = "acme"
secrets = [{ kid = "k1", secret = "docs-metrics-test-ticket-secret" }]
"#;

/// Metric names as a scrape shows them: counters with `_total`, others as registered.
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect()
}

/// The values of `label` on the samples of `series`.
fn label_values(exposition: &str, series: &str, label: &str) -> BTreeSet<String> {
    let prefix = format!("{series}{{");
    let key = format!("{label}=\"");
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let start = rest.find(&key)? + key.len();
            let value = &rest[start..];
            Some(value[..value.find('"')?].to_owned())
        })
        .collect()
}

/// `sealroom_...` names a document mentions (backquoted or not).
fn named_in(doc: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = doc;
    while let Some(at) = rest.find("sealroom_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_metrics_are_the_served_metrics() -> anyhow::Result<()> {
    let dir = TempDir::new("docs-metrics");
    let path = dir.write("relay.toml", CONFIG);
    let node = Node::start(sealroom(), &dir, &path)?;
    let (status, exposition) = http(node.internal, "GET", "/metrics", None).await?;
    assert_eq!(status, 200);
    // A node in a cluster appends the cluster's series: their families are served too.
    let cluster = cluster_exposition().await?;
    let mut served = families(&exposition);
    let cluster_families = families(&cluster);
    assert!(cluster_families.len() >= 10, "{cluster}");
    served.extend(cluster_families);
    assert!(served.len() >= 20, "{exposition}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let operations = std::fs::read_to_string(root.join("docs/OPERATIONS.md"))?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    for (doc_name, doc) in [("README.md", &readme), ("docs/OPERATIONS.md", &operations)] {
        let named = named_in(doc);
        let missing: Vec<&String> = served
            .iter()
            .filter(|family| {
                !doc.contains(&format!("`{family}`")) && !doc.contains(&format!("`{family}{{"))
            })
            .collect();
        assert!(missing.is_empty(), "{doc_name} does not list {missing:?}");
        // Histogram samples (`_bucket`, `_sum`, `_count`) belong to their family.
        let unknown: Vec<&String> = named
            .iter()
            .filter(|name| name.starts_with("sealroom_") && name.len() > "sealroom_".len())
            .filter(|name| {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                !served.contains(*name) && !served.contains(base)
            })
            .filter(|name| !is_not_a_metric(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{doc_name} names metrics /metrics does not serve: {unknown:?}"
        );
    }

    for (series, label) in [
        ("sealroom_frames_dropped_total", "reason"),
        ("sealroom_joins_total", "outcome"),
        ("sealroom_violations_total", "kind"),
    ] {
        let values = label_values(&exposition, series, label);
        assert!(!values.is_empty(), "no {series} samples:\n{exposition}");
        let missing: Vec<&String> = values
            .iter()
            .filter(|value| !operations.contains(&format!("`{value}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/OPERATIONS.md does not list the {label}s {missing:?} of {series}"
        );
    }
    Ok(())
}

/// What `/metrics` serves on a node linked to another (so that the per-link series exist).
async fn cluster_exposition() -> anyhow::Result<String> {
    use std::sync::Arc;

    use sealroom_relay::cluster::{Cluster, ClusterConfig};
    use sealroom_relay::http::{InternalOptions, InternalServer};
    use sealroom_relay::{Relay, RelayConfig};

    const SECRET: &[u8] = b"docs-metrics cluster secret, test";
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let one = Arc::new(Relay::start(RelayConfig::default().listen(loopback)).await?);
    let two = Relay::start(RelayConfig::default().listen(loopback)).await?;
    let first = Arc::new(Cluster::start(
        &one,
        ClusterConfig::new(1, loopback, SECRET),
    )?);
    let second = Cluster::start(&two, ClusterConfig::new(2, loopback, SECRET))?;
    first.set_peers(&[sealroom_relay::cluster::Peer {
        index: 2,
        address: second.local_addr(),
    }]);
    let target: Arc<dyn sealroom_relay::admin::AdminTarget> = one.clone();
    let server = InternalServer::start(loopback, target, InternalOptions::default()).await?;
    server.state().attach_cluster(Arc::clone(&first));
    // The link's series appear at its first sample, a second after it is up.
    for _ in 0..1500 {
        let (_, text) = http(server.local_addr(), "GET", "/metrics", None).await?;
        if text.contains("sealroom_cluster_link_rtt_seconds{") {
            return Ok(text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("the link between two nodes never came up")
}

/// Names in the documents that start like a metric but are something else (crate paths,
/// environment variables are upper case and never match).
fn is_not_a_metric(name: &str) -> bool {
    [
        "sealroom_relay",
        "sealroom_client",
        "sealroom_crypto",
        "sealroom_frame",
    ]
    .contains(&name)
}
