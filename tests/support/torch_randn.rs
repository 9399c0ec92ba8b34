//! PyTorch's own `torch.randn` outputs (tests/fixtures/torch_randn.json, from
//! tests/fixtures/make_rng_reference.py --torch), held bit for bit by native and browser tests.

use mam_e::rng::NoiseSource;

const CASES: &str = include_str!("../fixtures/torch_randn.json");

/// Checks every case bit-exactly; returns how many values were compared.
pub fn check_every_case() -> usize {
    let info: serde_json::Value = serde_json::from_str(CASES).unwrap();
    let mut compared = 0;
    for case in info["cases"].as_array().unwrap() {
        let (seed, len) = (case["seed"].as_u64().unwrap(), case["len"].as_u64().unwrap() as usize);
        let want: Vec<u32> = case["bits"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
        let got: Vec<u32> = NoiseSource::Torch.randn(seed, len).unwrap().iter().map(|v| v.to_bits()).collect();
        let differing = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert_eq!(differing, 0, "seed {seed}, {len} values: {differing} differ from PyTorch {}", info["torch"]);
        compared += len;
    }
    compared
}
