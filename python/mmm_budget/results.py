"""Results as xarray and pandas objects. Each result keeps the native JSON it was made
from (``raw``) and the model's coordinates, and pickles as those two: small, and the
same object again after Ray ships it."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

#: Budgets are per period (PyMC-Marketing's convention).
UNITS = {
    "budget": "per period",
    "budget_window": "over the window: num_periods × budget",
    "mean_contribution": "mean over draws of the response over the window and its carry-over",
    "roi": "mean_contribution / budget_window",
    "marginal_roi": "d mean_response / d budget_window",
}


def _number(v: Any) -> float:
    """A JSON number, or the strings "inf", "-inf", "nan", or null, as a float."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        return float(v)
    return float(v)


class _Cells:
    """The model's coordinates: allocations over ``(*dims, channel)``."""

    def __init__(self, dims: Sequence[tuple[str, Sequence[str]]], channels: Sequence[str]) -> None:
        self.dims = [(str(d), list(c)) for d, c in dims]
        self.channels = list(channels)

    @property
    def names(self) -> list[str]:
        return [d for d, _ in self.dims] + ["channel"]

    @property
    def coords(self) -> dict[str, list[str]]:
        c = {d: list(v) for d, v in self.dims}
        c["channel"] = list(self.channels)
        return c

    def grid(self, cells: Sequence[Mapping[str, str]], values: Sequence[float], fill: float, name: str, units: str):
        """A DataArray over the model's dims: ``values`` at ``cells``, ``fill``
        elsewhere (cells the scenario does not optimize)."""
        import xarray as xr

        coords = self.coords
        index = {d: {c: i for i, c in enumerate(v)} for d, v in coords.items()}
        shape = [len(coords[d]) for d in self.names]
        out = np.full(shape, fill, dtype=float)
        for cell, v in zip(cells, values):
            out[tuple(index[d][cell[d]] for d in self.names)] = v
        return xr.DataArray(out, coords=coords, dims=self.names, name=name, attrs={"units": units})

    def state(self) -> dict:
        return {"dims": self.dims, "channels": self.channels}


class _Result:
    """Shared by the results: the raw JSON and the model's cells; pickles as them."""

    def __init__(self, raw: Mapping[str, Any], cells: _Cells) -> None:
        self.raw = dict(raw)
        self._cells = cells
        self._build()

    def _build(self) -> None:  # pragma: no cover - overridden
        pass

    def __getstate__(self) -> dict:
        return {"raw": self.raw, "cells": self._cells.state()}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.raw = dict(state["raw"])
        self._cells = _Cells(state["cells"]["dims"], state["cells"]["channels"])
        self._build()

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self.raw == other.raw  # type: ignore[attr-defined]
            and self._cells.state() == other._cells.state()  # type: ignore[attr-defined]
        )

    def _cell_frame(self):
        """One row a cell of the report: the dims, then budgets and returns with units."""
        import pandas as pd

        rows = []
        for c in self.raw.get("cells", []):
            row = {d: c[d] for d in self._cells.names}
            row["budget_per_period"] = c["budget"]
            row["budget_over_window"] = c["budget_window"]
            row["mean_contribution_over_window"] = c["mean_contribution"]
            row["roi"] = _number(c["roi"])
            row["marginal_roi"] = _number(c["marginal_roi"])
            rows.append(row)
        return pd.DataFrame(rows).set_index(self._cells.names) if rows else pd.DataFrame()

    def _per_cell(self, key: str, name: str):
        cells = self.raw.get("cells", [])
        values = [_number(c[key]) for c in cells]
        return self._cells.grid(cells, values, math.nan, name, UNITS[key])


