"""The usage examples in the provisioning docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["provisioning.tokens", "provisioning.broker", "provisioning.ca",
                                    "provisioning.identity", "provisioning.requestauth", "provisioning.enrollment"])
def test_docstring_examples(module: str) -> None:
    """Bad input: none; a stale example fails here."""
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
