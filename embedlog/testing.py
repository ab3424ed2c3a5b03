"""Assertions for tests of code that writes to or consumes from embedlog.

    from embedlog.testing import assert_topic_contains, wait_for_zero_lag

    assert_topic_contains(log, "orders", [(b"alice", b"order-1"), (b"bob", b"order-2")])
    wait_for_zero_lag(log, "billing", timeout=5)

Each helper takes the log as an open `embedlog.Log`, a directory path, or a client
config dict (`{"bootstrap.servers": "file:///..."}`). Failures raise AssertionError
with a message that shows what the topic or the group actually holds, so they read
well in pytest and in unittest alike.
"""
from __future__ import annotations

import contextlib
import os
import time

__all__ = ["assert_topic_contains", "read_topic", "topic_lag", "wait_for_zero_lag"]

_SHOW = 20        # records shown per partition in a failure message


@contextlib.contextmanager
def _opened(log):
    """Yield a Log for `log` (a Log, a path, or a client config dict)."""
    from .storage._log import Log, path_from_config
    if isinstance(log, Log):
        yield log
        return
    if isinstance(log, dict):
        from .storage._config import log_path
        path = path_from_config(log_path(log))
    else:
        path = os.fspath(log)
    try:
        opened = Log(path, create=False)
    except FileNotFoundError:
        raise AssertionError(f"no embedlog directory at {os.path.abspath(path_from_config(path))}") from None
    with opened:
        yield opened


def _b(x):
    if x is None or isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"expected bytes, str or None, not {type(x).__name__}")


def _show(x) -> str:
    return "None" if x is None else repr(bytes(x))


def read_topic(log, topic: str, partition: int | None = None) -> dict[int, list]:
    """{partition: [Record, ...]} of everything in the topic (or one partition) now."""
    with _opened(log) as lg:
        t = lg.topic(topic)
        parts = [partition] if partition is not None else range(t.num_partitions)
        out = {}
        for p in parts:
            part = t.partition(p)
            start, end = part.watermarks()
            recs, pos = [], start
            while pos < end:
                batch = part.read(pos, max_bytes=1 << 20)
                if not batch:
                    break
                recs.extend(batch)
                pos = batch[-1].offset + 1
            out[p] = recs
        return out


class _Want:
    __slots__ = ("index", "key", "value", "keyed")

    def __init__(self, index, item):
        self.index = index
        if isinstance(item, tuple):
            if len(item) != 2:
                raise TypeError(f"message {index}: a (key, value) pair has 2 items, not {len(item)}")
            self.keyed, self.key, self.value = True, _b(item[0]), _b(item[1])
        else:
            self.keyed, self.key, self.value = False, None, _b(item)

    def matches(self, rec) -> bool:
        value = None if rec.value is None else bytes(rec.value)
        if value != self.value:
            return False
        return not self.keyed or (None if rec.key is None else bytes(rec.key)) == self.key

    def __str__(self):
        if self.keyed:
            return f"#{self.index} (key={_show(self.key)}, value={_show(self.value)})"
        return f"#{self.index} value={_show(self.value)}"


def _match(parts: dict, wants: list) -> tuple[list[str], set]:
    """Greedy in-order matching, each partition on its own: a message matches the
    first unused record after the previous match in the same partition."""
    cursor = {p: 0 for p in parts}
    used: set = set()
    last_match: dict = {}
    problems = []
    for w in wants:
        hit = None
        for p in sorted(parts):
            recs = parts[p]
            for j in range(cursor[p], len(recs)):
                if w.matches(recs[j]):
                    hit = (p, j)
                    break
            if hit:
                break
        if hit:
            p, j = hit
            cursor[p] = j + 1
            used.add((p, j))
            last_match[p] = (w, parts[p][j].offset)
            continue
        earlier = [(p, r.offset) for p in sorted(parts) for j, r in enumerate(parts[p][:cursor[p]])
                   if w.matches(r) and (p, j) not in used]
        if not earlier and any(w.matches(parts[p][j]) for p, j in used):
            problems.append(f"{w} is in the topic fewer times than the list has it")
        elif earlier:
            p, off = earlier[0]
            prev, prev_off = last_match[p]
            problems.append(f"{w} is out of order: it is in partition {p} at offset {off}, before {prev} "
                            f"(offset {prev_off}), which the list puts first")
        else:
            problems.append(f"{w} is not in the topic")
    return problems, used


def _describe(parts: dict) -> str:
    lines = []
    total = sum(len(r) for r in parts.values())
    lines.append(f"the topic holds {total} record(s):")
    for p in sorted(parts):
        recs = parts[p]
        lines.append(f"  partition {p}: {len(recs)} record(s)")
        for r in recs[:_SHOW]:
            lines.append(f"    offset {r.offset}: key={_show(r.key)} value={_show(r.value)}")
        if len(recs) > _SHOW:
            lines.append(f"    ... {len(recs) - _SHOW} more")
    return "\n".join(lines)


