//! UniFFI's generator, built from the same UniFFI version as `crates/sealroom-ffi`, so the
//! Swift, Kotlin and Python sources it writes always match the library:
//!
//! ```sh
//! cargo build -p sealroom-ffi
//! cargo run -p sealroom-ffi --features uniffi-bindgen --bin uniffi-bindgen -- generate \
//!     --library target/debug/libsealroom_ffi.so --language swift --language kotlin \
//!     --out-dir target/bindings
//! ```

fn main() {
    uniffi::uniffi_bindgen_main();
}
