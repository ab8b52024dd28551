"""Bad input from Python raises the documented exceptions with the command line's
message: the same line where both read the same file, the same line after the context
where Python's input is in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mmm_budget as mb

from conftest import FITTED, after_context, cli_error


def saved(idata, path):
    idata.to_netcdf(str(path), engine="h5netcdf")
    return path


def test_wrong_dims_in_memory_and_on_file(tmp_path, idata):
    bad = idata.copy()
    bad.posterior["saturation_lam"] = bad.posterior["saturation_lam"].rename({"geo": "region"})
    with pytest.raises(mb.InputError) as e:
        mb.Model(bad)
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith("InferenceData: posterior/saturation_lam dims")
    cli = cli_error("optimize", "--model", str(saved(bad, tmp_path / "bad.nc")), "--budget", "5", "--periods", "8")
    assert after_context(str(e.value)) == after_context(cli)


def test_nan_draws(tmp_path, idata):
    bad = idata.copy()
    v = bad.posterior["saturation_lam"].values.copy()
    v[0, 3, 1, 1] = np.nan
    bad.posterior["saturation_lam"] = (bad.posterior["saturation_lam"].dims, v)
    with pytest.raises(mb.InputError) as e:
        mb.optimize(bad, budget=5.0, periods=8, backend="cpu")
    assert "saturation_lam[chain 0, draw 3" in str(e.value) and "NaN" in str(e.value)
    cli = cli_error("optimize", "--model", str(saved(bad, tmp_path / "nan.nc")), "--budget", "5", "--periods", "8")
    assert after_context(str(e.value)) == after_context(cli)


def test_a_float_array_of_another_type_is_refused(idata):
    bad = idata.copy()
    bad.posterior["saturation_lam"] = bad.posterior["saturation_lam"].astype("int64")
    with pytest.raises(mb.InputError, match=r"posterior/saturation_lam dtype = int64: expected float64 or float32"):
        mb.Model(bad)


def test_float32_and_non_contiguous_posteriors_read_as_float64(idata):
    want = mb.optimize(idata, budget=100.0, periods=8, backend="cpu")
    f32 = idata.copy()
    for name in ("adstock_alpha", "saturation_lam", "saturation_beta"):
        f32.posterior[name] = f32.posterior[name].astype("float32")
    got = mb.optimize(f32, budget=100.0, periods=8, backend="cpu")
    assert got.utility == pytest.approx(want.utility, rel=1e-5)
    # Transposed (Fortran-ordered views): the same model, the same optimum exactly.
    t = idata.copy()
    for name in ("adstock_alpha", "saturation_lam", "saturation_beta"):
        da = t.posterior[name]
        t.posterior[name] = (da.dims, np.asfortranarray(da.values))
    assert not t.posterior["saturation_lam"].values.flags.c_contiguous
    assert mb.optimize(t, budget=100.0, periods=8, backend="cpu").utility == want.utility


@pytest.mark.parametrize(
    "field, value",
    [
        ("bounds", [{"select": {"channel": "no_such_channel"}, "max": 1.0}]),
        ("objective", "maximize cvar(1.5)"),
        ("total_budget", -5.0),
        ("constraints", ["sum(channel=tv) >= "]),
        ("objective", "maximize frobnicate"),
    ],
)
def test_scenario_files_are_refused_as_on_the_command_line(tmp_path, field, value):
    scenario = {"num_periods": 8, "total_budget": 100.0, field: value}
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    with pytest.raises(mb.InputError) as e:
        mb.optimize(FITTED, scenario=path, backend="cpu")
    assert str(e.value) == cli_error("optimize", "--model", str(FITTED), "--scenario", str(path))


def test_arguments_are_named_in_errors(idata):
    with pytest.raises(mb.InputError, match=r"^mmm_budget.optimize: budget = -5: expected a finite number >= 0$"):
        mb.optimize(idata, budget=-5, periods=8)
    with pytest.raises(mb.InputError, match=r"^mmm_budget.optimize: bounds\[0\].select.channel = \"nope\""):
        mb.optimize(idata, budget=5, periods=8, bounds={"nope": (0, 1)})
    with pytest.raises(mb.InputError, match=r"^mmm_budget.optimize: missing periods"):
        mb.optimize(idata, budget=5)
    with pytest.raises(mb.InputError, match=r"backend = \"tpu\""):
        mb.optimize(idata, budget=5, periods=8, backend="tpu")
    with pytest.raises(mb.InputError, match=r"^allocation: "):
        mb.evaluate(idata, {"nope": 3.0}, budget=5, periods=8, backend="cpu")
    # A key of coordinates names every dim, then the channel, in bounds, history and
    # allocations alike.
    for kwargs in ({"bounds": {("tv",): (0, 1)}}, {"history": {("north", "tv", "x"): [1.0]}}):
        with pytest.raises(TypeError, match=r"key .*: expected coordinates along \['geo', 'channel'\]"):
            mb.optimize(idata, budget=5, periods=8, **kwargs)
    with pytest.raises(TypeError, match=r"^allocation key"):
        mb.evaluate(idata, {("tv",): 3.0}, budget=5, periods=8, backend="cpu")
    with pytest.raises(mb.InputError, match=r"^mmm_budget.optimize: options.max_iter = -1"):
        mb.optimize(idata, budget=5, periods=8, max_iter=-1)
    with pytest.raises(FileNotFoundError):
        mb.optimize(idata, scenario="/no/such/scenario.json")
    with pytest.raises(mb.InputError, match=r"^/no/such/model.nc: "):
        mb.Model("/no/such/model.nc")
