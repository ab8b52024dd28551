"""The package's docstring examples run."""

from __future__ import annotations

import doctest

import mmm_budget
import mmm_budget._model


def test_docstring_examples_run():
    for module in (mmm_budget, mmm_budget._model):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, module.__name__
