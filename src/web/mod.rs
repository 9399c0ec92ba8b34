//! The web app: a leptos client-side app that runs the pipeline on the visitor's GPU via WebGPU.
//!
//! Components live here; `main.rs` only calls [`start`].

mod app;
pub mod canvas;
pub mod download;
pub mod gallery;
pub mod gpu;
pub mod mask_panel;
pub mod model_panel;
pub mod models;
pub mod prompt_panel;
pub mod run;

pub use app::App;

/// Mounts the app on `<body>`.
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
