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
mkdir -p .gpu-bin
cp target/release/mmm-budget .gpu-bin/
parity=$(cargo test --release --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "parity" and m.get("executable"):
        print(m["executable"])')
cp "$parity" .gpu-bin/parity
ls -la .gl .gpu-bin
