"""The per-partition shared state file `partition.state` and checkpoint `partition.checkpoint`
(FORMAT.md §6, §7).

`partition.state` is 4096 bytes, memory-mapped by every process that opens the
partition. It caches what readers need on every poll (log end offset, high watermark,
active segment and its committed size) so they never scan files, and it carries the
futex word tailing readers sleep on. It is a cache, not a source of truth: it is
rebuilt from the segments after a reboot (its boot id differs) or when a writer died
in the middle of a change (`in_append` left set).

Layout (host byte order: the file is a cache of this machine, never copied elsewhere):
    0   u64  magic  b"ELSTATE1"
    8   u64  seq    seqlock: odd while a writer publishes fields
    16  u32  notify futex word, +1 on every publish
    20  u32  waiters  readers sleeping on notify
    24  u64  in_append  pid of the writer between its first write and its publish, else 0
    32  16B  boot_id   the kernel boot the state was built in
    48  u32  version   1
    56  u64  flushed_offset  every offset below it is fdatasync'd (atomic max)
    64  u64  fields[N_FIELDS]  (the F_* indexes below)
    192 u64  swap   odd while the cleaner swaps segment files (readers retry a read
                    that overlapped a swap); even otherwise
    200 u64  first_unstable  1 + the first offset of the oldest open transaction, 0 when
                    none is open (#19): the last stable offset is min(HW, it - 1). Lowered
                    before a publish, raised after one, so a reader that loads the fields
                    and then this word never sees an open or aborted record below the LSO
    256 64B x 8     mirror slots (_replication.py): leo, durable leo, base, size,
                    caught-up time, flags, failed time

Byte-range locks on this file (open-file-description locks, released by the kernel
when the holder dies): byte 0 is the append lock, byte 1 the group-commit sync lock,
byte 2 the cleaner lock (one process maintains a partition at a time), bytes 8-15 the
copy locks of mirror slots 0-7.

`partition.checkpoint` is JSON written by write-temp, fsync, rename, fsync-dir: the
recovery point, the log start offset, and whether the last writer closed cleanly.
"""
from __future__ import annotations

import itertools
import json
import mmap
import os
import re
import threading

from . import _hotpath as hp
from . import _io
from ._errors import FormatVersionError, StorageError

STATE_FILE = "partition.state"
CHECKPOINT_FILE = "partition.checkpoint"
STATE_SIZE = 4096
MAGIC = b"ELSTATE1"
FSYNC_FAILED_MAGIC = b"ELFAILED"   # invalid, and an fdatasync failed: recovery rewrites (FORMAT.md §6, §8)
VERSION = 1
CHECKPOINT_VERSION = 1

(F_LOG_START, F_LOG_END, F_HIGH_WATERMARK, F_ACTIVE_BASE, F_ACTIVE_SIZE, F_SEGMENTS_VERSION,
 F_INDEX_ENTRIES, F_TIMEINDEX_ENTRIES, F_BYTES_SINCE_INDEX, F_MAX_TIMESTAMP,
 F_OFFSET_OF_MAX_TIMESTAMP, F_ROLL_TIMESTAMP, F_CREATED_MS, F_UNFLUSHED_RECORDS,
 F_FIRST_UNFLUSHED_MS, F_LAST_TIMEINDEX_TS) = range(16)
N_FIELDS = 16

LOCK_APPEND = 0
LOCK_SYNC = 1
LOCK_CLEAN = 2

_OFF_IN_APPEND = 24
_OFF_BOOT = 32
_OFF_VERSION = 48
_OFF_FLUSHED = 56
_OFF_SWAP = 192
_OFF_FIRST_UNSTABLE = 200
_OFF_REPLICATION, _REPLICATION_BYTES = 256, 8 * 64      # 8 mirror slots (_replication.py)


