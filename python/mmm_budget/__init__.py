"""mmm_budget: split a marketing budget across channels (and geos, …) using the
posterior of a fitted PyMC-Marketing model, exactly and fast.

>>> import mmm_budget
>>> model = mmm_budget.Model.demo(channels=3, geos=2, draws=200)
>>> result = mmm_budget.optimize(model, budget=1000.0, periods=8, backend="cpu")
>>> result.status
'solved'
>>> round(float(result.allocation.sum()), 6)
1000.0

Budgets are per period (PyMC-Marketing's convention); results show them per period
and over the window. Errors are the exceptions of :mod:`mmm_budget.errors`, with the
command line's one-line messages.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import _native
from ._model import Model, as_model, inference_parts
from ._scenario import scenario_json, select_of
from .errors import DeviceError, InfeasibleError, InputError, MmmBudgetError, SolverError
from .results import CurveResult, EvaluateResult, OptimizeResult, _Cells

__all__ = [
    "Model",
    "load_model",
    "optimize",
    "evaluate",
    "curve",
    "OptimizeResult",
    "EvaluateResult",
    "CurveResult",
    "MmmBudgetError",
    "InputError",
    "InfeasibleError",
    "DeviceError",
    "SolverError",
    "inference_parts",
]


def load_model(source: Any) -> Model:
    """Loads a model once, for many calls: an ``arviz.InferenceData`` or
    ``xarray.DataTree`` from PyMC-Marketing (in memory), a PyMC-Marketing ``MMM``, a
    saved ``.nc``, a case folder or a ``model.json``."""
    return Model(source)


def _cells(model: Model) -> _Cells:
    return _Cells(model.dims, model.channels)


def _prepared(model: Any, function: str, kwargs: dict) -> tuple[Model, str, str, list]:
    m = as_model(model)
    text, context, renames = scenario_json(m, function, **kwargs)
    fields = json.loads(text)
    for field, arg, what in (
        ("num_periods", "periods", "the periods N of the budget window"),
        ("total_budget", "budget", "the total budget per period"),
    ):
        if field not in fields:
            raise InputError(
                f"{context}: missing {arg}: expected {what} (or scenario=FILE): "
                f"{m.source} holds no budget scenario"
            )
    return m, text, context, renames


def _gpu_adapter(gpu_adapter: int | Sequence[int] | None) -> list[int]:
    """The adapters: one index, several (the draws split over them), or
    ``MMM_GPU_ADAPTER`` ("0" or "0,1")."""
    if gpu_adapter is None:
        env = os.environ.get("MMM_GPU_ADAPTER", "").strip()
        return [int(v) for v in env.split(",")] if env else []
    if isinstance(gpu_adapter, int):
        return [gpu_adapter]
    return [int(v) for v in gpu_adapter]


def optimize(
    model: Any,
    *,
    budget: float | None = None,
    periods: int | None = None,
    bounds: Any = None,
    constraints: Iterable[str] | None = None,
    objective: str | None = None,
    history: Any = None,
    decision: Any = None,
    scenario: Any = None,
    backend: str = "auto",
    gpu_adapter: int | Sequence[int] | None = None,
    **options: Any,
) -> OptimizeResult:
    """Optimizes the allocation of ``budget`` (per period) over ``periods`` periods.

    ``model``: a :class:`Model` or anything :func:`load_model` takes. ``bounds``:
    ``{channel: (min, max)}``, ``{(geo, …, channel): (min, max)}`` (per period, either
    may be None) or scenario.json's rules. ``constraints``: strings as in
    scenario.json (``"tv + radio <= 500"``, ``"mean_response >= 5000"``,
    ``"cvar(0.9) >= 4000"``, ``"roi >= 2.5"``). ``objective``: ``"maximize mean"``
    (the default), ``"maximize cvar(0.9)"``, ``"maximize mean - 0.5 * std"``,
    ``"minimize spend"``, …. ``history``: the spend before the window (carry-in),
    ``{channel: [l_max spends, oldest first]}`` or scenario.json's rules.
    ``decision``: a plan over time, ``"per_period"`` or a group size ``k`` (a spend
    for every k periods; ``flighting`` and ``period_sums`` through ``scenario``); the
    result's ``plan`` holds each cell's spend in each period. ``scenario``: a scenario.json path or dict whose fields
    the arguments replace (a case folder's own scenario when None). ``backend``:
    "auto", "cpu" or "gpu"; ``gpu_adapter``: the adapter's index (hardware by PCI bus
    id), or a list of them (the draws split over those devices); ``MMM_GPU_ADAPTER``
    ("0" or "0,1") when None. Other keywords are the solver's options
    (``max_iter``, ``time_limit``, ``gtol``, ``ctol``, ``ftol``, ``xtol``,
    ``hessian``, ``starts``, ``verbose``).

    Raises :class:`InputError` (a ``ValueError``) for bad input,
    :class:`InfeasibleError` when no allocation satisfies the constraints. The GIL is
    released while solving; Ctrl-C stops the solve at its next iteration
    (``KeyboardInterrupt``).
    """
    m, text, context, renames = _prepared(
        model,
        "optimize",
        dict(
            scenario=scenario,
            budget=budget,
            periods=periods,
            bounds=bounds,
            constraints=constraints,
            objective=objective,
            history=history,
            decision=decision,
            options=options,
        ),
    )
    raw = _native.optimize(m.native, text, context, renames, backend, _gpu_adapter(gpu_adapter))
    result = OptimizeResult(json.loads(raw), _cells(m))
    if result.status == "infeasible":
        raise InfeasibleError(f"{context}: infeasible: {result.message}", result)
    return result


def _allocation_json(m: Model, allocation: Any) -> str | None:
    """An allocation as an allocation file's JSON: a DataArray over the model's dims
    (or some of them), a ``{channel: budget}`` or ``{(geo, …, channel): budget}``
    mapping, or allocation-file entries."""
    if allocation is None:
        return None
    entries = []
    if hasattr(allocation, "dims") and hasattr(allocation, "to_series"):
        series = allocation.to_series()
        dims = list(allocation.dims)
        for key, value in series.items():
            key = key if isinstance(key, tuple) else (key,)
            entry = {d: str(k) for d, k in zip(dims, key)}
            entry["budget"] = float(value)
            entries.append(entry)
    elif isinstance(allocation, Mapping):
        for key, value in allocation.items():
            entries.append({**select_of(m, key, "allocation"), "budget": float(value)})
    else:
        entries = list(allocation)
    return json.dumps({"allocation": entries})


def evaluate(
    model: Any,
    allocation: Any = None,
    *,
    budget: float | None = None,
    periods: int | None = None,
    objective: str | None = None,
    history: Any = None,
    scenario: Any = None,
    backend: str = "auto",
    gpu_adapter: int | Sequence[int] | None = None,
) -> EvaluateResult:
    """Evaluates an allocation (per period; None: the budget spread evenly): the
    objective, the mean response and its quantiles, each cell's contribution, ROI and
    marginal ROI, and every draw's response."""
    m, text, context, renames = _prepared(
        model,
        "evaluate",
        dict(scenario=scenario, budget=budget, periods=periods, objective=objective, history=history),
    )
    raw, responses = _native.evaluate(
        m.native, text, context, renames, _allocation_json(m, allocation), backend, _gpu_adapter(gpu_adapter)
    )
    return EvaluateResult(json.loads(raw), _cells(m), responses)


def curve(
    model: Any,
    budgets: Sequence[float],
    *,
    periods: int | None = None,
    bounds: Any = None,
    constraints: Iterable[str] | None = None,
    objective: str | None = None,
    scenario: Any = None,
    backend: str = "auto",
    gpu_adapter: int | Sequence[int] | None = None,
    **options: Any,
) -> CurveResult:
    """The efficient frontier: the optimum at each budget of ``budgets`` (per period),
    each solve started from the last. Ctrl-C stops it after the current budget."""
    budgets = [float(b) for b in np.asarray(budgets, dtype=float).ravel()]
    m, text, context, renames = _prepared(
        model,
        "curve",
        dict(
            scenario=scenario,
            budget=budgets[0] if budgets else None,
            periods=periods,
            bounds=bounds,
            constraints=constraints,
            objective=objective,
            options=options,
        ),
    )
    raw = _native.curve(m.native, text, context, budgets, renames, backend, _gpu_adapter(gpu_adapter))
    return CurveResult(json.loads(raw), _cells(m))
