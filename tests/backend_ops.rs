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

/// `got` (on any device) read back to `cpu`, and its largest difference from `want` relative to
/// `want`'s largest value.
fn relative_error<const D: usize>(want: burn::tensor::Tensor<D>, got: burn::tensor::Tensor<D>, cpu: &burn::tensor::Device) -> f32 {
    let got = burn::tensor::Tensor::<D>::from_data(pollster::block_on(got.into_data_async()).expect("the op ran on its device"), cpu);
    assert_eq!(got.dims(), want.dims());
    (want.clone() - got).abs().max().into_scalar::<f32>() / want.abs().max().into_scalar::<f32>()
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
    let error = relative_error(want, got, &cpu);
    assert!(error <= 1e-4, "relative error {error}");
}

/// Convolutions as the models compute them on a GPU (a matrix product over im2col columns)
/// against the CPU's (our kernel, itself tested against the definition in f64): 3×3 and 1×1, padding
/// on one side only, and an input whose columns (64·9 rows × 256² pixels, 151 MB) exceed
/// `MAX_COLUMN_BYTES`, so it is computed in bands of rows (measured on lavapipe: ≤ 1.2e-7, and
/// 1.1e-6 for that one's 576-term sums).
#[test]
fn convolutions_on_wgpu_match_flex() {
    use burn::module::Module;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tensor};
    use mam_e::model::ops::{MAX_COLUMN_BYTES, conv2d};
    let gpu = Backend::Wgpu.device().unwrap();
    let cpu = Backend::Cpu.device().unwrap();
    let cases =
        [([2, 5, 11, 9], 7, 3, [1, 1, 1, 1]), ([2, 6, 8, 8], 4, 1, [0, 0, 0, 0]), ([1, 3, 7, 10], 5, 3, [0, 1, 2, 0]), ([1, 64, 256, 256], 8, 3, [1, 1, 1, 1])];
    const { assert!(64 * 9 * 256 * 256 * 4 > MAX_COLUMN_BYTES) };
    for ([b, c, h, w], out, kernel, [top, left, bottom, right]) in cases {
        let conv = Conv2dConfig::new([c, out], [kernel, kernel]).with_padding(PaddingConfig2d::Explicit(top, left, bottom, right)).init(&cpu);
        let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &cpu);
        let want = conv2d(&conv, x.clone());
        let got = conv2d(&conv.clone().to_device(&gpu), x.to_device(&gpu));
        let error = relative_error(want, got, &cpu);
        println!("conv {kernel}x{kernel} [{b},{c},{h},{w}]->{out}: relative error {error:e}");
        assert!(error <= 2e-6, "[{b},{c},{h},{w}] {kernel}x{kernel}: relative error {error}");
    }
}

/// Linear layers as the page computes them on SwiftShader (`linear_as_convolution`: a 1×1
/// convolution over the rows as pixels), on the GPU and on the CPU, against burn's linear layer on
/// the CPU (a matrix product): token batches as the attention blocks feed them, with and without
/// bias, and a 2-d batch as the time embedding's.
#[test]
fn linear_layers_as_convolutions_match_burns_linear() {
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, Tensor};
    use mam_e::model::ops::linear_as_convolution;
    let gpu = Backend::Wgpu.device().unwrap();
    let cpu = Backend::Cpu.device().unwrap();
    for ([b, n, d_in], d_out, bias) in [([2, 77, 64], 256, true), ([2, 64, 128], 128, false), ([1, 5, 3], 7, true)] {
        let linear = LinearConfig::new(d_in, d_out).with_bias(bias).init(&cpu);
        let x = Tensor::<3>::random([b, n, d_in], Distribution::Normal(0.0, 1.0), &cpu);
        let want = linear.forward(x.clone());
        let on_cpu = relative_error(want.clone(), linear_as_convolution(&linear, x.clone()), &cpu);
        let on_gpu = relative_error(want, linear_as_convolution(&linear.clone().to_device(&gpu), x.to_device(&gpu)), &cpu);
        println!("linear [{b},{n},{d_in}]->{d_out} bias {bias}: relative error {on_cpu:e} on the CPU, {on_gpu:e} on the GPU");
        assert!(on_cpu <= 1e-6 && on_gpu <= 1e-6, "[{b},{n},{d_in}]->{d_out}: relative errors {on_cpu}, {on_gpu}");
    }
    let linear = LinearConfig::new(32, 48).init(&cpu);
    let x = Tensor::<2>::random([2, 32], Distribution::Normal(0.0, 1.0), &cpu);
    let want = linear.forward(x.clone());
    let error = relative_error(want, linear_as_convolution(&linear.clone().to_device(&gpu), x.to_device(&gpu)), &cpu);
    println!("linear [2,32]->48: relative error {error:e} on the GPU");
    assert!(error <= 1e-6, "[2,32]->48: relative error {error}");
}
