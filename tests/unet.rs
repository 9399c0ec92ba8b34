//! UNet2DConditionModel against diffusers on tiny random-weight UNets: SD1.5's layout (1×1-conv
//! projections), an odd latent size, fractional timesteps, and the 9-channel inpainting layout
//! with linear projections and per-block head counts (tests/fixtures/make_reference.py --modules).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::Device;
use mam_e::model::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use mam_e::weights::load_safetensors;
use support::fixtures;

fn load(dir: &str, device: &Device) -> UNet2DConditionModel {
    let config = UNet2DConditionConfig::from_json(&String::from_utf8(fixtures::read(&format!("{dir}/unet/config.json"))).unwrap()).unwrap();
    load_safetensors(config.init(device), fixtures::read(&format!("{dir}/unet/diffusion_pytorch_model.safetensors")), "unet").unwrap()
}

fn check(model: &UNet2DConditionModel, case: &str, device: &Device) {
    let reference = fixtures::read("reference/unet.safetensors");
    let timesteps = fixtures::tensor(&reference, &format!("{case}.timesteps")).f64;
    let out = model.forward(
        fixtures::burn_tensor(&reference, &format!("{case}.sample"), device),
        &timesteps,
        fixtures::burn_tensor(&reference, &format!("{case}.context"), device),
    );
    fixtures::assert_close(out, &reference, &format!("{case}.out"), 1e-5);
}

#[test]
fn text_to_image_unet_matches_diffusers() {
    let device = Device::flex();
    let model = load("tiny-sd", &device);
    assert_eq!(model.in_channels(), 4);
    check(&model, "t2i", &device);
    check(&model, "odd", &device);
}

#[test]
fn inpainting_unet_matches_diffusers() {
    let device = Device::flex();
    let model = load("tiny-sd-inpaint", &device);
    assert_eq!(model.in_channels(), 9);
    check(&model, "inpaint", &device);
}

#[test]
fn unsupported_unet_configs_are_refused() {
    let err = UNet2DConditionConfig::from_json(r#"{"down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("SimpleCrossAttnDownBlock2D") && err.contains("unet/config.json"), "{err}");
    let err = UNet2DConditionConfig::from_json(r#"{"block_out_channels": [32, 64]}"#).unwrap_err().to_string();
    assert!(err.contains("block types"), "{err}");
}

#[test]
fn a_widened_text_to_image_unet_starts_as_the_original() {
    // The inpainting start of a text-to-image model (5 zero-initialised conv_in channels)
    // computes diffusers' text-to-image output whatever the mask and masked-image channels hold.
    use burn::tensor::{Distribution, Tensor};
    use mam_e::train::inpainting_start::write_inpainting_start;
    let dir = support::cli::temp_dir("unet", "inpainting-start");
    write_inpainting_start(&fixtures::path("tiny-sd"), &dir).unwrap();
    let device = Device::flex();
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json")).unwrap()).unwrap();
    let model = load_safetensors(config.init(&device), std::fs::read(dir.join("unet/diffusion_pytorch_model.safetensors")).unwrap(), "unet").unwrap();
    assert_eq!(model.in_channels(), 9);
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model_index.json")).unwrap()).unwrap();
    assert_eq!(index["_class_name"], "StableDiffusionInpaintPipeline");
    let reference = fixtures::read("reference/unet.safetensors");
    let sample: Tensor<4> = fixtures::burn_tensor(&reference, "t2i.sample", &device);
    let [b, _, h, w] = sample.dims();
    let extra = Tensor::<4>::random([b, 5, h, w], Distribution::Normal(0.0, 1.0), &device);
    let out = model.forward(
        Tensor::cat(vec![sample, extra], 1),
        &fixtures::tensor(&reference, "t2i.timesteps").f64,
        fixtures::burn_tensor(&reference, "t2i.context", &device),
    );
    fixtures::assert_close(out, &reference, "t2i.out", 1e-5);
    // A UNet that already has 9 channels is not widened again.
    let err = write_inpainting_start(&dir, &dir.with_extension("again")).unwrap_err().to_string();
    assert!(err.contains("has 9 input channels"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Configs from strangers' packages: every malformed value is a specific error, never a panic
/// (a zero group count divided by zero; an empty head list indexed past its end).
#[test]
fn malformed_unet_and_vae_configs_are_refused_clearly() {
    let tiny = serde_json::json!({"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 4, "norm_num_groups": 8});
    UNet2DConditionConfig::from_json(&tiny.to_string()).unwrap();
    let cases = [
        ("norm_num_groups", serde_json::json!(0), "norm_num_groups is 0"),
        ("attention_head_dim", serde_json::json!([]), "0 heads per block are listed for 2 blocks"),
        ("attention_head_dim", serde_json::json!([4, 0]), "cannot be split into 0 attention heads"),
        ("attention_head_dim", serde_json::json!(5), "32 channels cannot be split into 5 attention heads"),
        ("block_out_channels", serde_json::json!([32, 1u64 << 40]), "must be a multiple of norm_num_groups 8 from 1 to 16384"),
        ("cross_attention_dim", serde_json::json!(0), "cross_attention_dim must be from 1 to 16384"),
        ("layers_per_block", serde_json::json!(0), "layers_per_block 0 must be from 1 to 16"),
    ];
    for (key, value, want) in cases {
        let mut config = tiny.clone();
        config[key] = value.clone();
        let error = UNet2DConditionConfig::from_json(&config.to_string()).err().unwrap_or_else(|| panic!("{key} = {value} accepted"));
        assert!(error.to_string().contains(want), "{key} = {value}: {error}");
    }
    let vae = |edit: serde_json::Value| {
        let mut config = serde_json::json!({"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8});
        config.as_object_mut().unwrap().extend(edit.as_object().unwrap().clone());
        mam_e::model::vae::AutoencoderKlConfig::from_json(&config.to_string())
    };
    vae(serde_json::json!({})).unwrap();
    for edit in [serde_json::json!({"norm_num_groups": 0}), serde_json::json!({"latent_channels": 0}), serde_json::json!({"block_out_channels": [0]})] {
        let error = vae(edit.clone()).err().unwrap_or_else(|| panic!("VAE {edit} accepted"));
        assert!(error.to_string().contains("must be"), "VAE {edit}: {error}");
    }
}
