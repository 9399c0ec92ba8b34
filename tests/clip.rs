//! CLIPTextModel against transformers on a tiny random-weight model in the diffusers layout
//! (tests/fixtures/tiny-sd/text_encoder, written by tests/fixtures/make_reference.py --modules).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::Device;
use mam_e::model::clip::ClipTextConfig;
use mam_e::weights::load_safetensors;
use support::fixtures;

fn tiny_config() -> ClipTextConfig {
    ClipTextConfig::from_json(&String::from_utf8(fixtures::read("tiny-sd/text_encoder/config.json")).unwrap()).unwrap()
}

/// The model's last hidden state on the reference ids equals transformers'.
fn assert_matches_transformers(weights: Vec<u8>) {
    let device = Device::flex();
    let model = load_safetensors(tiny_config().init(&device).unwrap(), weights, "text_encoder").unwrap();
    let reference = fixtures::read("reference/clip.safetensors");
    let ids = fixtures::tensor(&reference, "input_ids");
    let rows: Vec<Vec<u32>> = ids.i64.chunks(ids.shape[1]).map(|r| r.iter().map(|&i| i as u32).collect()).collect();
    fixtures::assert_close(model.forward_ids(&rows, &device), &reference, "last_hidden_state", 1e-5);
}

#[test]
fn last_hidden_state_matches_transformers() {
    assert_matches_transformers(fixtures::read("tiny-sd/text_encoder/model.safetensors"));
}

/// transformers 5 writes `CLIPTextModel` without the `text_model.` key prefix: the same weights
/// give the same hidden states.
#[test]
fn a_text_encoder_saved_by_transformers_5_loads() {
    assert_matches_transformers(fixtures::text_encoder_as_transformers_5());
}

#[test]
fn wrong_weights_are_refused_with_the_keys() {
    let device = Device::flex();
    let config = tiny_config();
    // One layer more than the file has: the loader must name the missing tensors.
    let mut deeper = config.clone();
    deeper.num_hidden_layers += 1;
    let err = load_safetensors(deeper.init(&device).unwrap(), fixtures::read("tiny-sd/text_encoder/model.safetensors"), "text_encoder")
        .expect_err("a missing layer is an error")
        .to_string();
    assert!(err.contains("text_encoder") && err.contains("missing") && err.contains("layers.2"), "{err}");
    // One layer fewer: the file's extra tensors are unexpected.
    let mut shallower = config.clone();
    shallower.num_hidden_layers -= 1;
    let err = load_safetensors(shallower.init(&device).unwrap(), fixtures::read("tiny-sd/text_encoder/model.safetensors"), "text_encoder")
        .expect_err("extra tensors are an error")
        .to_string();
    assert!(err.contains("unexpected") && err.contains("layers.1"), "{err}");
    // A different width: shape mismatches.
    let mut wider = config;
    wider.intermediate_size += 1;
    let err = load_safetensors(wider.init(&device).unwrap(), fixtures::read("tiny-sd/text_encoder/model.safetensors"), "text_encoder")
        .expect_err("a shape mismatch is an error")
        .to_string();
    assert!(err.to_lowercase().contains("shape"), "{err}");
    // Not a safetensors file at all.
    let err = load_safetensors(ClipTextConfig::sd15().init(&device).unwrap(), b"garbage".to_vec(), "text_encoder").err().unwrap().to_string();
    assert!(err.contains("text_encoder"), "{err}");
}

#[test]
fn unknown_activation_is_a_config_error() {
    let err = ClipTextConfig::from_json(r#"{"hidden_act": "swish"}"#).unwrap_err().to_string();
    assert!(err.contains("swish") && err.contains("text_encoder/config.json"), "{err}");
}
