//! The instruction sets the elementwise loops are compiled for.
//!
//! The loops are written once, as plain Rust over slices, and inlined into a
//! function compiled with the wider instruction set's target features, chosen
//! at run time. They use no fused multiply-adds except explicit `mul_add`
//! (correctly rounded on every path) and no approximate instructions, so every
//! path gives the same bits for the same formulas (only the choice of arcsine
//! formula follows the instruction set: see [`Simd::divides_slowly`]).

/// An instruction set, detected once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX-512 (F, VL, DQ, BW): twice the lanes of AVX2, and on CPUs whose divide
    /// and square-root units are the bottleneck of the dual activations, 5 %
    /// less time for a whole float64 ReLU kernel.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// The widest instruction set of this CPU.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512bw");
            if avx2 && avx512 {
                return Simd::Avx512;
            }
            if avx2 {
                return Simd::Avx2Fma;
            }
        }
        Simd::Baseline
    }

    /// The instruction sets this CPU can run, baseline first (for tests that
    /// compare the paths).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut all = vec![Simd::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            let best = Simd::detect();
            if best != Simd::Baseline {
                all.push(Simd::Avx2Fma);
            }
            if best == Simd::Avx512 {
                all.push(Simd::Avx512);
            }
        }
        all
    }

    /// Whether divisions and square roots are the bottleneck of the dual
    /// activations' loops, so that the division-free arcsine is faster
    /// (`trig::Polynomial`): with AVX-512, whose divide/square-root unit takes
    /// 8 doubles at the rate AVX2's takes 4.
    pub(crate) fn divides_slowly(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Simd::Avx512 {
            return true;
        }
        false
    }

    /// Runs `f` compiled for this instruction set: `f` and what it inlines
    /// are compiled into a function with its target features. Mark the closure
    /// and the loop bodies it calls `#[inline(always)]`: a closure left out of
    /// line is compiled for the baseline, where the layers' `mul_add` became
    /// library calls and took 100 times as long.
    #[inline(always)]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            Simd::Baseline => f(),
            // SAFETY: `detect` found AVX2 and FMA on this CPU (the variant is
            // made nowhere else).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { avx2(f) },
            // SAFETY: as above, for the AVX-512 subsets and AVX2 + FMA.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { avx512(f) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}
