"""Many optimizations on Ray: each scenario a Ray task, the model shipped once.

>>> import ray, mmm_budget, mmm_budget.ray            # doctest: +SKIP
>>> ray.init()                                         # or ray.init(address="auto") on a cluster
>>> scenarios = [{"budget": b, "periods": 8} for b in (500, 1000, 1500)]
>>> results = mmm_budget.ray.optimize_many(scenarios, model=idata)

The model goes into Ray's object store once (``ray.put``); each worker loads it into the
native library once and keeps it for the batch's later tasks (numpy arrays come out of
the object store without a copy). A task whose worker dies is run again by Ray
(``max_retries``); results come back in the scenarios' order and pickle.

GPU tasks (``num_gpus > 0``) ask Ray for GPUs and use the adapters Ray assigned (its
GPU ids as adapter indices: hardware adapters by PCI bus id, which is CUDA's order
with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or identical GPUs; with ``num_gpus`` ≥ 2 the
task's draws are split over its GPUs).
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import ray

import mmm_budget

from ._model import Model
from .results import CurveResult

#: Native models a worker keeps, newest last: (batch token) → Model.
_LOADED: "OrderedDict[str, Model]" = OrderedDict()
_KEEP = 2


def _loaded(token: str, model: Model) -> Model:
    """The worker's loaded copy of the batch's model."""
    if token in _LOADED:
        _LOADED.move_to_end(token)
        return _LOADED[token]
    model.native  # load it now, once for this worker
    _LOADED[token] = model
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return model


def _adapter(num_gpus: float) -> list[int] | None:
    """The GPUs Ray assigned to this task (several: the draws split over them)."""
    if num_gpus <= 0:
        return None
    ids = ray.get_gpu_ids()
    return [int(i) for i in ids] if ids else None


@ray.remote
def _optimize_task(model: Model, token: str, kwargs: Mapping[str, Any], num_gpus: float, return_exceptions: bool):
    m = _loaded(token, model)
    args = dict(kwargs)
    adapter = _adapter(num_gpus)
    if adapter is not None:
        args.setdefault("gpu_adapter", adapter)
    try:
        return mmm_budget.optimize(m, **args)
    except mmm_budget.MmmBudgetError as e:
        if return_exceptions:
            return e
        raise


@ray.remote
def _curve_task(model: Model, token: str, budgets: Sequence[float], kwargs: Mapping[str, Any], num_gpus: float):
    m = _loaded(token, model)
    args = dict(kwargs)
    adapter = _adapter(num_gpus)
    if adapter is not None:
        args.setdefault("gpu_adapter", adapter)
    return mmm_budget.curve(m, budgets, **args)


def _unloaded(source: Any, context: str | None) -> Model:
    """A Model that is loaded where it is used (the workers), not here."""
    m = Model.__new__(Model)
    m.__setstate__({"source": source, "context": context})
    return m


def _shippable(model: Any) -> Model:
    """The model as it travels, not loaded on the driver (the workers load it, and
    raise what loading raises): a saved .nc is read into memory here (an
    ``xarray.DataTree``), so that workers on other machines need no copy of the file;
    a case folder travels as its path (it must be on every node)."""
    if isinstance(model, Model):
        return model
    if hasattr(model, "idata") and not hasattr(model, "posterior"):
        model = model.idata  # a PyMC-Marketing MMM
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model) and not os.fspath(model).endswith(".json"):
        import xarray as xr

        tree = xr.open_datatree(model, engine="h5netcdf").load()
        return _unloaded(tree, os.fspath(model))
    return _unloaded(model, None)


def optimize_many(
    scenarios: Sequence[Mapping[str, Any]],
    model: Any,
    *,
    num_gpus: float = 0,
    num_cpus: float = 1,
    max_retries: int = 3,
    return_exceptions: bool = False,
    **common: Any,
) -> list:
    """Runs :func:`mmm_budget.optimize` for each scenario (a dict of its keyword
    arguments, over ``common``) as a Ray task; returns the results in order.

    ``num_gpus``/``num_cpus``: what each task asks Ray for (with ``num_gpus`` > 0 the
    backend defaults to "gpu" on the assigned adapter). ``max_retries``: how often Ray
    runs a task again whose worker died. ``return_exceptions``: a scenario refused or
    infeasible gives its exception in its place, instead of raising the first.
    """
    if not ray.is_initialized():
        ray.init()
    ref = ray.put(_shippable(model))
    token = uuid.uuid4().hex
    if num_gpus > 0:
        common = {"backend": "gpu", **common}
    task = _optimize_task.options(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=max_retries)
    refs = [task.remote(ref, token, {**common, **s}, num_gpus, return_exceptions) for s in scenarios]
    return ray.get(refs)


def curve(
    model: Any,
    budgets: Sequence[float],
    *,
    pieces: int = 4,
    num_gpus: float = 0,
    num_cpus: float = 1,
    max_retries: int = 3,
    **kwargs: Any,
) -> CurveResult:
    """:func:`mmm_budget.curve` split into ``pieces`` runs of neighbouring budgets, each a
    Ray task (each run warm-starts along its own budgets); one result in budget order."""
    if not ray.is_initialized():
        ray.init()
    budgets = [float(b) for b in budgets]
    if not budgets:
        raise mmm_budget.InputError("mmm_budget.ray.curve: budgets = []: expected at least one budget")
    pieces = max(1, min(int(pieces), len(budgets)))
    size = -(-len(budgets) // pieces)
    chunks = [budgets[i : i + size] for i in range(0, len(budgets), size)]
    ref = ray.put(_shippable(model))
    token = uuid.uuid4().hex
    if num_gpus > 0:
        kwargs = {"backend": "gpu", **kwargs}
    task = _curve_task.options(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=max_retries)
    parts = ray.get([task.remote(ref, token, c, kwargs, num_gpus) for c in chunks])
    raw = dict(parts[0].raw)
    raw["points"] = [p for part in parts for p in part.points]
    state = parts[0].__getstate__()
    state["raw"] = raw
    out = CurveResult.__new__(CurveResult)
    out.__setstate__(state)
    return out
