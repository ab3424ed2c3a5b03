"""Named crash/failure points for tests (bbolt's gofail idea). No-ops unless armed.

    from embedlog.storage import _failpoints
    _failpoints.arm("partition.after_publish", OSError(5, "injected"), times=1)

`hit(name)` raises the armed exception (or calls the armed callable) at that point.
"""
from __future__ import annotations

_armed: dict[str, list] = {}


def arm(name: str, action, times: int = 1):
    """Raise `action` (an exception) or call it (a callable) the next `times` hits."""
    _armed[name] = [action, times]


def disarm(name: str | None = None):
    if name is None:
        _armed.clear()
    else:
        _armed.pop(name, None)


def hit(name: str):
    slot = _armed.get(name)
    if slot is None:
        return
    action, times = slot
    if times <= 1:
        del _armed[name]
    else:
        slot[1] = times - 1
    if isinstance(action, BaseException):
        raise action
    action()
