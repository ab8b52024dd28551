#!/usr/bin/env bash
# The tests: the library and the command line (cargo), then the Python package: its
# wheel built by maturin from python/ into a virtual environment under target/ with
# its test dependencies (pytest, numpy, xarray, arviz, h5netcdf, ray), and pytest.
# MMM_SKIP_PYTHON=1 runs the Rust tests alone (no Python, nothing downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked
if [ "${MMM_SKIP_PYTHON:-0}" = "1" ]; then
    echo "skipped the Python package's tests (MMM_SKIP_PYTHON=1)"
    exit 0
fi
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q "./python[test]"
# The tests compare with the command line that cargo test built.
MMM_BUDGET_BIN="$PWD/target/release/mmm-budget" "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
