#!/usr/bin/env bash
# Runs on the GPU machine (see prepare.sh): the GPU tests, the shared cases with
# --backend gpu, the bench table at the issue's sizes and the JAX peer. Logs go to
# $OUT (the folder the GPU machine sends back). The MID table has the CPU row beside the
# GPU (that machine has 16 cores).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# SKIP_GL=1, VK_DRIVER_FILES, BIG and MID let a smoke test run it on lavapipe.
if [ -z "${SKIP_GL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json} MMM_REQUIRE_GPU=1
BIG=${BIG:-100000}
MID=${MID:-20000}
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
./.gpu-bin/parity --skip cli_ > "$OUT/parity.txt" 2>&1; echo "parity rc=$?" >> "$OUT/parity.txt"
./.gpu-bin/diversification gpu >> "$OUT/parity.txt" 2>&1; echo "diversification rc=$?" >> "$OUT/parity.txt"
for c in s3 m8x4 l20x10; do
  ./.gpu-bin/mmm-budget optimize "tests/data/$c" --backend gpu --out "$OUT/$c.json" > "$OUT/$c.txt" 2>&1
  echo "rc=$?" >> "$OUT/$c.txt"
done
./.gpu-bin/mmm-budget bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --f16 --repeats 20 > "$OUT/bench-big.txt" 2>&1
./.gpu-bin/mmm-budget bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend all --repeats 20 --no-optimize > "$OUT/bench-mid.txt" 2>&1
# Several allocations a pass (evaluate_many), GPU only: k = 8 and 32 beside a single evaluation.
./.gpu-bin/mmm-budget bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 5 --no-optimize --many 8,32 >> "$OUT/bench-mid.txt" 2>&1
./.gpu-bin/mmm-budget bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 5 --no-optimize --many 8,32 >> "$OUT/bench-mid.txt" 2>&1
# Risk-aware objectives beside the mean's optimization (#13: at most 3x its time and evaluations).
# --recompute: a row whose weighted passes are recomputed beside the default (terms stored on the device).
./.gpu-bin/mmm-budget bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 3 --recompute --objectives "cvar(0.9);mean - 0.5 * std;diversification_ratio" >> "$OUT/bench-mid.txt" 2>&1
# Workgroup sizes side by side (the default is 256; benches/NOTES.md says what to look for).
# A BIG-draw float32 case folder (20 geos × 50 channels): loaded into a ready evaluator
# (seconds, GB/s, peak host memory) and optimized end to end, into bench-mid.txt.
python3 benches/load/make_case.py /tmp/bigcase --draws "$BIG" >> "$OUT/bench-mid.txt" 2>&1
./.gpu-bin/mmm-budget bench --draws 1000 --cells 50 --backend all --repeats 1 --no-optimize --load /tmp/bigcase >> "$OUT/bench-mid.txt" 2>&1
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "optimize /tmp/bigcase --backend gpu: %e s wall, peak host memory %M KB" ./.gpu-bin/mmm-budget -q optimize /tmp/bigcase --backend gpu >> "$OUT/bench-mid.txt" 2>&1
else
  TIMEFORMAT="optimize /tmp/bigcase --backend gpu: %R s wall"
  { time ./.gpu-bin/mmm-budget -q optimize /tmp/bigcase --backend gpu > /dev/null; } >> "$OUT/bench-mid.txt" 2>&1
fi
./.gpu-bin/mmm-budget bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --workgroup 32,64,128,256 --repeats 20 --no-optimize > "$OUT/bench-workgroups.txt" 2>&1
python3 benches/peers/jax_objective.py --draws "$MID" --cells 1000 --periods 52 --lmax 13 > "$OUT/jax-mid.txt" 2>&1
python3 benches/peers/jax_objective.py --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --repeats 3 > "$OUT/jax-big.txt" 2>&1
tail -n 3 "$OUT"/*.txt
