"""Many scenarios on a local Ray: the serial results exactly, in order; a task whose
worker is killed runs again and the batch completes."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import mmm_budget as mb
import mmm_budget.ray as mray

from conftest import FITTED


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def same(a: mb.OptimizeResult, b: mb.OptimizeResult) -> None:
    assert a.status == b.status
    assert a.iterations == b.iterations and a.evaluations == b.evaluations
    assert a.utility == b.utility
    assert (a.allocation.values == b.allocation.values).all()
    assert a.multipliers == b.multipliers


def scenarios():
    objectives = ["maximize mean", "maximize cvar(0.9)", "maximize mean - 0.5 * std", "maximize quantile(0.1)"]
    return [{"budget": 40.0 + 10.0 * k, "periods": 8, "objective": objectives[k % 4]} for k in range(20)]


def test_twenty_scenarios_give_the_serial_results(local_ray, idata):
    batch = mray.optimize_many(scenarios(), model=idata, backend="cpu")
    assert len(batch) == 20
    for s, r in zip(scenarios(), batch):
        same(r, mb.optimize(idata, backend="cpu", **s))
    # A saved model by path travels as its contents.
    by_path = mray.optimize_many(scenarios()[:4], model=FITTED, backend="cpu")
    for a, b in zip(by_path, batch[:4]):
        same(a, b)


def test_refused_and_infeasible_scenarios(local_ray, idata):
    many = [{"budget": 50.0, "periods": 8}, {"budget": -1.0, "periods": 8},
            {"budget": 50.0, "periods": 8, "constraints": ["sum(channel=tv) >= 1000"]}]
    out = mray.optimize_many(many, model=idata, backend="cpu", return_exceptions=True)
    assert isinstance(out[0], mb.OptimizeResult) and out[0].success
    assert isinstance(out[1], mb.InputError) and "budget = -1" in str(out[1])
    assert isinstance(out[2], mb.InfeasibleError) and out[2].result.status == "infeasible"
    with pytest.raises(mb.InputError):
        mray.optimize_many(many[:2], model=idata, backend="cpu")
    # A model refused where it is loaded (the workers) raises the same error here.
    bad = idata.copy()
    bad.posterior["saturation_lam"] = bad.posterior["saturation_lam"].astype("int64")
    with pytest.raises(mb.InputError, match="saturation_lam dtype = int64"):
        mray.optimize_many(many[:1], model=bad, backend="cpu")


def ray_tasks() -> list[int]:
    """The pids of processes running an optimize task (Ray titles them `ray::<task>`)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_optimize_task"):
                pids.append(int(d.name))
    return pids


def test_a_killed_task_is_retried_and_the_batch_completes(local_ray):
    model = mb.Model.demo(channels=4, geos=2, draws=60_000)
    work = [{"budget": 300.0 + 20.0 * k, "periods": 12} for k in range(6)]
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in ray_tasks():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    batch = mray.optimize_many(work, model=model, backend="cpu", max_retries=3)
    t.join()
    assert killed, "no running task was found to kill"
    for s, r in zip(work, batch):
        same(r, mb.optimize(model, backend="cpu", **s))


def test_a_curve_split_in_pieces_is_the_curve(local_ray, idata):
    budgets = [40.0, 60.0, 80.0, 100.0, 120.0, 140.0]
    whole = mray.curve(idata, budgets, pieces=3, periods=8, backend="cpu")
    assert [p["budget"] for p in whole.points] == budgets
    serial = mb.curve(idata, budgets, periods=8, backend="cpu")
    for a, b in zip(whole.points, serial.points):
        assert a["mean_response"] == pytest.approx(b["mean_response"], rel=1e-9)
    assert pickle.loads(pickle.dumps(whole)) == whole
