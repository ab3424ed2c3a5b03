"""`embedlog plan` and `embedlog du`: disk planning (issue #6).

`plan` is arithmetic only: from a write rate, a retention and a replication factor it
computes the disk a topic needs, and prints every step with its numbers. On top of
rate × retention × compression ratio it counts what Kafka (and embedlog, which follows
it) really keeps:

1. Retention deletes whole closed segments only, and a segment goes only once its newest
   record is past retention.ms (or once the partition without it is still at least
   retention.bytes). So each partition keeps up to one segment more than the retention
   window: segment.bytes, or what one partition writes in segment.ms if that is less.
2. The sparse indexes: at most one 8-byte .index entry and one 12-byte .timeindex entry
   per index.interval.bytes of log (FORMAT.md §4).
3. Kafka only (--kafka): the active segment's two indexes are preallocated to
   segment.index.bytes each; embedlog preallocates nothing.

Sizes are bytes as Kafka's configs count them. The compression ratio is compressed size
÷ uncompressed size (0.5: half the bytes; 1: no compression), the number `du` reports.

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
import textwrap
from array import array
from fractions import Fraction

import click
from click.core import ParameterSource

from embedlog import ConfigError, CorruptRecordError, EmbedlogError, _config
from embedlog._compression import decompress
from embedlog._records import HEADER_SIZE, LOG_OVERHEAD, MAGIC, parse_header, peek_header

from ._common import (CliError, check_log_dir, dir_option, echo_json, echo_table, human_bytes, log_dir, note,
                      output_options)

# ------------------------------------------------------------------ units

_DECIMAL = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SIZE_RE = re.compile(_NUMBER + r"\s*([A-Za-z]*)")
_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000,
                   "w": 604_800_000}
_DURATION_PART = re.compile(_NUMBER + r"\s*([a-z]+)\s*")
_PER = {"s": 1, "sec": 1, "second": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
SIZE_HELP = "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (of 1024)"


def parse_size(text: str) -> tuple[Fraction, bool]:
    """(bytes, binary unit?) of '10MB', '1.5 GiB', '512'; ValueError says what is wrong."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size; use a number and one of {SIZE_HELP}")
    number, unit = Fraction(m.group(1)), m.group(2)
    if unit in ("", "B"):
        return number, False
    u = re.fullmatch(r"([kKmMgGtTpP])(i?)B", unit)
    if u is None:
        if re.fullmatch(r"[kKmMgGtTpP]?i?b(it|its|ps)?", unit):
            raise ValueError(f"{text!r}: lowercase b means bits; sizes are bytes (B), e.g. 10MB")
        raise ValueError(f"{text!r}: unknown unit {unit!r}; use one of {SIZE_HELP}")
    prefix = u.group(1).upper()
    return number * (_BINARY[prefix] if u.group(2) else _DECIMAL[prefix]), bool(u.group(2))


def parse_rate(text: str) -> tuple[Fraction, bool]:
    """(bytes per second, binary unit?) of '10MB/s', '2 GiB/h', '100GB/d'."""
    size, sep, per = text.partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not a rate; give bytes per time, e.g. 10MB/s (or /min, /h, /d)")
    seconds = _PER.get(per.strip())
    if seconds is None:
        raise ValueError(f"{text!r}: unknown time unit {per.strip()!r}; use /s, /min, /h or /d")
    n, binary = parse_size(size)
    return n / seconds, binary


