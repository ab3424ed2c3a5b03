"""The I/O table (embedlog/storage/_io.py and el_vfs in csrc/native.c): every mutating call of the
library goes through it, it costs nothing when no test hook is installed, and the C retry
loops handle what the system can answer (short counts, EINTR, errors)."""
from __future__ import annotations

import ast
import errno
import os
import pathlib

import pytest

import embedlog
from embedlog.storage import _hotpath as hp
from embedlog.storage import _io

from .iofault import Counter, installed

PKG = pathlib.Path(embedlog.__file__).resolve().parent
MUTATING_OS = {"write", "pwrite", "writev", "pwritev", "fsync", "fdatasync", "ftruncate", "truncate",
               "replace", "rename", "renames", "unlink", "remove", "mkdir", "makedirs", "rmdir",
               "removedirs", "link", "symlink", "posix_fallocate"}
MUTATING_SHUTIL = {"rmtree", "copyfile", "copy", "copy2", "copytree", "move"}
MUTATING_C = {"el_pwrite_all", "el_pwrite2", "el_fdatasync", "el_ftruncate"}
WRITE_FLAGS = {"O_WRONLY", "O_CREAT", "O_TRUNC", "O_APPEND"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            yield node, (base.id if isinstance(base, ast.Name) else
                         base.attr if isinstance(base, ast.Attribute) else None), node.func.attr


def test_every_mutating_call_goes_through_the_table():
    """No module but _io.py (and _hotpath.py, which wraps the C functions) calls a function
    that changes a file directly. Opens with write or create flags are in the table too."""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name in ("_io.py", "_hotpath.py") or "cli" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node, base, attr in _calls(tree):
            where = f"{path.relative_to(PKG)}:{node.lineno}"
            if base == "os" and attr in MUTATING_OS:
                offenders.append(f"{where} os.{attr}")
            elif base == "shutil" and attr in MUTATING_SHUTIL:
                offenders.append(f"{where} shutil.{attr}")
            elif base in ("hp", "lib") and (attr in MUTATING_C or attr in ("pwrite_all", "pwrite2", "fdatasync",
                                                                               "ftruncate")):
                offenders.append(f"{where} {base}.{attr}")
            elif base == "os" and attr == "open" and len(node.args) > 1:
                flags = {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                if flags & WRITE_FLAGS:
                    offenders.append(f"{where} os.open({', '.join(sorted(flags & WRITE_FLAGS))})")
        for node in ast.walk(tree):   # `from ._io import x` would bypass install()
            if isinstance(node, ast.ImportFrom) and node.module == "_io" and node.level == 1:
                offenders.append(f"{path.relative_to(PKG)}:{node.lineno} from ._io import ...")
    assert offenders == []


def test_by_default_the_table_is_the_real_functions():
    """Nothing is wrapped: the append path calls _hotpath.pwrite2 itself."""
    assert _io.installed() is None
    assert _io.pwrite2 is hp.pwrite2 and _io.pwrite_all is hp.pwrite_all
    assert _io.fdatasync is hp.fdatasync and _io.ftruncate is hp.ftruncate
    assert _io.replace is os.replace and _io.open is os.open and _io.unlink is os.unlink


def test_install_sees_every_step_of_append_roll_and_close(tmp_path):
    with embedlog.open(tmp_path / "log", retention_check_interval_ms=0) as log:
        log.create_topic("t", config={"segment.bytes": 300})
        p = log.partition("t", 0)
        with installed(Counter()) as counter:
            for i in range(4):
                p.append_records([b"x" * 100], sync=True)
        ops = [op for op, _ in counter.calls]
        assert ops.count("pwrite2") == 4
        assert ops.count("fdatasync") >= 4 + 3          # the sync appends, and the roll's old segment files
        assert "fsync_dir" in ops and "replace" in ops  # the roll's folder fsync and checkpoint
        assert _io.installed() is None
    # the uninstalled table leaves the log as the real functions wrote it
    with embedlog.open(tmp_path / "log") as log:
        assert [r.value for r in log.partition("t", 0).read(0)] == [b"x" * 100] * 4


def test_rmtree_and_makedirs_go_step_by_step(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"1")
    (tmp_path / "a" / "g").write_bytes(b"2")
    os.symlink(tmp_path / "a" / "g", tmp_path / "a" / "link")
    with installed(Counter()) as counter:
        _io.rmtree(tmp_path / "a")
        _io.makedirs(tmp_path / "x" / "y" / "z", exist_ok=True)
        _io.makedirs(tmp_path / "x" / "y" / "z", exist_ok=True)
    assert sorted(op for op, _ in counter.calls) == ["mkdir"] * 3 + ["rmdir"] * 2 + ["unlink"] * 3
    assert not (tmp_path / "a").exists() and (tmp_path / "x" / "y" / "z").is_dir()
    os.symlink(tmp_path / "x", tmp_path / "l")
    with pytest.raises(OSError):
        _io.rmtree(tmp_path / "l")                   # a link is never followed
    assert (tmp_path / "x" / "y" / "z").is_dir()


# ------------------------------------------------------------------ el_vfs (C)

@pytest.fixture
def vfs():
    """Swap entries of the C table; the system's come back afterwards."""
    keep = []

    def swap(name, ctype, fn):
        cb = hp.ffi.callback(ctype, fn)
        keep.append(cb)                 # a callback must outlive its use
        setattr(hp.lib.el_vfs, name, cb)
    yield swap
    hp.lib.el_vfs_reset()


PWRITE = "int64_t(int, void *, size_t, int64_t)"
PWRITEV2 = "int64_t(int, void *, size_t, void *, size_t, int64_t)"


def test_c_pwrite_loop_finishes_short_writes_and_retries_eintr(tmp_path, vfs):
    calls = []

    def short(fd, buf, n, pos):
        calls.append(n)
        if len(calls) == 2:
            hp.ffi.errno = errno.EINTR
            return -1
        k = min(n, 3)
        return os.pwrite(fd, hp.ffi.buffer(buf, k)[:], pos)
    vfs("pwrite", PWRITE, short)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        hp.pwrite_all(fd, b"hello, world", 0)
        assert os.pread(fd, 100, 0) == b"hello, world"
        assert calls[1] == calls[2]                 # EINTR: the same write again
    finally:
        os.close(fd)


@pytest.mark.parametrize("first_returns", [0, 5, 61, 70])
def test_c_pwritev_short_write_is_completed(tmp_path, vfs, first_returns):
    """pwritev writing less than the whole header + body: the rest goes out by pwrite."""
    def short_v(fd, a, alen, b, blen, pos):
        data = hp.ffi.buffer(a, alen)[:] + hp.ffi.buffer(b, blen)[:]
        return os.pwrite(fd, data[:first_returns], pos) if first_returns else 0
    vfs("pwritev2", PWRITEV2, short_v)
    head, body = bytes(range(61)), bytes(range(61, 100))
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        hp.pwrite2(fd, head, body, 7)
        assert os.pread(fd, 200, 7) == head + body
    finally:
        os.close(fd)


def test_c_pwrite_zero_is_eio_and_errors_keep_their_errno(tmp_path, vfs):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        vfs("pwrite", PWRITE, lambda fd, buf, n, pos: 0)
        with pytest.raises(OSError) as e:
            hp.pwrite_all(fd, b"abc", 0, tmp_path / "f")
        assert e.value.errno == errno.EIO and e.value.filename == str(tmp_path / "f")

        def enospc(fd, buf, n, pos):
            hp.ffi.errno = errno.ENOSPC
            return -1
        vfs("pwrite", PWRITE, enospc)
        vfs("pwritev2", PWRITEV2, lambda *a: enospc(*a[:4]))
        for call in (lambda: hp.pwrite_all(fd, b"abc", 0), lambda: hp.pwrite2(fd, b"a", b"b", 0)):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_c_fdatasync_ftruncate_pread_retry_eintr_and_report_errors(tmp_path, vfs):
    seen = {"fdatasync": 0, "ftruncate": 0, "pread": 0}

    def once_eintr_then(name, result):
        def fn(*args):
            seen[name] += 1
            if seen[name] == 1:
                hp.ffi.errno = errno.EINTR
                return -1
            if result == "eio":
                hp.ffi.errno = errno.EIO
                return -1
            return result(*args)
        return fn
    vfs("fdatasync", "int(int)", once_eintr_then("fdatasync", "eio"))
    vfs("ftruncate", "int(int, int64_t)", once_eintr_then("ftruncate", lambda fd, n: os.ftruncate(fd, n) or 0))
    vfs("pread", PWRITE, once_eintr_then(
        "pread", lambda fd, buf, n, pos: (lambda d: (hp.ffi.memmove(buf, d, len(d)), len(d))[1])(
            os.pread(fd, min(n, 2), pos))))
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"0123456789")
        with pytest.raises(OSError) as e:
            hp.fdatasync(fd)
        assert e.value.errno == errno.EIO and seen["fdatasync"] == 2     # EINTR retried, EIO reported
        hp.ftruncate(fd, 4)
        assert os.fstat(fd).st_size == 4 and seen["ftruncate"] == 2
        buf = hp.new("uint8_t[]", 16)
        assert hp.lib.el_pread_all(fd, buf, 16, 0) == 4                  # short reads up to the end
        assert bytes(hp.ffi.buffer(buf, 4)) == b"0123"
    finally:
        os.close(fd)
