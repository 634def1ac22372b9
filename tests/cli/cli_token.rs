//! `sealroom token`: it refuses to mint what no relay would accept, and its help says how
//! long a ticket really lasts.

use crate::support::sealroom;

fn token(secret: &str) -> std::process::Output {
    sealroom()
        .args(["token", "--app", "acme", "--kid", "k1", "--user", "alice"])
        .args(["--room", "standup", "--secret", secret])
        .output()
        .expect("run sealroom")
}

#[test]
fn a_secret_relays_refuse_is_refused_at_minting() {
    let out = token("short");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "minted with a 5-byte secret");
    assert!(out.stdout.is_empty(), "a ticket was printed");
    assert!(stderr.contains("16 bytes"), "{stderr}");

    let out = token("sixteen-byte-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticket = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ticket.trim().split('.').count(), 3, "a JWT: {ticket}");
}

#[test]
fn the_help_states_the_leeway() {
    let out = sealroom()
        .args(["token", "--help"])
        .output()
        .expect("run sealroom");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("30 s"), "{help}");
    assert!(help.contains("ticket_leeway_secs"), "{help}");
}
