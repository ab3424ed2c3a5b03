"""`embedlog dump FILE` and `embedlog verify [DIR]`: offline readers of the files
themselves (FORMAT.md §2-§4), like kafka-dump-log.sh and bbolt check.

They never open partitions through the library: opening one may run recovery, which
truncates a damaged tail, and a checker must report damage rather than repair it.
Everything here reads files and only reads them.
"""
from __future__ import annotations

import json
import os
import struct
from typing import NamedTuple

import click

from ._common import (Failed, check_log_dir, dir_option, echo_json, echo_nl, echo_table, human_bytes, log_dir,
                      note, output_options, progress, text)

CHUNK = 1 << 20
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
MAX_RELATIVE_OFFSET = 2**31 - 1


class Batch(NamedTuple):
    position: int
    header: object          # embedlog.BatchHeader
    crc_ok: bool
    buf: bytes              # holds the whole batch at buf[at:at + header.size]
    at: int


class Damage(NamedTuple):
    position: int
    problem: str
    torn: bool              # the file simply ends inside a batch (a torn tail) rather than holding garbage


def iter_log(path: str, on_bytes=None):
    """Yield a Batch for each batch of a .log from position 0, then a Damage if the file
    does not end exactly after a whole batch. A batch whose CRC does not match is
    still yielded (crc_ok False); one whose header cannot be trusted ends the walk."""
    from embedlog import CorruptRecordError
    from embedlog.storage._records import HEADER_SIZE, MAGIC, parse_header, peek_header
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        buf, at, base = b"", 0, 0        # buf[0] is at file position `base`

        def fill(need):
            nonlocal buf, at, base
            more = f.read(max(CHUNK, need - (len(buf) - at)))
            if on_bytes is not None and more:
                on_bytes(len(more))
            base += at
            buf = buf[at:] + more
            at = 0

        while True:
            if len(buf) - at < HEADER_SIZE:
                fill(HEADER_SIZE)
                if len(buf) - at < HEADER_SIZE:
                    if len(buf) > at:
                        yield Damage(base + at, f"{len(buf) - at} bytes at the end of the file are not a whole "
                                     "batch header (truncated batch)", True)
                    return
            h = peek_header(buf, at)
            pos = base + at
            if h.magic != MAGIC:
                yield Damage(pos, f"bad magic byte {h.magic} (not a RecordBatch v2)", False)
                return
            if h.batch_length < HEADER_SIZE - 12:
                yield Damage(pos, f"impossible batch length {h.batch_length}", False)
                return
            if len(buf) - at < h.size:
                if pos + h.size > max(file_size, base + len(buf)):   # never read a garbage length
                    yield Damage(pos, f"truncated batch: it declares {h.size} bytes and the file ends after "
                                 f"{max(file_size, base + len(buf)) - pos}", True)
                    return
                fill(h.size)
                if len(buf) - at < h.size:
                    yield Damage(pos, f"truncated batch: it declares {h.size} bytes and the file ends after "
                                 f"{len(buf) - at}", True)
                    return
            try:
                parse_header(buf, at, verify_crc=True)
                ok = True
            except CorruptRecordError:
                ok = False
            yield Batch(pos, h, ok, buf, at)
            at += h.size


def _attributes(h) -> str:
    parts = ["LogAppendTime" if h.log_append_time else "CreateTime"]
    if h.is_transactional:
        parts.append("transactional")
    if h.is_control:
        parts.append("control")
    if h.attributes & 0x40:
        parts.append("deleteHorizon")
    return ",".join(parts)


def batch_doc(b: Batch) -> dict:
    h = b.header
    last_seq = h.base_sequence + h.last_offset_delta if h.base_sequence >= 0 else -1
    return {"position": b.position, "base_offset": h.base_offset, "last_offset": h.last_offset,
            "count": h.records_count, "size": h.size, "batch_length": h.batch_length,
            "crc": h.crc, "crc_valid": b.crc_ok,
            "compression": CODEC_NAMES.get(h.compression, f"invalid({h.compression})"),
            "producer_id": h.producer_id, "producer_epoch": h.producer_epoch, "base_sequence": h.base_sequence,
            "last_sequence": last_seq, "partition_leader_epoch": h.partition_leader_epoch,
            "base_timestamp": h.base_timestamp, "max_timestamp": h.max_timestamp,
            "timestamp_type": "LogAppendTime" if h.log_append_time else "CreateTime",
            "transactional": h.is_transactional, "control": h.is_control, "attributes": _attributes(h)}


