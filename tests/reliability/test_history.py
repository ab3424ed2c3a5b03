"""End to end through the confluent-kafka-shaped clients: several producer processes
(acks=1 and acks=all, lz4 and uncompressed, one of them killed with SIGKILL half way)
write to one topic while one consumer tails every partition; the history of sends and
reads then goes through the Jepsen-style checker (checker.py).

What must hold: no lost write (every acknowledged record is read, at the offset it was
acknowledged at: acks=1 survives the kill -9 of its producer), no duplicate, no
inconsistent offset, no poll skip or backwards poll, and no record whose send was
reported failed (over max.message.bytes) ever shows up.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import embedlog
from embedlog import OFFSET_BEGINNING, Consumer, TopicPartition

from .checker import Send, Session, check, summary

PRODUCER = os.path.join(os.path.dirname(__file__), "_producer_proc.py")
TOPIC = "h"
PARTITIONS = 3


class ProducerProc:
    def __init__(self, path, name, acks, count, compression):
        self.name, self.acks, self.count = name, acks, count
        self.proc = subprocess.Popen([sys.executable, PRODUCER, str(path), TOPIC, name, acks, str(count),
                                      compression], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reports: dict[str, dict] = {}
        self.done = False
        self.killed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = json.loads(raw)
            if line.get("done"):
                self.done = True
            else:
                self.reports[line["v"]] = line

    def kill(self):
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)

    def wait(self):
        self.proc.wait(timeout=120)
        self._reader.join(10)
        err = self.proc.stderr.read().decode()
        if not self.killed:
            assert self.proc.returncode == 0 and self.done, f"producer {self.name} failed:\n{err}"

    def sends(self) -> list[Send]:
        out = []
        for i in range(self.count):
            v = f"{self.name}-{i}"
            r = self.reports.get(v)
            if r is None:
                out.append(Send(v, "unknown"))
            elif r["ok"]:
                out.append(Send(v, "ok", r["o"], r["p"]))
            else:
                out.append(Send(v, "fail"))
        return out


def run_history(tmp_path, per_producer: int, kill_after: int):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        log.create_topic(TOPIC, partitions=PARTITIONS,
                         config={"max.message.bytes": 4096, "segment.bytes": 64 * 1024,
                                 "index.interval.bytes": 512})
    producers = [
        ProducerProc(path, "a1", "1", per_producer, "none"),
        ProducerProc(path, "b1", "1", per_producer, "lz4"),          # killed half way
        ProducerProc(path, "c9", "all", per_producer, "lz4"),
        ProducerProc(path, "d9", "all", per_producer, "none"),
    ]
    victim = producers[1]
    consumer = Consumer({"bootstrap.servers": f"file://{path}", "enable.partition.eof": False,
                         "log.retention.check.interval.ms": 0})
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    polls = []
    errors = []

    def poll_once(timeout):
        msgs = consumer.consume(num_messages=200, timeout=timeout)
        poll = []
        for m in msgs:
            if m.error() is not None:
                errors.append(str(m.error()))
                continue
            poll.append((m.partition(), m.offset(), bytes(m.value()).split(b"#")[0].decode()))
        if poll:
            polls.append(poll)

    deadline = time.monotonic() + 120
    while any(p.proc.poll() is None for p in producers) and time.monotonic() < deadline:
        if not victim.killed and len(victim.reports) >= kill_after:
            victim.kill()
        poll_once(0.05)
    for p in producers:
        p.wait()
    # Drain to the end of every partition as it is now.
    with embedlog.open(path) as log:
        ends = {p: log.partition(TOPIC, p).high_watermark for p in range(PARTITIONS)}
    while time.monotonic() < deadline:
        positions = {tp.partition: tp.offset for tp in consumer.position(
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])}
        if all(positions[p] >= ends[p] for p in range(PARTITIONS)):
            break
        poll_once(0.05)
    consumer.close()
    sends = [s for p in producers for s in p.sends()]
    report = check(sends, [Session("consumer", polls)], reads_complete=True)
    return report, producers, errors, ends


def test_producers_and_a_tailing_consumer(tmp_path):
    _history_test(tmp_path, 2000)


@pytest.mark.soak
def test_producers_and_a_tailing_consumer_soak(tmp_path):
    _history_test(tmp_path, 25000)


def _history_test(tmp_path, per):
    report, producers, errors, ends = run_history(tmp_path, per, kill_after=per // 3)
    assert not errors, errors[:5]
    assert report["valid"], summary(report)
    stats = report["stats"]
    # The run exercised what it claims to: acks, failures, a kill with writes in flight.
    assert stats["sends_fail"] >= 4 * (per // 97) - (per - per // 3) // 97 - 1, stats
    assert stats["sends_unknown"] > 0 and producers[1].killed, stats
    assert stats["sends_ok"] >= 3 * (per - per // 97) + per // 3 - 200, stats
    assert stats["reads"] == sum(ends.values()), (stats, ends)
    print(f"history: {stats}")
