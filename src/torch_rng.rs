//! PyTorch's CPU generator, bit for bit: `torch.Generator("cpu").manual_seed(seed)` followed by
//! `torch.randn(n, generator=…)` in float32, which is how diffusers' `prepare_latents` draws the
//! initial latents when it is given a CPU generator. With it, `--seed 1338` is diffusers' seed 1338.
//!
//! The generator is MT19937 seeded with the low 32 bits of the seed (`at::mt19937`). A float
//! uniform is the low 24 bits of one 32-bit draw times 2^-24. `randn` of 16 or more floats fills
//! the whole tensor with uniforms first, then turns each block of 16 into normals with Box–Muller
//! (`u1 = 1 − data[j]`, `u2 = data[j + 8]`, cosines into the first 8, sines into the last 8); when
//! the length is not a multiple of 16 the last 16 values are drawn again and transformed again.
//!
//! PyTorch computes the logarithm, sine and cosine of that Box–Muller with the Cephes polynomials
//! of `avx_mathfun.h` on every x86 CPU with AVX2 (its AVX2 and AVX-512 kernels), compiled with
//! fused multiply-adds. Those polynomials are reproduced here operation by operation (each
//! `mul_add` where the compiled kernel fuses one), so every value is bit-identical to PyTorch on
//! such a CPU, on native and wasm alike: only IEEE-exact operations (+, ×, fused ×+, √) are used.
//! PyTorch without AVX2 (`ATEN_CPU_CAPABILITY=default`, ARM CPUs) calls the C library's
//! `logf`/`cosf`/`sinf` instead: measured on 1024 values, 40 % differ from these by one or a few
//! ulps (at most 1.2e-6).
//!
//! Tensors of fewer than 16 values take another path in PyTorch (double-precision normals, through
//! the C library): not reproduced; `NoiseSource::randn` refuses them (an 8×8 image on SD1.5 has
//! latents of 4 values).

// The Cephes constants are written as `avx_mathfun.h` has them (their f32 roundings are what
// PyTorch computes with), not as Rust's named constants.
#![allow(clippy::excessive_precision, clippy::approx_constant)]

/// The fewest values [`TorchGenerator::randn`] reproduces (PyTorch's vectorised path).
pub const MIN_LEN: usize = 16;

const STATE: usize = 624;
const SHIFT: usize = 397;