def _records(b: Batch):
    from embedlog import decode_records
    return decode_records(b.buf, b.at, b.header)


def _record_doc(r, ts_type) -> dict:
    from ._common import bytes_json
    doc = {"offset": r.offset, "timestamp": r.timestamp, "timestamp_type": ts_type,
           "key_size": -1 if r.key is None else len(r.key), "value_size": -1 if r.value is None else len(r.value)}
    doc.update(bytes_json(r.key, "key"))
    doc.update(bytes_json(r.value, "value"))
    doc["headers"] = [{"key": k, **bytes_json(v, "value")} for k, v in r.headers]
    return doc


# Streamed table: a dump of a large log cannot be held in memory to size the columns,
# so the columns have fixed minimum widths.
_DUMP_COLUMNS = [("POSITION", "position", 10), ("BASE-OFFSET", "base_offset", 11), ("LAST-OFFSET", "last_offset", 11),
                 ("COUNT", "count", 5), ("SIZE", "size", 7), ("CRC", "crc", 10), ("VALID", "crc_valid", 5),
                 ("COMPRESSION", "compression", 11), ("PRODUCER-ID", "producer_id", 11),
                 ("EPOCH", "producer_epoch", 5), ("SEQUENCE", "base_sequence", 8), ("LEADER-EPOCH",
                 "partition_leader_epoch", 12), ("BASE-TIMESTAMP", "base_timestamp", 14),
                 ("MAX-TIMESTAMP", "max_timestamp", 14), ("ATTRIBUTES", "attributes", 10)]


def _row(values) -> str:
    return "  ".join(str(v).ljust(w) for v, (_h, _k, w) in zip(values, _DUMP_COLUMNS)).rstrip()


def _dump_log(path, records, fmt):
    problems = []
    batches = []
    size = os.path.getsize(path)
    header = fmt == "table"            # printed before the first batch: a file with none shows only the error
    with progress(size, "dumping", also_when_stdout_is_tty=False) as bar:
        for item in iter_log(path, on_bytes=bar.update):
            if isinstance(item, Damage):
                problems.append({"position": item.position, "problem": item.problem})
                break
            if header:
                click.echo(_row([h for h, _k, _w in _DUMP_COLUMNS]))
                header = False
            doc = batch_doc(item)
            if not item.crc_ok:
                problems.append({"position": item.position, "problem": "CRC-32C mismatch"})
            recs = None
            if records:
                if not item.crc_ok:
                    doc["records_error"] = "not decoded: the CRC does not match"
                else:
                    try:
                        recs = _records(item)
                        doc["records"] = [_record_doc(r, doc["timestamp_type"]) for r in recs]
                    except Exception as e:     # a malformed records section: show it, keep going
                        doc["records_error"] = str(e)
                        problems.append({"position": item.position, "problem": str(e)})
            if fmt == "json":
                batches.append(doc)
            elif fmt == "nl":
                echo_nl(doc)
            else:
                click.echo(_row([("yes" if v else "no") if isinstance(v, bool) else v
                                 for v in (doc[k] for _h, k, _w in _DUMP_COLUMNS)]))
                if "records_error" in doc:
                    click.echo(f"  | records: {doc['records_error']}")
                if recs:
                    click.echo("\n".join(_record_line(r, doc["timestamp_type"]) for r in recs))
    if fmt == "json":
        echo_json({"file": path, "size": size, "batches": batches, "problems": problems})
    return problems


def _record_line(r, ts_type) -> str:
    """A record as kafka-dump-log.sh --print-data-log shows one."""
    hs = ",".join(f"{k}={text(v)}" for k, v in r.headers)
    return (f"  | offset: {r.offset} {ts_type}: {r.timestamp} keySize: {-1 if r.key is None else len(r.key)} "
            f"valueSize: {-1 if r.value is None else len(r.value)} headers: [{hs}] key: {text(r.key)} "
            f"payload: {text(r.value)}")


def _index_entries(path, entry_size):
    with open(path, "rb") as f:
        data = f.read()
    whole = len(data) - len(data) % entry_size
    return data[:whole], len(data) % entry_size


