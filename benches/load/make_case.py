"""Writes a big synthetic case folder for the loading measurements (numpy only):
DRAWS draws × GEOS geos × CHANNELS channels, geometric adstock (l_max 13) and logistic
saturation, float32 (or float64) arrays over (chain, draw, geo, channel), 52 periods.

    python benches/load/make_case.py DIR [--draws 20000] [--geos 20] [--channels 50] [--float64]
"""

import argparse
import json
import os

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--draws", type=int, default=20_000)
    p.add_argument("--geos", type=int, default=20)
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--float64", action="store_true")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(7)
    dtype = np.float64 if a.float64 else np.float32
    shape = (1, a.draws, a.geos, a.channels)
    dims = ["chain", "draw", "geo", "channel"]
    arrays = {
        "adstock_alpha": rng.uniform(0.2, 0.8, shape).astype(dtype),
        "saturation_lam": rng.uniform(1.0, 4.0, shape).astype(dtype),
        "saturation_beta": rng.uniform(0.5, 2.0, shape).astype(dtype),
    }
    np.savez(os.path.join(a.dir, "posterior.npz"), **arrays)
    model = {
        "channels": [f"ch{i}" for i in range(a.channels)],
        "dims": {"geo": [f"g{i}" for i in range(a.geos)]},
        "adstock": {"kind": "geometric", "l_max": 13, "normalize": True},
        "saturation": {"kind": "logistic"},
        "adstock_first": True,
        "channel_scale": rng.uniform(100.0, 500.0, (a.geos, a.channels)).tolist(),
        "target_scale": 1000.0,
        "posterior": "posterior.npz",
        "posterior_dims": {k: dims for k in arrays},
    }
    with open(os.path.join(a.dir, "model.json"), "w") as f:
        json.dump(model, f)
    with open(os.path.join(a.dir, "scenario.json"), "w") as f:
        json.dump({"num_periods": 52, "total_budget": 100.0 * a.geos * a.channels}, f)


if __name__ == "__main__":
    main()
