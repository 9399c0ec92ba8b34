//! Seeded, platform-independent noise: the same seed gives bit-identical numbers on wasm and native.
//! Generation draws its initial latents from PyTorch's generator by default ([`NoiseSource`]);
//! everything else (training, phantoms, self-tests) uses [`NoiseRng`].
//!
//! SPEC: "the noise comes from our own seeded RNG, not from a backend's RNG". Backends' RNGs differ
//! between devices and versions, so initial latents would not reproduce across web and CLI.
//! The generator is xoshiro256++ (Blackman & Vigna) seeded through SplitMix64; normals come from
//! Box–Muller computed with `libm`, a pure-Rust maths library, so no platform libm can change a bit.

/// Where a generation's initial latents come from, for a seed. Both give the same numbers on
/// wasm and native.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseSource {
    /// PyTorch's CPU generator (`crate::torch_rng`): seed N is diffusers' (and MAM-E's) seed N
    /// with `generator=torch.Generator("cpu").manual_seed(N)`.
    #[default]
    Torch,
    /// [`NoiseRng`], mam-e's own generator (the default before PyTorch's was reproduced; kept so
    /// earlier images can be made again).
    Ours,
}

impl NoiseSource {
    pub const ALL: [NoiseSource; 2] = [NoiseSource::Torch, NoiseSource::Ours];

    pub fn name(self) -> &'static str {
        match self {
            NoiseSource::Torch => "torch",
            NoiseSource::Ours => "ours",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            NoiseSource::Torch => "PyTorch (diffusers' seeds)",
            NoiseSource::Ours => "mam-e's own",
        }
    }

    /// `len` standard normals for `seed`. PyTorch's are reproduced for 16 values or more (it
    /// draws fewer another way); fewer are refused with the reason.
    pub fn randn(self, seed: u64, len: usize) -> crate::Result<Vec<f32>> {
        match self {
            NoiseSource::Torch if len < crate::torch_rng::MIN_LEN => Err(crate::Error::InvalidInput {
                what: "image size",
                reason: format!(
                    "its latents hold {len} values; PyTorch's noise is reproduced for {} or more (a larger image, or mam-e's own noise)",
                    crate::torch_rng::MIN_LEN
                ),
            }),
            NoiseSource::Torch => Ok(crate::torch_rng::TorchGenerator::manual_seed(seed).randn(len)),
            NoiseSource::Ours => Ok(NoiseRng::new(seed).randn(len)),
        }
    }
}

/// xoshiro256++ with Box–Muller normals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseRng {
    state: [u64; 4],
    /// The second Box–Muller output, kept for the next call.
    spare: Option<u64>,
}

impl NoiseRng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { state: [next(), next(), next(), next()], spare: None }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample.
    pub fn normal(&mut self) -> f64 {
        if let Some(bits) = self.spare.take() {
            return f64::from_bits(bits);
        }
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let radius = libm::sqrt(-2.0 * libm::log(u1));
        let angle = 2.0 * core::f64::consts::PI * u2;
        self.spare = Some((radius * libm::sin(angle)).to_bits());
        radius * libm::cos(angle)
    }

    /// `len` standard normal samples as `f32`, in row-major order of whatever tensor they fill.
    pub fn randn(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.normal() as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First outputs for seed 1338, from an independent Python implementation of SplitMix64 +
    /// xoshiro256++ (`tests/fixtures/make_rng_reference.py`).
    #[test]
    fn matches_reference_stream() {
        let mut rng = NoiseRng::new(1338);
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, REFERENCE_U64);
        let mut rng = NoiseRng::new(1338);
        for expected in REFERENCE_NORMAL {
            let got = rng.normal();
            assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        }
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut rng = NoiseRng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 1/sqrt(n) ≈ 0.0022 for the mean, ≈ 0.0032 for the variance.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "variance {var}");
    }

    #[test]
    fn seeds_give_distinct_reproducible_streams() {
        assert_eq!(NoiseRng::new(5).randn(16), NoiseRng::new(5).randn(16));
        assert_ne!(NoiseRng::new(5).randn(16), NoiseRng::new(6).randn(16));
    }

    const REFERENCE_U64: [u64; 4] = include!("../tests/fixtures/rng_u64_seed1338.txt");
    const REFERENCE_NORMAL: [f64; 6] = include!("../tests/fixtures/rng_normal_seed1338.txt");
}
