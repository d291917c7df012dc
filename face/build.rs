//! Compiles `native/dlib_shim.cpp` against Debian's libdlib-dev, twice: for the x86-64 baseline
//! and with AVX2 (dlib's HOG features use whatever SIMD the compiler is allowed), each under its
//! own symbol prefix; `src/ffi.rs` picks one at run time. Links libdlib.

fn main() {
    println!("cargo::rerun-if-changed=native/dlib_shim.cpp");
    println!("cargo::rerun-if-changed=build.rs");
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let mut variants: Vec<(&str, &[&str])> = vec![("exf_base_", &[])];
    if x86 {
        variants.push(("exf_avx2_", &["-mavx2", "-mfma"]));
        println!("cargo::rustc-cfg=face_avx2");
    }
    println!("cargo::rustc-check-cfg=cfg(face_avx2)");
    for (prefix, flags) in variants {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .file("native/dlib_shim.cpp")
            .std("c++14")
            .opt_level(3)
            .debug(false)
            .define("EXF_PREFIX", prefix)
            .define("DLIB_NO_GUI_SUPPORT", None)
            .flag_if_supported("-Wno-deprecated-copy")
            .flag_if_supported("-Wno-ignored-attributes")
            .warnings(false);
        for f in flags {
            build.flag(f);
        }
        build.compile(&format!("{prefix}shim"));
    }
    // dlib's matrix code (the similarity transforms of the shape predictor) calls BLAS and
    // LAPACK, as Debian builds it (`pkg-config --libs dlib-1`).
    for lib in ["dlib", "blas", "lapack"] {
        println!("cargo::rustc-link-lib=dylib={lib}");
    }
    println!("cargo::rustc-link-lib=dylib=stdc++");
}