def assert_topic_contains(log, topic: str, messages, *, partition: int | None = None, exact: bool = False,
                          timeout: float = 0.0) -> None:
    """Assert that `topic` holds `messages`, in order per partition (Kafka orders
    records only within a partition).

    messages: a list of values, or of (key, value) pairs to match keys too (bytes or
              str; str is UTF-8); or a dict {key: [values]}, checked by key: each key's
              records carry those values in that order.
    partition: look only in this partition.
    exact: the topic (or partition) holds nothing else.
    timeout: keep checking for up to this many seconds (for records produced in the
             background), then fail.
    """
    __tracebackhide__ = True
    from .storage._errors import UnknownTopicOrPartitionError
    if isinstance(messages, dict):
        wants = []
        for key, values in messages.items():
            if isinstance(values, (bytes, str)) or values is None:
                raise TypeError(f"by key: the values of key {key!r} must be a list")
            wants.append((key, [_Want(i, (key, v)) for i, v in enumerate(values)]))
    else:
        if isinstance(messages, (bytes, str)):
            raise TypeError("messages must be a list of values or (key, value) pairs, or a dict")
        wants = [(None, [_Want(i, m) for i, m in enumerate(messages)])]
    deadline = time.monotonic() + timeout
    with _opened(log) as lg:
        while True:
            try:
                parts = read_topic(lg, topic, partition)
            except UnknownTopicOrPartitionError as e:
                parts, problems = {}, [str(e)]
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
                continue
            problems, used = [], set()
            for key, ws in wants:
                if key is None:
                    found, u = _match(parts, ws)
                else:
                    kb = _b(key)
                    keep = {p: [j for j, r in enumerate(recs) if (None if r.key is None else bytes(r.key)) == kb]
                            for p, recs in parts.items()}
                    found, u_ = _match({p: [parts[p][j] for j in js] for p, js in keep.items()}, ws)
                    u = {(p, keep[p][j]) for p, j in u_}
                    found = [f"key {_show(kb)}: {x}" for x in found]
                problems += found
                used |= u
            if exact:
                extra = [(p, r) for p, recs in parts.items() for j, r in enumerate(recs) if (p, j) not in used]
                for p, r in extra[:_SHOW]:
                    problems.append(f"unexpected record in partition {p} at offset {r.offset}: "
                                    f"key={_show(r.key)} value={_show(r.value)}")
                if len(extra) > _SHOW:
                    problems.append(f"... and {len(extra) - _SHOW} more unexpected records")
            if not problems or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    if problems:
        where = f"topic {topic!r}" + (f" partition {partition}" if partition is not None else "")
        waited = f" after {timeout:g}s" if timeout else ""
        raise AssertionError(f"{where} does not contain the expected messages{waited}:\n  "
                             + "\n  ".join(problems) + ("\n" + _describe(parts) if parts else ""))


def topic_lag(log, group: str, topics=None) -> list[dict]:
    """[{topic, partition, committed, log_end_offset, lag}] of a consumer group: every
    partition of `topics` (default: the topics it committed offsets for). A partition
    without a committed offset lags by its whole log."""
    from .storage._offsets import OFFSETS_TOPIC, store_for
    with _opened(log) as lg:
        offsets = {}
        if OFFSETS_TOPIC in lg.topics():        # never create it as a side effect of looking
            store = store_for(lg)
            store.refresh()
            offsets = store.group_offsets(group)
        names = sorted(topics) if topics is not None else sorted({t for t, _p in offsets})
        rows = []
        for name in names:
            t = lg.topic(name)
            for p in range(t.num_partitions):
                start, end = t.partition(p).watermarks()
                c = offsets.get((name, p))
                committed = c[0] if c else None
                lag = max(0, end - (max(committed, start) if committed is not None else start))
                rows.append({"topic": name, "partition": p, "committed": committed, "log_end_offset": end,
                             "lag": lag})
        return rows


def wait_for_zero_lag(log, group: str, *, topics=None, timeout: float = 10.0) -> list[dict]:
    """Wait until consumer group `group` has committed everything of `topics` (default:
    the topics it committed offsets for); returns the lag rows. Fails with a table of
    the partitions still lagging when `timeout` seconds pass, or when the group has
    committed nothing at all and no topics were named."""
    __tracebackhide__ = True
    if isinstance(topics, str):
        topics = [topics]
    deadline = time.monotonic() + timeout
    with _opened(log) as lg:
        while True:
            rows = topic_lag(lg, group, topics)
            if rows and all(r["lag"] == 0 for r in rows):
                return rows
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    if not rows:
        raise AssertionError(f"consumer group {group!r} committed no offsets within {timeout:g}s "
                             "(did it commit? pass topics=[...] to name what it should have consumed)")
    lagging = [r for r in rows if r["lag"]]
    lines = [f"consumer group {group!r} still lags by {sum(r['lag'] for r in rows)} record(s) after {timeout:g}s:",
             f"  {'TOPIC':<20} {'PARTITION':>9} {'COMMITTED':>10} {'LOG-END':>10} {'LAG':>8}"]
    for r in lagging:
        committed = "-" if r["committed"] is None else r["committed"]
        lines.append(f"  {r['topic']:<20} {r['partition']:>9} {committed:>10} {r['log_end_offset']:>10} {r['lag']:>8}")
    raise AssertionError("\n".join(lines))