def _dump_index(path, kind, fmt):
    base = int(os.path.basename(path).split(".")[0])
    size = 8 if kind == "index" else 12
    data, rest = _index_entries(path, size)
    rows = []
    for k in range(0, len(data), size):
        if kind == "index":
            rel, pos = struct.unpack_from(">ii", data, k)
            rows.append({"entry_position": k, "relative_offset": rel, "offset": base + rel, "position": pos})
        else:
            ts, rel = struct.unpack_from(">qi", data, k)
            rows.append({"entry_position": k, "timestamp": ts, "relative_offset": rel, "offset": base + rel})
    problems = []
    if rest:
        problems.append({"position": len(data), "problem": f"{rest} trailing bytes: the file size is not a "
                         f"multiple of {size}"})
    if fmt == "json":
        echo_json({"file": path, "entries": rows, "problems": problems})
    elif fmt == "nl":
        for r in rows:
            echo_nl(r)
    else:
        keys = list(rows[0]) if rows else (["entry_position", "relative_offset", "offset", "position"]
                                           if kind == "index" else
                                           ["entry_position", "timestamp", "relative_offset", "offset"])
        echo_table([k.upper().replace("_", "-") for k in keys], [[r[k] for k in keys] for r in rows])
    return problems


def _dump_file(file, records, fmt) -> list:
    path = os.path.abspath(file)
    if path.endswith(".index"):
        return [(path, p) for p in _dump_index(path, "index", fmt)]
    if path.endswith(".timeindex"):
        return [(path, p) for p in _dump_index(path, "timeindex", fmt)]
    return [(path, p) for p in _dump_log(path, records, fmt)]


_FILE = click.Path(dir_okay=False, exists=True, readable=True)


@click.command()
@click.argument("file", type=_FILE, required=False)
@click.option("--files", "files", multiple=True, metavar="F[,F2...]",
              help="The file(s) to dump, as kafka-dump-log spells it (comma-separated or repeated).")
@click.option("--records", "--print-data-log", "records", is_flag=True,
              help="Also print every record of every batch.")
@output_options()
def dump(file, files, records, fmt):
    """Print the batches of a segment file.

    For FILE.log: each batch's position, offsets, count, size, CRC (valid or not),
    compression, producer id, epoch and sequence, and timestamps; with --records, each
    record. For a .index or .timeindex: its entries. Exits 1 if the file is damaged."""
    paths = [file] if file else []
    for item in files:
        for f in item.split(","):
            if f:
                paths.append(_FILE.convert(f, None, click.get_current_context()))
    if not paths:
        raise click.UsageError("missing FILE (as an argument or --files F)")
    if len(paths) > 1 and fmt != "table":
        raise click.UsageError("several files are dumped as tables only; give one file with --json/--nl")
    problems = []
    for path in paths:
        if len(paths) > 1:
            click.echo(f"Dumping {os.path.abspath(path)}")
        problems += _dump_file(path, records, fmt)
    if problems:
        path, first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Failed(f"{path} at position {first['position']}: {first['problem']}{more}")


# ------------------------------------------------------------------ verify

class _Segment:
    """What a scan of one .log found, for the index checks."""

    def __init__(self, base):
        self.base = base
        self.by_position = {}      # batch start position -> (last_offset, running max timestamp)
        self.last_offsets = {}     # last offset -> running max timestamp at that batch
        self.scanned = 0           # bytes of whole batches
        self.batches = 0
        self.next_offset = None    # after the last batch


