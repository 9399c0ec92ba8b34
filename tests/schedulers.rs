//! Every scheduler against diffusers: timesteps, init_noise_sigma, and a full run of
//! scale_model_input + step on fixed model outputs (tests/fixtures/schedulers.json, made by
//! tests/fixtures/make_reference.py with diffusers).
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::{Device, Tensor, TensorData};
use mam_e::schedulers::{SchedulerConfig, SchedulerKind};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/schedulers.json")).expect("valid fixture")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn latent(values: &[f64], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.iter().map(|v| *v as f32).collect::<Vec<_>>(), [1, 4, 2, 3]), device)
}

fn read(t: Tensor<4>) -> Vec<f64> {
    pollster::block_on(mam_e::device::read_f32(t)).unwrap().into_iter().map(|v| v as f64).collect()
}

/// max |a - b| / max |b|
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    err / b.iter().map(|y| y.abs()).fold(1e-12, f64::max)
}

#[test]
fn alphas_cumprod_match_diffusers() {
    let fx = fixture();
    for (schedule, extra) in [("scaled_linear", None), ("linear", Some((0.0001, 0.02))), ("squaredcos_cap_v2", None)] {
        let mut config = SchedulerConfig::sd15();
        config.beta_schedule = schedule.into();
        if let Some((start, end)) = extra {
            (config.beta_start, config.beta_end) = (start, end);
        }
        let got = config.alphas_cumprod().unwrap();
        let want = floats(&fx["alphas_cumprod"][schedule]);
        assert!(rel_err(&got, &want) < 1e-6, "{schedule}: {}", rel_err(&got, &want));
    }
}

#[test]
fn every_scheduler_matches_diffusers() {
    let device = Device::flex();
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 24);
    for case in cases {
        let kind: SchedulerKind = case["kind"].as_str().unwrap().parse().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let config = SchedulerConfig::from_json(&case["config"].to_string()).unwrap();
        let label = format!("{} {} steps {}", kind.name(), steps, case["config"]);
        let mut scheduler = kind.build(&config, steps).unwrap();

        let want_t = floats(&case["timesteps"]);
        assert_eq!(scheduler.timesteps().len(), want_t.len(), "{label}: timestep count");
        for (got, want) in scheduler.timesteps().iter().zip(&want_t) {
            assert!((got - want).abs() < 1e-3, "{label}: timesteps {:?} vs {want_t:?}", scheduler.timesteps());
        }
        let sigma = case["init_noise_sigma"].as_f64().unwrap();
        assert!((scheduler.init_noise_sigma() - sigma).abs() < 1e-5 * sigma, "{label}: init_noise_sigma");

        let trace = &case["trace"];
        let mut sample = latent(&floats(&trace["initial"]), &device);
        for i in 0..want_t.len() {
            let scaled = scheduler.scale_model_input(sample.clone(), i);
            let err = rel_err(&read(scaled), &floats(&trace["scaled"][i]));
            assert!(err < 1e-5, "{label}: scale_model_input at step {i}: {err:e}");
            // Feed diffusers' own model output so that errors cannot compound across steps.
            let output = latent(&floats(&trace["model_output"][i]), &device);
            sample = scheduler.step(output, i, sample);
            let want = floats(&trace["after_step"][i]);
            let err = rel_err(&read(sample.clone()), &want);
            assert!(err < 1e-5, "{label}: step {i}: relative error {err:e}");
            sample = latent(&want, &device);
        }
    }
}

