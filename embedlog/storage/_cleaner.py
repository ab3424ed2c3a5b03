"""Retention and compaction of one partition (FORMAT.md §14): Kafka's deleteOldSegments
and LogCleaner, made safe for readers and writers in other processes.

Who may do what
 - Maintenance of a partition (retention, compaction) runs in one process at a time:
   it holds the cleaner lock, byte 2 of partition.state, for the whole pass. Appends
   never wait for it: they only touch the active segment, which is never cleaned.
 - The moments that change which files make up the log (deleting a prefix of segments,
   swapping cleaned segments in) take the append lock with `in_append` set, as a roll
   does, so a crash there is repaired by the next lock holder's recovery.
 - Readers never lock. Deleted files stay readable through descriptors already open
   (POSIX); a reader that opens a file after it was deleted gets ENOENT and retries
   with the new log start (OFFSET_OUT_OF_RANGE if it was below it). A swap bumps the
   state's swap word to odd before its first rename and to even after its last; a read
   that overlapped a swap is thrown away and repeated, so no reader ever combines an
   old .log with a new index or a new .log with an old position.

Crash safety of a swap (Kafka's .cleaned/.swap, with one manifest as the commit point)
 1. `<base>.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned` are written and fsync'd.
 2. `cleaner.swap` (JSON: new base, the bases it replaces) is written atomically: the
    commit point. Before it, recovery deletes the .cleaned files (old segments win);
    after it, recovery finishes the swap (new segments win). Never a mix, never a loss.
 3. The replaced segments other than `base` are deleted; the .cleaned files are renamed
    over `base`'s (indexes first, .log last); the directory is fsync'd; the manifest is
    removed.

The per-record work is C (csrc/cleaner.c) over 8 MiB reads of whole batches: the key map
(Kafka's SkimpyOffsetMap: 24 bytes a key, a 128-bit digest and the latest offset; it grows
up to log.cleaner.dedupe.buffer.size and is full at 90% of that, when this pass stops at a
batch boundary and the next pass goes on from there), and the filter pass (each batch
checked, then copied, dropped or rewritten with its offsets and a new CRC). Compressed
batches are decompressed and rebuilt here (`clean_batch`, also the reference the C pass is
tested against).
"""
from __future__ import annotations

import json
import os
from array import array
from bisect import bisect_right

from . import _hotpath as hp
from . import _io
from . import _state as st
from ._errors import CorruptRecordError, FormatVersionError
from ._failpoints import hit
from ._records import (
    ATTR_CONTROL,
    BatchHeader,
    decode_columns,
    iter_batches,
    now_ms,
    parse_header,
    rebuild_batch,
)
from ._segment import (
    MAX_RELATIVE_OFFSET,
    IndexCorrupt,
    Segment,
    list_segments,
    segment_name,
)

CLEANER_CHECKPOINT = "cleaner.checkpoint"
SWAP_MANIFEST = "cleaner.swap"
CLEANED = ".cleaned"
CHECKPOINT_VERSION = 1
READ_CHUNK = 8 << 20


# ------------------------------------------------------------------ files