class OptimizeResult(_Result):
    """An optimization: the allocation over the model's dims (per period), the
    objective and the response at start and optimum, the multipliers, the trace.

    Attributes: ``status`` ("solved", "infeasible", "max_iterations", …), ``message``,
    ``success``; ``allocation`` and ``start_allocation`` (``xarray.DataArray`` over
    ``(*dims, channel)``, per period; cells the scenario does not optimize hold 0),
    ``allocation_window`` (over the window); ``utility``, ``mean_response``,
    ``response_quantiles`` ({0.05, 0.5, 0.95}), ``start_utility``,
    ``start_mean_response``; ``mean_contribution``, ``roi``, ``marginal_roi`` (per
    cell); ``multipliers`` ({constraint: d utility / d right-hand side, per period});
    ``trace`` (``pandas.DataFrame``, one row an iteration); ``iterations``,
    ``evaluations``, ``seconds``, ``backend``, ``kkt_residual``, ``violation``,
    ``warnings``, ``conflicting``; ``num_periods``, ``total_budget`` (per period),
    ``total_budget_window``; for a plan over time (``decision``), ``plan`` (the
    spend in each period) and ``groups``, ``allocation`` being each cell's spend per
    period averaged over the window.
    """

    def _build(self) -> None:
        r = self.raw
        self.status: str = r["status"]
        self.message: str = r["message"]
        self.success: bool = self.status == "solved"
        self.num_periods: int = r["num_periods"]
        self.total_budget: float = r["total_budget"]
        self.total_budget_window: float = self.total_budget * self.num_periods
        cells = r["optimized_cells"]
        if r["allocation"]:
            self.allocation = self._cells.grid(cells, r["allocation"], 0.0, "budget", UNITS["budget"])
            self.allocation_window = (self.allocation * self.num_periods).rename("budget_window")
            self.allocation_window.attrs["units"] = UNITS["budget_window"]
            self.start_allocation = self._cells.grid(cells, r["start_allocation"], 0.0, "start_budget", UNITS["budget"])
        else:
            self.allocation = self.allocation_window = self.start_allocation = None
        self.utility: float = _number(r.get("utility", r["final_utility"]))
        self.mean_response: float = _number(r.get("mean_response", r["final_mean_response"]))
        q = r.get("response_quantiles", {})
        self.response_quantiles: dict[float, float] = {float(k): _number(v) for k, v in q.items()}
        start = r.get("start", {})
        self.start_utility: float = _number(start.get("utility"))
        self.start_mean_response: float = _number(start.get("mean_response"))
        self.multipliers: dict[str, float] = {m["constraint"]: _number(m["value"]) for m in r["multipliers"]}
        self.iterations: int = r["iterations"]
        self.evaluations: int = r["evaluations"]
        self.seconds: float = r["seconds"]
        self.backend: str = r["backend"]
        self.kkt_residual: float = _number(r["kkt_residual"])
        self.violation: float = r["violation"]
        self.warnings: list[str] = list(r.get("warnings", []))
        self.conflicting: list[str] = list(r.get("conflicting", []))
        self.least_spend = r.get("least_spend")
        #: The part of the mean response the spend before the window brings alone
        #: (None without ``history``).
        self.carry_in_response = r.get("carry_in_response")
        #: A plan over time (``decision``): the groups of periods, 1-based
        #: (first, last); None for a constant decision.
        self.groups = [tuple(g) for g in r["groups"]] if "groups" in r else None

    @property
    def plan(self):
        """A plan over time: each cell's spend in each period (money per period), an
        ``xarray.DataArray`` over ``(*dims, channel, period)`` with periods 1..N;
        None for a constant decision (``allocation`` is then the spend of every
        period)."""
        spend = self.raw.get("spend_per_period")
        if not spend:
            return None
        import xarray as xr

        cells = self.raw["optimized_cells"]
        periods = [
            self._cells.grid(cells, [row[t] for row in spend], 0.0, "spend", UNITS["budget"])
            for t in range(self.num_periods)
        ]
        out = xr.concat(periods, dim="period").assign_coords(period=list(range(1, self.num_periods + 1)))
        out = out.transpose(*self._cells.names, "period").rename("spend_per_period")
        out.attrs["units"] = "money spent in each period"
        return out

    @property
    def mean_contribution(self):
        """Each cell's mean contribution over the window and its carry-over."""
        return self._per_cell("mean_contribution", "mean_contribution")

    @property
    def roi(self):
        """mean_contribution / budget over the window (NaN where nothing is spent)."""
        return self._per_cell("roi", "roi")

    @property
    def marginal_roi(self):
        """d mean_response / d budget over the window, per cell."""
        return self._per_cell("marginal_roi", "marginal_roi")

    @property
    def trace(self):
        """One row an iteration: utility, kkt_residual, violation, step, alpha,
        evaluations, elapsed (seconds)."""
        import pandas as pd

        return pd.DataFrame(self.raw["trace"]).set_index("iteration") if self.raw["trace"] else pd.DataFrame()

    def to_pandas(self):
        """One row a cell: budget per period and over the window, mean contribution
        over the window, ROI, marginal ROI."""
        return self._cell_frame()

    def __repr__(self) -> str:
        return (
            f"OptimizeResult(status={self.status!r}, utility={self.utility:.6g}, "
            f"mean_response={self.mean_response:.6g}, budget={self.total_budget:g} per period "
            f"× {self.num_periods} periods, {self.iterations} iterations, {self.seconds:.3g} s on {self.backend})"
        )


