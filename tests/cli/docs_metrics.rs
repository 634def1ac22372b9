//! The metrics README.md and docs/OPERATIONS.md list are what `/metrics` serves: every
//! family a node exports is named in both, every drop reason, join outcome and violation
//! kind it exports is listed in the operations guide, and neither names a family that does
//! not exist.

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
    let served = families(&exposition);
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