class _Verifier:
    def __init__(self, root):
        self.root = root
        self.problems = []
        self.warnings = []
        self.partitions = []

    def problem(self, path, position, what):
        self.problems.append({"file": os.path.relpath(path, self.root), "position": position, "problem": what})

    def warn(self, path, position, what):
        self.warnings.append({"file": os.path.relpath(path, self.root), "position": position, "warning": what})

    # -- the directory
    def topics(self) -> list[tuple[str, int, bool]]:
        tdir = os.path.join(self.root, "topics")
        out = []
        for name in sorted(os.listdir(tdir)) if os.path.isdir(tdir) else []:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(tdir, name)
            try:
                with open(path) as f:
                    meta = json.load(f)
                partitions = int(meta["partitions"])
                policy = str((meta.get("config") or {}).get("cleanup.policy", "delete"))
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.problem(path, 0, f"topic metadata is unreadable: {e}")
                continue
            out.append((name[:-5], partitions, "compact" not in policy))
        return out

    # -- one partition
    def partition(self, topic, p, dense, bar):
        pdir = os.path.join(self.root, f"{topic}-{p}")
        row = {"partition": f"{topic}-{p}", "segments": 0, "batches": 0, "bytes": 0, "problems": 0}
        before = len(self.problems)
        if not os.path.isdir(pdir):
            self.problem(pdir, 0, "partition folder is missing")
            row["problems"] = 1
            self.partitions.append(row)
            return
        bases = sorted(int(n[:20]) for n in os.listdir(pdir) if len(n) == 24 and n.endswith(".log")
                       and n[:20].isdigit())
        expected = None
        for i, base in enumerate(bases):
            log_path = os.path.join(pdir, f"{base:020d}.log")
            last = i == len(bases) - 1
            if expected is not None and (base < expected or (dense and base != expected)):
                self.problem(log_path, 0, f"segment base offset {base} does not continue the previous segment, "
                             f"which ends before offset {expected}")
            seg = self.segment(log_path, base, dense, last, bar)
            row["segments"] += 1
            row["batches"] += seg.batches
            row["bytes"] += seg.scanned
            if seg.next_offset is not None:
                expected = seg.next_offset
            self.index(os.path.join(pdir, f"{base:020d}.index"), seg, last)
            self.timeindex(os.path.join(pdir, f"{base:020d}.timeindex"), seg, last)
        ck = os.path.join(pdir, "partition.checkpoint")
        if os.path.exists(ck):
            try:
                with open(ck) as f:
                    json.load(f)
            except (OSError, ValueError) as e:
                self.warn(ck, 0, f"unreadable ({e}); the next open recovers from the first segment")
        row["problems"] = len(self.problems) - before
        self.partitions.append(row)

    def segment(self, path, base, dense, last, bar) -> _Segment:
        seg = _Segment(base)
        expected = base
        running_max = -1
        for item in iter_log(path, on_bytes=bar.update):
            if isinstance(item, Damage):
                if item.torn and last:
                    self.warn(path, item.position, f"{item.problem}: an append in progress, or a writer that "
                              "died; the next writer's recovery truncates it")
                else:
                    self.problem(path, item.position, item.problem)
                break
            h = item.header
            where = f"batch at base offset {h.base_offset}"
            if not item.crc_ok:
                self.problem(path, item.position, f"CRC-32C mismatch ({where})")
            if h.last_offset_delta < 0 or h.records_count < 0:
                self.problem(path, item.position, f"impossible lastOffsetDelta {h.last_offset_delta} or record "
                             f"count {h.records_count}")
            elif dense and h.records_count != h.last_offset_delta + 1:
                self.problem(path, item.position, f"{where} holds {h.records_count} records but spans "
                             f"{h.last_offset_delta + 1} offsets")
            if h.base_offset < expected or (dense and h.base_offset != expected):
                self.problem(path, item.position, f"{where}, expected {expected}: offsets are not continuous")
            if h.last_offset - base > MAX_RELATIVE_OFFSET:
                self.problem(path, item.position, f"{where}: last offset {h.last_offset} does not fit a relative "
                             f"offset of segment {base}")
            if h.compression not in CODEC_NAMES:
                self.problem(path, item.position, f"{where}: invalid compression codec {h.compression}")
            if self.records and item.crc_ok:
                try:
                    _records(item)
                except Exception as e:
                    self.problem(path, item.position, f"{where}: {e}")
            running_max = max(running_max, h.max_timestamp)
            seg.by_position[item.position] = h.last_offset
            seg.last_offsets[h.last_offset] = running_max
            expected = h.last_offset + 1
            seg.batches += 1
            seg.scanned = item.position + h.size
            seg.next_offset = expected
        return seg

    def index(self, path, seg, last):
        if not os.path.exists(path):
            self.problem(path, 0, "offset index is missing")
            return
        data, rest = _index_entries(path, 8)
        if rest:
            self.problem(path, len(data), f"size is not a multiple of 8 ({rest} trailing bytes)")
        prev_rel = prev_pos = -1
        for k in range(0, len(data), 8):
            rel, pos = struct.unpack_from(">ii", data, k)
            if last and pos >= seg.scanned:
                break          # written by an append after this scan read the .log
            if rel <= prev_rel or pos < prev_pos:
                self.problem(path, k, f"entry ({rel}, {pos}) is out of order after ({prev_rel}, {prev_pos})")
            elif pos not in seg.by_position:
                self.problem(path, k, f"entry ({rel}, {pos}) points at position {pos}, where no batch starts")
            elif seg.by_position[pos] != seg.base + rel:
                self.problem(path, k, f"entry ({rel}, {pos}) says offset {seg.base + rel}, but the batch at "
                             f"position {pos} ends at offset {seg.by_position[pos]}")
            prev_rel, prev_pos = rel, pos

    def timeindex(self, path, seg, last):
        if not os.path.exists(path):
            self.problem(path, 0, "time index is missing")
            return
        data, rest = _index_entries(path, 12)
        if rest:
            self.problem(path, len(data), f"size is not a multiple of 12 ({rest} trailing bytes)")
        prev_ts, prev_rel = None, -1
        last_scanned = seg.next_offset - seg.base - 1 if seg.next_offset is not None else -1
        for k in range(0, len(data), 12):
            ts, rel = struct.unpack_from(">qi", data, k)
            if last and rel > last_scanned:
                break          # written by an append after this scan read the .log
            if (prev_ts is not None and ts <= prev_ts) or rel < prev_rel:
                self.problem(path, k, f"entry ({ts}, {rel}) is out of order after ({prev_ts}, {prev_rel})")
            elif seg.base + rel not in seg.last_offsets:
                self.problem(path, k, f"entry ({ts}, {rel}): no batch ends at offset {seg.base + rel}")
            elif seg.last_offsets[seg.base + rel] != ts:
                self.problem(path, k, f"entry ({ts}, {rel}): the largest timestamp up to offset {seg.base + rel} "
                             f"is {seg.last_offsets[seg.base + rel]}")
            prev_ts, prev_rel = ts, rel


