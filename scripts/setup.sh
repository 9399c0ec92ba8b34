# Idempotent installs shared by scripts/serve and scripts/test (sourced, not run).
# Each step checks first and is quick when already done.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$ROOT/.tools/node_modules/.bin:$PATH"
TRUNK_VERSION=0.21.14       # trunk 0.22 needs a newer rustc than rust-toolchain.toml pins
BINARYEN_VERSION=132        # Debian's wasm-opt (108) breaks wasm-bindgen 0.2.130 output

say() { printf '\033[1;35m[mam-e]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_apt() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# A one-node Slurm for tests/slurm.rs (bulk synthesis on an array job).
ensure_slurm() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    command -v pgrep >/dev/null || missing+=(procps)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_rust() {
    command -v rustup >/dev/null || { echo "rustup is required: https://rustup.rs" >&2; exit 1; }
    # rust-toolchain.toml pins the compiler; this installs it and the wasm target if missing.
    (cd "$ROOT" && rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install)
    (cd "$ROOT" && rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown)
    (cd "$ROOT" && rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt)
    (cd "$ROOT" && rustup component list --installed | grep -q '^clippy' || rustup component add clippy)
}

# Runs a `cargo install` at opt-level $1, without the tool's fat LTO and single codegen unit
# (trunk's release profile: its last crate then compiles on one core for minutes). CPU time to
# compile on 2 cores (docs/development.md): trunk 743 s at opt-level 3, 578 at 1, 263 at 0,
# where a `trunk build` of a built page takes 15 s instead of 8; wasm-bindgen-cli 282 s at 3,
# 228 at 1 (its run on a test's wasm as fast, 5–7 s), 90 at 0 (23 s a run).
build_tool() {
    local opt_level="$1"
    shift
    CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt_level" CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 "$@"
}

# wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock exactly.
ensure_wasm_bindgen() {
    local want
    want=$(grep -A1 '^name = "wasm-bindgen"$' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')
    if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
        say "installing wasm-bindgen-cli $want (a few minutes, once)"
        # Not --locked: the registry mirror lacks some of its locked versions. Without TLS (it
        # downloads nothing for us).
        build_tool 1 cargo install -q wasm-bindgen-cli --version "$want" --no-default-features --force
    fi
}

ensure_trunk() {
    if [ "$(trunk --version 2>/dev/null | cut -d' ' -f2)" != "$TRUNK_VERSION" ]; then
        say "installing trunk $TRUNK_VERSION (several minutes, once)"
        # Without TLS and the update check: Trunk.toml keeps it offline.
        build_tool 0 cargo install -q trunk --version "$TRUNK_VERSION" --locked --no-default-features --force
    fi
}

# wasm-opt is used only by release builds (`trunk build --release`), so a failed install warns
# instead of stopping the tests.
ensure_wasm_opt() {
    if ! "$ROOT/.tools/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
        command -v npm >/dev/null || { say "installing nodejs + npm (apt)"; as_root apt-get update -qq; as_root apt-get install -y -qq nodejs npm >/dev/null; }
        say "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
        if ! npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "binaryen@$BINARYEN_VERSION" >/dev/null; then
            say "warning: could not install wasm-opt (npm's error above); release builds need it, tests and serve do not"
        fi
    fi
}

# Native wgpu looks for a runtime dir; without one it prints a warning on every start.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
    export XDG_RUNTIME_DIR="/tmp/xdg-runtime-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
