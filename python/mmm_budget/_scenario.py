"""Scenarios from keyword arguments: the JSON of a ``scenario.json``, so that Python and
the command line read one format and refuse it with the same messages."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from ._model import Model

def select_of(model: Model, key: Any, what: str) -> dict:
    """A scenario selector from a mapping's key: a channel name, or a tuple of
    coordinates along the model's dims, then the channel."""
    if not isinstance(key, tuple):
        return {"channel": str(key)}
    names = [d for d, _ in model.dims] + ["channel"]
    if len(key) != len(names):
        raise TypeError(f"{what} key {key!r}: expected coordinates along {names}")
    return dict(zip(names, (str(k) for k in key)))


def bound_rules(model: Model, bounds: Any) -> list[dict]:
    """Bounds as scenario rules. ``bounds`` is a list of rules as in scenario.json
    (``{"select": {...}, "min": ..., "max": ...}``), or a mapping from a channel name,
    or a tuple of coordinates (the model's dims, then the channel), to ``(min, max)``
    per period (either may be None)."""
    if isinstance(bounds, Mapping):
        return [
            {"select": select_of(model, key, "bounds"), "min": lo, "max": hi}
            for key, (lo, hi) in bounds.items()
        ]
    return list(bounds)


def history_rules(model: Model, history: Any) -> list[dict]:
    """Carry-in as scenario rules: scenario.json's ``[{"select": {...}, "spend":
    [...]}]``, or a mapping from a channel name (or a tuple of coordinates, the model's
    dims then the channel) to the spend of each of the l_max periods before the
    window, oldest first."""
    if isinstance(history, Mapping):
        return [
            {"select": select_of(model, key, "history"), "spend": [float(v) for v in spend]}
            for key, spend in history.items()
        ]
    return list(history)


def scenario_json(
    model: Model,
    function: str,
    *,
    scenario: Any = None,
    budget: float | None = None,
    periods: int | None = None,
    bounds: Any = None,
    constraints: Iterable[str] | None = None,
    objective: str | None = None,
    history: Any = None,
    decision: Any = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[str, str, list[tuple[str, str]]]:
    """The scenario's JSON text, the context errors name (the scenario file, or
    ``mmm_budget.<function>``) and the fields to rename after arguments.

    ``scenario``: None (the model's own scenario, or an empty one), a path to a
    scenario.json, or a dict of its fields. Keyword arguments replace the scenario's
    fields (``options`` are merged into its ``options``).
    """
    context = f"mmm_budget.{function}"
    if scenario is None:
        base = dict(model.scenario or {})
    elif isinstance(scenario, (str, os.PathLike)):
        with open(scenario, encoding="utf-8") as f:
            text = f.read()
        context = os.fspath(scenario)
        overrides = [budget, periods, bounds, constraints, objective, history, decision, options]
        if all(v is None for v in overrides):
            return text, context, []
        base = json.loads(text)
    elif isinstance(scenario, Mapping):
        base = dict(scenario)
    else:
        raise TypeError(f"scenario: {type(scenario).__name__}: expected None, a path or a dict")
    renames = []
    if budget is not None:
        base["total_budget"] = budget
        renames.append(("total_budget", "budget"))
    if periods is not None:
        base["num_periods"] = periods
        renames.append(("num_periods", "periods"))
    if bounds is not None:
        base["bounds"] = bound_rules(model, bounds)
    if constraints is not None:
        if isinstance(constraints, str):
            constraints = [constraints]
        base["constraints"] = list(constraints)
    if decision is not None:
        # "per_period", "constant", {"every": k}, or k itself.
        base["decision"] = {"every": decision} if isinstance(decision, int) and not isinstance(decision, bool) else decision
    if objective is not None:
        base.pop("utility", None)
        base["objective"] = objective
    if history is not None:
        base["history"] = history_rules(model, history)
    if options:
        merged = dict(base.get("options") or {})
        merged.update(options)
        base["options"] = merged
    return json.dumps(base), context, renames
