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
