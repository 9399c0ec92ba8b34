//! `mam-e`: natively the research CLI; compiled to wasm32 by Trunk, the web app.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    mam_e::cli::run()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    mam_e::web::start();
}
