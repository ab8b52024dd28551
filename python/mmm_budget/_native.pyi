"""Type stubs of the native module (Rust, PyO3): JSON in, JSON out, in the formats of
scenario.json, allocation files and the command line's --out."""

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

class NativeModel:
    """A model loaded into the native library."""

    @property
    def source(self) -> str: ...
    @property
    def channels(self) -> list[str]: ...
    @property
    def dims(self) -> list[tuple[str, list[str]]]: ...
    @property
    def num_draws(self) -> int: ...
    @property
    def scenario(self) -> str | None: ...
    @property
    def pymc_marketing_version(self) -> str | None: ...

def load_path(path: str) -> NativeModel: ...
def from_inference_data(parts: dict[str, Any], context: str) -> NativeModel: ...
def demo(channels: int = 5, geos: int = 3, draws: int = 2000, seed: int = 1) -> NativeModel: ...
def optimize(
    model: NativeModel,
    scenario: str,
    context: str,
    renames: Sequence[tuple[str, str]] = ...,
    backend: str = "auto",
    gpu_adapters: Sequence[int] = ...,
) -> str: ...
def evaluate(
    model: NativeModel,
    scenario: str,
    context: str,
    renames: Sequence[tuple[str, str]] = ...,
    allocation: str | None = None,
    backend: str = "auto",
    gpu_adapters: Sequence[int] = ...,
) -> tuple[str, npt.NDArray[np.float64]]: ...
def curve(
    model: NativeModel,
    scenario: str,
    context: str,
    budgets: Sequence[float],
    renames: Sequence[tuple[str, str]] = ...,
    backend: str = "auto",
    gpu_adapters: Sequence[int] = ...,
) -> str: ...
