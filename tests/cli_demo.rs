//! `sealroom demo`: options beyond the default load are carried (the embedded relay's limits
//! follow them) and the verdict counts every kind it meant to send; options it cannot carry
//! are refused before anything starts.
//!
//! A binary of its own, not a module of `tests/cli/`: run beside the node processes of
//! that binary, the demo has reported reliable messages lost (`sealroom demo` exits with
//! "N reliable messages lost"), a failure under CPU load still to be found.

/// The `sealroom` binary these tests were built with.
fn sealroom() -> std::process::Command {
    sealroom_test_support::node::binary(env!("CARGO_BIN_EXE_sealroom"))
}

/// The `expected` and `delivered` columns of a row of the demo's frame table.
fn row(stdout: &str, kind: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} row:\n{stdout}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // meant, accepted, (not accepted when 0), expected, delivered, missing
    let n = numbers.len();
    assert!(n >= 5, "{line}");
    (numbers[n - 3], numbers[n - 2])
}

#[test]
fn a_heavier_load_than_the_defaults_is_carried_and_counted() {
    let out = sealroom()
        .args(["demo", "--members", "2", "--duration", "1"])
        .args(["--chat-rate", "100", "--keyframe-bytes", "300000"])
        .output()
        .expect("run sealroom demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing refused"), "{stdout}");
    assert!(!stdout.contains("relay refusals"), "{stdout}");
    // The call-quality table: one verdict per member.
    let verdicts = stdout
        .lines()
        .filter(|l| l.starts_with("member-"))
        .filter(|l| {
            let verdict = l.split_whitespace().nth(1);
            matches!(verdict, Some("good" | "fair" | "poor"))
        })
        .count();
    assert_eq!(verdicts, 2, "{stdout}");
    let (expected, delivered) = row(&stdout, "chat");
    assert!(expected >= 50, "{stdout}");
    assert_eq!(delivered, expected, "{stdout}");
    let (expected, delivered) = row(&stdout, "video");
    assert!(expected > 0 && delivered > 0, "{stdout}");
}

#[test]
fn options_the_demo_cannot_carry_are_refused() {
    for (flag, value) in [("--keyframe-bytes", "10000000"), ("--chat-rate", "100000")] {
        let out = sealroom()
            .args(["demo", flag, value])
            .output()
            .expect("run sealroom demo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} accepted");
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
        assert!(out.stdout.is_empty(), "the demo started");
    }
}

/// The `frames` figures of the demo's node link lines (`node A -> node B: N frames`).
fn link_frames(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("node ") && l.contains(" -> "))
        .flat_map(|l| l.split(';'))
        .filter_map(|part| {
            let (_, rest) = part.split_once(": ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[test]
fn three_nodes_carry_one_room_with_members_spread_over_them() {
    let out = sealroom()
        .args(["demo", "--nodes", "3", "--members", "6", "--duration", "1"])
        .output()
        .expect("run sealroom demo --nodes 3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 relay nodes in one cluster"), "{stdout}");
    let with_redis = stdout.contains("directory: Redis on 127.0.0.1:");
    if !with_redis {
        // Without redis-server the demo links the nodes by address and says how to
        // install it; CI installs it, so there the directory must have been used.
        assert!(stdout.contains("apt-get install redis-server"), "{stdout}");
        assert_ne!(
            std::env::var("SEALROOM_TEST_STRICT").as_deref(),
            Ok("1"),
            "redis-server is not installed: the demo ran without its directory\n{stdout}"
        );
    }
    // Members sit on three nodes (their ids carry the node index in the high bits), and
    // each hears every other one: nothing is missing, everything opened.
    let nodes: std::collections::BTreeSet<u32> = stdout
        .lines()
        .filter(|l| l.starts_with("member-"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        .map(|id| id >> 20)
        .collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), [1, 2, 3], "{stdout}");
    for kind in ["audio", "video", "chat"] {
        let (expected, delivered) = row(&stdout, kind);
        assert!(expected > 0, "{stdout}");
        assert_eq!(delivered, expected, "{kind}: {stdout}");
    }
    // Six figures, one per direction of each of the three links, each carrying the frames
    // of that node's two publishers once.
    let frames = link_frames(&stdout);
    assert_eq!(frames.len(), 6, "{stdout}");
    assert!(frames.iter().all(|n| *n > 0), "{stdout}");
    assert!(stdout.contains("nothing refused"), "{stdout}");
}

#[test]
fn the_demo_refuses_nodes_with_the_browser_demo() {
    let out = sealroom()
        .args(["demo", "--nodes", "3", "--web"])
        .output()
        .expect("run sealroom demo");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "the demo started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--nodes"), "{stderr}");
}

#[test]
fn demo_web_without_a_built_client_or_npm_says_how_to_install_node() {
    // A `web/` with sources but no build, and a PATH where npm cannot be found.
    let root = std::env::temp_dir().join(format!("sealroom-cli-demo-web-{}", std::process::id()));
    let web = root.join("web");
    std::fs::create_dir_all(web.join("src")).expect("create web/src");
    std::fs::write(web.join("src/index.ts"), "export {};\n").expect("write a source");
    let empty_path = root.join("bin");
    std::fs::create_dir_all(&empty_path).expect("create an empty PATH");
    let out = sealroom()
        .args(["demo", "--web", "--web-port", "0", "--web-duration", "1"])
        .arg("--web-dir")
        .arg(&web)
        .env("PATH", &empty_path)
        .output()
        .expect("run sealroom demo --web");
    let _ = std::fs::remove_dir_all(&root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the demo started without a client:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("not built yet"), "{stderr}");
    assert!(stderr.contains("apt-get install nodejs npm"), "{stderr}");
    // Nothing was started: no relay line, no URL.
    assert!(!stdout.contains("open http"), "{stdout}");
}
