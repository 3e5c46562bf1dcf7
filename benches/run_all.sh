#!/usr/bin/env bash
# Runs every benchmark behind benches/NOTES.md on this machine's default adapter and writes the
# results to OUTDIR (text logs and JSON rows). Usage:
#   benches/run_all.sh OUTDIR [BINDIR]
# BINDIR holds prebuilt `adapters`, `bench_matmul`, `bench_step`, `bench_batched` and
# `bench_conv` (default: builds them with `cargo build --release --examples` and uses
# target/release/examples). Honours WGPU_BACKEND / WGPU_ADAPTER_NAME. On a real GPU it also sweeps the tile kernel's shapes, so the table in
# `MatmulTiles` can be checked against the measurements.
set -euo pipefail
out=${1:?usage: benches/run_all.sh OUTDIR [BINDIR]}
bin=${2:-}
mkdir -p "$out"
if [ -z "$bin" ]; then
    cargo build --release --examples
    bin=target/release/examples
fi
"$bin/adapters" > "$out/adapters.txt" 2>&1 || true
# W1: every kernel family at the sizes of the issue, GPU beside the CPU backend.
"$bin/bench_matmul" --sizes 1024,2048,4096 --reps 10 --kernel all --json "$out/w1_all.json" \
    > "$out/w1_all.txt" 2>&1
# The tile kernel's shapes (BMxBNxBKxTMxTN), forward and backward, at the large sizes.
"$bin/bench_matmul" --sizes 2048,4096 --reps 10 --device gpu --kernel tiled \
    --tiles 128x128x8x8x8,128x128x16x8x8,128x64x8x8x8,64x128x8x8x8,64x64x16x4x4,64x64x8x8x8 \
    --json "$out/w1_tiles.json" > "$out/w1_tiles.txt" 2>&1
# W2: one training step of the MLP 784-256-256-10, fused and unfused.
"$bin/bench_step" --steps 500 > "$out/w2.txt" 2>&1
"$bin/bench_step" --steps 500 --no-fusion > "$out/w2_unfused.txt" 2>&1
# Batched matmul against one product of the same flops; convolutions as implicit GEMMs against
# im2col + matmul (with the adapter's own kernel choice, then both on the tile kernel).
"$bin/bench_batched" --device gpu --reps 40 > "$out/batched.txt" 2>&1
"$bin/bench_conv" --device gpu --reps 20 > "$out/conv.txt" 2>&1
"$bin/bench_conv" --device gpu --reps 20 --kernel tiled > "$out/conv_tiled.txt" 2>&1
# The CPU reference: NumPy/OpenBLAS W1, where NumPy is installed.
if python3 -c "import numpy" 2>/dev/null; then
    python3 "$(dirname "$0")/numpy_w1.py" 1024 2048 > "$out/numpy_w1.txt" 2>&1
fi
echo "results in $out"