#[test]
fn bad_scheduler_input_is_refused_with_the_value() {
    let config = SchedulerConfig::sd15();
    let err = SchedulerKind::Ddim.build(&config, 0).err().unwrap().to_string();
    assert!(err.contains("steps") && err.contains('0'), "{err}");
    let err = "heun".parse::<SchedulerKind>().unwrap_err().to_string();
    assert!(err.contains("heun"), "{err}");
    let err = SchedulerConfig::from_json(r#"{"beta_schedule": "exotic"}"#).unwrap().alphas_cumprod().unwrap_err().to_string();
    assert!(err.contains("exotic"), "{err}");
}

/// Settings a scheduler would read in diffusers and we do not implement are refused, naming the
/// key and the value, rather than ignored; keys of other scheduler classes stay ignored (as
/// diffusers' `from_config` ignores them), and values equal to what we implement pass.
#[test]
fn unimplemented_scheduler_settings_are_refused_by_name() {
    let with = |extra: &str| SchedulerConfig::from_json(&format!("{{\"beta_schedule\": \"scaled_linear\", {extra}}}")).unwrap();
    let refused = [
        (SchedulerKind::Dpm, r#""use_karras_sigmas": true"#, "use_karras_sigmas \"true\""),
        (SchedulerKind::Euler, r#""use_karras_sigmas": true"#, "use_karras_sigmas \"true\""),
        (SchedulerKind::Dpm, r#""algorithm_type": "sde-dpmsolver++""#, "algorithm_type \"sde-dpmsolver++\""),
        (SchedulerKind::Dpm, r#""solver_order": 3"#, "solver_order \"3\""),
        (SchedulerKind::Dpm, r#""solver_type": "heun""#, "solver_type \"heun\""),
        (SchedulerKind::Dpm, r#""lower_order_final": false"#, "lower_order_final \"false\""),
        (SchedulerKind::Dpm, r#""final_sigmas_type": "sigma_min""#, "final_sigmas_type \"sigma_min\""),
        (SchedulerKind::Ddim, r#""thresholding": true"#, "thresholding \"true\""),
        (SchedulerKind::Euler, r#""rescale_betas_zero_snr": true"#, "rescale_betas_zero_snr \"true\""),
    ];
    for (kind, extra, want) in refused {
        let err = kind.build(&with(extra), 10).err().unwrap_or_else(|| panic!("{} accepted {extra}", kind.name())).to_string();
        assert!(err.contains(want), "{} {extra}: {err}", kind.name());
    }
    let accepted = [
        (
            SchedulerKind::Dpm,
            r#""algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint", "lower_order_final": true, "final_sigmas_type": "zero", "use_karras_sigmas": false, "thresholding": false"#,
        ),
        (SchedulerKind::Pndm, r#""use_karras_sigmas": true, "thresholding": true"#),
        (SchedulerKind::Ddim, r#""solver_order": 3, "use_karras_sigmas": true"#),
    ];
    for (kind, extra) in accepted {
        kind.build(&with(extra), 10).unwrap_or_else(|e| panic!("{} refused {extra}: {e}", kind.name()));
    }
}

/// Each scheduler class's default config exactly as diffusers 0.39 saves it (Python's JSON:
/// a DPM-Solver config has `"lambda_min_clipped": -Infinity`, which a strict JSON reader refuses)
/// loads, builds its own scheduler (PNDM's class default, with PRK warm-up steps, is refused by
/// name: SD1.5 ships `skip_prk_steps: true`), and has nothing mam-e would ignore.
#[test]
fn configs_as_diffusers_saves_them_load_without_warnings() {
    let saved: serde_json::Value = serde_json::from_str(include_str!("fixtures/scheduler_configs.json")).unwrap();
    let kinds = [
        ("DPMSolverMultistepScheduler", SchedulerKind::Dpm),
        ("DDIMScheduler", SchedulerKind::Ddim),
        ("PNDMScheduler", SchedulerKind::Pndm),
        ("EulerDiscreteScheduler", SchedulerKind::Euler),
    ];
    for (class, kind) in kinds {
        let text = saved[class].as_str().unwrap();
        let config = SchedulerConfig::from_json(text).unwrap_or_else(|e| panic!("{class}: {e}"));
        match kind.build(&config, 10) {
            Err(e) if kind == SchedulerKind::Pndm => assert!(e.to_string().contains("skip_prk_steps"), "{e}"),
            built => drop(built.unwrap_or_else(|e| panic!("{class}: {e}"))),
        }
        assert_eq!(config.ignored_keys(), Vec::<String>::new(), "{class}");
    }
}

/// Settings diffusers' DPM-Solver / Euler read that change the sigmas are refused when not at
/// their defaults; keys nobody knows are listed (the loaders warn with them once).
#[test]
fn other_sigma_settings_are_refused_and_unknown_keys_listed() {
    let with = |extra: &str| SchedulerConfig::from_json(&format!("{{\"beta_schedule\": \"scaled_linear\", {extra}}}")).unwrap();
    let refused = [
        (SchedulerKind::Dpm, r#""use_exponential_sigmas": true"#, "use_exponential_sigmas \"true\""),
        (SchedulerKind::Euler, r#""use_beta_sigmas": true"#, "use_beta_sigmas \"true\""),
        (SchedulerKind::Dpm, r#""lambda_min_clipped": -5.1"#, "lambda_min_clipped \"-5.1\""),
        (SchedulerKind::Dpm, r#""variance_type": "learned_range""#, "variance_type"),
        (SchedulerKind::Euler, r#""interpolation_type": "log_linear""#, "interpolation_type"),
        (SchedulerKind::Euler, r#""sigma_min": 0.1"#, "sigma_min"),
    ];
    for (kind, extra, want) in refused {
        let err = kind.build(&with(extra), 10).err().unwrap_or_else(|| panic!("{} accepted {extra}", kind.name())).to_string();
        assert!(err.contains(want), "{} {extra}: {err}", kind.name());
    }
    // The same keys are another class's business for DDIM and PNDM.
    SchedulerKind::Ddim.build(&with(r#""use_exponential_sigmas": true, "sigma_min": 0.1"#), 10).unwrap();
    let config = with(r#""shift_terminal": 0.2, "_class_name": "X", "sample_max_value": 3.0, "some_new_key": [1, 2]"#);
    assert_eq!(config.ignored_keys(), ["shift_terminal=0.2", "some_new_key=[1,2]"]);
    let warning = config.ignored_keys_warning().unwrap();
    assert!(warning.contains("shift_terminal=0.2, some_new_key=[1,2]"), "{warning}");
}

/// Numbers no DDPM schedule has are refused by key at parse time (found by tests/fuzz.rs:
/// `num_train_timesteps: 4294967296` allocated 32 GiB and aborted).
#[test]
fn impossible_schedule_numbers_are_refused_by_key() {
    for (json, key) in [
        (r#"{"num_train_timesteps": 4294967296}"#, "num_train_timesteps"),
        (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        (r#"{"steps_offset": 1000}"#, "steps_offset"),
        (r#"{"beta_end": 1.5}"#, "beta_end"),
        (r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"#, "trained_betas"),
        (r#"{"clip_sample_range": 0.0}"#, "clip_sample_range"),
    ] {
        let error = SchedulerConfig::from_json(json).err().unwrap_or_else(|| panic!("accepted {json}")).to_string();
        assert!(error.contains(key), "{json}: {error}");
    }
}
