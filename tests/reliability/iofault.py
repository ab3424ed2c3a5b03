"""Hooks for the I/O table (embedlog/storage/_io.py): count, fail, tear or kill at any mutating call.

    with installed(Counter()) as c: ...            # c.calls: [(op, path), ...]
    with installed(FailAt(3, errno.ENOSPC)): ...   # the 3rd call raises OSError(ENOSPC)
    install(KillAt(7, tear=0.5))                   # the 7th call: half the write, then SIGKILL

A hook is called as hook(op, real, *args, **kwargs) for every call of the table and
returns what the real call returns. Write calls (write, pwrite, pwrite_all, pwrite2) can
be torn: only a prefix of their bytes reaches the file before the failure or the kill.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal

from embedlog.storage import _io

WRITES = ("write", "pwrite", "pwrite_all", "pwrite2")
FD_OPS = ("write", "pwrite", "pwrite_all", "pwrite2", "fdatasync", "fsync", "ftruncate")
PATH_ARG = {"pwrite_all": 3, "pwrite2": 4, "fdatasync": 1, "ftruncate": 2}


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def call_path(op: str, args) -> str:
    """The file a call is about (for error messages and filters)."""
    if op in FD_OPS:
        i = PATH_ARG.get(op)
        if i is not None and len(args) > i and args[i] is not None:
            return os.fspath(args[i])
        return fd_path(args[0])
    return os.fspath(args[0])


def write_data(op: str, args) -> bytes:
    """The bytes a write call would write."""
    if op == "pwrite2":
        return bytes(args[1]) + bytes(args[2])
    return bytes(args[1])


def write_prefix(op: str, args, k: int) -> int:
    """Write the first k bytes of a write call's data, as the call would have; returns k."""
    data = write_data(op, args)[:k]
    fd = args[0]
    if op == "write":
        pos = 0
        while pos < len(data):
            pos += os.write(fd, data[pos:])
    else:
        at = args[3] if op == "pwrite2" else args[2]
        pos = 0
        while pos < len(data):
            pos += os.pwrite(fd, data[pos:], at + pos)
    return len(data)


def tear_length(n: int, tear, rng: random.Random) -> int:
    """How many of n bytes a torn write keeps: tear is a fraction in [0, 1], "random"
    (uniform in [0, n)), "len-1", or an int (clamped)."""
    if n == 0:
        return 0
    if tear == "random":
        return rng.randrange(n)
    if tear == "len-1":
        return n - 1
    if isinstance(tear, float):
        return min(n - 1, int(n * tear)) if tear < 1 else n
    return max(0, min(n, tear))


def install(hook):
    _io.install(hook)
    return hook


@contextlib.contextmanager
def installed(hook):
    _io.install(hook)
    try:
        yield hook
    finally:
        _io.uninstall()


class Counter:
    """Counts (and lists) the calls, changing nothing."""

    def __init__(self, keep_paths: bool = True):
        self.calls: list[tuple[str, str | None]] = []
        self.keep_paths = keep_paths

    def __call__(self, op, real, *args, **kwargs):
        self.calls.append((op, call_path(op, args) if self.keep_paths else None))
        return real(*args, **kwargs)

    def __len__(self):
        return len(self.calls)


class FailAt:
    """Fail call n (1-based) with OSError(err), once (transient) or every call from n on
    (persistent). With `short`, a write call first writes part of its bytes (a short
    write followed by the error, as a full disk does). `only` limits counting to
    operations of those names, `path_filter` to calls whose file contains it."""

    def __init__(self, n: int, err: int, *, persistent: bool = False, short=None, only=None,
                 path_filter: str | None = None, seed: int = 0):
        self.n, self.err, self.persistent, self.short = n, err, persistent, short
        self.only = set(only) if only else None
        self.path_filter = path_filter
        self.count = 0
        self.failed: list[tuple[str, str]] = []
        self.rng = random.Random(seed)
        self.active = True

    def _counts(self, op, args) -> bool:
        if self.only is not None and op not in self.only:
            return False
        return self.path_filter is None or self.path_filter in call_path(op, args)

    def __call__(self, op, real, *args, **kwargs):
        if not self.active or not self._counts(op, args):
            return real(*args, **kwargs)
        self.count += 1
        if self.count == self.n or (self.persistent and self.count > self.n):
            path = call_path(op, args)
            if self.short is not None and op in WRITES:
                data = write_data(op, args)
                write_prefix(op, args, tear_length(len(data), self.short, self.rng))
            self.failed.append((op, path))
            raise OSError(self.err, os.strerror(self.err), path)
        return real(*args, **kwargs)


class KillAt:
    """SIGKILL this process at call n: a write call writes a prefix of its bytes first
    (`tear`: see tear_length), any other call is not made. `on_kill(op, path, kept)`
    runs just before (e.g. to tell the parent where the kill hit)."""

    def __init__(self, n: int, *, tear="random", seed: int = 0, on_kill=None):
        self.n, self.tear = n, tear
        self.count = 0
        self.rng = random.Random(seed)
        self.on_kill = on_kill

    def __call__(self, op, real, *args, **kwargs):
        self.count += 1
        if self.count < self.n:
            return real(*args, **kwargs)
        kept = None
        if op in WRITES:
            kept = write_prefix(op, args, tear_length(len(write_data(op, args)), self.tear, self.rng))
        if self.on_kill is not None:
            self.on_kill(op, call_path(op, args), kept)
        os.kill(os.getpid(), signal.SIGKILL)
        raise SystemExit("unreachable")  # pragma: no cover


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def fds_under(path) -> dict[int, str]:
    """This process's open descriptors on files under `path` (a leak check that other
    threads' and finalizers' descriptors cannot disturb)."""
    root = os.path.realpath(os.fspath(path))
    out = {}
    for fd in open_fds():
        p = fd_path(fd)
        if p == root or p.startswith(root + os.sep):
            out[fd] = p
    return out
