//! `sealroom relay --check-config`: the example config validates, secrets never print,
//! unknown keys are refused by name, flags and environment variables override the file.

use crate::support::{TempDir, sealroom};

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/relay.toml")
}

#[test]
fn the_example_config_is_valid_and_printed_without_secrets() {
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The effective config names both secrets by kid and shows the merged limits.
    assert!(stdout.contains("kid = \"2026-01\""), "{stdout}");
    assert!(stdout.contains("kid = \"2026-02\""), "{stdout}");
    assert!(stdout.contains("max_members_per_room = 64"), "{stdout}");
    assert!(
        stdout.contains("max_tracks_per_member"),
        "defaults shown: {stdout}"
    );
    // No secret of the example appears.
    for secret in ["example-ticket-secret", "change-me-example-admin-token"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
    assert!(stdout.contains("<redacted>"), "{stdout}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let dir = TempDir::new("check");
    for (text, needle) in [
        ("[log]\nfromat = \"json\"\n", "fromat"),
        ("[limits]\nmax_member_per_room = 3\n", "max_member_per_room"),
        ("listen = \"not an address\"\n", "listen"),
        (
            "[[apps]]\napp = \"a\"\nsecrets = [{ kid = \"k\", secret = \"short\" }]\n",
            "16 bytes",
        ),
        // Out of range: a timeout that would overflow a deadline, a rate of zero, a word
        // that is not a mode.
        (
            "[limits]\njoin_timeout_secs = 9999999999999\n",
            "join_timeout_secs",
        ),
        (
            "[limits]\njoins_per_user_per_sec = 0\n",
            "joins_per_user_per_sec",
        ),
        (
            "[limits]\naddress_validation = \"sometimes\"\n",
            "address_validation",
        ),
    ] {
        let path = dir.write("bad.toml", text);
        let out = sealroom()
            .args(["relay", "--check-config"])
            .arg(&path)
            .output()
            .expect("run sealroom");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
}

#[test]
fn flags_and_environment_override_the_file() {
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .args(["--limit", "max_members_per_room=7", "--log-format", "json"])
        .env("SEALROOM_LISTEN", "0.0.0.0:5555")
        .env("SEALROOM_DRAIN_SECS", "3")
        .env("SEALROOM_APPS", "second:k9:second-app-ticket-secret")
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen = \"0.0.0.0:5555\""), "{stdout}");
    assert!(stdout.contains("drain_secs = 3"), "{stdout}");
    assert!(stdout.contains("max_members_per_room = 7"), "{stdout}");
    assert!(stdout.contains("format = \"json\""), "{stdout}");
    assert!(stdout.contains("app = \"second\""), "{stdout}");
    assert!(!stdout.contains("second-app-ticket-secret"), "{stdout}");
}

#[test]
fn valid_means_the_node_will_start_and_a_config_without_apps_is_not_valid() {
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("valid: `sealroom relay --config"),
        "{stdout}"
    );
    assert!(stdout.contains("will start"), "{stdout}");

    // `--config` refuses a file without apps at start; the check must refuse it too.
    let dir = TempDir::new("noapps");
    let path = dir.write("relay.toml", "listen = \"127.0.0.1:4433\"\n");
    for mode in ["--check-config", "--config"] {
        let out = sealroom()
            .args(["relay", mode])
            .arg(&path)
            .args([
                "--internal-listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
            ])
            .output()
            .expect("run sealroom");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{mode} accepted a config without apps"
        );
        assert!(stderr.contains("no apps configured"), "{mode}: {stderr}");
        assert!(stderr.contains("[[apps]]"), "says what to add: {stderr}");
    }
}

#[test]
fn errors_from_the_environment_name_the_variable() {
    // SEALROOM_CONFIG in the environment does not make --check-config "conflict".
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .env("SEALROOM_CONFIG", "/nonexistent/relay.toml")
        .output()
        .expect("run sealroom");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .env("SEALROOM_LISTEN", "not-an-address")
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("SEALROOM_LISTEN"), "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
    assert!(stderr.contains("IP:port"), "says what to give: {stderr}");

    // Values checked after parsing name their variable too.
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .env("SEALROOM_LIMITS", "max_members_per_room")
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("SEALROOM_LIMITS"), "{stderr}");

    // The same value on the flag is reported as the flag.
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .args(["--listen", "not-an-address"])
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");
    assert!(!stderr.contains("SEALROOM_LISTEN"), "{stderr}");
}

#[test]
fn a_host_name_in_listen_resolves() {
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .args(["--listen", "localhost:4433"])
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("listen = \"127.0.0.1:4433\"")
            || stdout.contains("listen = \"[::1]:4433\""),
        "{stdout}"
    );
}

#[test]
fn a_busy_quic_port_is_named_once() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a udp port");
    let addr = busy.local_addr().expect("address");
    let out = sealroom()
        .args(["relay", "--app", "acme:k1:acme-bind-test-ticket-secret"])
        .args(["--internal-listen", "127.0.0.1:0", "--listen"])
        .arg(addr.to_string())
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a busy port");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(stderr.contains("QUIC (UDP)"), "{stderr}");
    let cause = "in use";
    assert_eq!(stderr.matches(cause).count(), 1, "cause repeated: {stderr}");
    assert!(stderr.contains("--listen"), "says what to do: {stderr}");
}

#[test]
fn every_limit_can_be_set_from_flags_and_the_environment() {
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .env(
            "SEALROOM_LIMITS",
            "address_validation=always,max_half_open=32,max_ticket_lifetime_secs=86400",
        )
        .output()
        .expect("run sealroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("address_validation = \"always\""),
        "{stdout}"
    );
    assert!(stdout.contains("max_half_open = 32"), "{stdout}");
    assert!(
        stdout.contains("max_ticket_lifetime_secs = 86400"),
        "{stdout}"
    );
    // The boolean spelling works too, and a limit out of range is refused by name.
    let out = sealroom()
        .args(["relay", "--check-config"])
        .arg(example())
        .args([
            "--limit",
            "address_validation=false",
            "--limit",
            "idle_timeout_ms=1",
        ])
        .output()
        .expect("run sealroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("idle_timeout_ms"), "{stderr}");
}
