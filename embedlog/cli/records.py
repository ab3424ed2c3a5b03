"""`embedlog produce` and `embedlog consume` (kafka-console-producer.sh and
kafka-console-consumer.sh), through the same Producer and Consumer a program uses."""
from __future__ import annotations

import json
import os
import signal
import sys

import click

from ._common import (CliError, bytes_json, client_conf, dir_option, escaped, fit, human_bytes, is_tty, note,
                      open_log, parse_key_value, pick_topic, progress_line, properties)

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def _lines(stream):
    """Lines as bytes without their line ending (\\n or \\r\\n), read as they arrive."""
    while True:
        line = stream.readline()
        if not line:
            return
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line


_TOPIC_OPTION = {"metavar": "TOPIC", "default": None, "help": "The topic, as Kafka's console tools spell it."}
_PRODUCER_PROPERTIES = {"parse.key": "bool", "key.separator": "str"}
_CONSUMER_PROPERTIES = {"print.key": "bool", "print.value": "bool", "print.timestamp": "bool",
                        "print.offset": "bool", "print.partition": "bool", "print.headers": "bool",
                        "key.separator": "str"}


def _client_properties(pairs, what: str) -> dict:
    """`--producer-property` / `--consumer-property KEY=VALUE`: client config, as given."""
    return dict(parse_key_value(pairs, what))


@click.command()
@dir_option
@click.argument("topic", required=False)
@click.option("--topic", "topic_opt", **_TOPIC_OPTION)
@click.option("--file", "file_", type=click.File("rb"), default=None, metavar="PATH",
              help="Read records from this file instead of stdin.")
@click.option("--key-separator", metavar="SEP", default=None,
              help="Each line is KEY SEP VALUE (split at the first SEP); without it lines are values.")
@click.option("--header", "-H", "headers", multiple=True, metavar="KEY=VALUE",
              help="Header added to every record (repeatable).")
@click.option("--partition", "-p", type=click.IntRange(min=0, max=2**31 - 1), default=None,
              help="Write every record to this partition (default: by key, as Kafka's producer does).")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True,
              help="all: fdatasync'd before it counts as delivered; 1: written to the OS; 0: no wait.")
@click.option("--compression", type=click.Choice(CODECS), default="none", show_default=True,
              help="Batch codec. A topic whose compression.type names a codec stores that one, as a "
                   "Kafka broker would.")
@click.option("--property", "props", multiple=True, metavar="KEY=VALUE",
              help="kafka-console-producer's: parse.key=true, key.separator=SEP (default tab).")
@click.option("--producer-property", "client_props", multiple=True, metavar="KEY=VALUE",
              help="Producer config, e.g. message.max.bytes=4000000 (repeatable; wins over the options).")
