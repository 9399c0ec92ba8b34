//! MS-SSIM against `pytorch-msssim` (fixtures from `tests/fixtures/make_msssim_reference.py`), the
//! FID Inception, FID and KID against `pytorch-fid` and `torch-fidelity`
//! (`tests/fixtures/make_fid_reference.py`), and `mam-e eval fidelity` as a user runs it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use mam_e::eval::fid::{Features, frechet_distance};
use mam_e::eval::inception::{ConvSpec, ConvWeights, FEATURES, FidInception, WeightSource};
use mam_e::eval::kid::kid;
use mam_e::eval::ms_ssim::{Plane, ms_ssim};
use mam_e::imaging::RgbImage;
use mam_e::torch_rng::TorchGenerator;
use mam_e::weights::safetensors;
use serde_json::Value;
use support::cli::{fails, ok, temp_dir};

fn fixture_dir() -> std::path::PathBuf {
    support::fixtures::path("msssim")
}

fn plane(name: &str) -> Plane {
    let image = RgbImage::from_png(&std::fs::read(fixture_dir().join(format!("{name}.png"))).unwrap()).unwrap();
    Plane { width: image.width, height: image.height, values: image.to_gray().iter().map(|&g| g as f64).collect() }
}

#[test]
fn ms_ssim_equals_pytorch_msssim() {
    let reference: Value = serde_json::from_slice(&std::fs::read(fixture_dir().join("msssim.json")).unwrap()).unwrap();
    let mut worst = [0.0f64; 2];
    for (pair, want) in reference["pairs"].as_object().unwrap() {
        let (x, y) = pair.split_once('-').unwrap();
        let got = ms_ssim(&plane(x), &plane(y), 255.0).unwrap();
        // We compute in f64. Against the library run in f64: the same maths to rounding; against
        // its usual f32 run: its variances (E[x²] − μ², values to 65,025) lose about 6 digits.
        for (k, (precision, bound)) in [("f64", 1e-12), ("f32", 1e-5)].into_iter().enumerate() {
            let want: f64 = want[precision].as_str().unwrap().parse().unwrap();
            let error = (got - want).abs() / want;
            worst[k] = worst[k].max(error);
            assert!(error < bound, "{pair}: {got} vs pytorch-msssim's {want} in {precision} (relative error {error:e})");
        }
    }
    eprintln!("largest relative error against pytorch-msssim: {:e} (f64), {:e} (f32)", worst[0], worst[1]);
}

