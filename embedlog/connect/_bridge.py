"""`embedlog bridge`: topics, their configs and committed group offsets, copied between a
log directory and a Kafka cluster (either way, or between two directories).

Records go partition by partition into the same partition number, keeping keys, values,
headers, timestamps and order. The destination must have no other writer on the bridged
topics: where the bridge stands is read from the destination itself.

Resuming without duplicates. After each written batch (acknowledged: fdatasync'd on a
directory, acks=all by an idempotent producer on a cluster) the bridge appends a sync
record `(next source offset S, destination end D)` per partition to the compacted topic
`__embedlog_bridge` of the directory end (the destination when both are directories).
Killed at any moment, it finds the destination end E >= D; the E - D records past the sync
are the next E - D source records after S (same order, no other writer), so it skips that
many and goes on. No header is added to the records.

Translating group offsets (MirrorMaker 2's checkpoints, exact). A committed source offset C
of a partition whose sync is (S, D) maps to D - #(source records with C <= offset < S): the
destination offset of the first record the group had not consumed. It is committed to the
destination group only when that group has no active member there and its own committed
offset is missing or behind, so consumers moved to the destination are never sent back.
"""
from __future__ import annotations

import re
import threading
import time

from ._ends import STATE_TOPIC, BridgeError, DirEnd, is_brokers, open_end, skipped_topic

__all__ = ["Bridge", "BridgeError", "bridge"]


def _patterns(value) -> list[re.Pattern]:
    if value is None:
        return [re.compile(".*")]
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            out.append(re.compile(item))
        except re.error as e:
            raise BridgeError(f"bad pattern {item!r}: {e}") from None
    if not out:
        raise BridgeError(f"no pattern in {value!r}")
    return out


def _matches(name: str, patterns) -> bool:
    return any(p.fullmatch(name) for p in patterns)


