//! `include/sealroom.h` is what cbindgen generates from this crate today: the test
//! regenerates it with cbindgen as a library and fails when the committed header is stale.
//! `SEALROOM_BLESS=1` rewrites it instead.

use std::path::Path;

#[test]
fn committed_header_matches_the_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8");
    let path = dir.join("include/sealroom.h");
    if std::env::var_os("SEALROOM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/sealroom.h is stale: run `SEALROOM_BLESS=1 cargo test -p sealroom-c --test header` and commit it"
    );
}