/// MT19937 (Matsumoto & Nishimura) as `at::mt19937`.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; STATE],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; STATE];
        state[0] = seed as u32;
        for i in 1..STATE {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: STATE }
    }

    fn twist(&mut self) {
        for i in 0..STATE {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % STATE] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[i] = self.state[(i + SHIFT) % STATE] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= STATE {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// A CPU `torch.Generator` after `manual_seed(seed)`.
#[derive(Clone)]
pub struct TorchGenerator {
    mt: Mt19937,
}

impl TorchGenerator {
    pub fn manual_seed(seed: u64) -> Self {
        Self { mt: Mt19937::new(seed) }
    }

    /// `at::uniform_real_distribution<float>(0, 1)`: 24 random bits.
    fn uniform(&mut self) -> f32 {
        (self.mt.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `torch.randn(len, generator=self)` in float32 (any shape of `len` values, row-major).
    /// `len` must be at least [`MIN_LEN`] (see the module documentation).
    pub fn randn(&mut self, len: usize) -> Vec<f32> {
        assert!(len >= MIN_LEN, "torch's randn of fewer than {MIN_LEN} values is not reproduced");
        let mut data: Vec<f32> = (0..len).map(|_| self.uniform()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !len.is_multiple_of(16) {
            let tail = &mut data[len - 16..];
            for value in tail.iter_mut() {
                *value = self.uniform();
            }
            box_muller_16(tail);
        }
        data
    }
}

/// PyTorch's `normal_fill_16_AVX2` with mean 0 and standard deviation 1.
fn box_muller_16(data: &mut [f32]) {
    let two_pi = (2.0 * core::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * log(u1)).sqrt();
        let (sin, cos) = sin_cos(two_pi * u2);
        data[j] = radius * cos;
        data[j + 8] = radius * sin;
    }
}

/// A constant of `avx_mathfun.h`: written there as a double literal, stored as a float.
fn c(value: f64) -> f32 {
    value as f32
}

/// `log256_ps` of `avx_mathfun.h` (Cephes' `logf`) for one positive float.
fn log(x: f32) -> f32 {
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    // The mantissa as a number in [0.5, 1).
    let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let below = x < c(0.707106781186547524);
    let tmp = if below { x } else { 0.0 };
    x -= 1.0;
    if below {
        e -= 1.0;
    }
    x += tmp;
    let z = x * x;
    let coefficients = [
        7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1,
        3.3333331174E-1,
    ];
    let mut y = c(coefficients[0]);
    for &p in &coefficients[1..] {
        y = y.mul_add(x, c(p));
    }
    y *= x;
    y = y.mul_add(z, e * c(-2.12194440e-4));
    y = (-z).mul_add(0.5, y);
    x += y;
    e.mul_add(c(0.693359375), x)
}

/// `sincos256_ps` of `avx_mathfun.h` (Cephes' `sinf`/`cosf`): `(sin x, cos x)`.
fn sin_cos(x: f32) -> (f32, f32) {
    let mut sin_sign = x.to_bits() & 0x8000_0000;
    let x = x.abs();
    // The octant, rounded up to even, as `cvttps` then `(j + 1) & ~1`.
    let j = (((x * c(1.27323954473516)) as i32) + 1) & !1;
    let y = j as f32;
    let swap_sign = ((j & 4) as u32) << 29;
    let sine_polynomial = j & 2 == 0;
    // x − y·π/4 in three parts (extended-precision modular arithmetic).
    let x = y.mul_add(c(-0.78515625), x);
    let x = y.mul_add(c(-2.4187564849853515625e-4), x);
    let x = y.mul_add(c(-3.77489497744594108e-8), x);
    let cos_sign = ((!(j - 2) & 4) as u32) << 29;
    sin_sign ^= swap_sign;
    let z = x * x;
    let cos_poly = c(2.443315711809948E-005).mul_add(z, c(-1.388731625493765E-003)).mul_add(z, c(4.166664568298827E-002));
    let cos_poly = (cos_poly * z).mul_add(z, -(z * 0.5)) + 1.0;
    let sin_poly = c(-1.9515295891E-4).mul_add(z, c(8.3321608736E-3)).mul_add(z, c(-1.6666654611E-1));
    let sin_poly = (sin_poly * z).mul_add(x, x);
    let (sin, cos) = if sine_polynomial { (sin_poly, cos_poly) } else { (cos_poly, sin_poly) };
    (f32::from_bits(sin.to_bits() ^ sin_sign), f32::from_bits(cos.to_bits() ^ cos_sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of MT19937 seeded with 5489, from the reference implementation
    /// (Matsumoto & Nishimura's mt19937ar.c, also C++'s `std::mt19937` default).
    #[test]
    fn mt19937_matches_the_reference_stream() {
        let mut mt = Mt19937::new(5489);
        let first: Vec<u32> = (0..3).map(|_| mt.next_u32()).collect();
        assert_eq!(first, [3_499_211_612, 581_869_302, 3_890_346_734]);
        // std::mt19937's 10000th output for the default seed (C++ standard, [rand.predef]).
        let mut mt = Mt19937::new(5489);
        let ten_thousandth = (0..10_000).map(|_| mt.next_u32()).last().unwrap();
        assert_eq!(ten_thousandth, 4_123_659_995);
    }

    #[test]
    fn log_and_sin_cos_are_within_two_ulps_of_the_exact_values() {
        for i in 1..=4096 {
            let x = i as f32 / 4096.0;
            let want = (x as f64).ln();
            assert!((log(x) as f64 - want).abs() <= 2.0 * f32::EPSILON as f64 * want.abs().max(1e-7), "log {x}");
            let angle = x * 6.2831855;
            let (s, c) = sin_cos(angle);
            assert!((s as f64 - (angle as f64).sin()).abs() < 3e-7, "sin {angle}");
            assert!((c as f64 - (angle as f64).cos()).abs() < 3e-7, "cos {angle}");
        }
    }
}
