#!/usr/bin/env bash
# Side by side, in one run: PyMC-Marketing's BudgetOptimizer and `mmm-budget optimize
# --backend cpu` on the same case folder(s); prints objective, seconds and the ratio.
#
#   PYTHON=/tmp/pm/bin/python benches/peers/compare_cpu.sh tests/data/s3 tests/data/m8x4
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
cargo build --release --quiet
out=$(mktemp -d)
printf '%-22s %-28s %12s %12s %-28s %12s %12s %10s %10s\n' case "pymc-marketing objective" "setup s" "optimize s" "mmm-budget objective" "solve s" "command s" "solve ×" "command ×"
for case in "$@"; do
  peer=$($PYTHON benches/peers/pymc_marketing_optimizer.py "$case" | tail -1)
  start=$(date +%s.%N)
  ./target/release/mmm-budget optimize "$case" --backend cpu --out "$out/r.json" > /dev/null || true
  end=$(date +%s.%N)
  python3 - "$case" "$peer" "$out/r.json" "$start" "$end" <<'PY'
import json, sys
case, peer, ours, start, end = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3])), float(sys.argv[4]), float(sys.argv[5])
cmd = end - start
po = peer["objective"]
pobj = f"{po:.9f}" if po is not None else "failed"
ratio = lambda a, b: f"{a / b:.0f}" if a else "-"
print(f"{case:<22} {pobj:<28} {peer['setup_seconds']:>12.3f} {peer['optimize_seconds']:>12.3f} "
      f"{ours['utility']:<28.9f} {ours['seconds']:>12.4f} {cmd:>12.3f} "
      f"{ratio(peer['optimize_seconds'], ours['seconds']):>10} {ratio(peer['setup_seconds'] + peer['optimize_seconds'], cmd):>10}")
if po is None:
    print(f"  pymc-marketing: {peer['message'][:160]}")
PY
done