class Bridge:
    """One bridge from `source` to `dest` (each a directory path / file:// URL or a
    `host:port[,host:port]` broker list). run() copies until caught up (follow=False) or
    until stop() / the `stop` event (follow=True), and returns a summary dict."""

    def __init__(self, source: str, dest: str, *, topics=None, groups=None, name: str | None = None,
                 add_partitions: bool = False, kafka_config: dict | None = None, timeout: float = 10.0,
                 batch_records: int = 50_000, group_interval: float = 5.0, on_progress=None):
        self.topic_patterns = _patterns(topics)
        self.group_patterns = _patterns(groups)
        self.add_partitions = add_partitions
        self.batch_records = batch_records
        self.group_interval = group_interval
        self.on_progress = on_progress
        self._stop = threading.Event()
        if is_brokers(source) and is_brokers(dest):
            raise BridgeError("one end of a bridge must be a log directory (between two Kafka clusters, "
                              "use MirrorMaker 2)")
        self.src = open_end(source, create=False, kafka_config=kafka_config, timeout=timeout)
        try:
            self.dst = open_end(dest, create=True, kafka_config=kafka_config, timeout=timeout)
        except BaseException:
            self.src.close()
            raise
        if self.src.identity == self.dst.identity:
            self.close()
            raise BridgeError(f"source and destination are the same ({self.src.label})")
        self.home = self.dst if isinstance(self.dst, DirEnd) else self.src
        self.name = name or f"{self.src.identity} -> {self.dst.identity}"
        self.syncs: dict[tuple[str, int], tuple[int, int]] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.summary = {"source": self.src.label, "destination": self.dst.label, "bridge": self.name,
                        "topics": {}, "groups": {}, "records": 0, "resumed": {}, "seconds": 0.0}

    # ------------------------------------------------------------ lifecycle
    def close(self):
        for end in (getattr(self, "src", None), getattr(self, "dst", None)):
            if end is not None:
                end.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stop(self):
        """Finish the batch being written (and its sync record), then return from run()."""
        self._stop.set()

    # ------------------------------------------------------------ topics
    def _plan_topics(self) -> dict[str, int]:
        src_topics = {t: n for t, n in self.src.topics().items()
                      if not skipped_topic(t) and t != STATE_TOPIC and _matches(t, self.topic_patterns)}
        dst_topics = self.dst.topics()
        for t, n in sorted(src_topics.items()):
            info = self.summary["topics"].setdefault(t, {"partitions": n, "records": 0, "created": False})
            have = dst_topics.get(t)
            if have is None:
                config = self.src.topic_config(t)
                dropped = self.dst.create_topic(t, n, config)
                info.update(created=True, config=config)
                if dropped:
                    info["configs_not_copied"] = dropped
            elif have < n:
                if not self.add_partitions:
                    raise BridgeError(f"topic {t} has {have} partition(s) on {self.dst.label} but {n} on "
                                      f"{self.src.label}; records of partitions {have}..{n - 1} would have "
                                      "nowhere to go (--add-partitions grows the destination)")
                self.dst.add_partitions(t, n)
                info["partitions_added"] = n - have
        return src_topics

    # ------------------------------------------------------------ positions
    def _resume(self, topics: dict[str, int]):
        """Where each partition stands, from the sync records and the destination's end."""
        if not self.syncs:
            self.syncs = self.home.state_load(self.name)
        fresh = {}
        for t, n in topics.items():
            for p in range(n):
                tp = (t, p)
                if tp in self.positions:
                    continue
                end = self.dst.end_offset(t, p)
                sync = self.syncs.get(tp)
                if sync is None:
                    start, _hw = self.src.watermarks(t, p)
                    sync = fresh[tp] = (start, end)   # before the first record: nothing copied
                src_next, dst_end = sync
                extra = end - dst_end
                if extra < 0:
                    raise BridgeError(f"{t} [{p}] ends at offset {end} on {self.dst.label}, below the {dst_end} "
                                      "the bridge wrote there: records were deleted on the destination; "
                                      "bridge it again under another --name")
                if extra:
                    src_next = self._skip(t, p, src_next, extra)
                    fresh[tp] = (src_next, end)
                    self.summary["resumed"][f"{t}-{p}"] = extra
                self.positions[tp] = src_next
                self.syncs[tp] = (src_next, end)
        self.home.state_save(self.name, fresh)

    def _skip(self, t: str, p: int, start: int, n: int) -> int:
        """The source offset after the n-th record from `start` (already on the destination)."""
        seen, last = 0, None
        for r in self.src.iter_records(t, p, start, 1 << 62):
            seen += 1
            last = r.offset
            if seen == n:
                return last + 1
        raise BridgeError(f"{t} [{p}]: the destination holds {n} record(s) past the bridge's last sync but "
                          f"the source has only {seen} after offset {start}; another writer on the destination?")

    # ------------------------------------------------------------ copying
    def _read(self, want: dict) -> dict:
        if hasattr(self.src, "read_many"):
            return self.src.read_many(want, self.batch_records, 0.5)
        out = {}
        budget = self.batch_records
        for (t, p), pos in want.items():
            if budget <= 0:
                break
            recs, nxt = self.src.read(t, p, pos, budget)
            if recs or nxt != pos:
                out[(t, p)] = (recs, nxt)
                budget -= len(recs)
        return out

    def _copy_round(self) -> int:
        """One read from every partition with records, written and synced; records moved."""
        got = self._read(dict(self.positions))
        synced, moved = {}, 0
        for tp, (recs, nxt) in got.items():
            t, p = tp
            end = self.syncs[tp][1]
            if recs:
                first, end = self.dst.write(t, p, recs)
                if first != self.syncs[tp][1]:
                    raise BridgeError(f"{t} [{p}] on {self.dst.label}: expected the next record at offset "
                                      f"{self.syncs[tp][1]}, it went to {first}; another writer on the "
                                      "destination topic?")
                moved += len(recs)
                self.summary["topics"][t]["records"] += len(recs)
            self.positions[tp] = nxt
            self.syncs[tp] = synced[tp] = (nxt, end)
        self.home.state_save(self.name, synced)
        self.summary["records"] += moved
        return moved

    def _caught_up(self, targets: dict) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in targets.items())

    # ------------------------------------------------------------ groups
    def translate(self, t: str, p: int, committed: int) -> int | None:
        """The destination offset for a committed source offset; None if the bridge has
        not copied that far yet."""
        sync = self.syncs.get((t, p))
        if sync is None:
            return None
        src_next, dst_end = sync
        if committed > src_next:
            return None
        behind = sum(1 for _ in self.src.iter_records(t, p, committed, src_next)) if committed < src_next else 0
        return dst_end - behind

    def sync_groups(self) -> dict:
        out = self.summary["groups"]
        for g in self.src.groups():
            if g.startswith("embedlog-bridge-") or not _matches(g, self.group_patterns):
                continue
            info = out.setdefault(g, {"partitions": 0, "committed": 0})
            offsets = {tp: v for tp, v in self.src.group_offsets(g).items() if tp in self.syncs}
            if not offsets:
                continue
            info["partitions"] = len(offsets)
            if self.dst.group_active(g):
                info["skipped"] = f"active on {self.dst.label}: its members commit there themselves"
                continue
            theirs = self.dst.group_offsets(g)
            todo, waiting = {}, 0
            for (t, p), (c, meta) in offsets.items():
                mapped = self.translate(t, p, c)
                if mapped is None:
                    waiting += 1
                    continue
                have = theirs.get((t, p))
                if have is None or have[0] < mapped:
                    todo[(t, p)] = (mapped, meta)
            if todo:
                self.dst.commit_group(g, todo)
                info["committed"] += len(todo)
            info.pop("skipped", None)
            if waiting:
                info["ahead_of_bridge"] = waiting
            else:
                info.pop("ahead_of_bridge", None)
        return out

    # ------------------------------------------------------------ run
    def run(self, follow: bool = False, stop: threading.Event | None = None) -> dict:
        t0 = time.monotonic()
        stop = stop or self._stop
        topics = self._plan_topics()
        self._resume(topics)
        targets = {} if follow else {tp: self.src.end_offset(*tp) for tp in self.positions}
        total = sum(max(0, end - self.positions[tp]) for tp, end in targets.items())
        next_groups = time.monotonic() + self.group_interval
        idle = 0
        while not stop.is_set() and not self._stop.is_set():
            moved = self._copy_round()
            if self.on_progress is not None:
                self.on_progress(self.summary["records"], total if not follow else None)
            if not follow:
                if self._caught_up(targets):
                    break
                idle = idle + 1 if not moved else 0
                if idle >= 20:                  # nothing more comes (e.g. control records at the end)
                    break
                continue
            if time.monotonic() >= next_groups:
                self.sync_groups()
                topics = self._plan_topics()     # topics created meanwhile
                self._resume(topics)
                next_groups = time.monotonic() + self.group_interval
            if not moved:
                self.src.wait(0.2)
        self.sync_groups()
        self.summary["seconds"] = round(time.monotonic() - t0, 3)
        secs = self.summary["seconds"] or 1e-9
        self.summary["records_per_second"] = round(self.summary["records"] / secs)
        interrupted = stop.is_set() or self._stop.is_set()
        self.summary["stopped"] = ("interrupted" if not follow else "stopped") if interrupted else "caught up"
        return self.summary


def bridge(source: str, dest: str, *, follow: bool = False, **options) -> dict:
    """Copy topics, configs and group offsets from `source` to `dest` (see Bridge)."""
    with Bridge(source, dest, **options) as b:
        return b.run(follow=follow)
