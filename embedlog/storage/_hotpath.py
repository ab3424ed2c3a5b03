"""The only importer of the C extension `embedlog.storage._native` (csrc/native.c).

Typed wrappers that turn C return codes into Python values and exceptions. cffi
releases the GIL around each call. Nothing here keeps state.
"""
from __future__ import annotations

import os

from .._version import __version__

try:
    from ._native import ffi, lib
except ImportError as e:  # pragma: no cover - depends on the install
    _here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise ImportError(
        f"embedlog's C extension (embedlog.storage._native) is missing in {_here}/embedlog: this is "
        f"a source tree without the built extension. If you ran `pip install .`, Python is importing "
        f"this source tree instead of the installed copy because the current directory ({os.getcwd()}) "
        f"or PYTHONPATH comes first: run from another directory, or build it in place with "
        f"`pip install -e .` (a C compiler is needed)"
    ) from e

_native_version = ffi.string(lib.EL_NATIVE_VERSION).decode()
if _native_version != __version__:  # a stale build left next to newer Python code
    raise ImportError(
        f"embedlog.storage._native was built for embedlog {_native_version}, but this is "
        f"{__version__}: reinstall embedlog (pip install .)"
    )

# Return codes of el_parse_header / el_scan_fd / el_parse_records (native.c).
ETRUNC, EMAGIC, ESIZE, ECRC, EMALFORMED = -1, -2, -3, -4, -5
REASONS = {
    ETRUNC: "truncated batch (torn write)",
    EMAGIC: "bad magic byte (not a RecordBatch v2)",
    ESIZE: "impossible batch length",
    ECRC: "CRC-32C mismatch",
    EMALFORMED: "malformed records section",
}

NULL = ffi.NULL
from_buffer = ffi.from_buffer
new = ffi.new
cast = ffi.cast


def i32(arr):
    """int32_t* view of an array('i') (no copy)."""
    return ffi.from_buffer("int32_t[]", arr)


def i64(arr):
    """int64_t* view of an array('q') (no copy)."""
    return ffi.from_buffer("int64_t[]", arr)


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start)."""
    if not isinstance(data, bytes):
        data = ffi.from_buffer(data)
    return lib.el_crc32c(crc, data, len(data))


def crc32c_software(data, crc: int = 0) -> int:
    """The portable table implementation, for tests and machines without the instruction."""
    if not isinstance(data, bytes):
        data = ffi.from_buffer(data)
    return lib.el_crc32c_sw(crc, data, len(data))


def crc32c_hardware() -> bool:
    return bool(lib.el_crc32c_hw_available())


def murmur2(data) -> int:
    """Kafka's murmur2 of `data` as Java's signed int32."""
    return lib.el_murmur2(data, len(data))


def oserror(what: str, path) -> OSError:
    """An OSError for the errno of the C call that just failed."""
    err = ffi.errno
    return OSError(err, f"{what}: {os.strerror(err)}", str(path) if path is not None else None)


def pwrite_all(fd: int, data, position: int, path=None) -> None:
    if lib.el_pwrite_all(fd, from_buffer(data), len(data), position) < 0:
        raise oserror("write", path)


def pwrite2(fd: int, first, second, position: int, path=None) -> None:
    """first then second at position: a stamped batch header and the untouched rest."""
    if lib.el_pwrite2(fd, from_buffer(first), len(first), from_buffer(second), len(second), position) < 0:
        raise oserror("write", path)


def fdatasync(fd: int, path=None) -> None:
    if lib.el_fdatasync(fd) < 0:
        raise oserror("fdatasync", path)


def ftruncate(fd: int, length: int, path=None) -> None:
    if lib.el_ftruncate(fd, length) < 0:
        raise oserror("truncate", path)


def lock(fd: int, start: int, length: int, exclusive: bool, timeout: float | None) -> bool:
    """Take an open-file-description byte-range lock. False on timeout."""
    timeout_ns = -1 if timeout is None else int(timeout * 1e9)
    if lib.el_lock(fd, start, length, 1 if exclusive else 0, timeout_ns) == 0:
        return True
    if ffi.errno in (11, 35):  # EAGAIN / EWOULDBLOCK
        return False
    raise oserror("lock", None)


def unlock(fd: int, start: int, length: int) -> None:
    lib.el_unlock(fd, start, length)
