"""optimize, evaluate and curve from Python against the command line: the same
numbers from the same model, whether it comes as a path, a case folder or an
InferenceData in memory."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import xarray as xr

import mmm_budget as mb

from conftest import FITTED, TWIN, run_cli

BUDGET, PERIODS = 100.0, 8


def cli_optimum(tmp_path, *extra):
    code, data, err = run_cli(
        "optimize", "--model", str(FITTED), "--budget", str(BUDGET), "--periods", str(PERIODS),
        "--backend", "cpu", *extra, out=tmp_path / "cli.json",
    )
    assert code == 0, err
    return data


def by_cell(result: mb.OptimizeResult) -> dict:
    return {(c["geo"], c["channel"]): c["budget"] for c in result.raw["cells"]}


@pytest.mark.parametrize("source", ["path", "inference_data", "case_folder", "data_tree"])
def test_the_same_optimum_as_the_command_line(tmp_path, idata, source):
    cli = cli_optimum(tmp_path)
    model = {
        "path": FITTED,
        "inference_data": idata,
        "case_folder": TWIN,
        "data_tree": xr.open_datatree(FITTED, engine="h5netcdf"),
    }[source]
    r = mb.optimize(model, budget=BUDGET, periods=PERIODS, backend="cpu")
    assert r.status == "solved" and r.success
    assert abs(r.utility - cli["utility"]) <= 1e-12 * abs(cli["utility"])
    want = {(c["geo"], c["channel"]): c["budget"] for c in cli["cells"]}
    got = by_cell(r)
    assert want.keys() == got.keys()
    for k in want:
        assert abs(got[k] - want[k]) <= 1e-12 * BUDGET, k
    assert r.iterations == cli["iterations"]
    assert r.multipliers["budget"] == pytest.approx(cli["multipliers"][0]["value"], rel=1e-12)


def test_the_allocation_is_a_data_array_over_the_models_dims(idata):
    r = mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    a = r.allocation
    assert a.dims == ("geo", "channel")
    assert list(a.coords["channel"].values) == list(idata.posterior.channel.values)
    assert list(a.coords["geo"].values) == list(idata.posterior.geo.values)
    assert a.attrs["units"] == "per period"
    assert float(a.sum()) == pytest.approx(BUDGET, rel=1e-12)
    assert float(r.allocation_window.sum()) == pytest.approx(BUDGET * PERIODS, rel=1e-12)
    assert r.total_budget_window == BUDGET * PERIODS
    for (geo, ch), v in by_cell(r).items():
        assert float(a.sel(geo=geo, channel=ch)) == v
    df = r.to_pandas()
    assert list(df.columns) == [
        "budget_per_period", "budget_over_window", "mean_contribution_over_window", "roi", "marginal_roi",
    ]
    assert df["budget_over_window"].sum() == pytest.approx(BUDGET * PERIODS, rel=1e-12)
    assert set(r.response_quantiles) == {0.05, 0.5, 0.95}
    assert r.response_quantiles[0.05] <= r.mean_response <= r.response_quantiles[0.95] * 1.5
    assert r.start_utility < r.utility
    t = r.trace
    assert len(t) == r.iterations and t["utility"].iloc[-1] == pytest.approx(r.utility, rel=1e-9)
    # Every spending cell at the common marginal return (the budget's multiplier / N).
    spend = a.values > 1e-6 * BUDGET
    mroi = r.marginal_roi.values
    assert np.allclose(mroi[spend], r.multipliers["budget"] / PERIODS, rtol=1e-5)


def test_bounds_constraints_and_objectives_reach_the_solver(tmp_path, idata):
    ch = list(idata.posterior.channel.values)
    geo = list(idata.posterior.geo.values)
    r = mb.optimize(
        idata, budget=BUDGET, periods=PERIODS, backend="cpu",
        bounds={ch[0]: (5.0, 10.0), (geo[1], ch[1]): (None, 3.0)},
        constraints=[f"sum(channel={ch[2]}) >= 20"],
        objective="maximize cvar(0.9)",
    )
    a = r.allocation
    assert r.status == "solved"
    assert (a.sel(channel=ch[0]).values >= 5.0 - 1e-7).all() and (a.sel(channel=ch[0]).values <= 10.0 + 1e-7).all()
    assert float(a.sel(geo=geo[1], channel=ch[1])) <= 3.0 + 1e-7
    assert float(a.sel(channel=ch[2]).sum()) >= 20.0 - 1e-6
    assert r.raw["utility_kind"].startswith("cvar")
    # The same scenario as a file on the command line: the same optimum.
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        '{"num_periods": %d, "total_budget": %r, "bounds": [{"select": {"channel": "%s"}, "min": 5.0, "max": 10.0},'
        ' {"select": {"geo": "%s", "channel": "%s"}, "max": 3.0}], "constraints": ["sum(channel=%s) >= 20"],'
        ' "objective": "maximize cvar(0.9)"}' % (PERIODS, BUDGET, ch[0], geo[1], ch[1], ch[2])
    )
    code, cli, err = run_cli("optimize", "--model", str(FITTED), "--scenario", str(scenario), "--backend", "cpu", out=tmp_path / "o.json")
    assert code == 0, err
    assert r.utility == pytest.approx(cli["utility"], rel=1e-12)
    from_file = mb.optimize(idata, scenario=scenario, backend="cpu")
    assert from_file.utility == r.utility


def test_infeasible_raises_naming_the_constraint(idata):
    ch = list(idata.posterior.channel.values)
    with pytest.raises(mb.InfeasibleError) as e:
        mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu", constraints=[f"sum(channel={ch[0]}) >= {2 * BUDGET}"])
    assert "infeasible" in str(e.value) and ch[0] in str(e.value)
    assert e.value.result.status == "infeasible" and e.value.result.allocation is None
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == str(e.value) and again.result == e.value.result


def test_results_pickle(idata):
    r = mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    back = pickle.loads(pickle.dumps(r))
    assert back == r
    xr.testing.assert_identical(back.allocation, r.allocation)
    e = mb.evaluate(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    assert pickle.loads(pickle.dumps(e)) == e
    c = mb.curve(idata, [50.0, 100.0], periods=PERIODS, backend="cpu")
    assert pickle.loads(pickle.dumps(c)) == c
    m = mb.Model(idata)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.channels == m.channels and m2.num_draws == m.num_draws


def test_evaluate_matches_the_command_line(tmp_path, idata):
    code, cli, err = run_cli(
        "evaluate", "--model", str(FITTED), "--budget", str(BUDGET), "--periods", str(PERIODS),
        "--backend", "cpu", out=tmp_path / "e.json",
    )
    assert code == 0, err
    e = mb.evaluate(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    assert e.utility == pytest.approx(cli["utility"], rel=1e-12)
    assert e.responses.shape == (idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"],)
    assert e.responses.mean() == pytest.approx(e.mean_response, rel=1e-12)
    # An allocation as a DataArray: the optimum evaluated gives the optimum's utility.
    r = mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    at = mb.evaluate(idata, r.allocation, budget=BUDGET, periods=PERIODS, backend="cpu")
    assert at.utility == pytest.approx(r.utility, rel=1e-12)
    assert not at.warnings


def test_curve_matches_the_command_line_frontier(tmp_path, idata):
    code, cli, err = run_cli(
        "frontier", "--model", str(FITTED), "--periods", str(PERIODS), "--budget", "100",
        "--budgets", "50..150", "--steps", "3", "--backend", "cpu", out=tmp_path / "f.json",
    )
    assert code == 0, err
    c = mb.curve(idata, [50.0, 100.0, 150.0], periods=PERIODS, backend="cpu")
    df = c.to_pandas()
    assert list(df.index) == [50.0, 100.0, 150.0]
    for p, q in zip(cli["points"], c.points):
        assert q["mean_response"] == pytest.approx(p["mean_response"], rel=1e-12)
    alloc = c.allocation
    assert alloc.dims == ("budget", "geo", "channel")
    assert np.allclose(alloc.sum(["geo", "channel"]).values, [50.0, 100.0, 150.0], rtol=1e-9)
    assert (np.diff(df["mean_response"].values) > 0).all()


def test_demo_and_model_reuse():
    m = mb.Model.demo(channels=3, geos=2, draws=200)
    assert m.scenario["num_periods"] > 0
    r1 = mb.optimize(m, backend="cpu")  # the demo's own scenario
    r2 = mb.optimize(m, budget=m.scenario["total_budget"], backend="cpu")
    assert r1 == r2 or r1.utility == r2.utility
    assert math.isfinite(r1.utility)


def test_the_gpu_and_draws_split_over_two_devices():
    """backend="gpu" agrees with the CPU; gpu_adapter=[0, 0] splits the draws over two
    logical devices and agrees with one (where wgpu finds an adapter: lavapipe in CI,
    where MMM_REQUIRE_GPU=1 makes a missing one fail)."""
    import os

    m = mb.Model.demo(channels=3, geos=2, draws=400)
    try:
        one = mb.optimize(m, backend="gpu")
    except mb.DeviceError:
        if os.environ.get("MMM_REQUIRE_GPU") == "1":
            raise
        pytest.skip("no GPU adapter")
    cpu = mb.optimize(m, backend="cpu")
    two = mb.optimize(m, backend="gpu", gpu_adapter=[0, 0])
    assert two.backend.startswith("sharded (200 draws on gpu")
    assert two.utility == pytest.approx(one.utility, rel=1e-6)
    assert one.utility == pytest.approx(cpu.utility, rel=1e-6)
    with pytest.raises(mb.DeviceError, match="no adapter 99"):
        mb.optimize(m, backend="gpu", gpu_adapter=99)


def test_carry_in_from_python_matches_a_scenario_file(tmp_path, idata):
    """history= (the spend before the window) gives what the same scenario file gives
    on the command line; the response carried in is reported."""
    import json as _json

    ch = list(idata.posterior.channel.values)
    l_max = _json.loads(idata.attrs["adstock"])["l_max"]
    spend = [5.0 + i for i in range(l_max)]
    r = mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu", history={ch[0]: spend})
    plain = mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu")
    assert r.carry_in_response > 0 and plain.carry_in_response is None
    assert r.mean_response > plain.mean_response
    path = tmp_path / "scenario.json"
    path.write_text(_json.dumps({"num_periods": PERIODS, "total_budget": BUDGET,
                                 "history": [{"select": {"channel": ch[0]}, "spend": spend}]}))
    code, cli, err = run_cli("optimize", "--model", str(FITTED), "--scenario", str(path), "--backend", "cpu",
                             out=tmp_path / "o.json")
    assert code == 0, err
    assert r.utility == pytest.approx(cli["utility"], rel=1e-12)
    assert r.carry_in_response == pytest.approx(cli["carry_in_response"], rel=1e-12)
    with pytest.raises(mb.InputError, match=r"history\[0\].spend"):
        mb.optimize(idata, budget=BUDGET, periods=PERIODS, history={ch[0]: [1.0]})


def test_a_plan_over_time_matches_the_command_line(tmp_path, idata):
    ch = list(idata.posterior.channel.values)
    r = mb.optimize(
        idata, budget=BUDGET, periods=PERIODS, backend="cpu", decision=2,
        scenario={"flighting": [{"max_change": 5.0}],
                  "period_sums": [{"select": {"channel": ch[0]}, "periods": [1, 4], "max": 30.0}]},
    )
    assert r.status == "solved", r.message
    assert r.groups == [(1, 2), (3, 4), (5, 6), (7, 8)]
    plan = r.plan
    assert plan.dims == ("geo", "channel", "period")
    assert list(plan.coords["period"].values) == list(range(1, PERIODS + 1))
    # The window's money is N · B; each cell's average per period is the allocation.
    assert float(plan.sum()) == pytest.approx(BUDGET * PERIODS, rel=1e-9)
    xr.testing.assert_allclose(plan.mean("period").rename("budget"), r.allocation, rtol=1e-9)
    assert float(plan.sel(channel=ch[0], period=[1, 2, 3, 4]).sum()) <= 30.0 * (1 + 1e-7)
    steps = np.abs(np.diff(plan.values, axis=-1))
    assert steps.max() <= 5.0 * (1 + 1e-7)
    # The same scenario as a file on the command line: the same plan.
    scenario = tmp_path / "plan.json"
    scenario.write_text(
        '{"num_periods": %d, "total_budget": %r, "decision": {"every": 2}, "flighting": [{"max_change": 5.0}],'
        ' "period_sums": [{"select": {"channel": "%s"}, "periods": [1, 4], "max": 30.0}]}' % (PERIODS, BUDGET, ch[0])
    )
    code, cli, err = run_cli("optimize", "--model", str(FITTED), "--scenario", str(scenario), "--backend", "cpu", out=tmp_path / "p.json")
    assert code == 0, err
    assert r.utility == pytest.approx(cli["utility"], rel=1e-12)
    for c in cli["cells"]:
        got = plan.sel(geo=c["geo"], channel=c["channel"]).values
        assert np.allclose(got, c["spend_per_period"], rtol=0, atol=1e-12 * BUDGET)
    assert pickle.loads(pickle.dumps(r)) == r
    # A constant decision has no plan.
    assert mb.optimize(idata, budget=BUDGET, periods=PERIODS, backend="cpu").plan is None
