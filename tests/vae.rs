//! AutoencoderKL against diffusers on a tiny random-weight VAE stored as real hub files are:
//! fp16 tensors and the old `query/key/value/proj_attn` attention names
//! (tests/fixtures/tiny-sd/vae, written by tests/fixtures/make_reference.py --modules).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::Device;
use mam_e::model::vae::{AutoencoderKl, AutoencoderKlConfig};
use mam_e::weights::load_safetensors;
use support::fixtures;

fn tiny_vae(device: &Device) -> (AutoencoderKlConfig, AutoencoderKl) {
    let config = AutoencoderKlConfig::from_json(&String::from_utf8(fixtures::read("tiny-sd/vae/config.json")).unwrap()).unwrap();
    let vae = load_safetensors(config.init(device), fixtures::read("tiny-sd/vae/diffusion_pytorch_model.safetensors"), "vae").unwrap();
    (config, vae)
}

#[test]
fn encode_and_decode_match_diffusers() {
    let device = Device::flex();
    let (config, vae) = tiny_vae(&device);
    assert_eq!(config.scaling_factor, 0.18215);
    let reference = fixtures::read("reference/vae.safetensors");
    let posterior = vae.encode(fixtures::burn_tensor(&reference, "image", &device)).unwrap();
    fixtures::assert_close(posterior.mean, &reference, "mean", 1e-5);
    fixtures::assert_close(posterior.logvar, &reference, "logvar", 1e-5);
    fixtures::assert_close(vae.decode(fixtures::burn_tensor(&reference, "latents", &device)), &reference, "decoded", 1e-5);
}

#[test]
fn unsupported_vae_configs_are_refused() {
    let err = AutoencoderKlConfig::from_json(r#"{"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"]}"#).unwrap_err().to_string();
    assert!(err.contains("vae/config.json"), "{err}");
    let err = AutoencoderKlConfig::from_json(r#"{"block_out_channels": [30]}"#).unwrap_err().to_string();
    assert!(err.contains("norm_num_groups"), "{err}");
}
