//! A CI-sized run of the multi-node mode: one room over three nodes beside one node, and
//! one failover. It checks what the mode promises, not how fast anything was: every
//! subscriber heard the publisher on both deployments, the publisher's node sent each frame
//! at most once per link (and the links carried the room), and every member of the killed
//! node heard the room again.

use std::process::Command;

#[test]
fn three_nodes_beside_one_and_a_failover() {
    let out_dir = std::env::temp_dir().join(format!("sealroom-load-nodes-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_sealroom-load"))
        .args(["--nodes", "3", "--shape", "tiny", "--subscribers", "6"])
        .args(["--warmup", "1", "--duration", "2", "--failovers", "1"])
        .args(["--failover-members", "2", "--server-threads", "1"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run sealroom-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let json = std::fs::read_to_string(out_dir.join("nodes3-tiny-n6.json")).expect("results");
    let results: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let runs = results["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{json}");
    assert_eq!(runs[0]["nodes"], 1);
    assert_eq!(runs[1]["nodes"], 3);
    for run in runs {
        assert!(run["frames_received"].as_u64() > Some(0), "{json}");
        assert!(run["cpu_us_per_egress_frame"].as_f64().is_some(), "{json}");
    }
    let three = &runs[1];
    let published = three["publisher_frames"].as_u64().expect("published");
    let over_links = three["link_frames_from_publisher_node"]
        .as_u64()
        .expect("link frames");
    assert!(published > 0 && over_links > 0, "{json}");
    assert!(
        over_links <= 2 * published,
        "more than one copy per link: {json}"
    );
    assert!(
        three["link_bytes_all_nodes"].as_u64() >= three["link_bytes_minimum"].as_u64(),
        "{json}"
    );
    let failover = &results["failover"];
    let samples = failover["to_frames_ms"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{json}");
    assert!(
        samples
            .iter()
            .all(|s| s.as_f64().is_some_and(f64::is_finite)),
        "{json}"
    );
    assert!(stdout.contains("kill to frames heard again"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
