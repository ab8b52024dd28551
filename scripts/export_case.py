"""Export a model saved by PyMC-Marketing (`mmm.save("fitted.nc")`) as a case folder.

mmm-budget reads PyMC-Marketing 0.19.x files directly (`--model fitted.nc`); this
recipe is for files of other versions, or to see what the case folder holds. It needs
only numpy and arviz (no PyMC-Marketing):

    python scripts/export_case.py fitted.nc case/ --periods 8 --budget 5000

and writes case/model.json, case/posterior.npz and case/scenario.json. `mmm-budget
export fitted.nc case/ --periods 8 --budget 5000` does the same in Rust.
"""

import argparse
import json
import pathlib

import arviz as az
import numpy as np

# The posterior parameters of each adstock and saturation (PyMC-Marketing's names,
# after the prefix).
ADSTOCK = {
    "geometric": ["alpha"],
    "delayed": ["alpha", "theta"],
    "weibull_cdf": ["lam", "k"],
    "weibull_pdf": ["lam", "k"],
    "binomial": ["alpha"],
    "no_adstock": [],
}
SATURATION = {
    "logistic": ["lam", "beta"],
    "inverse_scaled_logistic": ["lam", "beta"],
    "tanh": ["b", "c"],
    "michaelis_menten": ["alpha", "lam"],
    "hill": ["slope", "kappa", "beta"],
    "hill_sigmoid": ["sigma", "beta", "lam"],
    "root": ["alpha", "beta"],
    "no_saturation": ["beta"],
}


def ordered(array, dims):
    """The array's values as nested lists over model.json's dim order."""
    return array.transpose(*[d for d in dims if d in array.dims]).values.tolist()


def export(nc, out, periods, budget):
    idata = az.from_netcdf(nc)
    attrs = idata.attrs
    adstock = json.loads(attrs["adstock"])
    saturation = json.loads(attrs["saturation"])
    if adstock.get("mode", "After") != "After":
        raise SystemExit(f"{nc}: adstock mode {adstock['mode']!r}: only 'After' is supported")
    channels = json.loads(attrs["channel_columns"])
    dims = json.loads(attrs.get("dims", "[]")) or []
    post = idata.posterior
    const = idata.constant_data
    names = {f"{adstock['prefix']}_{p}": f"adstock_{p}" for p in ADSTOCK[adstock["lookup_name"]]}
    names.update({f"{saturation['prefix']}_{p}": f"saturation_{p}" for p in SATURATION[saturation["lookup_name"]]})
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "posterior.npz", **{ours: post[theirs].values for theirs, ours in names.items()})
    model = {
        "channels": channels,
        "dims": {d: [str(c) for c in post[d].values] for d in dims},
        "adstock": {"kind": adstock["lookup_name"], "l_max": adstock["l_max"], "normalize": adstock["normalize"]},
        "saturation": {"kind": saturation["lookup_name"]},
        "adstock_first": json.loads(attrs["adstock_first"]),
        "channel_scale": ordered(const["channel_scale"], [*dims, "channel"]),
        "target_scale": ordered(const["target_scale"], dims),
        "posterior": "posterior.npz",
        "posterior_dims": {ours: list(post[theirs].dims) for theirs, ours in names.items()},
    }
    (out / "model.json").write_text(json.dumps(model, indent=1) + "\n")
    scenario = {"num_periods": periods, "total_budget": budget}
    (out / "scenario.json").write_text(json.dumps(scenario, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nc", help="the file PyMC-Marketing's mmm.save wrote")
    parser.add_argument("out", help="the case folder to write")
    parser.add_argument("--periods", type=int, required=True, help="periods N of the budget window")
    parser.add_argument("--budget", type=float, required=True, help="total budget per period")
    args = parser.parse_args()
    export(args.nc, args.out, args.periods, args.budget)


if __name__ == "__main__":
    main()
