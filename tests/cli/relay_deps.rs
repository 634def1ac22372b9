//! `scripts/check-relay-deps`, the CI check behind "the relay holds no content key", can
//! fail: pointed at sealroom-crypto it names the AEAD and cipher crates by their real
//! `cargo tree` lines (`aes v0.9.x`), and it passes sealroom-relay.

use std::path::Path;
use std::process::Command;

fn check(package: &str) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The script calls `cargo`; make it the one running these tests.
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    if let Some(dir) = Path::new(&cargo).parent() {
        path.insert(0, dir.to_path_buf());
    }
    Command::new("bash")
        .arg(root.join("scripts/check-relay-deps"))
        .arg(package)
        .env("PATH", std::env::join_paths(path).expect("PATH"))
        .output()
        .expect("run scripts/check-relay-deps")
}

#[test]
fn the_dependency_check_flags_content_crypto_and_passes_the_relay() {
    let out = check("sealroom-crypto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for crate_name in ["aes", "aes-gcm", "ctr", "hkdf", "sealroom-crypto"] {
        assert!(
            stderr.contains(&format!("depends on {crate_name} v")),
            "{crate_name} not flagged:\n{stderr}"
        );
    }

    let out = check("sealroom-relay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