#[test]
fn eval_fidelity_reports_diversity_and_distributions() {
    // "Synthetic": two copies of one image (MS-SSIM 1, no diversity) and a file that is no PNG.
    let synthetic = temp_dir("fidelity", "copies");
    std::fs::create_dir_all(&synthetic).unwrap();
    for name in ["x.png", "y.png"] {
        std::fs::copy(fixture_dir().join("a.png"), synthetic.join(name)).unwrap();
    }
    std::fs::write(synthetic.join("broken.png"), b"not a png").unwrap();
    let real = fixture_dir();
    let report = temp_dir("fidelity", "report.json");
    let err = fails(&["eval", "fidelity", "--real", real.to_str().unwrap(), "--synthetic", synthetic.to_str().unwrap()]);
    assert!(err.contains("images of different sizes") && err.contains("--size"), "{err}");
    let out = ok(&[
        "eval",
        "fidelity",
        "--real",
        real.to_str().unwrap(),
        "--synthetic",
        synthetic.to_str().unwrap(),
        "--size",
        "192",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("skipped") && out.contains("broken.png"), "{out}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["real"]["images"], 5);
    assert_eq!(r["real"]["ms_ssim"]["pairs"], 10, "all pairs of 5 images");
    assert_eq!(r["synthetic"]["images"], 2);
    assert!((r["synthetic"]["ms_ssim"]["ms_ssim_mean"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(r["real"]["breast_gray_wasserstein_to_real"], 0.0);
    let w = r["synthetic"]["breast_gray_wasserstein_to_real"].as_f64().unwrap();
    assert!(w > 0.0, "a copy of one image differs from the set: {w}");
    // The pair a–b at its own size is the fixture's pair; resized to 192 (its size) it is unchanged.
    let err = fails(&["eval", "fidelity", "--real", real.to_str().unwrap(), "--synthetic", synthetic.to_str().unwrap(), "--size", "128"]);
    assert!(err.contains("below MS-SSIM's 161 pixels"), "{err}");
}

/// The fixture's seeded weights (see `make_fid_reference.py`), drawn in the order the model asks
/// for them, kept as safetensors tensors too.
struct SeededWeights {
    generator: TorchGenerator,
    tensors: Vec<safetensors::Owned>,
}

impl WeightSource for SeededWeights {
    fn conv(&mut self, spec: &ConvSpec) -> Result<ConvWeights, String> {
        let shape = spec.weight_shape();
        let scale = (2.0f64 / (shape[1] * shape[2] * shape[3]) as f64).sqrt() as f32;
        let c = spec.out_channels;
        let g = &mut self.generator;
        let weight: Vec<f32> = g.randn(shape.iter().product()).into_iter().map(|x| x * scale).collect();
        let bn_weight: Vec<f32> = g.randn(c).into_iter().map(|x| 1.0 + 0.1 * x).collect();
        let bn_bias: Vec<f32> = g.randn(c).into_iter().map(|x| 0.1 * x).collect();
        let running_mean: Vec<f32> = g.randn(c).into_iter().map(|x| 0.1 * x).collect();
        let running_var: Vec<f32> = g.randn(c).into_iter().map(|x| x.abs() * 0.5 + 1.0).collect();
        let name = |s: &str| format!("{}.{s}", spec.name);
        self.tensors.push(safetensors::Owned::f32(name("conv.weight"), shape.to_vec(), &weight));
        for (suffix, values) in [("bn.weight", &bn_weight), ("bn.bias", &bn_bias), ("bn.running_mean", &running_mean), ("bn.running_var", &running_var)] {
            self.tensors.push(safetensors::Owned::f32(name(suffix), vec![c], values));
        }
        Ok(ConvWeights { weight, bn_weight, bn_bias, running_mean, running_var })
    }
}

fn fid_reference() -> Value {
    serde_json::from_slice(&support::fixtures::read("fid/fid.json")).unwrap()
}

fn number(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn fid_images(set: &str) -> Vec<RgbImage> {
    (0..6).map(|i| RgbImage::from_png(&support::fixtures::read(&format!("fid/{set}/{i}.png"))).unwrap()).collect()
}

#[test]
fn fid_inception_fid_and_kid_equal_pytorch_fid_and_torch_fidelity() {
    let reference = fid_reference();
    let mut weights = SeededWeights { generator: TorchGenerator::manual_seed(reference["seed"].as_u64().unwrap()), tensors: Vec::new() };
    let device = burn::tensor::Device::flex();
    let model = FidInception::build(&mut weights, &device).unwrap();
    let names: Vec<&str> = model.specs.iter().map(|s| s.name.as_str()).collect();
    let want_names: Vec<&str> = reference["layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, want_names, "convolutions in torchvision's order");

    let want: Vec<f32> = support::fixtures::read("fid/features.f32").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let (real, synthetic) = (fid_images("real"), fid_images("synthetic"));
    let images: Vec<&RgbImage> = real.iter().chain(&synthetic).collect();
    let got = model.features(&images);
    let error = support::fixtures::relative_error(&got, &want);
    eprintln!("FID Inception features: relative error {error:e} against pytorch-fid");
    assert!(error < 1e-6, "features differ from pytorch-fid's: {error:e}");

    let as_features = |values: &[f32]| Features::new(FEATURES, values.iter().map(|&v| f64::from(v)).collect());
    let half = 6 * FEATURES;
    let (a, b) = (as_features(&got[..half]), as_features(&got[half..]));
    let fid = frechet_distance(&a, &b).unwrap();
    let want_fid = number(&reference["fid"]);
    // pytorch-fid's sqrtm of a rank-5 product of 2048×2048 matrices (it warns that the matrix is
    // singular) against our eigenvalues, on features that differ by the error above.
    let fid_error = (fid - want_fid).abs() / want_fid;
    let kid = kid(&a, &b, 100, 1000, 0).unwrap();
    let want_kid = number(&reference["kid"]);
    let kid_error = (kid.mean - want_kid).abs() / want_kid.abs();
    eprintln!("FID {fid} vs pytorch-fid's {want_fid} (relative {fid_error:e}); KID {} vs torch-fidelity's {want_kid} (relative {kid_error:e})", kid.mean);
    assert!(fid_error < 1e-5, "FID {fid} vs {want_fid}");
    assert!(kid_error < 1e-5 && kid.subsets == 1 && kid.subset_size == 6, "KID {kid:?} vs {want_kid}");

    // The same weights through a safetensors file, as `eval fidelity --inception` reads them
    // (written once for the CLI test below).
    let file = temp_dir("fid", "seeded-inception.safetensors");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, safetensors::serialize(&weights.tensors, &Default::default())).unwrap();
    let reloaded = FidInception::from_safetensors(&std::fs::read(&file).unwrap(), &device).unwrap();
    assert_eq!(reloaded.features(&images[..1]), got[..FEATURES], "the file's weights are the generator's");

    // The command, as a user runs it: MS-SSIM needs --size on these small images; FID and KID
    // read the images as they are (pytorch-fid resizes them to 299 itself).
    let folder = |set: &str| support::fixtures::path(&format!("fid/{set}")).to_str().unwrap().to_string();
    let (real_dir, synthetic_dir) = (folder("real"), folder("synthetic"));
    let report = temp_dir("fid", "report.json");
    let args = |weights: &str| {
        ["eval", "fidelity", "--real", &real_dir, "--synthetic", &synthetic_dir, "--size", "161", "--inception", weights, "--json", report.to_str().unwrap()]
            .map(String::from)
    };
    let out = ok(&args(file.to_str().unwrap()).each_ref().map(String::as_str));
    assert!(out.contains("FID ") && out.contains("KID "), "{out}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let cli_fid = r["inception"]["fid"].as_f64().unwrap();
    assert!((cli_fid - want_fid).abs() < 1e-5 * want_fid, "eval fidelity's FID {cli_fid} vs pytorch-fid's {want_fid}");
    assert!((r["inception"]["kid"]["mean"].as_f64().unwrap() - want_kid).abs() < 1e-5 * want_kid.abs());
    let err = fails(&args("/nonexistent/pt_inception.safetensors").each_ref().map(String::as_str));
    assert!(err.contains("/nonexistent/pt_inception.safetensors") && err.contains("do not exist"), "{err}");
    let junk = temp_dir("fid", "junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    let err = fails(&args(junk.to_str().unwrap()).each_ref().map(String::as_str));
    assert!(err.contains("junk.safetensors") && err.contains("header"), "{err}");

    // A file without a tensor the model needs, and one with a kernel of the wrong shape.
    let mut missing: Vec<_> = weights.tensors.iter().filter(|t| t.name != "Mixed_6c.branch7x7_2.conv.weight").map(clone_owned).collect();
    let err = FidInception::from_safetensors(&safetensors::serialize(&missing, &Default::default()), &device).err().unwrap();
    assert!(err.contains("no tensor Mixed_6c.branch7x7_2.conv.weight"), "{err}");
    let swapped = weights.tensors.iter().find(|t| t.name == "Mixed_6c.branch7x7_2.conv.weight").unwrap();
    let mut wrong = clone_owned(swapped);
    wrong.shape = vec![160, 160, 7, 1];
    missing.push(wrong);
    let err = FidInception::from_safetensors(&safetensors::serialize(&missing, &Default::default()), &device).err().unwrap();
    assert!(err.contains("shape [160, 160, 7, 1]") && err.contains("[160, 160, 1, 7]"), "{err}");
}

fn clone_owned(t: &safetensors::Owned) -> safetensors::Owned {
    safetensors::Owned { name: t.name.clone(), dtype: t.dtype, shape: t.shape.clone(), data: t.data.clone() }
}

#[test]
fn fid_and_kid_of_full_rank_features_equal_the_reference_code() {
    let small = &fid_reference()["small"];
    let rows = |v: &Value| Features::new(8, v.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(number)).collect());
    let (a, b) = (rows(&small["a"]), rows(&small["b"]));
    let (fid, want) = (frechet_distance(&a, &b).unwrap(), number(&small["fid"]));
    assert!((fid - want).abs() < 1e-12 * want, "FID {fid} vs pytorch-fid's {want}");
    let first = Features::new(8, a.values[..30 * 8].to_vec());
    let (got, want) = (kid(&first, &b, 1, 30, 0).unwrap().mean, number(&small["kid_first_30"]));
    assert!((got - want).abs() < 1e-12 * want.abs(), "KID {got} vs torch-fidelity's {want}");
}
