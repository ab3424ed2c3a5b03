"""Shared switches of the reliability suite (issue #8).

The default run samples (every suite stays within a few tens of seconds on 2 cores);
the soak runs the exhaustive variants: `pytest -m soak tests/reliability` or
`EMBEDLOG_SOAK=1 pytest tests/reliability`. Tests marked `soak` only run then.
"""
from __future__ import annotations

import os

import pytest

_config = None


def pytest_configure(config):
    global _config
    _config = config
    config.addinivalue_line("markers", "soak: exhaustive reliability runs (enable with -m soak or EMBEDLOG_SOAK=1)")


def soak_enabled() -> bool:
    if os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0"):
        return True
    expr = (_config.getoption("markexpr") or "") if _config is not None else ""
    return "soak" in expr and "not soak" not in expr


def pytest_collection_modifyitems(config, items):
    if soak_enabled():
        return
    skip = pytest.mark.skip(reason="exhaustive run: enable with -m soak or EMBEDLOG_SOAK=1")
    for item in items:
        if "soak" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)