def _read_boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return bytes.fromhex(f.read().strip().decode().replace("-", ""))[:16].ljust(16, b"\0")
    except OSError:
        # Not Linux: the boot time, as wall clock minus time since boot, to the minute.
        # Drift (sleep, clock changes) can only make a reboot look likely: the safe side.
        import time
        return int((time.time() - time.monotonic()) // 60).to_bytes(16, "big", signed=True)


BOOT_ID = _read_boot_id()

# load()'s scratch buffer, one per thread (see SharedState.load).
_scratch = threading.local()


class SharedState:
    """The mmap of one partition's state file, with seqlock access to its fields."""

    def __init__(self, path, *, private: bool = False):
        """`private`: a read-only handle's state, in an anonymous memory file of this
        process instead of the directory's state file (Log(read_only=True)); its locks
        are taken on that file, so they exclude nobody but this process's threads."""
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self.fd = None
        try:
            self.fd = _io.memory_file(path) if private else _io.open(path, flags, 0o644)
            if os.fstat(self.fd).st_size < STATE_SIZE:
                _io.ftruncate(self.fd, STATE_SIZE)  # zero-filled: magic absent = not valid
            self.mm = mmap.mmap(self.fd, STATE_SIZE)
        except OSError as e:
            if self.fd is not None:
                os.close(self.fd)
            raise StorageError(f"cannot open partition state {path}: {e.strerror}",
                               path=str(path), errno=e.errno) from e
        self.ptr = hp.from_buffer(self.mm)

    def close(self):
        if self.mm is not None:
            self.ptr = None
            self.mm.close()
            self.mm = None
            os.close(self.fd)

    # -- validity
    def valid(self) -> bool:
        """True when the state was built in this boot by a compatible version."""
        mm = self.mm
        if mm[0:8] != MAGIC:
            return False
        version = int.from_bytes(mm[_OFF_VERSION:_OFF_VERSION + 4], "little")
        if version > VERSION:
            raise FormatVersionError(
                f"{self.path} was written by a newer embedlog (state version {version}, "
                f"this one reads up to {VERSION})")
        return mm[_OFF_BOOT:_OFF_BOOT + 16] == BOOT_ID

    def invalidate(self, fsync_failed: bool = False):
        """Make every handle recover before it trusts the state again. With fsync_failed
        (fsyncgate: the kernel may have marked unwritten pages clean), that recovery must
        also write back what it scans; the mark stays until a recovery completes."""
        if fsync_failed:
            self.mm[0:8] = FSYNC_FAILED_MAGIC
        elif self.mm[0:8] != FSYNC_FAILED_MAGIC:
            self.mm[0:8] = bytes(8)

    def fsync_failed(self) -> bool:
        return self.mm[0:8] == FSYNC_FAILED_MAGIC

    def initialize(self, fields: list[int], flushed_offset: int):
        """Publish fresh fields and stamp magic/version/boot (caller holds the append lock)."""
        self.publish(fields)
        hp.lib.el_atomic_store_u64(self.ptr + _OFF_FLUSHED, flushed_offset)
        self.mm[_OFF_BOOT:_OFF_BOOT + 16] = BOOT_ID
        self.mm[_OFF_VERSION:_OFF_VERSION + 4] = VERSION.to_bytes(4, "little")
        self.set_in_append(0)
        self.mm[0:8] = MAGIC

    # -- fields
    def load(self) -> list[int]:
        # A scratch buffer per thread: cffi lets go of the GIL during the call, so threads
        # sharing one buffer would hand each other a mix of two snapshots.
        try:
            buf, view = _scratch.pair
        except AttributeError:
            buf = hp.new(f"uint64_t[{N_FIELDS}]")
            buf, view = _scratch.pair = buf, memoryview(hp.ffi.buffer(buf)).cast("q")
        if hp.lib.el_state_load(self.ptr, buf, N_FIELDS) < 0:
            return None  # a writer died mid-publish; the caller repairs under the lock
        return view.tolist()

    def publish(self, fields: list[int]):
        # Its own buffer, not the loads' scratch one: mixing old values into what is
        # published would reuse an acknowledged offset.
        buf = hp.new(f"uint64_t[{N_FIELDS}]", [v & 0xFFFFFFFFFFFFFFFF for v in fields])
        hp.lib.el_state_publish(self.ptr, buf, N_FIELDS)

    def notify_value(self) -> int:
        return hp.lib.el_state_notify_value(self.ptr)

    def wait(self, seen: int, timeout: float | None) -> bool:
        """Sleep until a publish after `seen` (True) or the timeout (False)."""
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        return bool(hp.lib.el_state_wait(self.ptr, seen, ns))

    def in_append(self) -> int:
        return hp.lib.el_atomic_load_u64(self.ptr + _OFF_IN_APPEND)

    def set_in_append(self, pid: int):
        hp.lib.el_atomic_store_u64(self.ptr + _OFF_IN_APPEND, pid)

    def flushed_offset(self) -> int:
        return hp.lib.el_atomic_load_u64(self.ptr + _OFF_FLUSHED)

    def raise_flushed_offset(self, offset: int) -> int:
        return hp.lib.el_atomic_max_u64(self.ptr + _OFF_FLUSHED, offset)

    def reset_replication(self):
        """Forget what is known of mirrors (FORMAT.md §15): after recovery they are verified again."""
        self.mm[_OFF_REPLICATION:_OFF_REPLICATION + _REPLICATION_BYTES] = bytes(_REPLICATION_BYTES)

    # -- segment swaps (the cleaner)
    def first_unstable(self) -> int | None:
        """The first offset of the oldest open transaction, or None."""
        v = hp.lib.el_atomic_load_u64(self.ptr + _OFF_FIRST_UNSTABLE)
        return v - 1 if v else None

    def set_first_unstable(self, offset: int | None):
        hp.lib.el_atomic_store_u64(self.ptr + _OFF_FIRST_UNSTABLE, 0 if offset is None else offset + 1)

    def swap_word(self) -> int:
        return hp.lib.el_atomic_load_u64(self.ptr + _OFF_SWAP)

    def swap_begin(self) -> int:
        """Mark a swap in progress (append lock held); returns the word to pass to swap_end."""
        word = self.swap_word() | 1
        hp.lib.el_atomic_store_u64(self.ptr + _OFF_SWAP, word)
        return word

    def swap_end(self, word: int):
        hp.lib.el_atomic_store_u64(self.ptr + _OFF_SWAP, word + 1)

    # -- locks
    def lock(self, which: int, timeout: float | None) -> bool:
        try:
            return hp.lock(self.fd, which, 1, True, timeout)
        except OSError as e:
            raise StorageError(f"cannot lock {self.path}: {e.strerror}", path=str(self.path),
                               errno=e.errno) from e

    def unlock(self, which: int):
        hp.unlock(self.fd, which, 1)


class DirNotifier:
    """`<dir>/.notify`: one futex word for the whole log directory, bumped after every
    append to any partition, so a consumer of many partitions sleeps on one word instead of
    polling each partition's. Same layout as partition.state's header (notify at 16,
    waiters at 20); no fields, no magic: a stale value only causes one spurious wake.

    Byte 64 holds a u64 metadata version (FORMAT.md §1, `.notify`): +1 after every change
    of a `topics/<name>.json` (create, delete, config, partitions), made under the
    directory lock, so every process's open topics see the change at their next use by
    comparing one word instead of stat-ing a file. Readers compare for inequality, so
    any value is valid: a reset costs one re-read of the topic files."""

    METADATA_VERSION_AT = 64     # u64; partition.state keeps its fields here, .notify has none

    def __init__(self, path, *, private: bool = False):
        """`private`: in memory only (a read-only Log): wakes the waiters of this process."""
        self.path = path
        fd = (_io.memory_file(path) if private else
              _io.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644))
        try:
            if os.fstat(fd).st_size < STATE_SIZE:
                _io.ftruncate(fd, STATE_SIZE)
            self.mm = mmap.mmap(fd, STATE_SIZE)
        finally:
            os.close(fd)
        self.ptr = hp.from_buffer(self.mm)
        self._meta_addr = self.ptr + self.METADATA_VERSION_AT

    def value(self) -> int:
        return hp.lib.el_state_notify_value(self.ptr)

    def bump(self):
        hp.lib.el_state_publish(self.ptr, hp.NULL, 0)

    def wait(self, seen: int, timeout: float | None) -> bool:
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        return bool(hp.lib.el_state_wait(self.ptr, seen, ns))

    def metadata_version(self) -> int:
        """One atomic load (about 50 ns): cheap enough for every append."""
        return hp.lib.el_atomic_load_u64(self._meta_addr)

    def bump_metadata(self) -> int:
        """Publish a topic metadata change: version + 1, then wake every sleeper so waiting
        consumers look at their subscriptions. Call with the directory lock held, after the
        topic file was renamed into place: the lock makes load-then-store an increment."""
        version = (hp.lib.el_atomic_load_u64(self._meta_addr) + 1) % 2**64
        hp.lib.el_atomic_store_u64(self._meta_addr, version)
        self.bump()
        return version

    def close(self):
        if self.mm is not None:
            # Topics may outlive the log: after close they read the last version from
            # process memory instead of a pointer into an unmapped page.
            self._meta_addr = hp.new("uint64_t *", self.metadata_version())
            self.ptr = None
            self.mm.close()
            self.mm = None


