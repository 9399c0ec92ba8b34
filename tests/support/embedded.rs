//! A package folder compiled into a browser test (the tiny random-weight ones in
//! tests/fixtures/packages/, the demo in static/models/) and loaded through the same
//! `PackageLoader` the page uses, on the device a compute preference picks. (`package!` paths
//! are relative to the test file that expands it, in `tests/`.)

use mam_e::device::ComputePreference;
use mam_e::package::{Manifest, PackageLoader};
use mam_e::pipeline::StableDiffusion;

/// `(manifest, shard, vocab.json, merges.txt)` of the package folder `DIR` (relative to `tests/`).
macro_rules! package {
    ($dir:literal) => {
        (
            include_str!(concat!($dir, "/manifest.json")),
            include_bytes!(concat!($dir, "/model-00001.safetensors")).as_slice(),
            include_bytes!(concat!($dir, "/tokenizer/vocab.json")).as_slice(),
            include_bytes!(concat!($dir, "/tokenizer/merges.txt")).as_slice(),
        )
    };
}

pub async fn load((manifest, shard, vocab, merges): (&str, &[u8], &[u8], &[u8]), compute: ComputePreference) -> StableDiffusion {
    let manifest = Manifest::parse(manifest).unwrap();
    assert_eq!(manifest.shards.len(), 1, "the embedded packages are one shard each");
    let (device, _) = mam_e::web::models::device(compute).await.unwrap();
    let mut loader = PackageLoader::new(manifest.clone(), &device).unwrap();
    for (i, file) in manifest.tokenizer.iter().enumerate() {
        loader.add_tokenizer_file(i, if file.file.ends_with("vocab.json") { vocab.to_vec() } else { merges.to_vec() }).unwrap();
    }
    loader.add_shard(0, shard).unwrap();
    loader.finish().unwrap()
}
