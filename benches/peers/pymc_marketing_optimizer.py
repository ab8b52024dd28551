"""Run PyMC-Marketing 0.19.2's own BudgetOptimizer on a case folder of this project's
format (model.json, posterior.npz, scenario.json) and print one JSON line:
{"setup_seconds", "optimize_seconds", "objective", "nit", "nfev", "success", "message"}.

The model is PyMC-Marketing's multidimensional MMM with the case's adstock,
saturation and dims, built on placeholder data; its channel_scale and target_scale
are then set to the case's values and its posterior replaced by the case's draws, so
that the optimizer sees exactly the case's problem (budget per period, bounds
[0, total_budget], Σ = total_budget, SLSQP with ftol 1e-9, maxiter 1000, start: the
budget spread evenly). Supports what the shared cases use: no time distribution, no
cost per unit, no extra constraints.

    python -m venv /tmp/pm && /tmp/pm/bin/pip install pymc-marketing==0.19.2
    /tmp/pm/bin/python benches/peers/pymc_marketing_optimizer.py tests/data/m8x4
"""

import json
import pathlib
import sys
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc_marketing.mmm.components.adstock import ADSTOCK_TRANSFORMATIONS
from pymc_marketing.mmm.components.saturation import SATURATION_TRANSFORMATIONS
from pymc_marketing.mmm.multidimensional import MMM, MultiDimensionalBudgetOptimizerWrapper
from pymc_marketing.mmm.scaling import Scaling, VariableScaling

warnings.filterwarnings("ignore")

ADSTOCK_NAMES = {"none": "no_adstock"}
SATURATION_NAMES = {"none": "no_saturation"}


def main(case_dir):
    case = pathlib.Path(case_dir)
    model = json.loads((case / "model.json").read_text())
    scenario = json.loads((case / "scenario.json").read_text())
    for unsupported in ("time_distribution", "cost_per_unit", "constraints", "optimize", "bounds"):
        if scenario.get(unsupported):
            raise SystemExit(f"{unsupported} is not supported by this peer script")
    post = np.load(case / model.get("posterior", "posterior.npz"))
    channels = model["channels"]
    dims = model.get("dims", {})
    extra = list(dims)
    n_periods = scenario["num_periods"]
    budget = scenario["total_budget"]

    t0 = time.perf_counter()
    # Placeholder history: 20 weeks of every cell.
    dates = pd.date_range("2024-01-01", periods=20, freq="W-MON")
    rng = np.random.default_rng(0)
    combos = [dict()]
    for d in extra:
        combos = [{**c, d: v} for c in combos for v in dims[d]]
    rows = [{"date": t, **c, **{ch: rng.uniform(1, 10) for ch in channels}} for t in dates for c in combos]
    X = pd.DataFrame(rows)
    y = pd.Series(rng.uniform(1, 10, len(X)), name="y")
    cs = np.asarray(model["channel_scale"], dtype=float)
    ts = np.asarray(model["target_scale"], dtype=float)
    scaling = Scaling(
        channel=VariableScaling(method="max", dims=() if cs.ndim > 1 else tuple(extra)),
        target=VariableScaling(method="max", dims=() if ts.ndim > 0 else tuple(extra)),
    )
    adstock = ADSTOCK_TRANSFORMATIONS[ADSTOCK_NAMES.get(model["adstock"]["kind"], model["adstock"]["kind"])](
        l_max=model["adstock"]["l_max"], normalize=model["adstock"].get("normalize", True)
    )
    saturation = SATURATION_TRANSFORMATIONS[SATURATION_NAMES.get(model["saturation"]["kind"], model["saturation"]["kind"])]()
    mmm = MMM(
        date_column="date",
        dims=tuple(extra),
        channel_columns=channels,
        target_column="y",
        adstock=adstock,
        saturation=saturation,
        adstock_first=model.get("adstock_first", True),
        scaling=scaling,
    )
    mmm.build_model(X, y)
    pm.set_data({"channel_scale": np.broadcast_to(cs, mmm.model["channel_scale"].get_value().shape),
                 "target_scale": np.broadcast_to(ts, mmm.model["target_scale"].get_value().shape)}, model=mmm.model)
    names = [f"adstock_{p}" for p in adstock.default_priors] + [f"saturation_{p}" for p in saturation.default_priors]
    pdims = model.get("posterior_dims", {})
    data = {}
    for k in names:
        v = post[k]
        kd = pdims.get(k) or (["chain", "draw", *extra, "channel"][: v.ndim])
        coords = {d: (dims[d] if d in dims else channels if d == "channel" else np.arange(n)) for d, n in zip(kd, v.shape)}
        data[k] = xr.DataArray(v, dims=kd, coords=coords)
    mmm.idata = az.InferenceData(posterior=xr.Dataset(data))
    wrapper = MultiDimensionalBudgetOptimizerWrapper(
        model=mmm, start_date=dates[-1] + pd.Timedelta(weeks=1), end_date=dates[-1] + pd.Timedelta(weeks=n_periods)
    )
    assert wrapper.num_periods == n_periods, wrapper.num_periods
    budget_dims = extra + ["channel"]
    shape = [len(dims[d]) for d in extra] + [len(channels)]
    coords = {**{d: dims[d] for d in extra}, "channel": channels}
    bounds = xr.DataArray(
        np.stack([np.zeros(shape), np.full(shape, budget)], -1),
        dims=[*budget_dims, "bound"],
        coords={**coords, "bound": ["lower", "upper"]},
    )
    mask = xr.DataArray(np.ones(shape, dtype=bool), dims=budget_dims, coords=coords)
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        _, res = wrapper.optimize_budget(budget=budget, budget_bounds=bounds, budgets_to_optimize=mask)
    except Exception as e:  # SLSQP failures surface as exceptions
        print(json.dumps({"setup_seconds": setup, "optimize_seconds": time.perf_counter() - t1,
                          "objective": None, "success": False, "message": f"{type(e).__name__}: {e}"}))
        return
    optimize = time.perf_counter() - t1
    print(json.dumps({
        "setup_seconds": setup,
        "optimize_seconds": optimize,
        "objective": float(-res.fun),
        "nit": int(res.nit),
        "nfev": int(res.nfev),
        "success": bool(res.success),
        "message": str(res.message),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