class EvaluateResult(_Result):
    """An allocation evaluated: the objective, the mean response and its quantiles,
    each cell's contribution and returns, and every draw's response
    (``responses``, a ``numpy`` array over draws)."""

    def __init__(self, raw: Mapping[str, Any], cells: _Cells, responses: np.ndarray) -> None:
        self.responses = np.asarray(responses)
        super().__init__(raw, cells)

    def _build(self) -> None:
        r = self.raw
        self.utility: float = _number(r["utility"])
        self.mean_response: float = _number(r["mean_response"])
        self.response_quantiles = {float(k): _number(v) for k, v in r["response_quantiles"].items()}
        self.num_periods: int = r["num_periods"]
        self.total_budget: float = r["total_budget"]
        self.warnings: list[str] = list(r.get("warnings", []))
        self.backend: str = r["backend"]
        self.carry_in_response = r.get("carry_in_response")
        self.allocation = self._cells.grid(r["optimized_cells"], r["allocation"], 0.0, "budget", UNITS["budget"])

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["responses"] = self.responses
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.responses = state["responses"]
        super().__setstate__(state)

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and np.array_equal(self.responses, other.responses)  # type: ignore[attr-defined]

    mean_contribution = OptimizeResult.mean_contribution
    roi = OptimizeResult.roi
    marginal_roi = OptimizeResult.marginal_roi

    def to_pandas(self):
        """One row a cell, as :meth:`OptimizeResult.to_pandas`."""
        return self._cell_frame()

    def __repr__(self) -> str:
        return f"EvaluateResult(utility={self.utility:.6g}, mean_response={self.mean_response:.6g}, {len(self.responses)} draws)"


class CurveResult(_Result):
    """The efficient frontier: per budget (per period) the optimum's mean response, its
    5–95% band, the budget's marginal return (d mean_response / d budget over the
    window), the status, and the allocation (``allocation``: a DataArray over
    ``(budget, *dims, channel)``)."""

    def _build(self) -> None:
        self.num_periods: int = self.raw["num_periods"]
        self.backend: str = self.raw.get("backend", "")

    @property
    def points(self) -> list[dict]:
        return self.raw["points"]

    def to_pandas(self):
        """One row a budget."""
        import pandas as pd

        rows = []
        for p in self.points:
            q = p["response_quantiles"]
            rows.append(
                {
                    "budget_per_period": p["budget"],
                    "budget_over_window": p["budget_window"],
                    "status": p["status"],
                    "utility": _number(p.get("utility")),
                    "mean_response": _number(p["mean_response"]),
                    "response_5%": _number(q["0.05"]),
                    "response_50%": _number(q["0.5"]),
                    "response_95%": _number(q["0.95"]),
                    "marginal_return": _number(p["marginal_return"]),
                }
            )
        return pd.DataFrame(rows).set_index("budget_per_period")

    @property
    def allocation(self):
        import xarray as xr

        cells = self.raw["optimized_cells"]
        labels = ["/".join(c[d] for d in self._cells.names) for c in cells]
        arrays = []
        for p in self.points:
            by_label = {c["cell"]: c["budget"] for c in p["cells"]}
            values = [by_label.get(label, math.nan) for label in labels]
            arrays.append(self._cells.grid(cells, values, 0.0, "budget", UNITS["budget"]))
        budgets = [p["budget"] for p in self.points]
        return xr.concat(arrays, dim="budget").assign_coords(budget=budgets)

    def __repr__(self) -> str:
        return f"CurveResult({len(self.points)} budgets, {self.num_periods} periods)"
