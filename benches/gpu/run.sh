#!/usr/bin/env bash
# Runs on the GPU machine (see prepare.sh), everything into one log, $OUT/run.log (the
# machine sends back at most 8 files). Parts, each its own argument (default: all, in
# this order; about 8 minutes on an H200):
#   checks   the GPU tests, the shared cases with --backend gpu
#   kernel   #17 item 3: workgroup sizes 32..1,024, subgroup against tree sums, and the
#            shapes of the issue's table (where does the time stop following the terms?)
#   tables   the bench table at the issues' sizes (CPU row beside the GPU at MID: that
#            machine has 16 cores), evaluate_many, risk-aware objectives
#   case     a BIG-draw case folder loaded and optimized end to end
#   peers    the jitted JAX objective
#   objectives the risk-aware objectives' rows alone (#13: CVaR and mean − λ·std beside
#            the mean's optimization at MID draws), this build and the carried ones
#   floor    a pass's fixed cost: tiny shapes whose terms take next to nothing
#   stats    the driver's registers and instruction counts of the kernels, each compiled
#            as the evaluator does and with its knobs (shader_stats)
#   knobs    the kernel's knobs side by side in one run (bounded loops, the general
#            walk) on the headline shape and two short windows
#   versions this build beside the others prepare.sh carried (REVS=…), alternating, on
#            the kernel's headline shape and three window lengths
# SKIP_GL=1, VK_DRIVER_FILES, BIG and MID let a smoke test run it on lavapipe.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/run.log"
if [ -z "${SKIP_GL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# prepare.sh carries the binaries stripped and compressed.
for f in .gpu-bin/*.gz; do [ -e "$f" ] && gunzip -kf "$f"; done
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json} MMM_REQUIRE_GPU=1
BIG=${BIG:-100000}
MID=${MID:-20000}
parts=${*:-checks kernel tables case peers}
bin=./.gpu-bin/mmm-budget
step() { echo; echo "=== $* ($(date +%T))"; }
# One step: its command line as a header, then its output, then its exit status.
run() { step "$*"; "$@" 2>&1; echo "rc=$?"; }
clocks() { nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader 2>&1; }
shape() { # draws cells periods lmax [saturation]: subgroup and tree sums side by side
  run "$bin" bench --draws "$1" --cells "$2" --periods "$3" --lmax "$4" --saturation "${5:-logistic}" \
    --backend gpu --no-optimize --repeats 20 --tree
}

{
for part in $parts; do
  case $part in
  checks)
    step checks; nvidia-smi -L 2>&1; clocks
    run ./.gpu-bin/parity --skip cli_
    run ./.gpu-bin/diversification gpu
    for c in s3 m8x4 l20x10; do
      run "$bin" optimize "tests/data/$c" --backend gpu --out "/tmp/$c.json"
    done
    ;;
  kernel)
    step kernel; clocks
    # Workgroup sizes side by side (default 256), each with subgroup and tree sums.
    run "$bin" bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu \
      --workgroup 32,64,128,256,512,1024 --tree --repeats 20 --no-optimize
    # The issue's shapes (terms = D × n × (min(N, L + 1) + L) in the constant form).
    shape $((BIG / 2)) 1000 52 13
    shape $((BIG / 2)) 1000 13 13
    shape $((BIG / 2)) 1000 52 4
    shape $((BIG / 2)) 1000 52 1
    shape $((BIG / 2)) 1000 200 13
    shape $((BIG / 2)) 100 52 13
    shape $((BIG * 5)) 100 52 13
    shape $((BIG / 20)) 10000 52 13
    shape $((BIG / 25)) 1000 52 13
    for s in michaelis_menten hill tanh root hill_sigmoid; do shape $((BIG / 2)) 1000 52 13 $s; done
    clocks
    ;;
  tables)
    step tables; clocks
    run "$bin" bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --f16 --repeats 20
    run "$bin" bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend all --repeats 20 --no-optimize
    # Several allocations a pass (evaluate_many): k = 8 and 32 beside a single evaluation.
    run "$bin" bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 5 --no-optimize --many 8,32
    run "$bin" bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 5 --no-optimize --many 8,32
    # Risk-aware objectives beside the mean's optimization (#13: at most 3x its time and
    # evaluations); --recompute: weighted passes recomputed beside stored terms.
    run "$bin" bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 3 --recompute \
      --objectives "cvar(0.9);mean - 0.5 * std;diversification_ratio"
    ;;
  case)
    step case; clocks
    # A BIG-draw float32 case folder (20 geos × 50 channels): loaded into a ready evaluator
    # (seconds, GB/s, peak host memory) and optimized end to end.
    run python3 benches/load/make_case.py /tmp/bigcase --draws "$BIG"
    run "$bin" bench --draws 1000 --cells 50 --backend all --repeats 1 --no-optimize --load /tmp/bigcase
    if [ -x /usr/bin/time ]; then
      run /usr/bin/time -f "optimize /tmp/bigcase --backend gpu: %e s wall, peak host memory %M KB" \
        "$bin" -q optimize /tmp/bigcase --backend gpu --out /tmp/bigcase.json
    else
      step "optimize /tmp/bigcase --backend gpu (bash time)"
      TIMEFORMAT="optimize /tmp/bigcase --backend gpu: %R s wall"
      time "$bin" -q optimize /tmp/bigcase --backend gpu --out /tmp/bigcase.json
    fi
    ;;
  objectives)
    step objectives; clocks
    # This build, then the others prepare.sh carried (REVS=…), alternating.
    for b in "$bin" .gpu-bin/mmm-budget-*; do
      case $b in *.gz) continue ;; esac
      [ -e "$b" ] || continue
      run "$b" bench --draws "$MID" --cells 1000 --periods 52 --lmax 13 --backend gpu --repeats 3 \
        --objectives "cvar(0.9);mean - 0.5 * std"
    done
    ;;
  floor)
    # A pass's fixed cost (dispatches, read-back, the host's f64 finish): shapes whose
    # terms take next to nothing.
    step floor; clocks
    run "$bin" bench --draws 256 --cells 10 --periods 52 --lmax 13 --backend gpu --no-optimize --repeats 50
    run "$bin" bench --draws 4000 --cells 100 --periods 52 --lmax 13 --backend gpu --no-optimize --repeats 50
    run "$bin" bench --draws 50000 --cells 100 --periods 52 --lmax 1 --backend gpu --no-optimize --repeats 50
    ;;
  stats)
    step stats
    run ./.gpu-bin/shader_stats
    run ./.gpu-bin/shader_stats --wg 1024
    ;;
  knobs)
    step knobs; clocks
    for round in 1 2; do
      run "$bin" bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --no-optimize \
        --repeats 20 --bounded-loops --general-walk
      for l in 1 4; do
        run "$bin" bench --draws $((BIG / 2)) --cells 1000 --periods 52 --lmax $l --backend gpu --no-optimize \
          --repeats 20 --bounded-loops --general-walk
      done
    done
    clocks
    ;;
  versions)
    step versions; clocks
    for round in 1 2; do
      for b in .gpu-bin/mmm-budget-* "$bin"; do
        case $b in *.gz) continue ;; esac
        run "$b" bench --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --backend gpu --no-optimize --repeats 20
        for l in 1 4; do
          run "$b" bench --draws $((BIG / 2)) --cells 1000 --periods 52 --lmax $l --backend gpu --no-optimize --repeats 20
        done
      done
    done
    clocks
    ;;
  peers)
    step peers
    run python3 benches/peers/jax_objective.py --draws "$MID" --cells 1000 --periods 52 --lmax 13
    run python3 benches/peers/jax_objective.py --draws "$BIG" --cells 1000 --periods 52 --lmax 13 --repeats 3
    ;;
  *) echo "unknown part $part (checks, kernel, tables, case, peers, objectives, floor, stats, knobs, versions)" ;;
  esac
done
} >> "$LOG"
grep -E '^(===|rc=)|test result' "$LOG" | tail -n 60
