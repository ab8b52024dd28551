#!/usr/bin/env bash
# Prepare a run on the lent GPU machine (../shared/gpu/README.md): fetch the Vulkan
# loader packages into .gl/ and build the binaries into .gpu-bin/ (both git-ignored).
# Then run there, with .gl/ and .gpu-bin/ copied beside the working tree,
#   bash benches/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
grep -qx '/.gpu-bin/' .git/info/exclude 2>/dev/null || echo /.gpu-bin/ >> .git/info/exclude
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
cargo build --release --quiet
# A fresh folder: only this run's binaries travel.
rm -rf .gpu-bin
mkdir -p .gpu-bin
cp target/release/mmm-budget .gpu-bin/
# The GPU-against-CPU test binaries: parity, and the diversification ratio's moments.
cargo test --release --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,shutil,sys
for l in sys.stdin:
    m = json.loads(l)
    name = m.get("target", {}).get("name")
    if m.get("reason") == "compiler-artifact" and name in ("parity", "diversification") and m.get("executable"):
        shutil.copy(m["executable"], ".gpu-bin/" + name)'
# The driver's statistics of the kernels (`run.sh stats`).
cargo build --release --quiet --example shader_stats
cp target/release/examples/shader_stats .gpu-bin/
# Other builds to time beside this one (`run.sh versions`): REVS="rev1 rev2" builds each
# commit in a worktree under target/ and carries its binary as mmm-budget-<rev>.
for rev in ${REVS:-}; do
  wt="target/rev-$rev"
  [ -d "$wt" ] || git worktree add -q --detach "$wt" "$rev"
  (cd "$wt" && CARGO_TARGET_DIR="$PWD/../rev-target" cargo build --release --quiet)
  cp "target/rev-target/release/mmm-budget" ".gpu-bin/mmm-budget-$rev"
done
# Stripped and compressed (run.sh unpacks them): the working tree, .gl and .gpu-bin
# travel in 64 MiB.
for f in .gpu-bin/*; do
  case $f in *.gz) continue ;; esac
  strip "$f" && gzip -f "$f"
done
ls -la .gl .gpu-bin
