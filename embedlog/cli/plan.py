"""`embedlog plan`: disk planning (issue #6).

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

`embedlog du` (cli/du.py) reports what a log holds now, in the same units.
"""
from __future__ import annotations

import json
import math
import os
import re
import textwrap
from fractions import Fraction

import click
from click.core import ParameterSource

from embedlog import ConfigError
from embedlog.storage import _config

from ._common import CliError, check_log_dir, dir_option, echo_json, log_dir, output_options


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
        return _int64(number, text, "bytes"), False
    u = re.fullmatch(r"([kKmMgGtTpP])(i?)B", unit)
    if u is None:
        if re.fullmatch(r"[kKmMgGtTpP]?i?b(it|its|ps)?", unit):
            raise ValueError(f"{text!r}: lowercase b means bits; sizes are bytes (B), e.g. 10MB")
        raise ValueError(f"{text!r}: unknown unit {unit!r}; use one of {SIZE_HELP}")
    prefix = u.group(1).upper()
    return _int64(number * (_BINARY[prefix] if u.group(2) else _DECIMAL[prefix]), text, "bytes"), bool(u.group(2))


def _int64(n, text, what):
    """Kafka's sizes and times are longs: beyond 2^63-1 is no value, whatever the arithmetic."""
    if n > 2**63 - 1:
        raise ValueError(f"{text!r} is more than 2^63-1 {what}, the largest Kafka accepts")
    return n


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
    if len(s) > 100:
        raise ValueError(f"{text[:20]!r}... is not a duration (too long)")
    total, pos = Fraction(0), 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"{text!r} is not a duration; use a number and ms, s, m, h, d or w (e.g. 7d, 12h, "
                             "1h30m)")
        total += Fraction(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return _int64(round(total), text, "milliseconds")


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
@click.option("--retention-ms", type=click.IntRange(min=-1, max=2**63 - 1), metavar="MS",
              help="retention.ms in milliseconds; -1 (no time limit) needs --retention-bytes.")
@click.option("--retention-bytes", type=RETENTION_BYTES, metavar="SIZE",
              help="retention.bytes: the most one partition keeps (default: no size limit).")
@click.option("--compression-ratio", type=RATIO, default="1", show_default=True, metavar="R",
              help="Compressed size ÷ uncompressed size: 0.5 halves the bytes (what `embedlog du` shows as RATIO).")
@click.option("--partitions", "-p", type=click.IntRange(min=1, max=2**31 - 1), default=1, show_default=True,
              help="Partitions the rate is spread over.")
@click.option("--replication-factor", "-r", type=click.IntRange(min=1, max=2**15 - 1), default=1, show_default=True,
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