def fsync_dir(path):
    _io.fsync_dir(path)


def write_atomic(path, data: bytes):
    """Write-temp, fsync, rename, fsync-dir: after a crash the file is old or new, never torn."""
    path = os.fspath(path)
    # A short temp name: "<name>.tmp" could pass NAME_MAX for a 249-character topic. One
    # per call: two threads of a process writing two files of one folder (a roll's
    # partition.checkpoint and the cleaner's cleaner.checkpoint) must not share it.
    tmp = os.path.join(os.path.dirname(path), f".{os.getpid()}.{next(_TEMP_SEQ)}.tmp")
    fd = _io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[_io.write(fd, view):]
            _io.fsync(fd)
        finally:
            os.close(fd)
        _io.replace(tmp, path)
    except BaseException:
        try:                     # a full disk, say: leave no temp file behind
            _io.unlink(tmp)
        except OSError:
            pass
        raise
    _io.fsync_dir(os.path.dirname(path) or ".")


TEMP_RE = re.compile(r"^\.\d+(\.\d+)?\.tmp$")
_TEMP_SEQ = itertools.count()


def remove_temp_files(dir_path, match=TEMP_RE.match):
    """Drop temp files a crashed write_atomic left (call with the folder's lock held), or
    the files whose names `match` (the cleaner's uncommitted output)."""
    for name in os.listdir(dir_path):
        if match(name):
            try:
                _io.unlink(os.path.join(dir_path, name))
            except FileNotFoundError:
                pass