@click.option("--verbose", "-v", is_flag=True, help="Print the partition, offset and key of every record.")
def produce(topic, topic_opt, file_, key_separator, headers, partition, acks, compression, props, client_props,
            verbose):
    """Write lines of stdin (or --file) as records.

    Each line becomes one record of TOPIC; with --key-separator (or --property
    parse.key=true), KEY SEP VALUE. Reading a file or a pipe with stderr on a terminal,
    a progress line shows the records written, their rate and bytes."""
    from embedlog import Producer
    topic = pick_topic(topic, topic_opt)
    props = properties(props, _PRODUCER_PROPERTIES, "--property")
    if props.get("parse.key"):
        # Kafka's LineMessageReader: key.separator only counts with parse.key=true.
        kafka_sep = props.get("key.separator", "\t")
        if key_separator is not None and key_separator != kafka_sep:
            raise click.UsageError(f"--key-separator {key_separator!r} and --property key.separator="
                                   f"{kafka_sep!r} disagree")
        key_separator = kafka_sep
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="--key-separator")
    hdrs = [(k, v.encode()) for k, v in parse_key_value(headers, "--header")] or None
    sep = key_separator.encode() if key_separator is not None else None
    with open_log() as log:
        conf = {**client_conf(log), "acks": acks, "compression.type": compression,
                "client.id": "embedlog-console-producer",
                **_client_properties(client_props, "--producer-property")}
        # As the API's Producer (and kafka-console-producer on a broker with
        # auto.create.topics.enable): an unknown topic is created unless the config says not to.
        from embedlog.client._clients import get_topic
        from embedlog.storage._config import producer_config
        existed = topic in log.topics()
        t = get_topic(log, topic, producer_config(conf))
        if not existed:
            note(f"Created topic {topic} ({t.num_partitions} partition(s); allow.auto.create.topics=false "
                 f"to refuse unknown topics)")
        if partition is not None:
            t.partition(partition)           # an unknown partition is an error before any write
    stats = {"delivered": 0, "bytes": 0, "failed": []}

    def on_delivery(err, msg):
        if err is not None:
            stats["failed"].append(f"{msg.topic()} [{msg.partition()}]: {err.str()}")
            return
        stats["delivered"] += 1
        stats["bytes"] += len(msg.value() or b"") + len(msg.key() or b"")
        if verbose:
            key = "" if msg.key() is None else f" key={msg.key().decode('utf-8', 'backslashreplace')}"
            click.echo(f"delivered to {msg.topic()} [{msg.partition()}] @ {msg.offset()}{key}")

    producer = Producer(conf)
    stream = file_ if file_ is not None else sys.stdin.buffer
    # Not while someone types the records (stdin a terminal), nor between -v's lines on it.
    typed = is_tty(stream) or (verbose and is_tty(sys.stdout))
    status = progress_line(enabled=not typed)
    bad_line = None
    produced = 0
    try:
        for lineno, line in enumerate(_lines(stream), 1):
            if status.due():
                status.show(_progress_text(stats, status))
            key = None
            if sep is not None:
                key, found, value = line.partition(sep)
                if not found:
                    bad_line = lineno
                    break
            else:
                value = line
            kwargs = {"key": key, "value": value, "on_delivery": on_delivery, "headers": hdrs}
            if partition is not None:
                kwargs["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:           # queue.buffering.max.messages: let deliveries drain
                    producer.poll(0.1)
            produced += 1
            producer.poll(0)
    finally:
        try:
            left = producer.close()
        finally:
            status.clear()
    if bad_line is not None:
        raise CliError(f"line {bad_line} has no key separator {key_separator!r} "
                       f"(the {produced} line(s) before it were produced)")
    if stats["failed"] or left:
        first = stats["failed"][0] if stats["failed"] else "not delivered before the producer closed"
        raise CliError(f"{len(stats['failed']) + left} of {produced} record(s) were not delivered: {first}")


def _progress_text(stats, status) -> str:
    import time
    elapsed = max(time.monotonic() - status.started, 1e-3)
    n = stats["delivered"]
    return f"{n:,} records written, {n / elapsed:,.0f} records/s, {human_bytes(stats['bytes'])}"


# ------------------------------------------------------------------ consume

def _parse_offset(value):
    if value is None or value in ("earliest", "latest"):
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use earliest, latest or a non-negative number",
                                 param_hint="--offset") from None
    if n < 0:
        raise click.BadParameter(f"{value!r}: use earliest, latest or a non-negative number", param_hint="--offset")
    return n


class _Printer:
    def __init__(self, fmt, print_key, print_offset, print_timestamp, print_partition, print_headers, separator):
        self.fmt = fmt
        self.flags = (print_timestamp, print_partition, print_offset, print_headers, print_key)
        self.sep = separator.encode()
        self.out = sys.stdout.buffer

    def _bytes(self, data) -> bytes:
        if data is None:
            return b"null"
        return bytes(data).hex().encode() if self.fmt == "hex" else bytes(data)

    def line(self, msg) -> bytes:
        from embedlog import TIMESTAMP_LOG_APPEND_TIME
        ts_type, ts = msg.timestamp()
        if self.fmt == "json":
            doc = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "timestamp": ts,
                   "timestamp_type": "LogAppendTime" if ts_type == TIMESTAMP_LOG_APPEND_TIME else "CreateTime"}
            doc.update(bytes_json(msg.key(), "key"))
            doc.update(bytes_json(msg.value(), "value"))
            doc["headers"] = [{"key": k, **bytes_json(v, "value")} for k, v in (msg.headers() or [])]
            return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        print_timestamp, print_partition, print_offset, print_headers, print_key = self.flags
        parts = []
        if print_timestamp:   # Kafka's DefaultMessageFormatter: the same fields, in this order
            kind = "LogAppendTime" if ts_type == TIMESTAMP_LOG_APPEND_TIME else "CreateTime"
            parts.append(f"{kind}:{ts}".encode())
        if print_partition:
            parts.append(f"Partition:{msg.partition()}".encode())
        if print_offset:
            parts.append(f"Offset:{msg.offset()}".encode())
        if print_headers:
            hs = msg.headers()
            parts.append(b",".join(k.encode() + b":" + self._bytes(v) for k, v in hs) if hs else b"NO_HEADERS")
        if print_key:
            parts.append(self._bytes(msg.key()))
        parts.append(self._bytes(msg.value()))
        return self.sep.join(parts) + b"\n"

    def write(self, msgs):
        self.out.write(b"".join(self.line(m) for m in msgs))
        self.out.flush()


