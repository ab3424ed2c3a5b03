"""Mirroring of partitions to peer directories (FORMAT.md §15): Kafka's follower
replicas, in-sync replica set (ISR), high watermark and min.insync.replicas, as a shim
on one host.

A log directory may name mirror directories (another disk, a network mount) in its
`replicas.json`. A topic with replication.factor k keeps its partitions on the primary
and on k-1 mirrors. A mirror directory is itself an embedlog directory whose marker says
whose mirror it is: its segment files are byte-identical copies of the primary's (same
batches at the same positions), plus indexes and the topic's config, so it can be
promoted to a primary as it stands.

Copying is pull-shaped, as Kafka's followers fetch: whoever holds a mirror's copy lock
(byte 8 + slot of the partition's state file) copies what the primary has published and
the mirror lacks. An acks=all append does it itself, fdatasync included, before it
reports delivery; for acks=1 a replicator thread in each writing process follows the
directory's futex word, so mirrors (and the high watermark) follow within a wake-up.

Per-partition replication state lives in partition.state (a cache, rebuilt empty after a
reboot: every mirror is then verified against the primary before it counts again):
    256 + 64*slot:  leo, durable_leo, base, size, caught_up_ms, flags, failed_ms, vanish word
flags: VERIFIED (the mirror's active segment is known to be a prefix of the primary's),
IN_ISR, FAILED (the last copy failed with an I/O error; retried after a backoff),
VANISHED (the mirror directory was removed, replaced, re-marked or unmounted: never
written again until `replicas add` bumps the registry entry's epoch past the one in the
slot's vanish word, or `replicas repair` clears it).

A mirror is not trusted to stay where its descriptors point: every copy checks that the
active segment's path still names the file its descriptor writes to (st_dev, st_ino) and
that the directory's marker (embedlog.json, "mirror_of" this log) is the one verified,
before the copy (nothing is written into a directory that is no longer this log's
mirror) and after it (a copy the directory vanished under does not count): four stat
calls a copy batch. The slow path (first copy, roll, retention) re-reads the marker
before it writes anything.
"""
from __future__ import annotations

import json
import os
import threading

from . import _hotpath as hp
from . import _io
from . import _state as st
from ._errors import (
    EmbedlogError,
    FormatVersionError,
    InvalidReplicationFactorError,
    LogClosedError,
    StorageError,
)
from ._failpoints import hit
from ._mirror_files import (
    _copy_cleaner_checkpoint,
    _copy_fds,
    _copy_file,
    _copy_file_prefix,
    _copy_range,
    _copy_topic_config_of,
    _create,
    _fdatasync_path,
    common_prefix,
)
from ._records import now_ms
from ._segment import Segment, list_segments, segment_name

REPLICAS_FILE = "replicas.json"
REPLICAS_VERSION = 1
MAX_MIRRORS = 8
COPY_LOCK_BASE = 8                # byte 8 + slot of partition.state: the mirror's copy lock
FAILED_BACKOFF_MS = 1000
_SLOT_BASE, _SLOT_SIZE = 256, 64
LEO, DURABLE, BASE, SIZE, CAUGHT_UP, FLAGS, FAILED_MS, VANISH_WORD = range(8)
VERIFIED, IN_ISR, FAILED, DISTRUST, VANISHED = 1, 2, 4, 8, 16
MARKER = "embedlog.json"
# VANISH_WORD: (number of vanishes seen << 32) | the registry epoch of the directory that vanished


_pool = None
_pool_lock = threading.Lock()


def background(fn, *args):
    """Run fn(*args) on the mirror copy threads (shared by the process); a Future."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor
                _pool = ThreadPoolExecutor(max_workers=MAX_MIRRORS, thread_name_prefix="embedlog-mirror")
    return _pool.submit(fn, *args)


def _after_fork():
    global _pool
    _pool = None          # the parent's threads do not exist in the child


os.register_at_fork(after_in_child=_after_fork)


# ------------------------------------------------------------------ the registry

def read_replicas(log_path) -> list[dict]:
    """[{"id": int, "path": str, "removed": bool}] of a log directory (empty: no mirrors)."""
    path = os.path.join(log_path, REPLICAS_FILE)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise StorageError(f"{path} is unreadable ({e})", path=path) from e
    if doc.get("version", 0) > REPLICAS_VERSION:
        raise FormatVersionError(f"{path} was written by a newer embedlog (version {doc.get('version')})")
    return doc.get("replicas", [])


def write_replicas(log_path, replicas: list[dict]):
    st.write_atomic(os.path.join(log_path, REPLICAS_FILE),
                    json.dumps({"version": REPLICAS_VERSION, "replicas": replicas}, indent=1).encode() + b"\n")


def mirror_marker(primary_path) -> dict:
    return {"format": "embedlog", "version": 1, "mirror_of": os.path.abspath(primary_path)}


def registry_epoch(log_path, replica_id: int) -> int:
    """The entry's epoch: bumped by every `replicas add` of it (a rebuilt directory)."""
    for r in read_replicas(log_path):
        if r["id"] == replica_id:
            return int(r.get("epoch", 0))
    return 0


