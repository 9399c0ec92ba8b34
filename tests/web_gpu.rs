//! burn-wgpu on the browser's WebGPU (SwiftShader in headless Chromium here) and flex on wasm32: the ops SD is
//! built from, read back asynchronously, against their f64 definitions.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn webgpu_ops_match_reference() {
    let device = mam_e::device::webgpu_device().await.expect("a WebGPU device (run Chromium with --enable-unsafe-webgpu)");
    let checks = mam_e::selftest::run(&device).await.expect("self-test ran");
    assert_eq!(checks.len(), 7);
    for check in checks {
        assert!(check.passed(), "WebGPU {}: relative error {:e}", check.name, check.relative_error());
    }
}

/// The page's CPU path: burn's flex compiled to wasm32 with SIMD128, the same checks.
#[wasm_bindgen_test]
async fn cpu_path_ops_match_reference() {
    let checks = mam_e::selftest::run(&burn::tensor::Device::flex()).await.expect("self-test ran");
    assert_eq!(checks.len(), 7);
    for check in checks {
        assert!(check.passed(), "flex on wasm32 {}: relative error {:e}", check.name, check.relative_error());
    }
}