class _Table:
    """--format table: PARTITION, OFFSET, TIMESTAMP (ISO 8601, UTC, ms), KEY, VALUE and
    HEADERS in aligned columns under one heading line, for a human at a terminal.

    Keys, values and headers are escaped (no byte reaches the terminal as a control
    character). The output streams, so the widths of KEY, VALUE and HEADERS are those of
    the longest in the first records read, cut so that a line fits the terminal width
    (COLUMNS, or 80 when stdout is not a terminal): while VALUE needs the room, KEY and
    HEADERS get a quarter of it each and VALUE the rest; room VALUE does not need goes
    back to KEY, then HEADERS. A later, longer cell is cut to its column with an ellipsis;
    below about 65 columns the lines are longer than the terminal."""

    HEADINGS = ("PARTITION", "OFFSET", "TIMESTAMP", "KEY", "VALUE", "HEADERS")
    TIMESTAMP_WIDTH = len("2024-05-01T12:00:00.000Z")
    GAP = 2

    def __init__(self, max_partition: int, max_offset: int, columns: int):
        self.widths = None
        self.fixed = [max(len("PARTITION"), len(str(max_partition))), max(len("OFFSET"), len(str(max_offset))),
                      self.TIMESTAMP_WIDTH]
        self.columns = columns
        self.out = sys.stdout.buffer
        self._second, self._second_text = None, ""

    def _timestamp(self, ms: int) -> str:
        import datetime as dt
        if ms < 0:
            return "-"
        sec = ms // 1000
        if sec != self._second:           # records come in time order mostly: one strftime a second
            try:
                when = dt.datetime.fromtimestamp(sec, tz=dt.timezone.utc)
            except (OverflowError, OSError, ValueError):
                return str(ms)            # beyond year 9999: the number itself
            self._second, self._second_text = sec, when.strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._second_text}{ms % 1000:03d}Z"

    def cells(self, msg) -> list[str]:
        hs = msg.headers()
        headers = ",".join(f"{escaped(k)}:{escaped(v)}" for k, v in hs) if hs else "-"
        return [str(msg.partition()), str(msg.offset()), self._timestamp(msg.timestamp()[1]),
                escaped(msg.key()), escaped(msg.value()), headers]

    def _plan(self, rows) -> list[int]:
        from ._common import display_width
        want_k, want_v, want_h = (max([len(self.HEADINGS[i])] + [display_width(r[i]) for r in rows])
                                  for i in (3, 4, 5))
        room = self.columns - sum(self.fixed) - self.GAP * 5
        k = min(want_k, max(len("null"), room // 4))
        h = min(want_h, max(len("HEADERS"), room // 4))
        v = max(len("VALUE"), min(want_v, room - k - h))
        spare = max(0, room - k - h - v)
        grown = min(want_k, k + spare)
        spare -= grown - k
        return self.fixed + [grown, v, min(want_h, h + spare)]

    def _line(self, cells) -> bytes:
        # Numbers and times are never cut (an offset past the first ones' width widens its row).
        padded = [c.ljust(w) for c, w in zip(cells[:3], self.widths)]
        padded += [fit(c, w) for c, w in zip(cells[3:], self.widths[3:])]
        text = (" " * self.GAP).join(padded).rstrip()
        return text.encode("utf-8") + b"\n"

    def write(self, msgs):
        rows = [self.cells(m) for m in msgs]
        lines = []
        if self.widths is None:
            self.widths = self._plan(rows)
            lines.append(self._line(self.HEADINGS))
        lines.extend(self._line(r) for r in rows)
        self.out.write(b"".join(lines))
        self.out.flush()


class _StopFlag:
    """Ctrl-C and SIGTERM end a --follow by setting a flag the loop checks between polls
    (a poll waits at most 0.5 s), so the interrupt never lands inside the consumer's own
    locks or group calls, and the final commit and LeaveGroup always run. A second Ctrl-C
    raises KeyboardInterrupt as usual, for the impatient."""

    def __init__(self):
        self.set = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:      # not the main thread (tests calling main() from a thread)
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@click.command()
@dir_option
@click.argument("topic", required=False)
@click.option("--topic", "topic_opt", **_TOPIC_OPTION)
@click.option("--from-beginning", is_flag=True,
              help="Start at the earliest offset (the default; with --group: where nothing is committed).")
@click.option("--offset", "-o", metavar="earliest|latest|N", default=None,
              help="Where to start: earliest, latest, or an offset (a number needs --partition).")
@click.option("--partition", "-p", type=click.IntRange(min=0, max=2**31 - 1), default=None, help="Read only this partition.")
@click.option("--from-time", default=None, metavar="WHEN",
              help="Start at the first record at or after WHEN: a date-time (2024-05-01T12:00:00, local "
                   "unless Z/+HH:MM) or epoch milliseconds.")
@click.option("--group", "-g", default=None,
              help="Consume as this consumer group: start at its committed offsets and commit what was printed.")
@click.option("--max-messages", "-n", type=click.IntRange(min=1, max=2**63 - 1), default=None,
              help="Stop after this many records.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new records until Ctrl-C.")
@click.option("--timeout-ms", type=click.IntRange(min=0, max=2**63 - 1), default=None,
              help="Stop when no record arrived for this long (also without --follow).")
@click.option("--print-key", is_flag=True, help="Print the key before the value.")
@click.option("--print-offset", is_flag=True, help="Print Offset:N.")
@click.option("--print-timestamp", is_flag=True, help="Print CreateTime:MS (or LogAppendTime:MS).")
@click.option("--print-partition", is_flag=True, help="Print Partition:N.")
@click.option("--print-headers", is_flag=True, help="Print headers as k:v,k2:v2 (NO_HEADERS if none).")
@click.option("--separator", default="\t", show_default="tab", help="Between the printed fields.")
@click.option("--format", "fmt", type=click.Choice(["raw", "json", "hex", "table"]), default="raw",
              show_default=True,
              help="raw: bytes as stored; json: one JSON object per record; hex: key and value in hex; "
                   "table: aligned columns for a terminal (partition, offset, time, key, value, headers).")
@click.option("--json", "--nl", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--property", "props", multiple=True, metavar="KEY=VALUE",
              help="kafka-console-consumer's: print.key, print.timestamp, print.offset, print.partition, "
                   "print.headers (true/false), key.separator=SEP.")
@click.option("--consumer-property", "client_props", multiple=True, metavar="KEY=VALUE",
              help="Consumer config, e.g. fetch.max.bytes=4000000 (repeatable; wins over the options).")
def consume(topic, topic_opt, from_beginning, offset, partition, from_time, group, max_messages, follow, timeout_ms,
            print_key, print_offset, print_timestamp, print_partition, print_headers, separator, fmt, as_json,
            props, client_props):
    """Print the records of a topic.

    Reads TOPIC from the earliest offset (or --offset) to its end as of the start, or
    with --follow until Ctrl-C. With --group it starts at the group's committed offsets
    and commits what it printed."""
    import time

    from embedlog import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
    topic = pick_topic(topic, topic_opt)
    props = properties(props, _CONSUMER_PROPERTIES, "--property")
    if props.get("print.value") is False:
        raise click.BadParameter("print.value=false is not supported", param_hint="--property")
    print_key = props.get("print.key", print_key)
    print_offset = props.get("print.offset", print_offset)
    print_timestamp = props.get("print.timestamp", print_timestamp)
    print_partition = props.get("print.partition", print_partition)
    print_headers = props.get("print.headers", print_headers)
    separator = props.get("key.separator", separator)
    offset = _parse_offset(offset)
    if from_beginning:
        if offset not in (None, "earliest"):
            raise click.UsageError("--from-beginning and --offset name two different starts")
        offset = "earliest"
    if group is not None and not group.strip():
        raise click.UsageError("--group must not be empty (Kafka's INVALID_GROUP_ID)")
    if group is not None and (partition is not None or isinstance(offset, int)):
        raise click.UsageError("--group cannot be combined with --partition or a numeric --offset: "
                               "the group's assignment and committed offsets decide where to read")
    if isinstance(offset, int) and partition is None:
        raise click.UsageError("a numeric --offset needs --partition")
    from_ms = None
    if from_time is not None:
        if offset is not None or group is not None:
            raise click.UsageError("--from-time names the start: drop --offset/--from-beginning/--group")
        if from_time.strip().isdigit():
            from_ms = int(from_time)
            if from_ms > 2**63 - 1:
                raise click.BadParameter(f"{from_time} is past the largest timestamp (2^63-1 ms)",
                                         param_hint="--from-time")
        else:
            from .groups import _parse_datetime
            try:
                from_ms = _parse_datetime(from_time)
            except click.BadParameter as e:
                raise click.BadParameter(e.message, param_hint="--from-time") from None
    if as_json:
        fmt = "json"
    printer = _Printer(fmt, print_key, print_offset, print_timestamp, print_partition, print_headers, separator)

    with open_log() as log:
        t = log.topic(topic)
        parts = [partition] if partition is not None else list(range(t.num_partitions))
        ends = {}
        starts = {}                 # --from-time: the first offset at or after it, per partition
        for p in parts:
            start, end = t.partition(p).watermarks()
            ends[(topic, p)] = end
            if from_ms is not None:
                found = t.partition(p).offset_for_time(from_ms)
                starts[p] = found[0] if found is not None else end
            if isinstance(offset, int) and not start <= offset <= end:
                raise CliError(f"offset {offset} is out of range for {topic} [{p}] "
                               f"(log start {start}, log end {end})")
        if fmt == "table":
            import shutil
            printer = _Table(max(parts), max(ends.values()), shutil.get_terminal_size().columns)
        conf = {**client_conf(log), "enable.auto.commit": False, "client.id": "embedlog-console-consumer",
                "allow.auto.create.topics": False,
                "auto.offset.reset": offset if offset in ("earliest", "latest") else "earliest",
                **_client_properties(client_props, "--consumer-property")}
    if group is not None:
        conf["group.id"] = group

    from embedlog import ReadOnlyLogError
    try:
        consumer = Consumer(conf)
    except ReadOnlyLogError as e:
        if group is None:
            raise
        raise CliError(f"cannot consume as group {group!r}: {log.path} may not be written "
                       f"({os.strerror(e.errno) if e.errno else 'read-only'}) and a group's membership and "
                       "committed offsets are written there; without --group, consume reads it read-only") from None
    count = 0
    committed = 0
    stop = _StopFlag() if follow else None

    def commit():
        nonlocal committed
        if group is None or committed == count:
            return
        try:
            consumer.commit(asynchronous=False)
            committed = count
        except KafkaException as e:       # e.g. a rebalance took the partitions away
            note(f"Warning: commit failed: {e.args[0].str()}")

    if stop is not None:
        stop.__enter__()
    try:
        if group is not None:
            consumer.subscribe([topic])
        else:
            start = {None: OFFSET_BEGINNING, "earliest": OFFSET_BEGINNING, "latest": OFFSET_END}.get(offset, offset)
            consumer.assign([TopicPartition(topic, p, starts.get(p, start)) for p in parts])
        idle_since = time.monotonic()
        while (max_messages is None or count < max_messages) and not (stop is not None and stop.set):
            want = 500 if max_messages is None else min(500, max_messages - count)
            msgs = consumer.consume(num_messages=want, timeout=0.5 if follow else 0.05)
            records = []
            for m in msgs:
                err = m.error()
                if err is None:
                    records.append(m)
                elif err.code() != KafkaError._PARTITION_EOF:
                    count += len(records)
                    printer.write(records)
                    raise CliError(f"{m.topic()} [{m.partition()}] at offset {m.offset()}: {err.str()}")
            if records:
                count += len(records)         # first: a Ctrl-C right after the write still counts them
                printer.write(records)
                idle_since = time.monotonic()
                commit()
            if timeout_ms is not None and time.monotonic() - idle_since >= timeout_ms / 1000.0:
                break
            if follow:
                continue
            if not msgs and _caught_up(consumer, ends):
                break
    except KeyboardInterrupt:
        if not follow:
            raise                         # an interrupted read exits 130, as a shell expects
    finally:
        try:
            commit()
        finally:
            consumer.close()
            if stop is not None:
                stop.__exit__()
    note(f"Processed a total of {count} messages")


def _caught_up(consumer, ends) -> bool:
    """Every assigned partition has been read up to its end as of the start."""
    positions = consumer.position(consumer.assignment())
    return all(tp.offset >= ends.get((tp.topic, tp.partition), 0) for tp in positions)