def parse_duration(text: str) -> int:
    """Milliseconds of '7d', '12h', '30m', '45s', '500ms', '1d12h' (rounded to 1 ms)."""
    s = text.strip()
    if not s:
        raise ValueError("the duration is empty")
    if re.fullmatch(_NUMBER, s):
        raise ValueError(f"{text!r} has no unit; write e.g. {s}ms, {s}s, {s}h or {s}d (or use a *-ms flag)")
    total, pos = Fraction(0), 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"{text!r} is not a duration; use a number and ms, s, m, h, d or w (e.g. 7d, 12h, "
                             "1h30m)")
        total += Fraction(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return round(total)


class _Parsed(click.ParamType):
    """A click type over one of the parsers above: a bad value is a usage error (exit 2)
    that names the flag and the value."""

    def __init__(self, name, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _number(text: str) -> Fraction:
    """A decimal number, exactly: Fraction('0.3') is 3/10, float 0.3 is not."""
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a number") from None


def _positive(text: str) -> Fraction:
    n = _number(text)
    if n <= 0:
        raise ValueError(f"{text!r}: must be above 0")
    return n


def _ratio(text: str) -> Fraction:
    if ":" in text:
        raise ValueError(f"{text!r}: give compressed ÷ uncompressed size as one number, e.g. 0.5 for 2:1")
    try:
        return _positive(text)
    except ValueError:
        raise ValueError(f"{text!r}: give compressed ÷ uncompressed size as a number above 0, e.g. 0.5 "
                         "(1: uncompressed)") from None


def _percent(text: str) -> Fraction:
    n = _number(text.strip().rstrip("%"))
    if n < 0:
        raise ValueError(f"{text!r}: headroom cannot be negative")
    return n


def _retention_bytes(text: str):
    if text.strip() == "-1":
        return -1, False
    return parse_size(text)


SIZE = _Parsed("size", parse_size)
RATE = _Parsed("rate", parse_rate)
DURATION = _Parsed("duration", parse_duration)
RATIO = _Parsed("ratio", _ratio)
PERCENT = _Parsed("percent", _percent)
POSITIVE = _Parsed("number", _positive)
RETENTION_BYTES = _Parsed("size", _retention_bytes)

# ------------------------------------------------------------------ human output


def human_size(n, binary: bool = False, digits: int = 3) -> str:
    """`digits` significant digits in the largest unit that keeps the number at least 1:
    3024000000000 -> '3.02 TB'."""
    n = Fraction(n)
    table = _BINARY if binary else _DECIMAL
    units = [("B", 1)] + [(p + ("iB" if binary else "B"), size) for p, size in table.items() if p]
    k = 0
    while k + 1 < len(units) and abs(n) >= units[k + 1][1]:
        k += 1
    text = f"{float(n / units[k][1]):.{digits}g}"
    if float(text) >= 1000 and k + 1 < len(units):      # 999.7 GB shows as 1 TB, not 1e+03 GB
        k += 1
        text = f"{float(n / units[k][1]):.{digits}g}"
    if "e" in text:
        text = f"{float(n / units[k][1]):.0f}"
    return f"{text} {units[k][0]}"


def config_size(n: int) -> str:
    """A config value in bytes the way people write it: the unit, decimal or binary, that
    shows it exactly with the fewest digits (1073741824 -> '1 GiB', 10000000000 -> '10 GB')."""
    best = f"{n} B"
    for table, suffix in ((_DECIMAL, "B"), (_BINARY, "iB")):
        for prefix, size in sorted(table.items(), key=lambda u: -u[1]):
            if prefix and n > 0 and n % size == 0:
                text = f"{n // size} {prefix}{suffix}"
                if len(text) - len(suffix) < len(best) - 1:
                    best = text
                break
    return best


def human_rate(bytes_per_second, binary: bool = False) -> str:
    return f"{human_size(bytes_per_second, binary)}/s"


def human_duration_ms(ms) -> str:
    """'7d', '1d 12h', '45s', '500ms': at most two units."""
    ms = int(ms)
    if ms < 1000:
        return f"{ms}ms"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
        if len(parts) == 2 or (parts and ms == 0):
            break
    return " ".join(parts)


def _num(x) -> str:
    """A plain number without trailing zeros: 604800, 0.5, 1.2."""
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.6g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ------------------------------------------------------------------ topic metadata, read from the file

def _topic_meta(root: str, name: str) -> dict:
    """topics/<name>.json with the config's defaults filled in (FORMAT.md §9)."""
    path = os.path.join(root, "topics", name + ".json")
    try:
        with open(path) as f:
            meta = json.load(f)
        partitions = int(meta["partitions"])
        config = _config.topic_config(meta.get("config") or {})
    except FileNotFoundError:
        raise CliError(f"topic {name!r} does not exist in {root}") from None
    except (ValueError, KeyError, TypeError, ConfigError) as e:
        raise CliError(f"topic metadata {path} is unreadable: {e}") from None
    return {"name": name, "partitions": partitions, "config": config}


def _topic_names(root: str) -> list[str]:
    try:
        names = os.listdir(os.path.join(root, "topics"))
    except FileNotFoundError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))


# ------------------------------------------------------------------ plan

