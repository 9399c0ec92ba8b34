//! `mam-e`: natively the research CLI; compiled to wasm32 by Trunk, the web app.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    mam_e::cli::run()
}

/// glibc's allocator maps every allocation over 32 MiB straight from the kernel and unmaps it
/// when freed (and returns a freed heap top over its trim threshold), so the large tensors of each
/// UNet step came back as fresh pages that the kernel zeroes on first touch: 7 % of an SD1.5 step
/// in page faults (`perf`); the dev build's CFG step took 12.7–13.0 s with this, 14.4–15.5 s
/// without. Here freed memory stays in the heap and is reused; the process keeps its peak, which
/// it reaches in the first step anyway (peak RSS unchanged).
#[cfg(not(target_arch = "wasm32"))]
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    mam_e::web::start();
}
