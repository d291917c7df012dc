//! Sets `cfg(filters_avx512)` when the compiler has stable AVX-512 intrinsics (Rust 1.89): the
//! workspace still builds with Rust 1.85, where ROTATION then uses its AVX2 kernel at most.
//! Uses nothing but std (the crate's rule: std and serde_json only).

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(filters_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        // "rustc 1.95.0 (59807616e 2026-04-14)"
        .and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok());
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo::rustc-cfg=filters_avx512");
    }
}