def compute_plan(*, rate, rate_formula, retention_ms, ratio, partitions, replication_factor, segment_bytes,
                 segment_ms, index_interval_bytes, segment_index_bytes, retention_bytes, headroom_percent,
                 kafka, binary) -> dict:
    """The plan as one document: inputs, the steps (each with its formula and value in
    whole bytes, rounded up), the totals and the notes. `rate` is the uncompressed bytes
    per second written to the whole topic; numbers are Fractions until rounded."""
    def hs(n):
        return human_size(n, binary)

    steps: list[dict] = []

    def step(name, formula, value):
        value = math.ceil(value)
        steps.append({"step": name, "formula": f"{formula} = {hs(value)}", "value": value, "unit": "B"})
        return value

    P = partitions
    parts = _count(P, "partition")
    rate_text = human_rate(rate, binary)
    ratio_text = f" × {_num(ratio)}" if ratio != 1 else ""
    if rate_formula:
        steps.append({"step": "write rate", "formula": f"{rate_formula} = {rate_text}", "value": math.ceil(rate),
                      "unit": "B/s"})

    # 1. The retention window: what retention.ms (capped by retention.bytes) keeps.
    if retention_ms >= 0:
        by_time = rate * Fraction(retention_ms, 1000) * ratio
        formula = f"{rate_text} × {_num(Fraction(retention_ms, 1000))} s{ratio_text}"
        if 0 <= retention_bytes < by_time / P:
            by_time = retention_bytes * P
            formula = (f"min({formula}{f' ÷ {P}' if P > 1 else ''}, retention.bytes {config_size(retention_bytes)})"
                       + (f" × {parts}" if P > 1 else ""))
        data = step("retained data", formula, by_time)
    else:
        data = step("retained data", f"retention.bytes {config_size(retention_bytes)} × {parts} (retention.ms -1: "
                    "no time limit)", retention_bytes * P)

    # 2. Per partition, the one segment retention cannot delete yet.
    by_segment_ms = rate * ratio / P * Fraction(segment_ms, 1000)
    if segment_bytes <= by_segment_ms:
        segment = step("open segments", f"{parts} × segment.bytes {config_size(segment_bytes)}", segment_bytes * P)
    else:
        segment = step("open segments", f"{rate_text}{ratio_text} × {_num(Fraction(segment_ms, 1000))} s "
                       "(segment.ms)", by_segment_ms * P)

    # 3. Sparse indexes: at most one entry per index.interval.bytes of log.
    log_text = f"({hs(data)} + {hs(segment)}) ÷ {index_interval_bytes} B"
    index = step(".index", f"{log_text} × 8 B", Fraction((data + segment) * 8, index_interval_bytes))
    timeindex = step(".timeindex", f"{log_text} × 12 B", Fraction((data + segment) * 12, index_interval_bytes))
    parts_of_replica = [data, segment, index, timeindex]
    prealloc = P * 2 * segment_index_bytes
    if kafka:
        parts_of_replica.append(step("preallocated", f"{parts} × 2 × segment.index.bytes "
                                     f"{config_size(segment_index_bytes)}", prealloc))

    # 4. Totals.
    per_replica = step("per replica", " + ".join(hs(v) for v in parts_of_replica), sum(parts_of_replica))
    per_partition = step("per partition", f"{hs(per_replica)} ÷ {parts}", Fraction(per_replica, P))
    total = step("total", f"{hs(per_replica)} × {_count(replication_factor, 'replica')}",
                 per_replica * replication_factor)
    factor = 1 + headroom_percent / 100
    with_headroom = step("with headroom", f"{hs(total)} × {_num(factor)} ({_num(headroom_percent)}% headroom)",
                         total * factor)

    notes = [
        "Retention deletes whole closed segments only, so each partition keeps up to one segment more "
        "than the retention window (open segments: segment.bytes, or what one partition writes in "
        "segment.ms if that is less).",
        f"Indexes are upper bounds: at most one 8-byte .index and one 12-byte .timeindex entry per "
        f"index.interval.bytes ({index_interval_bytes} B) of log.",
        (f"Kafka preallocates segment.index.bytes ({config_size(segment_index_bytes)}) for each of the active "
         "segment's two indexes; embedlog preallocates nothing." if kafka else
         f"Kafka also preallocates segment.index.bytes ({config_size(segment_index_bytes)}) for each of the active "
         f"segment's two indexes: {hs(prealloc)} more per replica (--kafka counts it; embedlog preallocates "
         "nothing)."),
        "Per replica is one copy of every partition; per partition is one copy of one partition, which "
        "must fit on one disk, and assumes writes spread evenly (keyed data may not be).",
    ]
    return {
        "inputs": {"rate_bytes_per_second": float(rate), "retention_ms": retention_ms,
                   "retention_bytes": retention_bytes, "compression_ratio": float(ratio), "partitions": P,
                   "replication_factor": replication_factor, "segment_bytes": segment_bytes,
                   "segment_ms": segment_ms, "index_interval_bytes": index_interval_bytes,
                   "segment_index_bytes": segment_index_bytes, "headroom_percent": float(headroom_percent),
                   "kafka": kafka},
        "per_replica": {"data_bytes": data, "open_segment_bytes": segment, "index_bytes": index,
                        "timeindex_bytes": timeindex, "preallocated_index_bytes": prealloc if kafka else 0,
                        "total_bytes": per_replica},
        "per_partition_bytes": per_partition,
        "per_replica_bytes": per_replica,
        "total_bytes": total,
        "total_with_headroom_bytes": with_headroom,
        "steps": steps,
        "notes": notes,
    }


