//! The web app: a leptos client-side app that runs the pipeline on the visitor's GPU via WebGPU.
//!
//! Components live here; `main.rs` only calls [`start`]. The models load and run in a Web Worker
//! ([`worker`], started and spoken to by [`engine`]), so the page's thread only draws.

mod app;
pub mod cad;
pub mod canvas;
pub mod download;
pub mod engine;
pub mod explain_view;
pub mod gallery;
pub mod gpu;
pub mod mask_panel;
pub mod model_panel;
pub mod models;
pub mod prompt_panel;
pub mod protocol;
pub mod queue;
pub mod reader_study;
pub mod run;
pub mod scope;
pub mod slots;
pub mod worker;

pub use app::App;

/// Mounts the app on `<body>`; in the pipeline worker (the same wasm, started by the page),
/// listens for its requests instead.
pub fn start() {
    crate::device::run_static_constructors();
    console_error_panic_hook::set_once();
    if scope::is_worker() {
        worker::start();
    } else {
        leptos::mount::mount_to_body(App);
    }
}
