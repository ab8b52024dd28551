"""Shared fixtures: the saved-model fixture and its case-folder twin (tests/data/saved,
made by tests/fixtures/make_saved_model.py), and the command line to compare with."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAVED = ROOT / "tests" / "data" / "saved"
FITTED = SAVED / "fitted.nc"
TWIN = SAVED / "twin"


def cli_binary() -> Path:
    """The command line built by `cargo test --release` (or MMM_BUDGET_BIN)."""
    path = Path(os.environ.get("MMM_BUDGET_BIN", ROOT / "target" / "release" / "mmm-budget"))
    if not path.exists():
        pytest.fail(f"{path}: the command line is not built (cargo build --release)")
    return path


def run_cli(*args: str, out: Path | None = None) -> tuple[int, dict | None, str]:
    """Runs the command line: its exit code, the JSON of --out, its stderr."""
    cmd = [str(cli_binary()), "--quiet", *args]
    if out is not None:
        cmd += ["--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text()) if out is not None and out.exists() else None
    return p.returncode, data, p.stderr


def cli_error(*args: str) -> str:
    """The command line's one-line error, without `error: `."""
    code, _, err = run_cli(*args)
    assert code == 2, (code, err)
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0][len("error: "):]


def after_context(message: str) -> str:
    """A message without its context (what comes before the first ': ')."""
    return message.split(": ", 1)[1]


@pytest.fixture(scope="session")
def idata():
    import arviz as az

    data = az.from_netcdf(FITTED)
    data.load() if hasattr(data, "load") else None
    return data