def _given(ctx, name) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


@click.command()
@click.option("--rate", type=RATE, metavar="SIZE/s",
              help=f"Bytes written to the topic per second (or /min, /h, /d), before compression, e.g. 10MB/s. "
                   f"Units: {SIZE_HELP}.")
@click.option("--messages-per-second", type=POSITIVE, metavar="N",
              help="Instead of --rate: records per second (with --message-size).")
@click.option("--message-size", type=SIZE, metavar="SIZE",
              help="Average record size before compression (key + value + headers), with --messages-per-second.")
@click.option("--retention", type=DURATION, metavar="DURATION",
              help="retention.ms as a duration: 7d, 12h, 30m, 45s, 500ms, 1h30m.")
@click.option("--retention-ms", type=click.IntRange(min=-1), metavar="MS",
              help="retention.ms in milliseconds; -1 (no time limit) needs --retention-bytes.")
@click.option("--retention-bytes", type=RETENTION_BYTES, metavar="SIZE",
              help="retention.bytes: the most one partition keeps (default: no size limit).")
@click.option("--compression-ratio", type=RATIO, default="1", show_default=True, metavar="R",
              help="Compressed size ÷ uncompressed size: 0.5 halves the bytes (what `embedlog du` shows as RATIO).")
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="Partitions the rate is spread over.")
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), default=1, show_default=True,
              help="Copies of each partition.")
@click.option("--segment-bytes", type=SIZE, metavar="SIZE", help="segment.bytes (default 1 GiB, Kafka's).")
@click.option("--segment-ms", type=DURATION, metavar="DURATION", help="segment.ms as a duration (default 7d).")
@click.option("--headroom", type=PERCENT, default="20", show_default=True, metavar="PCT",
              help="Percent added to the total for bursts, growth and the file system.")
@click.option("--kafka", is_flag=True,
              help="Count Kafka's preallocated active-segment indexes (2 × segment.index.bytes per partition).")
@click.option("--topic", "-t", metavar="TOPIC",
              help="Take segment.*, index.interval.bytes, retention.* and the partition count from this "
                   "topic of --dir (flags still win).")
