//! Which instruction set a filter's inner loop runs with: one choice for every filter that
//! has SIMD kernels (ROTATION, EDGE_OUTLINE), made at run time.

use std::sync::OnceLock;

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
    /// The kernel the filters use: the fastest this CPU (and this build) runs, or, when the
    /// environment variable `EXPHUB_FILTERS_KERNEL` is `portable`, `avx2` or `avx512`, the
    /// fastest one up to that (to measure or compare the slower kernels on a fast machine).
    /// Decided once per process.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| Kernel::best_up_to(std::env::var("EXPHUB_FILTERS_KERNEL").ok().as_deref()))
    }

    /// The fastest supported kernel no faster than `limit` (a kernel's name; `None` or an
    /// unknown name: no limit).
    pub fn best_up_to(limit: Option<&str>) -> Kernel {
        let all = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];
        let from = all.iter().position(|k| Some(k.name()) == limit).unwrap_or(0);
        all[from..].iter().copied().find(|k| k.supported()).unwrap_or(Kernel::Portable)
    }

    /// The kernel's name, as `EXPHUB_FILTERS_KERNEL` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
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

#[cfg(test)]
mod tests {
    use super::Kernel;

    #[test]
    fn a_limit_picks_the_fastest_supported_kernel_up_to_it() {
        assert_eq!(Kernel::best_up_to(Some("portable")), Kernel::Portable);
        let avx2 = Kernel::best_up_to(Some("avx2"));
        assert_eq!(avx2, if Kernel::Avx2.supported() { Kernel::Avx2 } else { Kernel::Portable });
        let fastest = [Kernel::Avx512, Kernel::Avx2].into_iter().find(|k| k.supported()).unwrap_or(Kernel::Portable);
        assert_eq!(Kernel::best_up_to(Some("avx512")), fastest);
        assert_eq!(Kernel::best_up_to(None), fastest);
        assert_eq!(Kernel::best_up_to(Some("neon")), fastest, "an unknown name is no limit");
    }
}
