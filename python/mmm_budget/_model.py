"""Models: a fitted PyMC-Marketing model in memory, a saved one, a case folder, or the
built-in demo, loaded once into the native library."""

from __future__ import annotations

import os
from typing import Any, Mapping

from . import _native

#: The groups of an InferenceData the optimizer reads.
GROUPS = ("posterior", "constant_data")


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _dataset_of(source: Any, group: str):
    """The xarray Dataset of ``group`` in an ArviZ InferenceData or an xarray
    DataTree; None where absent."""
    if hasattr(source, "groups") and callable(source.groups) and not hasattr(source, "children"):
        # arviz.InferenceData
        return getattr(source, group) if group in source.groups() else None
    children = getattr(source, "children", None)
    if children is not None:  # xarray.DataTree
        node = children.get(group)
        return None if node is None else node.to_dataset()
    raise TypeError(
        f"model: {type(source).__name__}: expected an arviz.InferenceData, an "
        "xarray.DataTree, a PyMC-Marketing MMM, a path to a saved .nc or a case folder"
    )


def inference_parts(source: Any) -> dict:
    """What the native reader needs of an InferenceData or DataTree: root attributes
    and, per group, its attributes and variables as ``(dims, xarray.Variable)``. No
    array is read or copied here: the reader asks a variable for its ``values`` only
    when the model needs it, and borrows the numpy buffer."""
    groups = {}
    for group in GROUPS:
        ds = _dataset_of(source, group)
        if ds is None:
            continue
        groups[group] = {
            "attrs": dict(ds.attrs),
            "variables": {str(name): (tuple(str(d) for d in var.dims), var) for name, var in ds.variables.items()},
        }
    return {"attrs": dict(getattr(source, "attrs", {}) or {}), "groups": groups}


class Model:
    """A fitted model, loaded once and used by many calls.

    ``source`` is an ``arviz.InferenceData`` or ``xarray.DataTree`` as PyMC-Marketing
    makes it (``mmm.idata``; read in memory, nothing written), a PyMC-Marketing ``MMM``
    (its ``idata``), a path to a model saved by ``MMM.save`` (``.nc``), a case folder
    (``model.json``, ``posterior.npz`` and optionally ``scenario.json``), or a
    ``model.json``.

    A Model pickles as its source (the InferenceData, or the path), and is loaded again
    where it is unpickled: that is how it travels to Ray's workers.

    >>> import mmm_budget
    >>> m = mmm_budget.Model.demo(channels=3, geos=2, draws=200)
    >>> m.channels
    ['ch0', 'ch1', 'ch2']
    """

    def __init__(self, source: Any, *, context: str | None = None) -> None:
        if isinstance(source, Model):
            source = source._source
        if hasattr(source, "idata") and not hasattr(source, "posterior"):
            source = source.idata  # a PyMC-Marketing MMM
        self._source = source
        self._context = context
        self._native: _native.NativeModel | None = None
        self._load()

    @classmethod
    def demo(cls, channels: int = 5, geos: int = 3, draws: int = 2000, seed: int = 1) -> "Model":
        """The built-in demo model (synthetic posterior, logistic saturation, geometric
        adstock) with its scenario."""
        return cls(("demo", channels, geos, draws, seed))

    def _load(self) -> None:
        source = self._source
        if isinstance(source, tuple) and source and source[0] == "demo":
            self._native = _native.demo(*source[1:])
        elif _is_path(source):
            self._native = _native.load_path(os.fspath(source))
        else:
            context = self._context or type(source).__name__
            self._native = _native.from_inference_data(inference_parts(source), context)

    @property
    def native(self) -> "_native.NativeModel":
        """The native model."""
        if self._native is None:
            self._load()
        return self._native

    @property
    def channels(self) -> list[str]:
        """The channel names."""
        return self.native.channels

    @property
    def dims(self) -> list[tuple[str, list[str]]]:
        """The extra dims (geo, …) and their coordinates, PyMC-Marketing's order; the
        allocation's dims are these, then ``channel``."""
        return self.native.dims

    @property
    def num_draws(self) -> int:
        """Posterior draws (chains × draws)."""
        return self.native.num_draws

    @property
    def source(self) -> str:
        """Where the model came from, as errors name it."""
        return self.native.source

    @property
    def scenario(self) -> dict | None:
        """The scenario that came with the model (a case folder's, the demo's)."""
        import json

        text = self.native.scenario
        return None if text is None else json.loads(text)

    def __getstate__(self) -> Mapping[str, Any]:
        return {"source": self._source, "context": self._context}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self._source = state["source"]
        self._context = state["context"]
        self._native = None

    def __repr__(self) -> str:
        return f"mmm_budget.Model({self.native!r})"


def as_model(model: Any) -> Model:
    """``model`` as a :class:`Model` (loaded once)."""
    return model if isinstance(model, Model) else Model(model)
