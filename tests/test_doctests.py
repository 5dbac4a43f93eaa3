"""The usage examples in the docstrings of the device, the fleet and the wire contract run (the
provisioning package has its own list in ``tests/provisioning``): a stale example fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("protocol", "device", "fleet")
SKIPPED = ("fleet.migrations",)  # Alembic's env.py runs only inside Alembic; __main__ modules run main()


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.name.startswith(SKIPPED) and not info.name.endswith(".__main__"):
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _modules())
def test_docstring_examples(module: str) -> None:
    """Bad input: none; an example whose output changed fails here."""
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
