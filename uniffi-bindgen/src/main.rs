//! `cargo run -p uniffi-bindgen -- generate --library target/debug/libbaomi_ffi.so ...`:
//! the generator pinned to the same uniffi as the library (a mismatch breaks the checksum
//! handshake at load time).

fn main() {
    uniffi::uniffi_bindgen_main()
}
