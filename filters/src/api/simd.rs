//! Which instruction set a filter's inner loop runs with: one choice for every filter that
//! has SIMD kernels (ROTATION, EDGE_OUTLINE), made at run time.

/// An inner-loop build. Every kernel of a filter gives the same output (each filter tests
/// this); they differ only in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU (the target's baseline, SSE2 on x86-64).
    Portable,
    /// x86-64 AVX2.
    Avx2,
    /// x86-64 AVX-512 F + BW (with AVX2). Only built with Rust 1.89 or newer (stable AVX-512
    /// intrinsics, see `build.rs`); otherwise never [`supported`](Self::supported).
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU (and this build) runs.
    pub fn best() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2].into_iter().find(|k| k.supported()).unwrap_or(Kernel::Portable)
    }

    /// Whether this kernel runs here (the CPU has the instructions, and the build has the code).
    pub fn supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(all(target_arch = "x86_64", filters_avx512))]
            Kernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}
