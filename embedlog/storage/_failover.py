"""Failing over to a mirror and repairing from one (FORMAT.md §15; split from
_replication.py): `promote` makes a mirror directory the primary (fencing the old one
first, so a kill in between never leaves two primaries), `repair` rewrites a damaged
segment of a partition from an in-sync mirror's byte-identical copy.
"""
from __future__ import annotations

import json
import os

from . import _io
from . import _state as st
from ._errors import EmbedlogError, StorageError
from ._mirror_files import _copy_file
from ._replication import (
    PRIMARY_ONLY_FILES,
    mirror_marker,
    read_replicas,
    write_replicas,
)
from ._segment import Segment, list_segments


def promote(mirror_path, *, fence: bool = True) -> dict:
    """Make a mirror directory the primary (`embedlog replicas promote`). Its registry
    lists the old primary (under the id the mirror had) and the other mirrors; the old
    primary and those mirrors, where reachable, are marked as mirrors of the new primary,
    so the old primary cannot be opened as a primary again: when the new primary copies
    to it, its divergent tail (records that never reached this mirror) is truncated.
    Opening the promoted directory recovers its partitions from their files. `fence=False`
    leaves the others alone (tests promote a copy of a mirror)."""
    mirror_path = os.path.abspath(os.fspath(mirror_path))
    marker = os.path.join(mirror_path, "embedlog.json")
    try:
        with open(marker, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise StorageError(f"{mirror_path} is not an embedlog mirror ({e})", path=mirror_path) from e
    old = doc.get("mirror_of")
    if not old:
        raise StorageError(f"{mirror_path} is not a mirror (it is a primary already)", path=mirror_path)
    try:
        registry = read_replicas(old)
    except EmbedlogError:
        registry = []                      # the old primary is gone: keep what we know
    me = next((r for r in registry if r["path"] == mirror_path), None)
    my_id = me["id"] if me else 1
    new_registry = [{"id": my_id, "path": old}]
    for r in registry:
        if r["path"] != mirror_path and not r.get("removed"):
            new_registry.append({"id": r["id"], "path": r["path"]})
    try:
        return _promote(mirror_path, marker, old, new_registry, fence)
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(f"promoting {mirror_path} failed: {e.strerror or e}; run it again to finish",
                           path=e.filename or mirror_path, errno=e.errno) from e


def _promote(mirror_path, marker, old, new_registry, fence) -> dict:
    for name in os.listdir(mirror_path):          # partition folders: no primary state yet
        pdir = os.path.join(mirror_path, name)
        if os.path.isdir(pdir) and name not in ("topics", "groups"):
            for f in PRIMARY_ONLY_FILES:
                try:
                    _io.unlink(os.path.join(pdir, f))
                except FileNotFoundError:
                    pass
    write_replicas(mirror_path, new_registry)
    fenced = []

    def fence_one(r):
        try:
            if os.path.exists(os.path.join(r["path"], "embedlog.json")):
                st.write_atomic(os.path.join(r["path"], "embedlog.json"),
                                json.dumps(mirror_marker(mirror_path)).encode() + b"\n")
                fenced.append(r["path"])
        except OSError:
            pass                                  # unreachable now: fenced when it is copied to
    # The old primary is fenced before this directory calls itself a primary: a crash in
    # between leaves two mirrors (running promote again finishes the job), never two primaries.
    if fence:
        fence_one(new_registry[0])
    st.write_atomic(marker, json.dumps({"format": "embedlog", "version": 1}).encode() + b"\n")
    for r in (new_registry[1:] if fence else ()):
        fence_one(r)
    return {"primary": mirror_path, "old_primary": old, "replicas": new_registry, "fenced": fenced}


def repair(part) -> list[dict]:
    """Replace damaged segments of a partition by an in-sync mirror's copy (`embedlog
    replicas repair`). A segment is damaged when a validating scan stops before its end;
    the mirror's copy is used only if it scans valid further than the primary's. Runs
    under the append lock; afterwards the partition's state is rebuilt from the files."""
    repaired = []
    with part._mutex:
        part._lock()
        try:
            fields = part._ensure_state_locked()
            active_base = fields[st.F_ACTIVE_BASE]
            part.state.set_in_append(os.getpid())
            for base in list_segments(part.path):
                seg = Segment(part.path, base)
                try:
                    size = seg.file_size()
                    end = fields[st.F_ACTIVE_SIZE] if base == active_base else size
                    r = seg.scan(base, part.config["index.interval.bytes"], end=end, dense=part._dense())
                finally:
                    seg.close()
                if r.valid_size >= end:
                    continue
                # In-sync mirrors first: their copies are the freshest.
                for m in sorted(part.mirrors, key=lambda m: not m.in_isr()):
                    if m.path is None:
                        continue
                    cand = Segment(m.path, base)
                    try:
                        if not os.path.exists(cand.log_path):
                            continue
                        cr = cand.scan(base, part.config["index.interval.bytes"], end=cand.file_size(),
                                       dense=part._dense())
                    except (OSError, EmbedlogError):
                        continue
                    finally:
                        cand.close()
                    if cr.valid_size > r.valid_size and (base != active_base or cr.valid_size >= end):
                        _copy_file(cand.log_path, seg.log_path)
                        Segment(part.path, base).rebuild_indexes(part.config["index.interval.bytes"],
                                                                  closed=base != active_base, dense=part._dense())
                        repaired.append({"segment": seg.log_path, "from": cand.log_path,
                                         "valid_bytes_before": r.valid_size, "valid_bytes_after": cr.valid_size})
                        break
            if repaired:
                st.fsync_dir(part.path)
                part.state.invalidate()         # every process re-derives the state from the files
            else:
                part.state.set_in_append(0)     # nothing changed: the state (and what it knows of mirrors) stands
        finally:
            part.state.unlock(st.LOCK_APPEND)
    return repaired
