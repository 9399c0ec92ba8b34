//! `mam-e doctor`: does this machine compute SD's ops correctly on each backend?

use anyhow::bail;

use super::BackendArg;
use crate::device::Backend;
use crate::selftest;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backends to check; all of them when omitted.
    #[arg(long, value_enum)]
    backend: Vec<BackendArg>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let backends = if args.backend.is_empty() { vec![BackendArg::Cpu, BackendArg::Wgpu] } else { args.backend };
    let mut failed = Vec::new();
    for arg in backends {
        let name = format!("{arg:?}").to_lowercase();
        let device = match Backend::from(arg).device() {
            Ok(device) => device,
            Err(e) => {
                println!("{name}: unavailable: {e}");
                failed.push(name);
                continue;
            }
        };
        println!("{name}: {device:?}");
        for check in pollster::block_on(selftest::run(&device))? {
            let verdict = if check.passed() { "ok" } else { "FAIL" };
            println!("  {verdict:4} {:<48} rel err {:.2e}", check.name, check.relative_error());
            if !check.passed() {
                failed.push(format!("{name}: {}", check.name));
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed (tolerance {:e}): {}", failed.len(), selftest::TOLERANCE, failed.join("; "));
    }
    Ok(())
}
