"""`embedlog du`: what the topics of a log directory take on disk now (issue #6).

`du` reads the files of a log directory and only reads them, like `dump` and `verify`:
it never opens a partition through the library (opening may run recovery) and takes no
lock. Per topic (and per partition): bytes of every file in the partition folders,
segments, records (log end offset - log start offset), the observed compression ratio,
the write rate, the retention configs and the time left until retention.bytes.

- Log end offset: the next offset after the last whole batch of the newest segment,
  found from that segment's last .index entry (walking the batch headers after it).
  Log start offset: the first segment's base offset, or partition.checkpoint's
  log_start_offset when that is larger. Records are the offsets between the two; a
  compacted topic has gaps in its offsets, so it holds fewer.
- Compression ratio: sum of the batches' sizes on disk ÷ sum of their sizes with the
  records section decompressed. At most --sample-bytes of batches per topic are read,
  in 1 MiB windows spread evenly over its partitions and segments; "sampled" says so.
- Write rate, per partition: the bytes of the newest two segments after their first
  batch, ÷ the time between that first batch's maxTimestamp and the last batch's. It is
  bytes on disk per second (after compression), averaged over what those segments hold,
  and it is only as good as the records' timestamps (CreateTime comes from producers).
  n/a with fewer than two batches, a span under one second or no timestamps. A topic's
  rate is the sum of its partitions'.
- Time to retention.bytes: (retention.bytes × partitions - bytes of the .log files) ÷
  rate; retention.bytes counts segment bytes only, as in Kafka.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import re
import sys
from array import array

import click

from embedlog import CorruptRecordError, EmbedlogError
from embedlog.storage._compression import decompress
from embedlog.storage._records import HEADER_SIZE, LOG_OVERHEAD, MAGIC, parse_header, peek_header

from ._common import check_log_dir, dir_option, echo_json, echo_table, human_bytes, log_dir, note, output_options
from .plan import SIZE, _topic_meta, _topic_names, human_duration_ms


# ------------------------------------------------------------------ du: reading the files

_SEGMENT_RE = re.compile(r"(\d{20})\.log")
_INDEX_RE = re.compile(r"\d{20}\.(index|timeindex)")
SAMPLE_WINDOW = 1 << 20
MIN_RATE_SPAN_MS = 1000


class _Segment:
    __slots__ = ("base", "path", "size", "_positions")

    def __init__(self, base, path, size):
        self.base, self.path, self.size = base, path, size
        self._positions = None

    def index_positions(self) -> list[int]:
        """Batch start positions from the .index (derived data: only hints, each checked
        before use)."""
        if self._positions is None:
            try:
                with open(self.path[:-4] + ".index", "rb") as f:
                    data = f.read()
            except OSError:
                data = b""
            entries = array("i", data[:len(data) - len(data) % 8])    # (relative offset, position) pairs
            if sys.byteorder == "little":
                entries.byteswap()                                       # big-endian on disk (FORMAT.md §4)
            pos = entries[1::2].tolist()
            if pos != sorted(pos) or (pos and pos[0] < 0):
                pos = []                                                 # not an index we can use
            self._positions = pos[:bisect.bisect_left(pos, self.size)]
        return self._positions


def _header_at(fd: int, pos: int, size: int):
    """The header of a plausible batch at `pos` whose bytes all lie inside the file, or None."""
    data = os.pread(fd, HEADER_SIZE, pos)
    if len(data) < HEADER_SIZE:
        return None
    h = peek_header(data, 0)
    if h.magic != MAGIC or h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + h.size > size:
        return None
    return h


def _crc_ok(fd: int, pos: int, h) -> bool:
    data = os.pread(fd, h.size, pos)
    try:
        parse_header(data, 0, verify_crc=True)
        return len(data) == h.size
    except CorruptRecordError:
        return False


def _last_batch(fd: int, seg: _Segment):
    """(first header, last header, end of the last whole batch) of a segment, or None if
    it holds no whole batch. Walks the headers after the last usable .index entry."""
    first = _header_at(fd, 0, seg.size)
    if first is None:
        return None
    for start in list(reversed(seg.index_positions()[-3:])) + [0]:
        pos, last = start, None
        while (h := _header_at(fd, pos, seg.size)) is not None:
            last, last_pos = h, pos
            pos += h.size
        if last is not None and _crc_ok(fd, last_pos, last):
            return first, last, pos
    return None


def _scan_files(pdir: str):
    """(bytes per kind, segments) of one partition folder; every file counts once."""
    sizes = {"log": 0, "index": 0, "other": 0}
    segments = []
    for dirpath, _dirs, files in os.walk(pdir):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:      # deleted while we looked
                continue
            top = dirpath == pdir
            m = _SEGMENT_RE.fullmatch(name) if top else None
            if m:
                sizes["log"] += size
                segments.append(_Segment(int(m.group(1)), path, size))
            elif top and _INDEX_RE.fullmatch(name):
                sizes["index"] += size
            else:
                sizes["other"] += size
    segments.sort(key=lambda s: s.base)
    return sizes, segments


def _checkpoint_log_start(pdir: str) -> int:
    try:
        with open(os.path.join(pdir, "partition.checkpoint")) as f:
            return int(json.load(f).get("log_start_offset", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _batches(fd: int, seg: _Segment, start: int, length: int):
    """(position, header, buf, at) of the whole batches from `start` until `length` bytes
    from it are covered; stops at anything that is not a batch."""
    pos, goal = start, min(start + length, seg.size)
    while pos < goal:
        buf = os.pread(fd, min(SAMPLE_WINDOW, seg.size - pos), pos)
        at = 0
        while len(buf) - at >= HEADER_SIZE and pos + at < goal:
            h = peek_header(buf, at)
            if h.magic != MAGIC or h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + at + h.size > seg.size:
                return
            if at + h.size > len(buf):
                if at == 0:                 # one batch larger than the window: read it whole
                    buf = os.pread(fd, h.size, pos)
                    if len(buf) < h.size:
                        return
                    continue
                break
            yield pos + at, h, buf, at
            at += h.size
        if at == 0:
            return
        pos += at


class _Ratio:
    """Bytes on disk and uncompressed bytes of the batches read, and the estimate they
    give for `log_bytes` of segments."""

    def __init__(self):
        self.stored = self.uncompressed = self.batches = self.unreadable = self.unreadable_bytes = 0
        self.sampled = False
        self.estimate = None           # (bytes on disk, uncompressed) the ratio stands for

    def batch(self, h, buf, at):
        try:
            if h.compression:      # (an uncompressed batch is its own size: no need to check it)
                parse_header(buf, at, verify_crc=True)
                body = decompress(h.compression, memoryview(buf)[at + HEADER_SIZE:at + h.size])
                size = HEADER_SIZE + len(body)
            else:
                size = h.size
        except EmbedlogError:     # a damaged batch, or a codec whose library is missing
            self.unreadable += 1
            self.unreadable_bytes += h.size
            return
        self.stored += h.size
        self.uncompressed += size
        self.batches += 1

    def scaled(self, log_bytes: int):
        """(log_bytes, their uncompressed size by this sample's ratio)."""
        if not self.stored:
            return 0, 0
        if not self.sampled:
            return self.stored, self.uncompressed
        return log_bytes, log_bytes * self.uncompressed / self.stored

    def value(self):
        stored, uncompressed = self.estimate or (self.stored, self.uncompressed)
        return stored / uncompressed if uncompressed else None


def combined_ratio(parts) -> _Ratio:
    """A topic's ratio from (partition sample, partition .log bytes): each partition's
    sample stands for its own bytes, so partitions sampled unevenly (a small one read whole,
    a large one in windows) are still weighted by size."""
    r = _Ratio()
    stored = uncompressed = 0
    for p, log_bytes in parts:
        r.stored += p.stored
        r.uncompressed += p.uncompressed
        r.batches += p.batches
        r.unreadable += p.unreadable
        r.sampled = r.sampled or p.sampled
        s, u = p.scaled(log_bytes)
        stored += s
        uncompressed += u
    r.estimate = (stored, uncompressed)
    return r


def _sample(segments: list[_Segment], budget: int) -> _Ratio:
    """The compression ratio of every batch if the segments hold at most `budget` bytes;
    otherwise of 1 MiB windows spread evenly over them, each starting at the batch an
    .index entry names at or before the window."""
    r = _Ratio()
    total = sum(s.size for s in segments)
    if total == 0:
        return r
    if total <= budget:
        windows = [(s, 0, s.size) for s in segments]
    else:
        r.sampled = True
        k = max(1, budget // SAMPLE_WINDOW)
        length = max(1, min(SAMPLE_WINDOW, budget))
        windows = []
        ends = []
        acc = 0
        for s in segments:
            acc += s.size
            ends.append(acc)
        for i in range(k):
            g = min(max(0, (2 * i + 1) * total // (2 * k) - length // 2), total - 1)
            j = bisect.bisect_right(ends, g)
            s = segments[j]
            pos = g - (ends[j] - s.size)
            starts = s.index_positions()
            at = bisect.bisect_right(starts, pos) - 1
            windows.append((s, starts[at] if at >= 0 else 0, length))
    seen = set()
    for s, start, length in windows:
        if r.sampled and r.stored + r.unreadable_bytes >= budget:
            break
        try:
            fd = os.open(s.path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if start and _header_at(fd, start, s.size) is None:    # a stale index entry
                length += start
                start = 0
            for pos, h, buf, at in _batches(fd, s, start, length):
                if (s.base, pos) not in seen:
                    seen.add((s.base, pos))
                    r.batch(h, buf, at)
        finally:
            os.close(fd)
    return r


def _rate(last_of, segments: list[_Segment]):
    """Bytes per second over the newest two non-empty segments (see the module docstring),
    or None."""
    window = []
    for s in reversed(segments):
        if len(window) == 2:
            break
        found = last_of(s)
        if found is not None:
            window.append(found)
    if not window:
        return None
    window.reverse()
    first = window[0][0]
    last = window[-1][1]
    bytes_after_first = sum(end for _first, _last, end in window) - first.size
    span = last.max_timestamp - first.max_timestamp
    if first.max_timestamp < 0 or bytes_after_first <= 0 or span < MIN_RATE_SPAN_MS:
        return None
    return bytes_after_first * 1000 / span


def scan_partition(pdir: str, sample_budget: int) -> dict:
    missing = not os.path.isdir(pdir)
    sizes, segments = ({"log": 0, "index": 0, "other": 0}, []) if missing else _scan_files(pdir)
    found = {}

    def last_of(s):
        """_last_batch of a segment, once."""
        if s.base not in found:
            try:
                fd = os.open(s.path, os.O_RDONLY)
            except FileNotFoundError:          # deleted by retention meanwhile
                found[s.base] = None
            else:
                try:
                    found[s.base] = _last_batch(fd, s)
                finally:
                    os.close(fd)
        return found[s.base]

    log_start = _checkpoint_log_start(pdir)
    if segments:
        log_start = max(log_start, segments[0].base)
        newest = last_of(segments[-1])
        log_end = newest[1].next_offset if newest else segments[-1].base
    else:
        log_end = log_start
    return {"missing": missing, "bytes": sum(sizes.values()), "log_bytes": sizes["log"],
            "index_bytes": sizes["index"], "other_bytes": sizes["other"], "segments": len(segments),
            "log_start_offset": log_start, "log_end_offset": log_end, "records": max(0, log_end - log_start),
            "rate": _rate(last_of, segments), "ratio": _sample(segments, sample_budget)}


def _time_to_retention(retention_bytes: int, limit_parts: int, log_bytes: int, rate):
    """(seconds or None, text): 'unlimited', 'reached', 'n/a' or a duration."""
    if retention_bytes < 0:
        return None, "unlimited"
    left = retention_bytes * limit_parts - log_bytes
    if left <= 0:
        return 0, "reached"
    if not rate:
        return None, "n/a"
    seconds = left / rate
    return seconds, human_duration_ms(seconds * 1000)


def _ratio_doc(r: _Ratio) -> dict:
    v = r.value()
    return {"compression_ratio": None if v is None else round(v, 4), "ratio_sampled": r.sampled,
            "sampled_batches": r.batches, "sampled_bytes": r.stored, "sampled_uncompressed_bytes": r.uncompressed,
            "unreadable_batches": r.unreadable}


def _usage_doc(scan: dict, retention_bytes: int, limit_parts: int) -> dict:
    seconds, text = _time_to_retention(retention_bytes, limit_parts, scan["log_bytes"], scan["rate"])
    return {"bytes": scan["bytes"], "log_bytes": scan["log_bytes"], "index_bytes": scan["index_bytes"],
            "other_bytes": scan["other_bytes"], "segments": scan["segments"], "records": scan["records"],
            **_ratio_doc(scan["ratio"]),
            "rate_bytes_per_second": None if scan["rate"] is None else round(scan["rate"], 3),
            "seconds_to_retention_bytes": None if seconds is None else round(seconds, 3),
            "time_to_retention_bytes": text}


def du_topic(root: str, name: str, sample_budget: int, with_partitions: bool) -> dict:
    meta = _topic_meta(root, name)
    n = meta["partitions"]
    budget = max(1, sample_budget // n)
    scans = []
    for p in range(n):
        s = scan_partition(os.path.join(root, f"{name}-{p}"), budget)
        s["partition"] = p
        scans.append(s)
    total = {k: sum(s[k] for s in scans) for k in ("bytes", "log_bytes", "index_bytes", "other_bytes",
                                                     "segments", "records")}
    ratio = combined_ratio([(s["ratio"], s["log_bytes"]) for s in scans])
    rates = [s["rate"] for s in scans if s["rate"] is not None]
    total.update(rate=sum(rates) if rates else None, ratio=ratio)
    cfg = meta["config"]
    doc = {"topic": name, "internal": name.startswith("__"), "partitions": n,
           **_usage_doc(total, cfg["retention.bytes"], n),
           "retention_bytes": cfg["retention.bytes"], "retention_ms": cfg["retention.ms"],
           "missing_partitions": [s["partition"] for s in scans if s["missing"]]}
    if with_partitions:
        doc["partition_details"] = [
            {"partition": s["partition"], "log_start_offset": s["log_start_offset"],
             "log_end_offset": s["log_end_offset"], **_usage_doc(s, cfg["retention.bytes"], 1)}
            for s in scans]
    return doc


def _ratio_text(d) -> str:
    if d["compression_ratio"] is None:
        return "n/a"
    return f"{d['compression_ratio']:.2f}" + (" (sampled)" if d["ratio_sampled"] else "")


def _rate_text(d) -> str:
    v = d["rate_bytes_per_second"]
    return "n/a" if v is None else f"{_bin_size(v)}/s"


def _bin_size(n) -> str:
    return human_bytes(int(n)) if n >= 1024 else f"{n:.0f} B"


@click.command()
@dir_option
@click.argument("topics", nargs=-1, metavar="[TOPIC]...")
@click.option("--partitions", "-p", "with_partitions", is_flag=True, help="Also show each partition.")
@click.option("--sample-bytes", type=SIZE, default="64MiB", show_default=True, metavar="SIZE",
              help="Most bytes of batches read per topic (split over its partitions) to measure RATIO.")
@output_options(nl=False)
@click.pass_context
def du(ctx, topics, with_partitions, sample_bytes, fmt):
    """Show the disk each topic uses, its growth and its retention.

    Per topic (default: all, internal ones marked): bytes of the partition folders,
    segments, records (log end - log start offset), RATIO = bytes on disk ÷ uncompressed
    bytes (read from at most --sample-bytes of batches: "sampled"), RATE = bytes on disk
    per second over the newest two segments (from the batches' timestamps), retention.bytes
    and retention.ms, and the time until the topic holds retention.bytes × partitions of
    segments at that rate. Reads the files only: never recovers, never locks."""
    root = check_log_dir(log_dir(ctx))
    names = list(dict.fromkeys(topics)) or _topic_names(root)
    budget = max(1, math.ceil(sample_bytes[0]))
    docs = [du_topic(root, n, budget, with_partitions) for n in names]
    if fmt == "json":
        echo_json({"directory": root, "bytes": sum(d["bytes"] for d in docs), "topics": docs})
        return
    if not docs:
        return
    echo_table(["TOPIC", "PARTITIONS", "SIZE", "SEGMENTS", "RECORDS", "RATIO", "RATE", "RETENTION.BYTES",
                "RETENTION.MS", "TIME-TO-RETENTION.BYTES"],
               [[d["topic"] + (" (internal)" if d["internal"] else ""), d["partitions"], _bin_size(d["bytes"]),
                 d["segments"], d["records"], _ratio_text(d), _rate_text(d),
                 "unlimited" if d["retention_bytes"] < 0 else _bin_size(d["retention_bytes"]),
                 "unlimited" if d["retention_ms"] < 0 else human_duration_ms(d["retention_ms"]),
                 d["time_to_retention_bytes"]] for d in docs])
    if with_partitions:
        click.echo()
        echo_table(["PARTITION", "SIZE", "SEGMENTS", "LOG-START-OFFSET", "LOG-END-OFFSET", "RECORDS", "RATIO", "RATE",
                    "TIME-TO-RETENTION.BYTES"],
                   [[f"{d['topic']}-{p['partition']}", _bin_size(p["bytes"]), p["segments"], p["log_start_offset"],
                     p["log_end_offset"], p["records"], _ratio_text(p), _rate_text(p), p["time_to_retention_bytes"]]
                    for d in docs for p in d["partition_details"]])
    missing = [f"{d['topic']}-{p}" for d in docs for p in d["missing_partitions"]]
    if missing:
        note(f"Warning: partition folders missing (counted as empty): {', '.join(missing)}")
