"""What a tree of files is, to compare before and after a command that must write nothing:
every name under root with its mode, its size and a digest of its contents (and with
mtimes=True its modification time, so bytes rewritten unchanged show too); and a
read-only bind mount of a tree, to run such a command where writing is impossible."""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import sys

import pytest


def snapshot(root, *, mtimes: bool = False) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            s = os.lstat(path)
            digest = None
            if stat.S_ISREG(s.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            row = (s.st_mode, s.st_size if digest else None, digest)
            out[os.path.relpath(path, root)] = row + (s.st_mtime_ns,) if mtimes else row
    return out


@contextlib.contextmanager
def read_only_bind(src, dst):
    """`src` mounted read-only at `dst` (an empty directory) for the block; the test skips
    where that is not permitted (not root, not Linux, a container without mount rights)."""
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("needs root on Linux for a read-only bind mount")
    if subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(dst)], check=False, capture_output=True).returncode:
        pytest.skip("mount --bind -o ro is not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=False, capture_output=True).returncode:
            pytest.skip("cannot remount the bind read-only")
        yield dst
    finally:
        subprocess.run(["umount", str(dst)], check=False, capture_output=True)
