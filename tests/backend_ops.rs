//! The ops SD is built from, on each native backend, against their f64 definitions.
#![cfg(not(target_arch = "wasm32"))]

use mam_e::device::Backend;
use mam_e::selftest;

fn assert_all_pass(backend: Backend) {
    let device = backend.device().unwrap_or_else(|e| panic!("{backend:?}: {e}"));
    let checks = pollster::block_on(selftest::run(&device)).expect("self-test ran");
    assert_eq!(checks.len(), 7);
    for check in checks {
        assert!(check.passed(), "{backend:?} {}: relative error {:e}", check.name, check.relative_error());
    }
}

#[test]
fn flex_cpu_matches_reference() {
    assert_all_pass(Backend::Cpu);
}

/// wgpu natively: Vulkan through Mesa lavapipe on a machine without a GPU.
#[test]
fn wgpu_matches_reference() {
    assert_all_pass(Backend::Wgpu);
}

/// SD1.5's first UNet attention at 512×512 (CFG batch 2, 8 heads, 4096 tokens, head size 40):
/// its 1 GiB score matrix failed to run on lavapipe before attention was sliced.
#[test]
fn sd15_sized_attention_on_wgpu_matches_flex() {
    use burn::tensor::{Distribution, Tensor};
    let gpu = Backend::Wgpu.device().unwrap();
    let cpu = Backend::Cpu.device().unwrap();
    let t = || Tensor::<4>::random([2, 8, 4096, 40], Distribution::Normal(0.0, 1.0), &cpu);
    let (q, k, v) = (t(), t(), t());
    let want = mam_e::model::ops::scaled_dot_product_attention(q.clone(), k.clone(), v.clone(), false);
    let got = mam_e::model::ops::scaled_dot_product_attention(q.to_device(&gpu), k.to_device(&gpu), v.to_device(&gpu), false);
    let got = pollster::block_on(got.into_data_async()).expect("attention ran on the GPU");
    let got = Tensor::<4>::from_data(got, &cpu);
    let error = (want.clone() - got).abs().max().into_scalar::<f32>() / want.abs().max().into_scalar::<f32>();
    assert!(error <= 1e-4, "relative error {error}");
}