def _log_bytes(root, topics) -> int:
    total = 0
    for topic, n, _dense in topics:
        for p in range(n):
            pdir = os.path.join(root, f"{topic}-{p}")
            try:
                total += sum(os.path.getsize(os.path.join(pdir, f)) for f in os.listdir(pdir) if f.endswith(".log"))
            except OSError:
                pass
    return total


@click.command()
@dir_option
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--records", is_flag=True, help="Also decode every record (decompressing each batch).")
@output_options(nl=False)
@click.pass_context
def verify(ctx, directory, records, fmt):
    """Check every CRC and index of a log directory.

    Checks each batch of every segment (CRC-32C, offset continuity) and every .index
    and .timeindex entry of DIRECTORY (default: --dir or EMBEDLOG_DIR). Exits 1, naming
    the file and position, when something is damaged. Reads only; repairs nothing."""
    root = check_log_dir(os.path.abspath(directory) if directory else log_dir(ctx))
    v = _Verifier(root)
    v.records = records
    topics = v.topics()
    with progress(_log_bytes(root, topics), "verifying") as bar:
        for topic, n, dense in topics:
            for p in range(n):
                v.partition(topic, p, dense, bar)
    totals = {k: sum(r[k] for r in v.partitions) for k in ("segments", "batches", "bytes")}
    if fmt == "json":
        echo_json({"directory": root, "ok": not v.problems, "partitions": v.partitions, **totals,
                   "problems": v.problems, "warnings": v.warnings})
    else:
        if v.partitions:
            echo_table(["PARTITION", "SEGMENTS", "BATCHES", "SIZE", "STATUS"],
                       [[r["partition"], r["segments"], r["batches"], human_bytes(r["bytes"]),
                         "ok" if not r["problems"] else f"{r['problems']} problem(s)"] for r in v.partitions])
        if v.problems:
            click.echo()
            echo_table(["FILE", "POSITION", "PROBLEM"], [[p["file"], p["position"], p["problem"]] for p in v.problems])
        if v.warnings:
            click.echo()
            echo_table(["FILE", "POSITION", "WARNING"], [[w["file"], w["position"], w["warning"]] for w in v.warnings])
        click.echo(f"checked {_count(len(v.partitions), 'partition')}, {_count(totals['segments'], 'segment')}, "
                   f"{_count(totals['batches'], 'batch')}: {_count(len(v.problems), 'problem')}")
    if v.problems:
        first = v.problems[0]
        more = f" (and {len(v.problems) - 1} more)" if len(v.problems) > 1 else ""
        raise Failed(f"{os.path.join(root, first['file'])} at position {first['position']}: "
                     f"{first['problem']}{more}")
    if v.warnings and fmt != "json":
        note(f"{len(v.warnings)} warning(s); see above")


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"no {plural}" if n == 0 else f"1 {noun}" if n == 1 else f"{n} {plural}"
