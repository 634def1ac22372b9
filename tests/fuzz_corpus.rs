//! Every fuzz target's committed corpus (`fuzz/corpus/<target>/`), replayed through the
//! very checks the targets run (`fuzz/checks/<target>.rs`, compiled here as modules), in
//! the ordinary debug build: a regression a fuzzer once covered shows up in
//! `cargo test` without a sanitizer build. `fuzz/README.md` says how the corpora were made.

use std::path::PathBuf;

#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/archive.rs"]
mod archive;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/cascade.rs"]
mod cascade;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/control.rs"]
mod control;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/deframer.rs"]
mod deframer;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/envelope.rs"]
mod envelope;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/room_core.rs"]
mod room_core;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/sframe_header.rs"]
mod sframe_header;
#[allow(unreachable_pub, dead_code, clippy::all)]
#[path = "../fuzz/checks/sframe_open.rs"]
mod sframe_open;

/// Run `check` on every file of the target's committed corpus; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("no committed corpus at {}: {err}", dir.display()));
    let mut inputs = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        // A panic names the input: replay it with `cargo fuzz run <target> <file>`.
        eprintln!("{}", path.display());
        check(&bytes);
        inputs += 1;
    }
    assert!(inputs > 0, "the {target} corpus is empty");
}

#[test]
fn archive_corpus() {
    replay("archive", archive::run);
}

#[test]
fn cascade_corpus() {
    replay("cascade", cascade::run);
}

#[test]
fn control_corpus() {
    replay("control", control::run);
}

#[test]
fn deframer_corpus() {
    replay("deframer", deframer::run);
}

#[test]
fn envelope_corpus() {
    replay("envelope", envelope::run);
}

#[test]
fn room_core_corpus() {
    replay("room_core", room_core::run);
}

#[test]
fn sframe_header_corpus() {
    replay("sframe_header", sframe_header::run);
}

#[test]
fn sframe_open_corpus() {
    replay("sframe_open", sframe_open::run);
}
