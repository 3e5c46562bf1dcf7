#!/usr/bin/env bash
# Builds the page's WebAssembly into web/pkg: the wgrad-web crate for wasm32 (wgpu's WebGPU
# backend), then wasm-bindgen's JavaScript glue. Installs what is missing first: the wasm32
# target, and wasm-bindgen-cli at the version Cargo.lock pins (the glue must match the crate).
# Then serve web/ with any static file server, e.g. `python3 -m http.server -d web 8000`.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2 || true)
if [ "$have" != "$want" ]; then
    cargo install wasm-bindgen-cli --version "$want"
fi
cargo build -p wgrad-web --target wasm32-unknown-unknown --release
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/wgrad_web.wasm
ls -l web/pkg/wgrad_web_bg.wasm