def read_cleaner_checkpoint(dir_path) -> dict | None:
    """The partition's compaction progress, or None if it was never compacted. Its
    existence alone means the offsets may have gaps (readers stop requiring density)."""
    path = os.path.join(dir_path, CLEANER_CHECKPOINT)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"version": CHECKPOINT_VERSION, "first_dirty_offset": 0}   # damaged: clean it all again
    version = doc.get("version", 0) if isinstance(doc, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or \
            not isinstance(doc.get("first_dirty_offset", 0), int) or \
            not isinstance(doc.get("next_horizon"), (int, type(None))):
        return {"version": CHECKPOINT_VERSION, "first_dirty_offset": 0}   # damaged: clean it all again
    if version > CHECKPOINT_VERSION:
        raise FormatVersionError(f"{path} was written by a newer embedlog (cleaner checkpoint version "
                                 f"{doc.get('version')}, this one reads up to {CHECKPOINT_VERSION})")
    return doc


def write_cleaner_checkpoint(dir_path, first_dirty_offset: int, next_horizon: int | None = None):
    """`next_horizon`: the earliest delete horizon of a tombstone kept in the clean part
    (the partition is cleanable again from then on, to drop it)."""
    st.write_atomic(os.path.join(dir_path, CLEANER_CHECKPOINT),
                    json.dumps({"version": CHECKPOINT_VERSION, "first_dirty_offset": first_dirty_offset,
                                "next_horizon": next_horizon}).encode() + b"\n")


def _stem(dir_path, base):
    return os.path.join(dir_path, segment_name(base))


def remove_cleaned_files(dir_path):
    """Drop the output of a cleaning that never reached its commit point."""
    st.remove_temp_files(dir_path, lambda name: name.endswith(CLEANED))


def finish_swap(dir_path) -> bool:
    """Complete a swap whose manifest is on disk (idempotent: every step may already be
    done). Called by the swapper itself and by recovery. True if there was one."""
    path = os.path.join(dir_path, SWAP_MANIFEST)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return False
    except ValueError:
        # write_atomic never leaves a torn manifest; a garbage one is not ours to act on.
        _io.unlink(path)
        st.fsync_dir(dir_path)
        return False
    if doc.get("version", 0) > CHECKPOINT_VERSION:
        raise FormatVersionError(f"{path} was written by a newer embedlog (swap manifest version "
                                 f"{doc.get('version')})")
    base = doc["base"]
    hit("cleaner.swap.committed")
    for old in sorted(doc["replaces"], reverse=True):
        if old != base:
            Segment(dir_path, old).delete_files()
            hit("cleaner.swap.deleted_one")
    stem = _stem(dir_path, base)
    for ext in (".index", ".timeindex", ".log"):
        src = stem + ext + CLEANED
        if os.path.exists(src):
            _io.replace(src, stem + ext)
            hit("cleaner.swap.renamed_one")
    st.fsync_dir(dir_path)
    _io.unlink(path)
    st.fsync_dir(dir_path)
    return True


def iter_segment_batches(path, size: int):
    """(buffer, position, header) of every batch of a closed segment file, CRC-checked,
    read in large chunks."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        pos = 0
        while pos < size:
            buf = os.pread(fd, min(READ_CHUNK, size - pos), pos)
            got = 0
            for bpos, h in iter_batches(buf, path=path, base_position=pos):
                yield buf, bpos, h
                got = bpos + h.size
            if got == 0:
                # One batch larger than the chunk: read exactly it.
                from ._records import parse_header
                h = parse_header(os.pread(fd, 61, pos), 0, verify_crc=False, path=path, file_position=pos)
                buf = os.pread(fd, h.size, pos)
                for bpos, h in iter_batches(buf, path=path, base_position=pos):
                    yield buf, bpos, h
                    got = bpos + h.size
                if got == 0:
                    from ._errors import CorruptRecordError
                    raise CorruptRecordError(f"truncated batch in {path} at position {pos}", path=path,
                                             position=pos)
            pos += got
    finally:
        os.close(fd)


# ------------------------------------------------------------------ segment facts

def largest_timestamp(seg: Segment, active: bool, fields, dense: bool = False) -> int:
    """Kafka's LogSegment.largestTimestamp: the max record timestamp, else the file's mtime.

    A closed segment's comes from its time index, checked against the batches it names
    (Segment.time_lookup): a damaged but plausible final entry must not let retention
    delete a segment early. If the check fails, the segment's batch headers are scanned
    instead (nothing is written: the next reader rebuilds the index under the append lock)."""
    if active:
        ts = fields[st.F_MAX_TIMESTAMP]
    else:
        size = seg.file_size()
        try:
            seg.load_indexes(None, None, size)
            ts, _start = seg.time_lookup(2**63 - 1, size, dense, None)
        except IndexCorrupt:
            seg.index.reset()
            seg.timeindex.reset()
            ts = seg.scan(seg.base_offset, 2**31 - 1, end=size).max_timestamp
        ts = -1 if ts is None else ts
    if ts >= 0:
        return ts
    return int(os.stat(seg.log_path).st_mtime * 1000)


# ------------------------------------------------------------------ retention

def deletable_prefix(part, fields, now: int) -> tuple[int, list[str]]:
    """How many of the oldest segments retention deletes now, and why (Kafka's
    deleteLogStartOffsetBreachedSegments, deleteRetentionMsBreachedSegments and
    deleteRetentionSizeBreachedSegments, each a prefix: the longest wins)."""
    cfg = part.config
    bases = part._bases
    active_base = fields[st.F_ACTIVE_BASE]
    hw = fields[st.F_HIGH_WATERMARK]
    log_start = fields[st.F_LOG_START]
    segs = []
    for i, base in enumerate(bases):
        # Transient handles (closed below): a pass over every partition must not leave
        # their descriptors in the partitions' caches.
        seg = Segment(part.path, base)
        active = base == active_base
        size = fields[st.F_ACTIVE_SIZE] if active else os.path.getsize(seg.log_path)
        upper = bases[i + 1] if i + 1 < len(bases) else fields[st.F_LOG_END]
        segs.append((seg, active, size, upper))
    try:
        return _deletable_prefix(cfg, segs, hw, log_start, now, fields)
    finally:
        for seg, *_ in segs:
            seg.close()


def _deletable_prefix(cfg, segs, hw, log_start, now, fields):
    def prefix(predicate) -> int:
        n = 0
        for seg, active, size, upper in segs:
            if active and size == 0:           # an empty last segment is never deleted
                break
            if hw < upper or not predicate(seg, active, size, upper):
                break
            n += 1
        return n

    reasons = []
    n = prefix(lambda seg, active, size, upper: not active and upper <= log_start)
    if n:
        reasons.append("log start offset")
    if "delete" in cfg["cleanup.policy"]:
        retention_ms = cfg["retention.ms"]
        if retention_ms >= 0:
            k = prefix(lambda seg, active, size, upper:
                       now - largest_timestamp(seg, active, fields) > retention_ms)
            if k > n:
                n = k
                reasons.append("retention.ms")
        retention_bytes = cfg["retention.bytes"]
        if retention_bytes >= 0:
            diff = sum(s[2] for s in segs) - retention_bytes

            def size_ok(seg, active, size, upper):
                nonlocal diff
                if diff - size >= 0:
                    diff -= size
                    return True
                return False
            k = prefix(size_ok)
            if k > n:
                n = k
                reasons.append("retention.bytes")
    return n, reasons


def apply_retention_locked(part, fields, now: int) -> dict:
    """Delete the segments retention allows (append lock held, in_append set). When every
    segment goes, a new empty active segment is rolled first, as Kafka does."""
    n, reasons = deletable_prefix(part, fields, now)
    if n == 0:
        return {"deleted_segments": 0, "log_start_offset": fields[st.F_LOG_START]}
    doomed = part._bases[:n]
    freed = sum(os.path.getsize(os.path.join(part.path, segment_name(b) + ".log")) for b in doomed)
    if n == len(part._bases):
        part._roll_locked(fields)                # the active segment expired too
    new_start = max(fields[st.F_LOG_START], part._bases[n])
    ck = st.read_checkpoint(part.path)
    # Durable log start first: a crash after it leaves segments below the log start,
    # which the next pass deletes by the log-start rule; never data above it missing.
    st.write_checkpoint(part.path, clean=False, recovery_point=max(ck.get("recovery_point", 0), 0),
                        log_start_offset=new_start)
    hit("retention.log_start_durable")
    fields[st.F_LOG_START] = new_start
    fields[st.F_SEGMENTS_VERSION] += 1
    part.state.publish(fields)
    for base in doomed:                          # oldest first: what remains is a suffix
        part._segments.pop(base, Segment(part.path, base)).delete_files()
        hit("retention.deleted_one")
    # Again after the unlinks: a reader that listed the folder between the first publish
    # and an unlink holds a stale list under a version that would otherwise stay current.
    fields[st.F_SEGMENTS_VERSION] += 1
    part.state.publish(fields)
    st.fsync_dir(part.path)
    part._segments_version = -1                  # relist on next use
    part._refresh_segments(fields[st.F_SEGMENTS_VERSION])
    return {"deleted_segments": n, "deleted_bytes": freed, "log_start_offset": new_start,
            "reasons": reasons}


# ------------------------------------------------------------------ compaction

class CleanPlan:
    __slots__ = (
        "bases",
        "clean_bytes",
        "dirty_bytes",
        "first_dirty",
        "first_uncleanable",
        "reason",
        "sizes",
        "upper",
    )


def plan_cleaning(part, fields, now: int, force: bool) -> CleanPlan | None:
    """What to clean, by Kafka's rules: closed segments only, none newer than
    min.compaction.lag.ms, and only when the dirty ratio reaches min.cleanable.dirty.ratio
    (or a dirty record is older than max.compaction.lag.ms, or `force`)."""
    cfg = part.config
    active_base = fields[st.F_ACTIVE_BASE]
    log_start = fields[st.F_LOG_START]
    bases = [b for b in part._bases if b < active_base]
    # Segments wholly below the log start are retention's business.
    i0 = max(0, bisect_right(bases, log_start) - 1)
    bases = bases[i0:]
    if not bases:
        return None
    ck = read_cleaner_checkpoint(part.path) or {}
    first_dirty = min(max(ck.get("first_dirty_offset", log_start), bases[0]), active_base)
    # The dirty range is whole segments: from the one holding the first dirty offset (a
    # log start moved by DeleteRecords may lie inside one, and all of it is dirty).
    first_dirty = min(bases[max(0, bisect_right(bases, first_dirty) - 1)], first_dirty)
    lag = cfg["min.compaction.lag.ms"]
    # Never at or above the high watermark (Kafka): records a lagging mirror does not have
    # yet must not make committed ones obsolete.
    hw = fields[st.F_HIGH_WATERMARK]
    # Nor at or above the last stable offset (#19): an open transaction's records are
    # neither committed nor aborted yet.
    unstable = part.state.first_unstable()
    if unstable is not None:
        hw = min(hw, unstable)
    first_uncleanable = min(active_base, part._bases[max(0, bisect_right(part._bases, hw) - 1)])
    sizes = {}
    for b in bases:
        if b >= first_uncleanable:
            break
        seg = Segment(part.path, b)
        try:
            sizes[b] = os.path.getsize(seg.log_path)
            if b >= first_dirty and lag > 0 and largest_timestamp(seg, False, fields) > now - lag:
                first_uncleanable = b
                break
        finally:
            seg.close()
    bases = [b for b in bases if b < first_uncleanable]
    horizon = ck.get("next_horizon")
    tombstones_due = horizon is not None and now >= horizon
    if not bases or (first_dirty >= first_uncleanable and not (force or tombstones_due)):
        return None
    p = CleanPlan()
    p.first_dirty, p.first_uncleanable, p.bases = first_dirty, first_uncleanable, bases
    p.sizes = sizes
    p.upper = first_uncleanable            # where the last segment of the plan ends
    p.clean_bytes = sum(sizes[b] for b in bases if b < first_dirty)
    p.dirty_bytes = sum(sizes[b] for b in bases if b >= first_dirty)
    total = p.clean_bytes + p.dirty_bytes
    ratio = p.dirty_bytes / total if total else 0.0
    p.reason = None
    if force:
        p.reason = "forced"
    elif tombstones_due:
        p.reason = "tombstones past delete.retention.ms"
    elif total and ratio >= cfg["min.cleanable.dirty.ratio"]:
        p.reason = f"dirty ratio {ratio:.2f}"
    elif cfg["max.compaction.lag.ms"] < 2**62:
        first = next((b for b in bases if b >= first_dirty), None)
        for _buf, _pos, h in iter_segment_batches(_stem(part.path, first) + ".log", min(sizes[first], 1 << 16)):
            if now - h.max_timestamp > cfg["max.compaction.lag.ms"]:
                p.reason = "max.compaction.lag.ms"
            break
    return p if p.reason else None


DEDUPE_BUFFER_KEY = "log.cleaner.dedupe.buffer.size"
DEDUPE_BUFFER_DEFAULT = 128 << 20          # Kafka's default, 128 MiB
SLOT_BYTES = 24                            # csrc/cleaner.c: 16-byte key digest + offset
LOAD_FACTOR = 0.9                          # Kafka's log.cleaner.io.buffer.load.factor
FIRST_SLOTS = 1 << 16
GROW_FACTOR = 0.7                          # below the bound, the table doubles at this load
HUGE_SLOTS = 1 << 18                       # tables from 6 MiB ask for huge pages
NO_HORIZON = 2**63 - 1
SCRATCH_RECORDS = 4096                     # records a batch may have before the scratch grows


class KeyMap:
    """Kafka's SkimpyOffsetMap (csrc/cleaner.c): key digest -> offset of the key's latest
    record, in at most `buffer_bytes` (24 bytes a slot, filled to 90% before the map is
    full). The table starts small and doubles at 70% load, up to the bound."""

    def __init__(self, buffer_bytes: int):
        self.max_slots = buffer_bytes // SLOT_BYTES
        if self.max_slots < 2:
            raise ValueError(f"{DEDUPE_BUFFER_KEY} {buffer_bytes} is too small for a key map "
                             f"({SLOT_BYTES} bytes a key)")
        self.map = hp.new("el_keymap *")
        self.map.end_offset = -1
        self._alloc(min(self.max_slots, FIRST_SLOTS))

    def _alloc(self, slots: int):
        self._slots = hp.new("char[]", slots * SLOT_BYTES)       # zeroed: every slot empty
        self.map.slots = self._slots
        self.map.capacity = slots
        self.map.grow_at = int(slots * (LOAD_FACTOR if slots == self.max_slots else GROW_FACTOR))
        if slots >= HUGE_SLOTS:
            hp.lib.el_keymap_advise(self.map)

    def grow(self) -> bool:
        """A larger table with the same keys; False at the memory bound (the map is full)."""
        if self.map.capacity >= self.max_slots:
            return False
        old, old_slots = self.map, self._slots
        self.map = hp.new("el_keymap *")
        self._alloc(min(self.max_slots, old.capacity * 2))
        hp.lib.el_keymap_rehash(old, self.map)
        del old_slots
        return True

    def room(self, n: int) -> bool:
        """Whether n more keys fit (the table grown as needed)."""
        while self.map.entries + n > self.map.grow_at:
            if not self.grow():
                return False
        return True

    def __len__(self):
        return self.map.entries

    @property
    def memory_bytes(self) -> int:
        return self.map.capacity * SLOT_BYTES

    def put_columns(self, cols) -> None:
        """Put a decoded batch's keys; the caller has checked room() for them."""
        if not self.room(len(cols.keys)):
            raise ValueError(f"{len(cols.keys)} more keys do not fit this key map")
        blob, lens = _key_blob(cols.keys)
        hp.lib.el_keymap_put_many(self.map, blob, hp.i32(lens), hp.i64(array("q", cols.offsets)), len(lens))

    def newest(self, keys) -> list:
        """The latest offset of each key (None: not in the map, or no key)."""
        blob, lens = _key_blob(keys)
        out = hp.new("int64_t[]", len(lens))
        hp.lib.el_keymap_get_many(self.map, blob, hp.i32(lens), len(lens), out)
        return [None if o < 0 else o for o in out]


def _scratch(records: int):
    return hp.new("char[]", hp.lib.el_clean_scratch_bytes(records))


def _key_blob(keys):
    return b"".join(k for k in keys if k is not None), array("i", [-1 if k is None else len(k) for k in keys])


def _chunks(path, size: int):
    """Generator of (buffer, length, final, file position) over a closed segment, READ_CHUNK
    bytes at a time; send it how many bytes of whole batches were used. A batch larger
    than the chunk gets a chunk of its own size."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        buf = bytearray(max(1, min(READ_CHUNK, size)))
        pos = 0
        while pos < size:
            want = min(len(buf), size - pos)
            got = os.preadv(fd, [memoryview(buf)[:want]], pos)
            if got < want:
                raise CorruptRecordError(f"truncated batch in {path} at position {pos + got} (the file "
                                         "shrank while it was cleaned)", path=path, position=pos + got)
            used = yield buf, want, pos + want >= size, pos
            if used == 0:
                total = int.from_bytes(buf[8:12], "big") + 12
                if want < 12 or total <= len(buf):
                    raise CorruptRecordError(f"truncated batch in {path} at position {pos}", path=path,
                                             position=pos)
                buf = bytearray(total)
            pos += used
    finally:
        os.close(fd)


def _corrupt(rc: int, path, position: int):
    return CorruptRecordError(f"{hp.REASONS.get(rc, 'malformed batch')} in {path} at position {position}",
                              path=path, position=position)


def build_offset_map(part, plan: CleanPlan) -> KeyMap:
    """key -> offset of its latest record in the dirty range, built in C from the segments'
    bytes (compressed batches decompressed here). When the map reaches
    log.cleaner.dedupe.buffer.size, it ends at a batch boundary and the plan is cut to
    the segments below that offset (Kafka: the rest is cleaned by the next pass)."""
    km = KeyMap(part.config.get(DEDUPE_BUFFER_KEY, DEDUPE_BUFFER_DEFAULT))
    pos = hp.new("int64_t *")
    scratch = _scratch(SCRATCH_RECORDS)
    for b in plan.bases:
        if b < plan.first_dirty:
            continue
        path = _stem(part.path, b) + ".log"
        gen = _chunks(path, plan.sizes[b])
        try:
            buf, n, final, file_pos = next(gen)
            while True:
                pos[0] = 0
                cbuf = hp.from_buffer(buf)
                while True:
                    rc = hp.lib.el_keymap_scan(km.map, cbuf, n, final, pos, scratch, len(scratch))
                    if rc == 0:
                        break
                    if rc == 4:
                        scratch = _scratch(parse_header(buf, pos[0], path=path).records_count)
                        continue
                    if rc == 1:                  # compressed: decompress, then the same map
                        h = parse_header(buf, pos[0], path=path, file_position=file_pos + pos[0])
                        if km.room(h.records_count):
                            km.put_columns(decode_columns(buf, pos[0], h, path=path,
                                                          file_position=file_pos + pos[0]))
                            km.map.end_offset = h.next_offset
                            pos[0] += h.size
                            continue
                        del cbuf
                        return _map_full(km, plan, path, file_pos + pos[0])
                    if rc == 2:
                        if km.grow():
                            continue
                        del cbuf
                        return _map_full(km, plan, path, file_pos + pos[0])
                    raise _corrupt(rc, path, file_pos + pos[0])
                del cbuf
                buf, n, final, file_pos = gen.send(pos[0])
        except StopIteration:
            pass
        finally:
            gen.close()
    return km


def _map_full(km: KeyMap, plan: CleanPlan, path, position: int) -> KeyMap:
    end = km.map.end_offset
    if end < 0:
        raise ValueError(f"{DEDUPE_BUFFER_KEY} ({km.max_slots * SLOT_BYTES} bytes) holds fewer keys than "
                         f"the batch in {path} at position {position}: raise it")
    # This pass cleans the segments below `end` (the one holding it only up to it); the
    # checkpoint then says `end`, and the next pass starts from its segment (Kafka).
    bases = plan.bases
    plan.bases = [b for b in bases if b < end]
    plan.upper = next((b for b in bases if b > plan.bases[-1]), plan.first_uncleanable)
    plan.first_uncleanable = end
    return km


def group_segments(plan: CleanPlan, segment_bytes: int) -> list[list[int]]:
    """Adjacent segments merged while their inputs fit one segment (Kafka's groupSegmentsBySize)."""
    groups, cur, size = [], [], 0
    bounds = plan.bases[1:] + [plan.upper]
    for b, upper in zip(plan.bases, bounds):
        s = plan.sizes[b]
        if cur and (size + s > segment_bytes or upper - 1 - cur[0] > MAX_RELATIVE_OFFSET):
            groups.append(cur)
            cur, size = [], 0
        cur.append(b)
        size += s
    if cur:
        groups.append(cur)
    return groups


def clean_batch(h: BatchHeader, cols, newest, now: int, horizon: int, stats: dict):
    """The batch `h` (decoded columns `cols`, `newest[i]` the map's offset for record i's
    key) as the cleaner keeps it: None (nothing stays), cols unchanged (`True`), or the
    rewritten bytes. The reference of el_clean_scan, and the path of compressed batches."""
    if h.attributes & ATTR_CONTROL:
        return True           # transaction markers stay: their key is a type, not a record key
    horizon_set = bool(h.attributes & 0x40)
    # A record stays unless a later record has its key (keyless ones: no entry).
    keep = [i for i, off, new in zip(range(h.records_count), cols.offsets, newest) if new is None or off >= new]
    tombstones = False
    values = cols.values
    if None in values:
        kept = []
        for i in keep:
            if values[i] is None and cols.keys[i] is not None:
                if horizon_set and now >= h.base_timestamp:
                    stats["tombstones_removed"] += 1
                    continue          # delete.retention.ms has passed since first cleaned
                tombstones = True
            kept.append(i)
        keep = kept
    if tombstones:
        due = h.base_timestamp if horizon_set else horizon
        if stats["next_horizon"] is None or due < stats["next_horizon"]:
            stats["next_horizon"] = due
    stats["records_out"] += len(keep)
    if len(keep) == h.records_count and (horizon_set or not tombstones):
        return True
    return rebuild_batch(h, cols, keep, delete_horizon=horizon if tombstones else None)


def clean_group(part, plan: CleanPlan, group: list[int], latest: KeyMap, now: int) -> dict:
    """Write the cleaned copy of `group` as `<group[0]>.*.cleaned` (fsync'd, indexes built):
    the filter pass in C (el_clean_scan) over READ_CHUNK reads, compressed batches here."""
    horizon = now + part.config["delete.retention.ms"]
    stem = _stem(part.path, group[0])
    out_path = stem + ".log" + CLEANED
    fd = _io.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    cs = hp.new("el_clean_stats *")
    cs.now, cs.horizon, cs.next_horizon = now, horizon, NO_HORIZON
    slow = {"records_in": 0, "records_out": 0, "tombstones_removed": 0, "next_horizon": None}
    out = bytearray(READ_CHUNK + (1 << 20))
    out_len = hp.new("int64_t *")
    scratch = _scratch(SCRATCH_RECORDS)
    pos = hp.new("int64_t *")
    written = 0
    bytes_in = 0
    try:
        for b in group:
            path = _stem(part.path, b) + ".log"
            bytes_in += plan.sizes[b]
            gen = _chunks(path, plan.sizes[b])
            try:
                buf, n, final, file_pos = next(gen)
                while True:
                    pos[0] = 0
                    cbuf, cout = hp.from_buffer(buf), hp.from_buffer(out)
                    while True:
                        rc = hp.lib.el_clean_scan(latest.map, cbuf, n, final, pos, cout, len(out), out_len,
                                                  scratch, len(scratch), cs)
                        if rc == 0:
                            break
                        if rc == 3:               # out is full: drain it (or grow it for one batch)
                            if out_len[0]:
                                written = _drain(fd, out, out_len, written, out_path)
                            else:
                                h = parse_header(buf, pos[0], path=path, file_position=file_pos + pos[0])
                                del cout
                                out = bytearray(h.size + 10 * h.records_count)
                                cout = hp.from_buffer(out)
                        elif rc == 4:
                            scratch = _scratch(parse_header(buf, pos[0], path=path).records_count)
                        elif rc == 1:             # compressed: the Python path
                            written = _drain(fd, out, out_len, written, out_path)
                            h = parse_header(buf, pos[0], path=path, file_position=file_pos + pos[0])
                            cols = decode_columns(buf, pos[0], h, path=path, file_position=file_pos + pos[0])
                            slow["records_in"] += h.records_count
                            data = clean_batch(h, cols, latest.newest(cols.keys), now, horizon, slow)
                            if data is True:
                                data = memoryview(buf)[pos[0]:pos[0] + h.size]
                            if data is not None:
                                _io.pwrite_all(fd, data, written, out_path)
                                written += len(data)
                            pos[0] += h.size
                        else:
                            raise _corrupt(rc, path, file_pos + pos[0])
                    del cbuf, cout
                    written = _drain(fd, out, out_len, written, out_path)
                    buf, n, final, file_pos = gen.send(pos[0])
            except StopIteration:
                pass
            finally:
                gen.close()
        _io.fdatasync(fd, out_path)
    finally:
        os.close(fd)
    next_horizon = None if cs.next_horizon == NO_HORIZON else cs.next_horizon
    if slow["next_horizon"] is not None and (next_horizon is None or slow["next_horizon"] < next_horizon):
        next_horizon = slow["next_horizon"]
    stats = {"records_in": cs.records_in + slow["records_in"], "records_out": cs.records_out + slow["records_out"],
             "bytes_in": bytes_in, "bytes_out": written,
             "tombstones_removed": cs.tombstones_removed + slow["tombstones_removed"], "next_horizon": next_horizon}
    seg = Segment(part.path, group[0], suffix=CLEANED)
    try:
        seg.rebuild_indexes(part.config["index.interval.bytes"], closed=True, dense=False)
        for idx in (seg.index, seg.timeindex):
            _io.fdatasync(idx.open(), idx.path)
    finally:
        seg.close()
    return stats


def _drain(fd, out, out_len, pos, path) -> int:
    n = out_len[0]
    if n:
        _io.pwrite_all(fd, memoryview(out)[:n], pos, path)
        out_len[0] = 0
    return pos + n


def swap_locked(part, fields, group: list[int], expected_sizes: dict) -> bool:
    """Swap a cleaned group in (append lock held, in_append set). False, with the
    .cleaned files dropped, if the segments changed since they were read."""
    present = set(list_segments(part.path))
    stem = _stem(part.path, group[0])
    for b in group:
        if b not in present or os.stat(_stem(part.path, b) + ".log").st_size != expected_sizes[b]:
            remove_cleaned_files(part.path)
            return False
    if not all(os.path.exists(stem + ext + CLEANED) for ext in (".log", ".index", ".timeindex")):
        # Someone removed our output (on systems with POSIX locks only, a recovery in this
        # very process can): never commit a swap whose new files are not all there.
        remove_cleaned_files(part.path)
        return False
    swap = part.state.swap_begin()
    for b in group:
        seg = part._segments.pop(b, None)
        if seg is not None:
            seg.close()
    st.write_atomic(os.path.join(part.path, SWAP_MANIFEST),
                    json.dumps({"version": CHECKPOINT_VERSION, "base": group[0],
                                "replaces": group}).encode() + b"\n")
    finish_swap(part.path)
    fields[st.F_SEGMENTS_VERSION] += 1
    part.state.publish(fields)
    part._segments_version = -1
    part._refresh_segments(fields[st.F_SEGMENTS_VERSION])
    # Only now: if anything above failed, the word stays odd and in_append set, so readers
    # wait for (and the next lock holder runs) recovery, which finishes the swap.
    part.state.swap_end(swap)
    return True


def now_or(now) -> int:
    return now_ms() if now is None else now


__all__ = [
    "CLEANER_CHECKPOINT",
    "SWAP_MANIFEST",
    "apply_retention_locked",
    "build_offset_map",
    "clean_group",
    "finish_swap",
    "group_segments",
    "plan_cleaning",
    "read_cleaner_checkpoint",
    "remove_cleaned_files",
    "swap_locked",
    "write_cleaner_checkpoint",
]
