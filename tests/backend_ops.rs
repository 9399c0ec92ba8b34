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