def marker_problem(mirror_root, primary_path) -> str | None:
    """Why mirror_root is not (any more) a mirror directory of primary_path, or None."""
    marker = os.path.join(mirror_root, MARKER)
    try:
        with open(marker, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        if not os.path.isdir(mirror_root):
            return f"the directory {mirror_root} is gone"
        return f"{marker} is gone (the directory was replaced or emptied)"
    except (OSError, ValueError) as e:
        return f"{marker} is unreadable ({e})"
    if not isinstance(doc, dict) or doc.get("format") != "embedlog":
        return f"{marker} does not describe an embedlog directory any more"
    owner = doc.get("mirror_of")
    if owner is None:
        return f"{marker} now marks a primary log, not a mirror"
    if os.path.abspath(owner) != os.path.abspath(primary_path):
        return f"{marker} now marks a mirror of {owner}"
    return None


def init_mirror_dir(mirror_path, primary_path):
    """Make (or adopt) a mirror directory: an embedlog directory marked as this log's mirror."""
    marker = os.path.join(mirror_path, "embedlog.json")
    if os.path.exists(marker):
        with open(marker, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("format") != "embedlog":
            raise StorageError(f"{marker} does not describe an embedlog directory", path=marker)
        owner = doc.get("mirror_of")
        if owner is not None and os.path.abspath(owner) != os.path.abspath(primary_path):
            raise StorageError(f"{mirror_path} is already a mirror of {owner}", path=mirror_path)
    elif os.path.isdir(mirror_path) and os.listdir(mirror_path):
        raise StorageError(f"{mirror_path} exists, is not empty and is no embedlog directory: "
                           "refusing to use it as a mirror", path=mirror_path)
    _io.makedirs(os.path.join(mirror_path, "topics"), exist_ok=True)
    st.write_atomic(marker, json.dumps(mirror_marker(primary_path)).encode() + b"\n")


def add_replica(log, path) -> dict:
    """Register a mirror directory (or bring back a removed one, with its old id, so it
    catches up from where it stopped). Call with the directory lock held."""
    path = os.path.abspath(os.fspath(path))
    if path == log.path or path.startswith(log.path + os.sep) or log.path.startswith(path + os.sep):
        raise StorageError(f"a mirror must be outside the log directory and not contain it: {path}", path=path)
    replicas = read_replicas(log.path)
    entry = next((r for r in replicas if r["path"] == path), None)
    live = [r for r in replicas if not r.get("removed")]
    if entry is None and len(live) >= MAX_MIRRORS:
        raise StorageError(f"a log has at most {MAX_MIRRORS} mirrors", path=path)
    try:
        init_mirror_dir(path, log.path)
    except OSError as e:
        raise StorageError(f"cannot use {path} as a mirror: {e.strerror or e}", path=path, errno=e.errno) from e
    if entry is None:
        entry = {"id": max([r["id"] for r in replicas], default=0) + 1, "path": path}
        replicas.append(entry)
    entry.pop("removed", None)
    entry["epoch"] = int(entry.get("epoch", 0)) + 1    # an explicit add: a vanished copy is rebuilt
    write_replicas(log.path, replicas)
    return entry


def remove_replica(log, path) -> dict:
    """Detach a mirror: its partitions leave the ISR at once; its files stay. Adding the
    same path again resumes it. Call with the directory lock held."""
    path = os.path.abspath(os.fspath(path))
    replicas = read_replicas(log.path)
    entry = next((r for r in replicas if r["path"] == path and not r.get("removed")), None)
    if entry is None:
        raise StorageError(f"{path} is not a mirror of {log.path}", path=path)
    entry["removed"] = True
    write_replicas(log.path, replicas)
    return entry


def choose_replicas(log_path, replication_factor: int) -> list[int]:
    """The mirror ids for a new topic: the first replication_factor - 1 live mirrors."""
    if not isinstance(replication_factor, int) or isinstance(replication_factor, bool) or replication_factor < 1:
        raise InvalidReplicationFactorError(f"replication factor must be a positive integer, not {replication_factor!r}")
    live = [r["id"] for r in read_replicas(log_path) if not r.get("removed")]
    if replication_factor - 1 > len(live):
        raise InvalidReplicationFactorError(
            f"replication factor {replication_factor} needs {replication_factor - 1} mirror directories; "
            f"{log_path} has {len(live)} (add one with `embedlog replicas add PATH`)")
    return sorted(live)[:replication_factor - 1]


# ------------------------------------------------------------------ one partition's mirror

class _Busy(Exception):
    """The primary's segments changed during a copy (a swap, a roll, retention): nothing
    was recorded, and the next copy starts again."""


class MirrorVanishedError(StorageError):
    """The mirror directory is not where its copies were going any more (removed,
    replaced, re-marked, unmounted): the mirror left the ISR and is not written to until
    `embedlog replicas add PATH` (or `replicas repair`) rebuilds it."""


class PartitionMirror:
    """The copy of one partition in one mirror directory (slot = its place in the topic's
    replica list)."""

    def __init__(self, part, slot: int, replica_id: int, root: str | None):
        self.part = part
        self.slot = slot
        self.replica_id = replica_id
        self.root = root                  # None: the mirror was removed from the registry
        self.path = None if root is None else os.path.join(root, os.path.basename(part.path))
        self._closed_ok: dict[int, tuple] = {}     # base -> primary (ino, size, mtime) known copied
        self._active = None    # [segments version, base, fds (src/dst log, index, timeindex), entries...]
        self._config_seen = None
        self.last_error = None            # the last copy failure seen by this process
        self._active_file = None          # (base, inode) of the primary file last copied as active
        self._seen = None                 # (swap word, segments version) when this copy started
        self._marker_key = None           # (dev, ino, size, mtime) of the marker last verified
        self._epoch = 0                   # the registry epoch of the directory verified
        self._mutex = threading.Lock()

    def set_root(self, root: str | None):
        """The registry changed (a mirror removed, or added back): where this copy lives."""
        if root != self.root:
            self.close()
            self.root = root
            self.path = None if root is None else os.path.join(root, os.path.basename(self.part.path))
            self._closed_ok.clear()
            self._config_seen = None
            self.set(FLAGS, 0)                 # verify again before it counts

    def __repr__(self):
        return f"<mirror {self.replica_id} of {self.part.topic}-{self.part.partition} at {self.path}>"

    # -- shared slot
    def _addr(self, field):
        return self.part.state.ptr + _SLOT_BASE + _SLOT_SIZE * self.slot + 8 * field

    def get(self, field) -> int:
        return hp.lib.el_atomic_load_u64(self._addr(field))

    def set(self, field, value: int):
        hp.lib.el_atomic_store_u64(self._addr(field), value)

    def flags(self) -> int:
        return self.get(FLAGS)

    def update_flags(self, set_=0, clear=0, forbid=0) -> int:
        """Atomic read-modify-write of the flags word: copiers (under the copy lock) and the
        ISR rules (under the append lock) change it from different processes."""
        return hp.lib.el_atomic_update_u64(self._addr(FLAGS), set_, clear, forbid)

    def in_isr(self) -> bool:
        return self.root is not None and bool(self.flags() & IN_ISR)

    def why_not(self) -> str:
        """Why this mirror does not count, for error messages."""
        if self.root is None:
            return f"mirror {self.replica_id} was removed"
        if self.flags() & VANISHED:
            return self.last_error or self._vanished_message("it vanished (removed, replaced or unmounted)")
        if self.flags() & FAILED:
            return self.last_error or f"mirror {self.replica_id} failed (see `embedlog replicas status`)"
        return f"mirror {self.replica_id} is out of the in-sync set (lag {self.part._fields()[st.F_LOG_END] - self.get(LEO)})"

    # -- copying
    def sync(self, durable: bool, lock_timeout: float | None) -> bool:
        """Copy what the primary published and the mirror lacks (fdatasync'd if durable).
        False if another process holds the copy lock past lock_timeout (0: do not wait)."""
        if self.root is None:
            raise StorageError(f"mirror {self.replica_id} of {self.part.topic} was removed", path=None)
        with self._mutex:
            if not self.part.state.lock(COPY_LOCK_BASE + self.slot, lock_timeout):
                return False
            self._seen = None
            try:
                if self.flags() & VANISHED and not self._vanish_cleared():
                    raise MirrorVanishedError(self.last_error or self._vanished_message(
                        "it vanished (removed, replaced or unmounted)"), path=self.root)
                self._sync_locked(durable)
            except _Busy:
                self.close()
                return False
            except MirrorVanishedError:
                self.close()
                raise
            except OSError as e:
                self.close()
                if self._primary_moved():
                    return False          # a file the cleaner or retention just removed: again later
                # fsyncgate: after a failed write-back the kernel may have dropped the pages
                # and marked them clean; the mirror's active segment is rewritten from the
                # primary through a new file before it counts again, never trusted.
                self.update_flags(FAILED | DISTRUST, VERIFIED)
                self.set(FAILED_MS, now_ms())
                err = StorageError(f"mirroring {self.part.topic}-{self.part.partition} to {self.path} failed: "
                                   f"{e.strerror or e}", path=getattr(e, "filename", None) or self.path,
                                   errno=e.errno)
                self.last_error = str(err)
                raise err from e
            finally:
                self.part.state.unlock(COPY_LOCK_BASE + self.slot)
        return True

    def _primary_moved(self) -> bool:
        """The primary's segment set changed since this copy started (swap, roll, retention)."""
        if self._seen is None:
            return False
        f = self.part.state.load()
        return f is None or (self.part.state.swap_word(), f[st.F_SEGMENTS_VERSION]) != self._seen

    # -- is the mirror still where its descriptors write?
    def _log_path(self) -> str:
        return os.path.dirname(self.part.path)

    def _vanished_message(self, why: str) -> str:
        return (f"mirror {self.replica_id} of {self.part.topic}-{self.part.partition} at {self.root}: {why}; "
                f"it left the in-sync set and nothing more is written there until "
                f"`embedlog replicas add {self.root}` (or `embedlog replicas repair`) rebuilds it")

    def _vanish(self, why: str, epoch: int | None = None):
        """Record that the directory vanished (shared: every process stops copying) and raise."""
        word = self.get(VANISH_WORD)
        self.set(VANISH_WORD, (((word >> 32) + 1) << 32) | ((self._epoch if epoch is None else epoch) & 0xFFFFFFFF))
        self.update_flags(VANISHED | FAILED, VERIFIED | IN_ISR)
        self.set(FAILED_MS, now_ms())
        self.close()
        self._marker_key = None
        self.last_error = self._vanished_message(why)
        raise MirrorVanishedError(self.last_error, path=self.root)

    def _vanish_cleared(self) -> bool:
        """A `replicas add` since the vanish (the registry epoch moved past the slot's)?"""
        try:
            epoch = registry_epoch(self._log_path(), self.replica_id)
        except EmbedlogError:
            return False
        if epoch <= self.get(VANISH_WORD) & 0xFFFFFFFF:
            return False
        clear_vanished(self)
        return True

    def _marker_changed(self) -> bool:
        try:
            s = os.stat(os.path.join(self.root, MARKER))
        except OSError:
            return True
        return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) != self._marker_key

    def _verify_marker(self, epoch: int):
        """Slow path, before anything is written: the directory is still this log's mirror."""
        why = marker_problem(self.root, self._log_path())
        if why is None and self.flags() & VERIFIED and not os.path.isdir(self.path):
            why = f"the partition folder {self.path} is gone"
        if why is not None:
            self._vanish(why, epoch)
        s = os.stat(os.path.join(self.root, MARKER))
        self._marker_key = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)
        self._epoch = epoch

    def _check_still_there(self):
        """After a copy through the open descriptors, before it counts: the active segment's
        path still names the file written to, and the marker is the one verified (a marker
        rewritten in place with the same owner, by `replicas add`, is accepted)."""
        a = self._active
        where = os.path.join(self.path, segment_name(a[1]) + ".log")
        try:
            s = os.stat(where)
        except OSError as e:
            self._vanish(f"{where} is gone ({e.strerror or e})")
        if (s.st_dev, s.st_ino) != a[5]:
            self._vanish(f"{where} is no longer the file being copied to (the directory was replaced, "
                         "or its file system unmounted)")
        if self._marker_changed():
            why = marker_problem(self.root, self._log_path())
            if why is not None:
                self._vanish(why)
            s = os.stat(os.path.join(self.root, MARKER))
            self._marker_key = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)

    def _check_folder_still_there(self, a):
        """Before a slow copy with descriptors from an older segment set: the partition
        folder they were opened in is still at the path. Not their files: since then
        another process may have rolled past that segment and compacted it (the mirror's
        copy rewritten, a new inode) or retention may have deleted it."""
        try:
            s = os.stat(self.path)
        except OSError as e:
            self._vanish(f"{self.path} is gone ({e.strerror or e})")
        if (s.st_dev, s.st_ino) != a[7]:
            self._vanish(f"{self.path} is no longer the folder being copied to (the directory was replaced, "
                         "or its file system unmounted)")

    def close(self):
        a, self._active = self._active, None
        if a is not None:
            for fd in a[2]:
                os.close(fd)

    def _sync_locked(self, durable: bool):
        part = self.part
        started = now_ms()
        fields = part._fields()
        a = self._active
        if a is not None and a[0] == fields[st.F_SEGMENTS_VERSION] and a[1] == fields[st.F_ACTIVE_BASE] \
                and self.flags() & VERIFIED and self.get(BASE) == a[1] and self.get(VANISH_WORD) == a[6]:
            return self._sync_fast(fields, durable, started)
        if a is not None and self.get(VANISH_WORD) == a[6]:
            self._check_folder_still_there(a)   # the old descriptors' folder: still the mirror's?
        self.close()
        try:
            epoch = registry_epoch(self._log_path(), self.replica_id)     # read before the marker
        except EmbedlogError:
            epoch = self._epoch
        self._verify_marker(epoch)
        self._sync_slow(fields, durable, started)
        # Keep the active segment's six files open for the next copies.
        base = fields[st.F_ACTIVE_BASE]
        stem_src = os.path.join(part.path, segment_name(base))
        stem_dst = os.path.join(self.path, segment_name(base))
        fds = []
        try:
            for ext in (".log", ".index", ".timeindex"):
                fds.append(os.open(stem_src + ext, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
                fds.append(_io.open(stem_dst + ext, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)))
        except OSError:
            for fd in fds:
                os.close(fd)
            return
        d = os.fstat(fds[1])
        try:
            f = os.stat(self.path)
        except OSError:
            for fd in fds:
                os.close(fd)
            return
        self._active = [fields[st.F_SEGMENTS_VERSION], base, fds, fields[st.F_INDEX_ENTRIES],
                        fields[st.F_TIMEINDEX_ENTRIES], (d.st_dev, d.st_ino), self.get(VANISH_WORD),
                        (f.st_dev, f.st_ino)]
        self._active_file = (base, os.fstat(fds[0]).st_ino)
        self._check_still_there()         # opened by path after the marker check: the same place?

    def _sync_fast(self, fields, durable: bool, started: int):
        """The common case: same segments as last time; append the new bytes of the active
        segment and of its indexes through open descriptors."""
        a = self._active
        fds = a[2]
        end = fields[st.F_ACTIVE_SIZE]
        self._check_still_there()         # before: nothing goes to a directory that is not ours
        _copy_fds(fds[0], fds[1], self.get(SIZE), end, self.path)
        hit("mirror.after_copy")
        for k, (field, width) in enumerate(((st.F_INDEX_ENTRIES, 8), (st.F_TIMEINDEX_ENTRIES, 12))):
            new, old = fields[field], a[3 + k]
            if new != old:
                _copy_fds(fds[2 + 2 * k], fds[3 + 2 * k], min(old, new) * width, new * width, self.path)
                if new < old:
                    _io.ftruncate(fds[3 + 2 * k], new * width, self.path)
                a[3 + k] = new
        if durable:
            _io.fdatasync(fds[1], self.path)
        self._check_still_there()         # after: a copy the directory vanished under does not count
        self._record(fields, durable, started)

    def _record(self, fields, durable: bool, started: int):
        leo = fields[st.F_LOG_END]
        self.set(BASE, fields[st.F_ACTIVE_BASE])
        self.set(SIZE, fields[st.F_ACTIVE_SIZE])
        self.set(LEO, leo)
        if durable or self.get(DURABLE) > leo:
            self.set(DURABLE, leo)
        # Kafka's lastCaughtUpTimeMs: the mirror now holds everything the primary had when
        # this copy started.
        self.set(CAUGHT_UP, started)
        self.update_flags(VERIFIED, FAILED)

    def _sync_slow(self, fields, durable: bool, started: int):
        """Make the mirror's segment set the primary's. Reads the primary like a reader
        (FORMAT.md §14): it gives up (_Busy) if the primary's segments change meanwhile, and
        replaces a mirror segment through the cleaner's own swap protocol (`.cleaned`
        files, then the `cleaner.swap` manifest as the commit point), so a crash at any
        moment leaves the mirror old or new, never a mix, and a promoted mirror's recovery
        finishes a committed replacement."""
        from . import _cleaner
        part = self.part
        word = part.state.swap_word()
        if word & 1:
            raise _Busy()
        self._seen = (word, fields[st.F_SEGMENTS_VERSION])
        active_base, active_size = fields[st.F_ACTIVE_BASE], fields[st.F_ACTIVE_SIZE]
        bases = [b for b in list_segments(part.path) if b <= active_base]
        if not os.path.isdir(self.path):
            if not os.path.isdir(self.root):
                raise FileNotFoundError(2, "mirror directory is missing", self.root)
            try:
                _io.mkdir(self.path)            # the root was verified: it is never recreated here
            except FileExistsError:
                pass
        if not self.flags() & VERIFIED:
            # A former primary's own state must not outlive its demotion: a later promotion
            # would trust it. A mirror folder holds segments and indexes only.
            for name in PRIMARY_ONLY_FILES:
                try:
                    _io.unlink(os.path.join(self.path, name))
                except FileNotFoundError:
                    pass
        _cleaner.finish_swap(self.path)             # a copy that died after its commit point
        _cleaner.remove_cleaned_files(self.path)    # ... or before it
        st.remove_temp_files(self.path, lambda name: name.endswith(".mirror"))
        _copy_topic_config_of(self)
        _copy_cleaner_checkpoint(part.path, self.path)
        keep = set(bases)
        dir_changed = False
        for b in sorted(list_segments(self.path), reverse=True):
            if b > active_base:           # a divergent tail of an old primary: newest first
                Segment(self.path, b).delete_files()
                self._closed_ok.pop(b, None)
                dir_changed = True
        prev_base = self.get(BASE) if self.flags() & VERIFIED else -1
        closed = [b for b in bases if b < active_base]
        for i, b in enumerate(closed):
            upper = closed[i + 1] if i + 1 < len(closed) else active_base
            dir_changed |= self._sync_closed(b, upper, prev_base)
        for b in list_segments(self.path):  # retention's prefix (oldest first), merged-away ones
            if b not in keep:
                Segment(self.path, b).delete_files()
                self._closed_ok.pop(b, None)
                dir_changed = True
        # The active segment: append what is missing after a verified prefix.
        src = Segment(part.path, active_base)
        dst = os.path.join(self.path, segment_name(active_base) + ".log")
        if not os.path.exists(dst):
            _create(dst)
            dir_changed = True
            start = 0
        elif self.flags() & DISTRUST:
            _copy_file_prefix(src.log_path, dst, active_size)   # a new file, not the suspect one
            dir_changed = True
            start = active_size
        elif prev_base == active_base:
            start = min(self.get(SIZE), os.path.getsize(dst))
        else:
            start = common_prefix(src.log_path, dst, active_size)
        _copy_range(src.log_path, dst, start, active_size, truncate=True)
        hit("mirror.after_copy")
        for idx, entries, width in ((src.index, fields[st.F_INDEX_ENTRIES], 8),
                                    (src.timeindex, fields[st.F_TIMEINDEX_ENTRIES], 12)):
            out = os.path.join(self.path, os.path.basename(idx.path))
            if not os.path.exists(out):
                _create(out)
                dir_changed = True
            _copy_range(idx.path, out, 0, entries * width, truncate=True)
        if durable:
            _fdatasync_path(dst)
        if dir_changed:
            st.fsync_dir(self.path)
        if self._primary_moved():
            raise _Busy()                 # what was copied may mix two versions: record nothing
        self._record(fields, durable, started)
        self.update_flags(0, DISTRUST)         # rewritten through new, fdatasync'd files: trusted again

    def _sync_closed(self, base: int, upper: int, prev_base: int) -> bool:
        """Make the mirror's copy of the closed segment [base, upper) identical (True if the
        folder changed)."""
        from . import _cleaner
        src = Segment(self.part.path, base)
        s = os.stat(src.log_path)
        key = (s.st_ino, s.st_size, s.st_mtime_ns)
        if self._closed_ok.get(base) == key:
            return False
        dst = os.path.join(self.path, segment_name(base) + ".log")
        exists = os.path.exists(dst)
        # Never spread damage: a closed segment of the primary that does not scan valid to
        # its end (bit rot, a torn tail) is not copied; the mirror keeps its good copy for
        # `embedlog replicas repair`. Checked once per version of the file (CRC at GB/s).
        try:
            r = src.scan(base, 1 << 30, end=s.st_size, dense=False)
        finally:
            src.close()
        if r.valid_size < s.st_size:
            self.last_error = (f"{src.log_path} is damaged at position {r.valid_size}: not copied to "
                               f"{self.path} (repair it from there: embedlog replicas repair)")
            return False
        changed = False
        # The segment a failed fdatasync was writing to: its pages may be gone (fsyncgate).
        suspect = bool(self.flags() & DISTRUST) and base == self.get(BASE)
        if exists and base == prev_base and self._active_file == (base, s.st_ino) and not suspect:
            # The active segment this handle was copying, the same file: only its tail is
            # missing (growing a prefix is safe at any moment).
            _copy_range(src.log_path, dst, min(self.get(SIZE), os.path.getsize(dst)), s.st_size, truncate=True)
            for idx in (src.index, src.timeindex):
                _copy_file(idx.path, os.path.join(self.path, os.path.basename(idx.path)))
        elif suspect or not exists or os.path.getsize(dst) != s.st_size or \
                common_prefix(src.log_path, dst, s.st_size) != s.st_size:
            # New, compacted, merged or divergent: replace it, and the mirror segments the
            # primary's [base, upper) now covers, in one committed swap.
            stem = os.path.join(self.path, segment_name(base))
            for ext, path in ((".log", src.log_path), (".index", src.index.path), (".timeindex", src.timeindex.path)):
                _io.copyfile(path, stem + ext + _cleaner.CLEANED)
                _fdatasync_path(stem + ext + _cleaner.CLEANED)
            if self._primary_moved():
                _cleaner.remove_cleaned_files(self.path)
                raise _Busy()
            replaces = sorted({base} | {b for b in list_segments(self.path) if base <= b < upper})
            st.write_atomic(os.path.join(self.path, _cleaner.SWAP_MANIFEST),
                            json.dumps({"version": 1, "base": base, "replaces": replaces}).encode() + b"\n")
            _cleaner.finish_swap(self.path)
            changed = True
        else:
            for idx in (src.index, src.timeindex):
                _copy_file(idx.path, os.path.join(self.path, os.path.basename(idx.path)))
        _fdatasync_path(dst)             # closed segments are durable on the primary too (roll)
        self._closed_ok[base] = key
        return changed


def update_isr_locked(part, fields, now: int) -> bool:
    """Kafka's ISR rules for each mirror, then the high watermark = the lowest log end
    offset in the ISR (never moving back). Append lock held. True if fields changed."""
    lag_max = part.config["replica.lag.time.max.ms"]
    leo = fields[st.F_LOG_END]
    hw = leo
    for m in part.mirrors:
        flags = m.flags()
        if flags & IN_ISR:
            if flags & FAILED or m.root is None or (m.get(LEO) < leo and now - m.get(CAUGHT_UP) > lag_max):
                m.update_flags(0, IN_ISR)
        elif flags & VERIFIED and not flags & (FAILED | VANISHED) and m.root is not None \
                and m.get(LEO) >= fields[st.F_HIGH_WATERMARK]:
            m.update_flags(IN_ISR, 0, FAILED | VANISHED)      # caught up to the high watermark: back in (unless it just failed)
        if m.flags() & IN_ISR:
            hw = min(hw, m.get(LEO))
    hw = max(hw, fields[st.F_HIGH_WATERMARK])
    if hw != fields[st.F_HIGH_WATERMARK]:
        fields[st.F_HIGH_WATERMARK] = hw
        return True
    return False


def clear_vanished(m) -> None:
    """An explicit rebuild (`replicas add`, `replicas repair`): the mirror is copied to
    again, verified from scratch (every process's descriptors are dropped: the vanish
    count they were opened under is past)."""
    m.update_flags(0, VANISHED | FAILED | VERIFIED | IN_ISR)
    m.set(FAILED_MS, 0)
    m.close()
    m._closed_ok.clear()
    m._config_seen = None
    m._marker_key = None
    m.last_error = None


def rebuild_vanished(part) -> list[dict]:
    """`embedlog replicas repair`: every mirror of the partition that vanished is made a
    mirror directory again (created if gone; an empty one adopted; a foreign or re-marked
    one refused: {"mirror", "path", "error"}) and copied to from scratch by the next copy."""
    done = []
    for m in part.mirrors:
        if m.root is None or not m.flags() & VANISHED:
            continue
        try:
            init_mirror_dir(m.root, os.path.dirname(part.path))
        except (OSError, ValueError) as e:
            done.append({"mirror": m.replica_id, "path": m.path,
                         "error": f"cannot rebuild mirror {m.replica_id} at {m.root}: {getattr(e, 'strerror', None) or e}"})
            continue
        clear_vanished(m)
        done.append({"mirror": m.replica_id, "path": m.path, "error": None})
    return done


def isr_size(part) -> int:
    return 1 + sum(1 for m in part.mirrors if m.in_isr())


def refresh(part, *, durable: bool, wait: float | bool, only_isr: bool = False) -> list[StorageError]:
    """Copy to every mirror (the ISR only, if only_isr) and apply the ISR rules. I/O
    errors take the mirror out of the ISR and are returned, not raised."""
    errors = []
    now = now_ms()
    for m in part.mirrors:
        if m.root is None or (only_isr and not m.in_isr()):
            continue
        if m.flags() & FAILED and now - m.get(FAILED_MS) < FAILED_BACKOFF_MS and not durable:
            continue
        try:
            m.sync(durable, part.lock_timeout if wait is True else float(wait))
        except StorageError as e:
            errors.append(e)
    part._with_append_lock_publish(lambda fields: update_isr_locked(part, fields, now_ms()))
    return errors


def status(part) -> list[dict]:
    """Each replica of a partition: id, path, log end offset, lag, ISR membership."""
    fields = part._fields()
    leo = fields[st.F_LOG_END]
    rows = [{"replica": 0, "path": part.path, "role": "primary", "log_end_offset": leo, "lag": 0,
             "in_sync": True, "high_watermark": fields[st.F_HIGH_WATERMARK]}]
    for m in part.mirrors:
        flags = m.flags()
        known = bool(flags & VERIFIED)
        rows.append({"replica": m.replica_id, "path": m.path, "role": "mirror",
                     "log_end_offset": m.get(LEO) if known else None,
                     "lag": leo - m.get(LEO) if known else None,
                     "in_sync": m.in_isr(), "failed": bool(flags & FAILED),
                     "vanished": bool(flags & VANISHED), "removed": m.root is None})
    return rows


# ------------------------------------------------------------------ the replicator thread

class Replicator:
    """Follows the log's futex word and copies new data to mirrors of the partitions this
    process has open, so acks=1 data reaches mirrors (and the high watermark moves) within
    a wake-up; also applies replica.lag.time.max.ms while nothing is written."""

    def __init__(self, log):
        self.log = log
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"embedlog-replicator {log.path}", daemon=True)
        self._thread.start()

    def _parts(self):
        out = []
        for t in list(self.log._topics.values()):
            for p in list(t._partitions.values()):
                if p.mirrors and not p._closed:
                    out.append(p)
        return out

    def _run(self):
        notifier = self.log.notifier
        while not self._stop.is_set():
            if os.getpid() != self.pid:
                return
            seen = notifier.value()
            try:
                for p in self._parts():
                    f = p._fields()
                    if any(m.get(LEO) < f[st.F_LOG_END] or not m.in_isr() for m in p.mirrors) or \
                            f[st.F_HIGH_WATERMARK] < f[st.F_LOG_END]:
                        refresh(p, durable=False, wait=False)
            except (LogClosedError, ValueError):
                return                    # the log closed under us
            except (EmbedlogError, OSError):
                pass                      # reported through status and the ISR; retried next wake
            notifier.wait(seen, 0.1)

    def stop(self):
        self._stop.set()
        try:
            self.log.notifier.bump()
        except Exception:    # noqa: BLE001 - a closed notifier: the thread ends on its timeout
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


__all__ = [
    "MirrorVanishedError",
    "PartitionMirror",
    "Replicator",
    "add_replica",
    "choose_replicas",
    "isr_size",
    "read_replicas",
    "rebuild_vanished",
    "refresh",
    "remove_replica",
    "status",
    "update_isr_locked",
    "write_replicas",
]


# ------------------------------------------------------------------ failover and repair

PRIMARY_ONLY_FILES = (st.STATE_FILE, st.CHECKPOINT_FILE)
