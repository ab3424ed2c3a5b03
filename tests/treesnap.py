"""What a tree of files is, to compare before and after a command that must write nothing:
every name under root with its mode, its size and a digest of its contents (and with
mtimes=True its modification time, so bytes rewritten unchanged show too)."""
from __future__ import annotations

import hashlib
import os
import stat


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
