"""The exceptions of mmm_budget: each carries the library's one-line message, the
same line the command line prints after ``error:``."""

from __future__ import annotations

from typing import Any


class MmmBudgetError(Exception):
    """The base of every mmm_budget exception."""


class InputError(MmmBudgetError, ValueError):
    """Bad input: a model, scenario, allocation or argument refused, the message naming
    its source (file and field, or argument) and the value."""


class InfeasibleError(MmmBudgetError):
    """No allocation satisfies the constraints (the command line's exit 3). The message
    names the constraints in conflict; ``result`` holds the solve's result."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # keep ``result`` through pickling (Ray ships exceptions)
        return (type(self), (str(self), self.result))


class DeviceError(MmmBudgetError, RuntimeError):
    """The GPU failed (no adapter, out of memory, device lost)."""


class SolverError(MmmBudgetError, RuntimeError):
    """The solver met a numerical failure it could not recover from."""


__all__ = ["MmmBudgetError", "InputError", "InfeasibleError", "DeviceError", "SolverError"]
