"""The I/O table: every call of the library that changes a file goes through a name here
(SQLite's VFS idea; ../shared/reference/reliability.md §3.1).

    open       os.open, when the file is opened for writing or created
    write      os.write                      pwrite     os.pwrite
    pwrite_all _hotpath.pwrite_all (C loop)  pwrite2    _hotpath.pwrite2 (C pwritev loop)
    fdatasync  _hotpath.fdatasync (C)        fsync      os.fsync
    fsync_dir  fsync of a folder             ftruncate  _hotpath.ftruncate (C)
    replace    os.replace                    unlink     os.unlink
    mkdir      os.mkdir                      rmdir      os.rmdir

`makedirs`, `rmtree` and `copyfile` are built from those names, so each of their steps
passes through the table too. Reading is not in the table: it changes nothing.

By default every name *is* the real function (`pwrite2 is _hotpath.pwrite2`): the append
path pays one module attribute lookup, as it did calling `_hotpath` directly. Call sites
must look names up at call time (`_io.replace(a, b)`, never `from ._io import replace`),
so that `install(hook)` reaches them: it rebinds every name of OPS to a wrapper calling
`hook(op, real, *args, **kwargs)`, which may count the call, fail it with an OSError,
tear it (write a prefix), or kill the process (tests/reliability/iofault.py).
`uninstall()` puts the real functions back. Process-wide, for tests only.

The C functions behind pwrite_all, pwrite2, fdatasync and ftruncate call the system
through their own table of function pointers (`el_vfs` in csrc/native.c), which tests can
swap to return short writes, EINTR or errors to the C retry loops themselves.
"""
from __future__ import annotations

import functools
import os
import stat as _stat

from . import _hotpath as hp

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _fsync_dir(path):
    """fsync a folder, so that the names created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_REAL = {
    "open": os.open,
    "write": os.write,
    "pwrite": os.pwrite,
    "pwrite_all": hp.pwrite_all,
    "pwrite2": hp.pwrite2,
    "fdatasync": hp.fdatasync,
    "fsync": os.fsync,
    "fsync_dir": _fsync_dir,
    "ftruncate": hp.ftruncate,
    "replace": os.replace,
    "unlink": os.unlink,
    "mkdir": os.mkdir,
    "rmdir": os.rmdir,
}
OPS = tuple(_REAL)

open = os.open                   # noqa: A001 - the table's names are the system calls' names
write = os.write
pwrite = os.pwrite
pwrite_all = hp.pwrite_all
pwrite2 = hp.pwrite2
fdatasync = hp.fdatasync
fsync = os.fsync
fsync_dir = _fsync_dir
ftruncate = hp.ftruncate
replace = os.replace
unlink = os.unlink
mkdir = os.mkdir
rmdir = os.rmdir

_hook = None


def install(hook):
    """Route every call of the table through hook(op, real, *args, **kwargs)."""
    global _hook
    g = globals()
    for name, real in _REAL.items():
        g[name] = functools.partial(hook, name, real)
    _hook = hook


def uninstall():
    global _hook
    globals().update(_REAL)
    _hook = None


def installed():
    """The hook in place, or None."""
    return _hook


# ------------------------------------------------------------------ built from the table

def makedirs(path, exist_ok: bool = False):
    """os.makedirs, one `mkdir` call per missing folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if exist_ok:
            return
        raise FileExistsError(17, "File exists", path)
    parent = os.path.dirname(os.path.abspath(path))
    if parent != os.path.abspath(path) and not os.path.isdir(parent):
        makedirs(parent, exist_ok=True)
    try:
        mkdir(path, 0o777)
    except FileExistsError:
        if not (exist_ok and os.path.isdir(path)):
            raise


def rmtree(path, ignore_errors: bool = False):
    """shutil.rmtree, one `unlink` per file and one `rmdir` per folder (deepest first).
    Links are removed, never followed."""
    path = os.fspath(path)
    try:
        if os.path.islink(path):       # as shutil.rmtree: never delete what a link points at
            raise OSError(40, "Cannot call rmtree on a symbolic link", path)
        _rmtree(path)
    except OSError:
        if not ignore_errors:
            raise


def _rmtree(path):
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            try:
                unlink(entry.path)
            except FileNotFoundError:
                pass
    rmdir(path)


def read_chunks(fd: int, chunk: int = 1 << 20):
    """(position, bytes) pieces of fd's whole file, at most `chunk` bytes each, read on to
    its end as it is when reached (a file growing meanwhile is read on).

    Each read asks for what fstat says is left, never a whole chunk: os.pread allocates
    what it is asked for, and a 1 MiB buffer that comes back short or empty (a 16 KiB
    index, the read at the end) is an mmap'd block glibc frees whole, which raises its
    dynamic mmap threshold to 1 MiB; from then on such buffers come out of the calling
    thread's malloc arena and, trimmed to the few bytes read, fragment it. That was the
    producer's RSS growth of issue #18 (the mirror threads' copies, ~50 B a record)."""
    pos = 0
    while True:
        left = os.fstat(fd).st_size - pos
        if left <= 0:
            return
        while left > 0:
            buf = os.pread(fd, min(chunk, left), pos)
            if not buf:
                return                  # shrank under us: what was there is copied
            yield pos, buf
            pos += len(buf)
            left -= len(buf)


def copyfile(src, dst, chunk: int = 1 << 20):
    """Copy src's bytes to dst (created or emptied); not fsync'd."""
    sfd = os.open(src, os.O_RDONLY | _CLOEXEC)
    try:
        if _stat.S_ISDIR(os.fstat(sfd).st_mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(src))
        dfd = open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, 0o644)
        try:
            for pos, buf in read_chunks(sfd, chunk):
                pwrite_all(dfd, buf, pos, dst)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


__all__ = ["OPS", "install", "uninstall", "installed", "makedirs", "rmtree", "copyfile", "read_chunks", *OPS]


def memory_file(name: str, src_fd: int | None = None) -> int:
    """A descriptor of an anonymous in-memory file (memfd) holding a copy of `src_fd`'s
    contents: where a read-only handle must keep something it would otherwise write to the
    log directory (a rebuilt index, its partition state), so nothing there changes."""
    fd = os.memfd_create(f"embedlog-{os.path.basename(name)}", getattr(os, "MFD_CLOEXEC", 0))
    try:
        if src_fd is not None:
            for pos, buf in read_chunks(src_fd):
                os.pwrite(fd, buf, pos)
    except BaseException:
        os.close(fd)
        raise
    return fd

