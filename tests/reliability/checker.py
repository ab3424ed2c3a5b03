"""A history checker for a Kafka-like log, with Jepsen's anomaly names
(jepsen-io/redpanda's queue checker; ../shared/reference/reliability.md §1.4).

A history is what clients saw, nothing more:

* **sends**: one per record a producer tried to write, with a unique value, its outcome
  ("ok": acknowledged, "fail": reported failed, "unknown": no answer, e.g. the producer
  was killed), the partition and, when acknowledged, the offset of the acknowledgement;
* **sessions**: one per consumer session (a stretch of polls with no seek, assignment
  change or rebalance in between), each a list of polls, each poll a list of
  `(offset, value)` or `(partition, offset, value)` read in that order.

`check(sends, sessions)` returns a report::

    {"valid": bool, "anomalies": {name: {"count": n, "examples": [...]}}, "stats": {...}}

Anomalies (a partition is any hashable; offsets are per partition):

lost_write
    an acknowledged send that no read returned, although reads of its partition went
    past its offset (Jepsen's rule); with `reads_complete=True` (the reader read to the
    end of the log) every acknowledged send that was not read.
duplicate
    one send's value read at two or more distinct offsets.
inconsistent_offsets
    two different values read at one offset, or a value read at an offset other than the
    one its send was acknowledged at.
poll_skip / int_poll_skip
    within a session, two consecutive reads of a partition (in consecutive polls / in
    one poll) jump over an offset that is known to hold a record (read by anyone, or
    acknowledged).
nonmonotonic_poll / int_nonmonotonic_poll
    within a session, a read of a partition at an offset not greater than the previous
    read of that partition (across polls / in one poll). A seek or a rebalance starts a
    new session.
failed_write_read
    a send reported failed (outcome "fail") whose value was read (Jepsen's G1a,
    "aborted read").
unexpected_value
    a value read that no send wrote (garbage, or a record from outside the history).

Values must be unique per send and hashable. The checker assumes a log whose offsets
are dense in what it knows (no compaction: a compacted-away offset would look like a
record that exists). Sends with outcome "unknown" may or may not be read, once.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Hashable

OUTCOMES = ("ok", "fail", "unknown")
ANOMALIES = ("lost_write", "duplicate", "inconsistent_offsets", "poll_skip", "int_poll_skip",
             "nonmonotonic_poll", "int_nonmonotonic_poll", "failed_write_read", "unexpected_value")


@dataclass(frozen=True)
class Send:
    value: Hashable
    outcome: str
    offset: int | None = None
    partition: Hashable = 0

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        if self.outcome == "ok" and self.offset is None:
            raise ValueError(f"acknowledged send {self.value!r} has no offset")


@dataclass
class Session:
    consumer: str
    polls: list = field(default_factory=list)   # [[(offset, value) | (partition, offset, value), ...], ...]


def _as_send(s) -> Send:
    if isinstance(s, Send):
        return s
    if isinstance(s, dict):
        return Send(s["value"], s["outcome"], s.get("offset"), s.get("partition", 0))
    return Send(*s)


def _as_session(s) -> Session:
    if isinstance(s, Session):
        return s
    if isinstance(s, dict):
        return Session(s.get("consumer", "?"), s["polls"])
    return Session("?", list(s))


def _reads(session: Session):
    """(poll index, partition, offset, value) of every read of a session, in order."""
    for i, poll in enumerate(session.polls):
        for item in poll:
            if len(item) == 2:
                yield i, 0, item[0], item[1]
            else:
                yield i, item[0], item[1], item[2]


class _Report:
    def __init__(self, max_examples):
        self.max_examples = max_examples
        self.found = {name: {"count": 0, "examples": []} for name in ANOMALIES}

    def add(self, name, example):
        a = self.found[name]
        a["count"] += 1
        if len(a["examples"]) < self.max_examples:
            a["examples"].append(example)


def check(sends, sessions, *, reads_complete: bool = False, max_examples: int = 10) -> dict:
    sends = [_as_send(s) for s in sends]
    sessions = [_as_session(s) for s in sessions]
    rep = _Report(max_examples)

    by_value: dict = {}
    for s in sends:
        if s.value in by_value:
            raise ValueError(f"value {s.value!r} was sent twice: values must be unique per send")
        by_value[s.value] = s

    # Everything read: offsets each value was read at, values read at each offset.
    read_at: dict = defaultdict(set)                 # value -> {(partition, offset)}
    at_offset: dict = defaultdict(set)               # (partition, offset) -> {value}
    max_read: dict = {}                              # partition -> highest offset read
    n_reads = 0
    for sess in sessions:
        for _poll, p, off, val in _reads(sess):
            n_reads += 1
            read_at[val].add((p, off))
            at_offset[(p, off)].add(val)
            if off > max_read.get(p, -1):
                max_read[p] = off

    # Offsets known to hold a record: read by anyone, or acknowledged.
    exists: dict = defaultdict(set)
    for (p, off) in at_offset:
        exists[p].add(off)
    for s in sends:
        if s.outcome == "ok":
            exists[s.partition].add(s.offset)
    exists_sorted = {p: sorted(offs) for p, offs in exists.items()}

    # inconsistent offsets: two values at one offset ...
    for (p, off), vals in sorted(at_offset.items(), key=lambda kv: (repr(kv[0][0]), kv[0][1])):
        if len(vals) > 1:
            rep.add("inconsistent_offsets", {"partition": p, "offset": off,
                                             "values": sorted(vals, key=repr)})
    # ... or a value read somewhere else than where its send was acknowledged.
    for val, places in read_at.items():
        s = by_value.get(val)
        if s is None:
            rep.add("unexpected_value", {"value": val, "read_at": sorted(places, key=repr)})
            continue
        if len(places) > 1:
            rep.add("duplicate", {"value": val, "read_at": sorted(places, key=repr)})
        if s.outcome == "fail":
            rep.add("failed_write_read", {"value": val, "read_at": sorted(places, key=repr)})
        if s.outcome == "ok":
            wrong = sorted(pl for pl in places if pl != (s.partition, s.offset))
            if wrong:
                rep.add("inconsistent_offsets", {"value": val, "acknowledged": (s.partition, s.offset),
                                                 "read_at": wrong})

    # lost writes
    unread_acked = 0
    for s in sends:
        if s.outcome != "ok" or s.value in read_at:
            continue
        unread_acked += 1
        if reads_complete or max_read.get(s.partition, -1) > s.offset:
            rep.add("lost_write", {"value": s.value, "partition": s.partition, "offset": s.offset})

    # per-session order: skips and going backwards
    from bisect import bisect_right
    for sess in sessions:
        last: dict = {}                       # partition -> (poll index, offset)
        for poll, p, off, val in _reads(sess):
            prev = last.get(p)
            last[p] = (poll, off)
            if prev is None:
                continue
            prev_poll, prev_off = prev
            same_poll = poll == prev_poll
            if off <= prev_off:
                rep.add("int_nonmonotonic_poll" if same_poll else "nonmonotonic_poll",
                        {"consumer": sess.consumer, "partition": p, "from": prev_off, "to": off})
                continue
            offs = exists_sorted.get(p, ())
            i = bisect_right(offs, prev_off)
            if i < len(offs) and offs[i] < off:
                missed = []
                while i < len(offs) and offs[i] < off and len(missed) < 5:
                    missed.append(offs[i])
                    i += 1
                rep.add("int_poll_skip" if same_poll else "poll_skip",
                        {"consumer": sess.consumer, "partition": p, "from": prev_off, "to": off,
                         "skipped": missed})

    anomalies = {k: v for k, v in rep.found.items() if v["count"]}
    outcomes = defaultdict(int)
    for s in sends:
        outcomes[s.outcome] += 1
    return {
        "valid": not anomalies,
        "anomalies": anomalies,
        "stats": {"sends": len(sends), **{f"sends_{k}": outcomes[k] for k in OUTCOMES},
                  "sessions": len(sessions), "reads": n_reads, "distinct_values_read": len(read_at),
                  "acknowledged_unread": unread_acked,
                  "unknown_read": sum(1 for s in sends if s.outcome == "unknown" and s.value in read_at)},
    }


def summary(report: dict) -> str:
    """One line per anomaly with its first example, for assertion messages."""
    if report["valid"]:
        return "no anomalies " + repr(report["stats"])
    lines = [f"{name}: {a['count']} (e.g. {a['examples'][0]!r})" for name, a in report["anomalies"].items()]
    return "\n".join(lines + [repr(report["stats"])])
