"""Shared switches of the reliability suite (issue #8).

The default run samples (every suite stays within a few tens of seconds on 2 cores);
the soak runs the exhaustive variants: `pytest -m soak tests/reliability` or
`EMBEDLOG_SOAK=1 pytest tests/reliability`. Tests marked `soak` only run then.
"""
from __future__ import annotations

import os

_config = None


def pytest_configure(config):
    global _config
    _config = config


def soak_enabled() -> bool:
    if os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0"):
        return True
    if _config is None:
        return False
    expr = _config.getoption("markexpr") or ""
    return bool(_config.getoption("--soak")) or ("soak" in expr and "not soak" not in expr)



# Tests marked soak are skipped by tests/conftest.py unless the soak is enabled (--soak too).