_CRC_KEY = b', "crc32c": '


def seal_json(text: bytes) -> bytes:
    """A JSON object's text (as json.dumps wrote it) with the CRC-32C of that text added as
    its last key, `"crc32c": <uint32>`, and a final newline (FORMAT.md §7). Readers that do
    not know the key ignore it."""
    if not text.endswith(b"}"):
        raise ValueError("seal_json needs the text of a JSON object")
    return text[:-1] + _CRC_KEY + b"%d}\n" % hp.crc32c(text)


def unseal_json(data: bytes) -> dict:
    """The object a sealed (or older, unsealed) JSON file holds. ValueError if it is not a
    JSON object, or if it carries a crc32c that does not match the text before it: a bit
    flipped anywhere is caught, and one flipped in the key's own name leaves the rest
    intact."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object but {type(doc).__name__}")
    if "crc32c" in doc:
        crc = doc.pop("crc32c")
        i = data.rfind(_CRC_KEY)
        if i < 0 or not isinstance(crc, int) or hp.crc32c(data[:i] + b"}") != crc:
            raise ValueError("CRC-32C mismatch")
    return doc


def _checkpoint_shape_ok(doc: dict) -> bool:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    fields = doc.get("fields")
    return (is_int(doc.get("version", 0)) and isinstance(doc.get("clean", False), bool)
            and is_int(doc.get("recovery_point", 0)) and doc.get("recovery_point", 0) >= 0
            and is_int(doc.get("log_start_offset", 0)) and doc.get("log_start_offset", 0) >= 0
            and (fields is None or (isinstance(fields, list) and len(fields) == N_FIELDS
                                    and all(is_int(v) for v in fields))))


def current_fields(path) -> tuple[list[int], int] | None:
    """(fields, flushed offset) of a state file a handle of this boot published and is not
    changing, read through a read-only mapping without writing a byte; None when the file
    is missing, short, stale (another boot), or a writer is mid-change (then the caller
    rebuilds the state from the segments). A newer state version is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        if os.fstat(fd).st_size < STATE_SIZE:
            return None
        mm = mmap.mmap(fd, STATE_SIZE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    view = SharedState.__new__(SharedState)
    view.path, view.fd, view.mm, view.ptr = path, None, mm, hp.from_buffer(mm)
    try:
        if not view.valid() or view.in_append():
            return None
        fields = view.load()
        return None if fields is None else (fields, view.flushed_offset())
    finally:
        view.ptr = None
        mm.close()


def read_checkpoint(dir_path) -> dict:
    path = os.path.join(dir_path, CHECKPOINT_FILE)
    damaged = {"version": CHECKPOINT_VERSION, "clean": False, "recovery_point": 0,
               "log_start_offset": 0, "damaged": True}
    try:
        with open(path, "rb") as f:
            data = unseal_json(f.read())
    except FileNotFoundError:
        return {"version": CHECKPOINT_VERSION, "clean": False, "recovery_point": 0, "log_start_offset": 0}
    except (OSError, ValueError):
        # Damaged checkpoint: recover everything from the segments (the safe direction).
        return damaged
    if not _checkpoint_shape_ok(data):
        return damaged
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise FormatVersionError(f"{path} was written by a newer embedlog (checkpoint version "
                                 f"{data.get('version')}, this one reads up to {CHECKPOINT_VERSION})")
    return data


_KEEP = object()


def write_checkpoint(dir_path, *, clean: bool, recovery_point: int, log_start_offset: int,
                     fields: list[int] | None = None, txn_start=_KEEP):
    """`txn_start`: the first offset of the oldest transaction open when the active
    segment was rolled (#19), where recovery starts looking for open transactions; kept
    from the current checkpoint unless given (None: none was open)."""
    if txn_start is _KEEP:
        txn_start = read_checkpoint(dir_path).get("txn_start")
    doc = {"version": CHECKPOINT_VERSION, "clean": clean, "recovery_point": recovery_point,
           "log_start_offset": log_start_offset}
    if isinstance(txn_start, int):
        doc["txn_start"] = txn_start
    if fields is not None:
        doc["fields"] = fields
    write_atomic(os.path.join(dir_path, CHECKPOINT_FILE), seal_json(json.dumps(doc).encode()))