@dir_option
@output_options(nl=False)
@click.pass_context
def plan(ctx, rate, messages_per_second, message_size, retention, retention_ms, retention_bytes,
         compression_ratio, partitions, replication_factor, segment_bytes, segment_ms, headroom, kafka, topic, fmt):
    """Compute the disk a topic needs, showing the arithmetic.

    From the write rate, retention and replication factor: disk per partition, per
    replica (one copy of every partition) and in total, with the segment retention
    cannot delete yet and the index files counted on their own lines. Needs no log
    directory (except with --topic).

    \b
    embedlog plan --rate 10MB/s --retention 7d --replication-factor 3
    embedlog plan --messages-per-second 5000 --message-size 1KiB --retention 12h -p 6
    embedlog plan --topic orders --dir data/ --rate 2MB/s --compression-ratio 0.4
    """

    def default(key):
        return _config.TOPIC_CONFIG[key].default

    # The rate.
    binary = False
    rate_formula = None
    if rate is not None and (messages_per_second is not None or message_size is not None):
        raise click.UsageError("give either --rate or --messages-per-second with --message-size, not both", ctx=ctx)
    if rate is not None:
        rate, binary = rate
    elif messages_per_second is not None and message_size is not None:
        size, binary = message_size
        rate = messages_per_second * size
        rate_formula = f"{_num(messages_per_second)} records/s × {human_size(size, binary, 6)}"
    elif messages_per_second is not None or message_size is not None:
        missing = "--message-size" if message_size is None else "--messages-per-second"
        raise click.UsageError(f"{missing} is missing: --messages-per-second and --message-size go together",
                               ctx=ctx)
    else:
        raise click.UsageError("no write rate: give --rate SIZE/s, or --messages-per-second N with --message-size "
                               "SIZE", ctx=ctx)

    # Configs: flags, then the topic's, then Kafka's defaults.
    cfg = {k: default(k) for k in ("segment.bytes", "segment.ms", "index.interval.bytes", "segment.index.bytes",
                                   "retention.ms", "retention.bytes")}
    if retention is not None and retention_ms is not None:
        raise click.UsageError("give either --retention or --retention-ms, not both", ctx=ctx)
    if retention is None and retention_ms is None and topic is None:
        raise click.UsageError("no retention: give --retention DURATION or --retention-ms MS (or --topic)", ctx=ctx)
    if topic is not None:
        meta = _topic_meta(check_log_dir(log_dir(ctx)), topic)
        cfg.update({k: meta["config"][k] for k in cfg})
        if not _given(ctx, "partitions"):
            partitions = meta["partitions"]
    if retention is not None or retention_ms is not None:
        cfg["retention.ms"] = retention if retention is not None else retention_ms
    if retention_bytes is not None:
        cfg["retention.bytes"] = math.ceil(retention_bytes[0])
    if segment_bytes is not None:
        cfg["segment.bytes"] = math.ceil(segment_bytes[0])
        if cfg["segment.bytes"] < 1:
            raise click.BadParameter("segment.bytes must be at least 1 byte", ctx=ctx, param_hint="--segment-bytes")
    if segment_ms is not None:
        if segment_ms < 1:
            raise click.BadParameter("segment.ms must be at least 1 ms", ctx=ctx, param_hint="--segment-ms")
        cfg["segment.ms"] = segment_ms
    if cfg["retention.ms"] < 0 and cfg["retention.bytes"] < 0:
        where = f" (topic {topic})" if topic is not None else ""
        raise CliError(f"retention.ms is -1 and retention.bytes is -1{where}: the log grows without limit; "
                       "give --retention or --retention-bytes")
    if cfg["index.interval.bytes"] < 1:
        raise CliError("index.interval.bytes is 0 (an index entry per batch): the index size depends on the "
                       "batch size, which plan does not know")

    doc = compute_plan(rate=rate, rate_formula=rate_formula, retention_ms=cfg["retention.ms"],
                       ratio=compression_ratio, partitions=partitions, replication_factor=replication_factor,
                       segment_bytes=cfg["segment.bytes"], segment_ms=cfg["segment.ms"],
                       index_interval_bytes=cfg["index.interval.bytes"],
                       segment_index_bytes=cfg["segment.index.bytes"], retention_bytes=cfg["retention.bytes"],
                       headroom_percent=headroom, kafka=kafka, binary=binary)
    doc["inputs"]["topic"] = topic
    if fmt == "json":
        echo_json(doc)
        return
    retention_text = ("no time limit" if cfg["retention.ms"] < 0 else
                      f"{human_duration_ms(cfg['retention.ms'])} (retention.ms {cfg['retention.ms']})")
    click.echo(f"Plan{' for topic ' + topic if topic else ''}: {human_rate(rate, binary)} for {retention_text}, "
               f"{_count(partitions, 'partition')}, replication factor {replication_factor}, compression ratio "
               f"{_num(compression_ratio)}")
    click.echo()
    width = max(len(s["step"]) for s in doc["steps"])
    for s in doc["steps"]:
        click.echo(f"  {s['step'].ljust(width)}  {s['formula']}")
    click.echo()
    for n in doc["notes"]:
        click.echo(textwrap.fill(n, width=100, initial_indent="- ", subsequent_indent="  "))


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
