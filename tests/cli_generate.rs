//! `mam-e generate` as a user runs it: on the tiny diffusers folder, from diffusers' initial
//! noise, it must save diffusers' final latents and a PNG carrying its parameters.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::PathBuf;

use support::fixtures;

fn temp(name: &str) -> PathBuf {
    support::cli::temp_dir("cli", name)
}

fn mam_e(args: &[&str]) -> std::process::Output {
    support::cli::run(args, &[])
}

#[test]
fn generate_reproduces_diffusers_from_its_noise() {
    let reference = fixtures::read("reference/pipeline.safetensors");
    let noise = fixtures::tensor(&reference, "noise");
    let (noise_path, latents_path, png_path) = (temp("noise.safetensors"), temp("latents.safetensors"), temp("out.png"));
    mam_e::weights::write_latents(&noise_path, noise.shape.clone().try_into().unwrap(), &noise.f32).unwrap();
    let model = fixtures::path("tiny-sd");
    let out = mam_e(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a siemens mammogram in MLO view with high density and small area",
        "--steps",
        "10",
        "--guidance",
        "6",
        "--scheduler",
        "euler",
        "--height",
        "64",
        "--width",
        "64",
        "--init-noise",
        noise_path.to_str().unwrap(),
        "--save-latents",
        latents_path.to_str().unwrap(),
        "--output",
        png_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (shape, latents) = mam_e::weights::read_latents(&latents_path).unwrap();
    assert_eq!(shape, [1, 4, 32, 32]);
    let err = fixtures::relative_error(&latents, &fixtures::tensor(&reference, "euler.latents").f32);
    assert!(err <= 1e-5, "relative error {err:e}");

    let (params, size) = support::cli::png_parameters(&png_path);
    assert_eq!(size, (64, 64));
    assert_eq!(params["scheduler"], "euler");
    assert_eq!(params["steps"], 10);
    assert!(params["prompt"].as_str().unwrap().contains("high density"));
}

#[test]
fn generate_refuses_bad_input_clearly() {
    let model = fixtures::path("tiny-sd");
    let out_png = temp("never.png");
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", model.to_str().unwrap(), "--prompt", "x", "--output", out_png.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = mam_e(&args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&["--height", "60", "--width", "64"]).contains("multiples of 8"));
    assert!(run(&["--steps", "0"]).contains("steps"));
    assert!(run(&["--guidance=-1"]).contains("outside 0–50"));
    assert!(run(&["--scheduler", "heun"]).contains("heun"));
    // f16 on the CPU backend (it has no f16 shaders).
    assert!(run(&["--precision", "f16"]).contains("f16 needs a GPU with f16 shaders"));
    let bogus = temp("bogus.safetensors");
    std::fs::write(&bogus, b"not safetensors").unwrap();
    assert!(run(&["--init-noise", bogus.to_str().unwrap()]).contains("not a safetensors file"));
    let out = mam_e(&["generate", "--model", "/nonexistent", "--prompt", "x", "--output", out_png.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_index.json"));
    assert!(!out_png.exists(), "a failed run must not leave an image");
}

#[test]
fn inpaint_reproduces_diffusers_and_refuses_bad_masks() {
    let reference = fixtures::read("reference/inpaint.safetensors");
    let noise = fixtures::tensor(&reference, "noise");
    let (noise_path, latents_path, png_path) = (temp("inpaint-noise.safetensors"), temp("inpaint-latents.safetensors"), temp("inpaint.png"));
    mam_e::weights::write_latents(&noise_path, noise.shape.clone().try_into().unwrap(), &noise.f32).unwrap();
    let (model, image, mask) = (fixtures::path("tiny-sd-inpaint"), fixtures::path("reference/inpaint_image.png"), fixtures::path("reference/inpaint_mask.png"));
    let out = mam_e(&[
        "inpaint",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--steps",
        "10",
        "--init-noise",
        noise_path.to_str().unwrap(),
        "--save-latents",
        latents_path.to_str().unwrap(),
        "--output",
        png_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, latents) = mam_e::weights::read_latents(&latents_path).unwrap();
    let err = fixtures::relative_error(&latents, &fixtures::tensor(&reference, "latents").f32);
    assert!(err <= 1e-5, "relative error {err:e}");

    // --keep-outside: inside the mask the painted image, outside exactly the original.
    let kept = temp("inpaint-kept.png");
    let out = mam_e(&[
        "inpaint",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--steps",
        "10",
        "--init-noise",
        noise_path.to_str().unwrap(),
        "--keep-outside",
        "--output",
        kept.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |p: &std::path::Path| mam_e::imaging::RgbImage::from_png(&std::fs::read(p).unwrap()).unwrap();
    let (original, painted, kept, gray) = (read(&image), read(&png_path), read(&kept), read(&mask).to_gray());
    for (i, &m) in gray.iter().enumerate() {
        let px = |img: &mam_e::imaging::RgbImage| img.pixels[i * 3..i * 3 + 3].to_vec();
        assert_eq!(px(&kept), if m >= 128 { px(&painted) } else { px(&original) }, "pixel {i}");
    }

    // --right: a right breast's image and mask (the fixtures mirrored) are painted in the model's
    // left-facing orientation and the result mirrored back: exactly the left result, mirrored.
    let (right_image, right_mask, right_out) = (temp("right-image.png"), temp("right-mask.png"), temp("right-out.png"));
    std::fs::write(&right_image, original.mirrored().to_png(&[]).unwrap()).unwrap();
    std::fs::write(&right_mask, read(&mask).mirrored().to_png(&[]).unwrap()).unwrap();
    let out = mam_e(&[
        "inpaint",
        "--model",
        model.to_str().unwrap(),
        "--image",
        right_image.to_str().unwrap(),
        "--mask",
        right_mask.to_str().unwrap(),
        "--steps",
        "10",
        "--init-noise",
        noise_path.to_str().unwrap(),
        "--right",
        "--output",
        right_out.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(read(&right_out) == painted.mirrored(), "the right breast was not painted as the mirrored left one");
    let text = png::Decoder::new(std::io::Cursor::new(std::fs::read(&right_out).unwrap())).read_info().unwrap().info().utf8_text[0].get_text().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["laterality"], "R");

    // An all-black mask: nothing to paint.
    let empty = temp("empty-mask.png");
    let black = mam_e::imaging::RgbImage { width: 64, height: 64, pixels: vec![0; 64 * 64 * 3] };
    std::fs::write(&empty, black.to_png(&[]).unwrap()).unwrap();
    let out = mam_e(&[
        "inpaint",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        empty.to_str().unwrap(),
        "--output",
        temp("x.png").to_str().unwrap(),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("empty"));
}

/// Without --height/--width the image has the model's own size, as diffusers' default
/// (`unet.sample_size` × the VAE factor): the demo package is a 128×128 model (16 × 8).
#[test]
fn generate_defaults_to_the_models_size() {
    let out_png = temp("demo-size.png");
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/models/demo");
    let out = mam_e(&[
        "generate",
        "--model",
        demo.to_str().unwrap(),
        "--prompt",
        "a siemens mammogram in CC view",
        "--steps",
        "2",
        "--output",
        out_png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image = mam_e::imaging::RgbImage::from_png(&std::fs::read(&out_png).unwrap()).unwrap();
    assert_eq!((image.width, image.height), (128, 128));
}

/// Settings left out on the command line come from the package's manifest `defaults` (which
/// `convert` writes), flags override them, and the seed's noise is PyTorch's unless told.
#[test]
fn generate_follows_the_packages_defaults() {
    let package = temp("defaults-package");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/packages/tiny-sd");
    std::fs::create_dir_all(&package).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), package.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(package.join("tokenizer")).unwrap();
    for entry in std::fs::read_dir(source.join("tokenizer")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), package.join("tokenizer").join(entry.file_name())).unwrap();
    }
    let write_defaults = |defaults: serde_json::Value| {
        let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(source.join("manifest.json")).unwrap()).unwrap();
        manifest["defaults"] = defaults;
        std::fs::write(package.join("manifest.json"), manifest.to_string()).unwrap();
    };
    write_defaults(serde_json::json!({
        "prompt": "a hologic mammogram in CC view", "negative_prompt": "blurry", "steps": 3, "guidance": 2.5,
        "scheduler": "ddim", "seed": 7, "height": 32, "width": 48,
    }));
    let png = temp("defaults.png");
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", package.to_str().unwrap(), "--output", png.to_str().unwrap()];
        args.extend_from_slice(extra);
        mam_e(&args)
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (params, size) = support::cli::png_parameters(&png);
    assert_eq!(size, (48, 32));
    assert_eq!(params["prompt"], "a hologic mammogram in CC view");
    assert_eq!(params["negative_prompt"], "blurry");
    assert_eq!((params["steps"].clone(), params["guidance"].clone()), (serde_json::json!(3), serde_json::json!(2.5)));
    assert_eq!(
        (params["scheduler"].clone(), params["seed"].clone(), params["noise"].clone()),
        (serde_json::json!("ddim"), serde_json::json!(7), serde_json::json!("torch"))
    );

    let out = run(&["--steps", "2", "--seed", "9", "--scheduler", "euler", "--noise", "ours", "--prompt", "x", "--height", "64", "--width", "64"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (params, size) = support::cli::png_parameters(&png);
    assert_eq!(size, (64, 64));
    assert_eq!(
        (params["steps"].clone(), params["seed"].clone(), params["scheduler"].clone(), params["noise"].clone(), params["prompt"].clone()),
        (serde_json::json!(2), serde_json::json!(9), serde_json::json!("euler"), serde_json::json!("ours"), serde_json::json!("x"))
    );

    write_defaults(serde_json::json!({
        "prompt": "", "negative_prompt": "", "steps": 3, "guidance": 2.5, "scheduler": "heun", "seed": 7, "height": 32, "width": 32,
    }));
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("default scheduler") && stderr.contains("heun"), "{stderr}");
    std::fs::remove_dir_all(&package).unwrap();
}

/// `bench --model` times a model at its own size (the tiny package: `sample_size` 8, VAE factor 2).
#[test]
fn bench_times_a_model_at_its_own_size() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/packages/tiny-sd");
    let out = mam_e(&["bench", "--model", model.to_str().unwrap(), "--component", "unet", "--component", "vae", "--runs", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("latent=8x8") && stdout.contains("image=16x16"), "{stdout}");
}

/// `bench --precision f16` on the CPU is refused before any model is built, as `generate` refuses it.
#[test]
fn bench_refuses_f16_on_the_cpu() {
    let out = mam_e(&["bench", "--size", "tiny", "--component", "unet", "--precision", "f16", "--runs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("f16 needs a GPU with f16 shaders"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}
