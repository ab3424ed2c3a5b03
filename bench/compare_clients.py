#!/usr/bin/env python3
"""embedlog's Kafka-shaped clients against what a user would pick instead, in one run on one workload.

    python bench/compare_clients.py [--records N] [--repeat 3] [--redis-repeat 2] [--dir DIR]
                                    [--no-redis] [--no-confluent] [--no-breakdown]
                                    [--results PATH | --no-results] [--append] [--keep] [--json]

Workload (issue #3): N (default 1,000,000) messages, each a random 16-byte key and a random
100-byte value from random.Random(42) (bench/_benchutil.gen_records), one topic with one
partition. The same list of (key, value) tuples feeds every system; it is generated once,
not timed.

Write side (each timed region ends when the system says the data is where its row says):

  embedlog produce()+flush()  Producer(acks=1, compression.type none | lz4, linger.ms=5):
                              `for k, v in records: produce("t", v, k)`, then flush() == 0.
                              acks=1: every record pwrite()n to the segment (page cache).
  embedlog acks=all           the same with acks=all, linger.ms=5: fdatasync'd, group commit.
  confluent-kafka produce()   librdkafka Producer without a broker (bootstrap 127.0.0.1:1, a
                              closed port; queue limits above N; linger.ms=100000): the same
                              produce() loop only. It only queues in RAM: no batching,
                              compression, network or broker. Purged afterwards.
  SQLite WAL                  table log(id INTEGER PRIMARY KEY, key BLOB, value BLOB),
                              journal_mode=WAL, synchronous=NORMAL; BEGIN / executemany(10,000
                              rows) / COMMIT until all rows are in.
  Redis Streams               redis-server (the Debian package) started here on a free
                              127.0.0.1 port with a temp dir, appendonly yes, appendfsync
                              everysec, no RDB, no AOF rewrite; redis-py + hiredis;
                              XADD t * k <key> v <value> through a non-transactional
                              pipeline executed every 1,000 commands. A fresh server per run.

Read side (every reader builds the same Python objects: one (offset-or-id, key, value)
tuple per message, appended to one list, so each side touches every value):

  embedlog consume()          Consumer(group.id, enable.auto.commit false) assigned to
                              partition 0 at offset 0; consume(num_messages=10000, timeout=1)
                              until N; per message (m.offset(), m.key(), m.value()). No commits.
  embedlog poll()             poll(1.0) N times, the same per-message tuple.
  SQLite                      SELECT id, key, value FROM log ORDER BY id; fetchmany(10000);
                              per row `for i, k, v in rows: append((i, k, v))`.
  Redis                       XGROUP CREATE t g 0 (untimed), then XREADGROUP GROUP g c COUNT
                              10000 STREAMS t >, per entry (id, fields[b"k"], fields[b"v"]),
                              and one XACK of the chunk's ids per chunk (as a group consumer
                              that acknowledges; 0 pending is checked afterwards).

The embedlog and SQLite read sources are written once before the rounds (untimed, with the
same code as the timed writes); Redis reads back what its timed write just stored. Every
read result is checked outside the timed region: count, offsets 0..N-1 (embedlog, SQLite)
or increasing ids (Redis), and every key and value equal to what was written. Every write
is checked too (log end offset / row count / XLEN, and a sample of records read back).

Rounds: every measurement runs --repeat times (Redis --redis-repeat times), in a rotating
order so that machine drift hits all alike; best and median are reported and the targets
are evaluated on both. A gc.collect() precedes each timed run; the collector stays enabled
inside it (as in real code), and the harness's input list (N tuples of 2 bytes) stays on the
heap like any application's data. The breakdown shows what the collector costs each reader.

The machine is shared and noisy: read the ratios of one run, not absolute rates. Results
and the machine description go to bench/RESULTS.md (--results PATH; --append adds this run
after the runs already in the file).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the embedlog of the tree this file is in, not whatever an editable install points at
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import embedlog  # noqa: E402
from embedlog import Consumer, Producer, TopicPartition  # noqa: E402
from embedlog.admin import AdminClient, NewTopic  # noqa: E402

from _benchutil import MB, eprint, fmt_rate, gen_records, machine_info, machine_line  # noqa: E402

try:
    import confluent_kafka
except ImportError:           # reported in main()
    confluent_kafka = None
try:
    import redis
except ImportError:
    redis = None

TOPIC = "t"
SQL_TXN_ROWS = 10_000
REDIS_PIPELINE = 1_000
READ_CHUNK = 10_000
INT_MAX = 2**31 - 1
HERE = os.path.dirname(os.path.abspath(__file__))
MISSING_HINT = "pip install confluent-kafka redis hiredis   (and apt-get install redis-server)"

# (key, numerator, denominator, target)
TARGETS = [
    ("produce() acks=1 none / confluent-kafka produce()", "el_none", "ck_produce", 1.5),
    ("produce() acks=1 lz4 / confluent-kafka produce()", "el_lz4", "ck_produce", 1.5),
    ("produce() acks=1 none / SQLite WAL write", "el_none", "sqlite_w", 5.0),
    ("produce() acks=1 lz4 / SQLite WAL write", "el_lz4", "sqlite_w", 5.0),
    ("produce() acks=1 none / Redis XADD", "el_none", "redis_w", 10.0),
    ("produce() acks=1 lz4 / Redis XADD", "el_lz4", "redis_w", 10.0),
    ("consume() / SQLite read", "el_consume", "sqlite_r", 3.0),
    ("poll() / SQLite read", "el_poll", "sqlite_r", 1.5),
    ("produce() acks=all linger.ms=5 / acks=1 (none)", "el_all", "el_none", 0.5),
    # issue #17: the batch and columnar paths, and the per-message overheads
    ("produce_batch() / SQLite executemany", "el_batch", "sqlite_w", 10.0),
    ("produce_batch() / confluent-kafka produce()", "el_batch", "ck_produce", 3.0),
    ("consume_batch() / SQLite read kept as rows", "el_cbatch", "sqlite_r_rows", 5.0),
    ("to_arrow() / SQLite read kept as rows", "el_arrow", "sqlite_r_rows", 10.0),
    ("produce(partition=0) / produce()", "el_part", "el_none", 0.9),
    ("produce(timestamp=) / produce()", "el_ts", "el_none", 0.9),
    ("produce(headers=) / produce()", "el_hdr", "el_none", 0.9),
    ("consume() / poll()", "el_consume", "el_poll", 1.0),
    # issue #17's per-message targets (beside issue #3's above)
    ("#17: produce() acks=1 none / confluent-kafka produce()", "el_none", "ck_produce", 1.0),
    ("#17: produce() acks=1 none / SQLite WAL write", "el_none", "sqlite_w", 4.0),
    ("#17: consume() / SQLite read (per-message tuple)", "el_consume", "sqlite_r", 1.0),
]
INFO_RATIOS = [
    ("consume() lz4 log / SQLite read", "el_consume_lz4", "sqlite_r"),
    ("consume() / SQLite read kept as rows (extend)", "el_consume", "sqlite_r_rows"),
    ("poll() / SQLite read kept as rows (extend)", "el_poll", "sqlite_r_rows"),
    ("consume() / Redis XREADGROUP+XACK", "el_consume", "redis_r"),
    ("SQLite WAL write / confluent-kafka produce()", "sqlite_w", "ck_produce"),
    ("consume_batch() / SQLite read with per-row tuple", "el_cbatch", "sqlite_r"),
    ("to_arrow() / SQLite read with per-row tuple", "el_arrow", "sqlite_r"),
    ("produce_batch() / produce() acks=1 none", "el_batch", "el_none"),
]

# name -> (label, durability / what the timed region covers)
ROWS = {
    "el_none": ("embedlog produce()+flush(), acks=1, none",
                "loop of produce() + flush(); every record written to the OS (page cache), no fsync"),
    "el_lz4": ("embedlog produce()+flush(), acks=1, lz4",
               "same, batches lz4-compressed (random values: incompressible)"),
    "el_all": ("embedlog produce()+flush(), acks=all, linger 5 ms",
               "same, codec none; fdatasync'd before flush() returns (group commit per batch)"),
    "ck_produce": ("confluent-kafka produce() call only",
                   "loop of produce() only: queued in librdkafka's RAM, no broker/network/batching"),
    "sqlite_w": ("SQLite WAL, executemany 10k-row txns",
                 "BEGIN/executemany/COMMIT; committed to the WAL (page cache), synchronous=NORMAL"),
    "redis_w": ("Redis Streams XADD, pipeline x1000",
                "pipelined XADD incl. last execute(); in server RAM + AOF written, fsync everysec"),
    "el_consume": ("embedlog consume(num_messages=10000)",
                   "consume() until N + per-message (m.offset(), m.key(), m.value()) tuple"),
    "el_consume_lz4": ("embedlog consume(), lz4 log (info)",
                       "the same on the log written with lz4"),
    "el_poll": ("embedlog poll()",
                "poll(1.0) N times + the same per-message tuple"),
    "sqlite_r": ("SQLite SELECT ORDER BY id, fetchmany(10000)",
                 "execute + fetchmany loop + per-row (id, key, value) tuple"),
    "sqlite_r_rows": ("SQLite read, rows kept as fetched (info)",
                      "the same with out.extend(rows): no per-row Python step"),
    "el_part": ("embedlog produce(partition=0)+flush(), acks=1",
                "as produce()+flush() acks=1 none, each call naming partition 0"),
    "el_ts": ("embedlog produce(timestamp=)+flush(), acks=1",
              "as produce()+flush() acks=1 none, each call giving timestamp= (a fixed ms value)"),
    "el_hdr": ("embedlog produce(headers=)+flush(), acks=1",
               "as produce()+flush() acks=1 none, each call giving headers=[('h', b'1')]"),
    "el_batch": ("embedlog produce_batch(), acks=1, none",
                 "one produce_batch(t, values, keys=keys) call (key and value lists made untimed from "
                 "the same records) + flush(); written to the OS like produce()"),
    "el_cbatch": ("embedlog consume_batch(100000), chunks kept",
                  "consume_batch() until N, each ConsumedBatch (offsets/keys/values lists) kept as fetched"),
    "el_arrow": ("embedlog.to_arrow(log, t) (pyarrow Table)",
                 "the whole partition as one Table: keys and values copied once into Arrow buffers (pyarrow imported untimed)"),
    "redis_r": ("Redis XREADGROUP COUNT 10000 + XACK",
                "XREADGROUP loop + per-entry (id, k, v) tuple + one XACK per chunk"),
}
ORDER = ["el_none", "el_part", "el_ts", "el_hdr", "el_batch", "el_lz4", "el_all", "ck_produce", "sqlite_w", "redis_w",
         "el_cbatch", "el_arrow", "el_consume", "el_poll", "el_consume_lz4", "sqlite_r", "sqlite_r_rows", "redis_r"]


# ================================================================== helpers

class Samples:
    """Seconds of the runs of one measurement, plus process CPU seconds."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.extra: list[dict] = []

    def add(self, seconds, cpu, extra=None):
        self.times.append(seconds)
        self.cpu.append(cpu)
        self.extra.append(extra or {})

    def rate(self, n, which):
        t = min(self.times) if which == "best" else statistics.median(self.times)
        return n / t if t > 0 else float("inf")


def run_timed(fn):
    """(wall seconds, process CPU seconds, result of fn(timer)): fn does its own setup and
    calls timer.start() / timer.stop() around the part that is timed."""
    timer = Timer()
    result = fn(timer)
    return timer.wall, timer.cpu, result


class Timer:
    """start() (after a full collection) / stop(): wall and process CPU seconds between them."""

    def start(self):
        gc.collect()
        self.c0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self):
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


class CountingTimer(Timer):
    """A Timer that counts the collections of each generation between start() and stop()."""

    def __init__(self):
        self.counts = [0, 0, 0]

    def _cb(self, phase, info):
        if phase == "start":
            self.counts[info["generation"]] += 1

    def start(self):
        super().start()
        self.counts = [0, 0, 0]
        gc.callbacks.append(self._cb)

    def stop(self):
        super().stop()
        gc.callbacks.remove(self._cb)


def fresh_dir(root, name):
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def el_conf(path):
    return {"bootstrap.servers": f"file://{path}"}


def el_create_topic(path):
    admin = AdminClient(el_conf(path))
    try:
        admin.create_topics([NewTopic(TOPIC, 1)])[TOPIC].result()
    finally:
        admin.close()           # releases the directory's shared Log (it is deleted and re-made later)


def loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


# ================================================================== checks

class CheckError(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise CheckError(what)


def check_read(out, records, what):
    """out: [(offset, key, value)] must be records in order with offsets 0..N-1."""
    n = len(records)
    check(len(out) == n, f"{what}: read {len(out)} of {n} messages")
    bad = next((i for i, (o, k, v) in enumerate(out) if o != i or (k, v) != records[i]), None)
    check(bad is None, f"{what}: message {bad} differs from what was written")


def check_read_ids(out, records, what):
    """Redis: ids increase, keys and values match position by position."""
    n = len(records)
    check(len(out) == n, f"{what}: read {len(out)} of {n} messages")
    prev = (-1, -1)
    for i, (mid, k, v) in enumerate(out):
        ms, _, seq = mid.partition(b"-")
        cur = (int(ms), int(seq))
        check(cur > prev, f"{what}: id {mid!r} at {i} does not increase")
        prev = cur
        check((k, v) == records[i], f"{what}: entry {i} differs from what was written")


def el_check_written(path, records, codec_label):
    """Log end offset N, and 200 random records (plus first and last) read back."""
    n = len(records)
    log = embedlog.open(path)
    try:
        part = log.partition(TOPIC, 0)
        start, end = part.watermarks()
        check((start, end) == (0, n), f"embedlog {codec_label}: watermarks {(start, end)}, want (0, {n})")
        rng = random.Random(7)
        for off in [0, n - 1] + [rng.randrange(n) for _ in range(200)]:
            r = part.read(off, max_records=1)[0]
            check(r.offset == off and (r.key, r.value) == records[off],
                  f"embedlog {codec_label}: record {off} differs")
        return batch_stats(part)
    finally:
        log.close()


def batch_stats(part):
    """Batches in the partition's segment files (walks the batch headers): count, mean
    records per batch, and the most common batch sizes."""
    counts = {}
    for name in sorted(os.listdir(part.path)):
        if name.endswith(".log"):
            with open(os.path.join(part.path, name), "rb") as f:
                buf = f.read()
            pos = 0
            while pos + embedlog.storage._records.HEADER_SIZE <= len(buf):
                h = embedlog.parse_header(buf, pos)
                counts[h.records_count] = counts.get(h.records_count, 0) + 1
                pos += h.size
    batches = sum(counts.values())
    records = sum(k * v for k, v in counts.items())
    common = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return {"batches": batches, "records_per_batch": round(records / batches, 1) if batches else 0,
            "common_sizes": ", ".join(f"{k} records x{v}" for k, v in common)}


def batch_line(st):
    return f"{st['batches']} batches, {st['records_per_batch']} records/batch on average (most common: {st['common_sizes']})"


# ================================================================== embedlog

def el_produce(path, records, acks, codec, linger_ms=5, extra_conf=None):
    def run(timer):
        el_create_topic(path)
        p = Producer({**el_conf(path), "acks": acks, "compression.type": codec, "linger.ms": linger_ms,
                      **(extra_conf or {})})
        produce = p.produce
        timer.start()
        for k, v in records:
            produce(TOPIC, v, k)
        left = p.flush()
        timer.stop()
        p.close()
        check(left == 0, f"embedlog flush() left {left}")
    return run


TS = 1_700_000_000_000        # produce(timestamp=) rows: one fixed create time (ms)
HDRS = [("h", b"1")]          # produce(headers=) rows: one small header per record


def el_produce_partition(path, records, arg="partition"):
    """produce() naming partition=0, timestamp=TS or headers=HDRS in every call (each its own
    loop, so that no row pays for **kwargs)."""
    def run(timer):
        el_create_topic(path)
        p = Producer({**el_conf(path), "acks": 1, "compression.type": "none", "linger.ms": 5})
        produce = p.produce
        timer.start()
        if arg == "partition":
            for k, v in records:
                produce(TOPIC, v, k, partition=0)
        elif arg == "timestamp":
            for k, v in records:
                produce(TOPIC, v, k, timestamp=TS)
        else:
            for k, v in records:
                produce(TOPIC, v, k, headers=HDRS)
        left = p.flush()
        timer.stop()
        p.close()
        check(left == 0, f"embedlog flush() left {left}")
    return run


def el_produce_batch(path, keys, values):
    def run(timer):
        el_create_topic(path)
        p = Producer({**el_conf(path), "acks": 1, "compression.type": "none", "linger.ms": 5})
        timer.start()
        p.produce_batch(TOPIC, values, keys=keys)
        left = p.flush()
        timer.stop()
        p.close()
        check(left == 0, f"embedlog flush() left {left}")
    return run


def el_consume_batch(path, n, out_holder):
    def run(timer):
        c = el_consumer(path)
        chunks = []
        got = 0
        consume_batch = c.consume_batch
        timer.start()
        while got < n:
            got_now = consume_batch(100_000, 1.0)
            if not got_now:
                break
            chunks.extend(got_now)
            got += sum(map(len, got_now))
        timer.stop()
        c.close()
        out = [r for ch in chunks for r in zip(ch.offsets, ch.keys, ch.values)]    # the check, untimed
        out_holder[:] = [out, got]
    return run


def el_to_arrow(path, n, out_holder):
    def run(timer):
        log = embedlog.open(path)
        # Resolved untimed: the first access imports embedlog._arrow and pyarrow (~0.2 s, once
        # per process), which is no more part of the read than `import sqlite3` is of SQLite's.
        to_arrow = embedlog.to_arrow
        timer.start()
        table = to_arrow(log, TOPIC)
        timer.stop()
        log.close()
        out = list(zip(table.column("offset").to_pylist(), table.column("key").to_pylist(),
                       table.column("value").to_pylist()))
        out_holder[:] = [out, table.num_rows]
    return run


def el_consumer(path):
    c = Consumer({**el_conf(path), "group.id": "bench", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    return c


def el_consume(path, n, out_holder, touch=True):
    def run(timer):
        c = el_consumer(path)
        out = []
        app = out.append
        consume = c.consume
        got = 0
        timer.start()
        while got < n:
            msgs = consume(num_messages=READ_CHUNK, timeout=1.0)
            if not msgs:
                break
            got += len(msgs)
            if touch:
                for m in msgs:
                    app((m.offset(), m.key(), m.value()))
        timer.stop()
        c.close()
        out_holder[:] = [out, got]
    return run


def el_poll(path, n, out_holder, touch=True):
    def run(timer):
        c = el_consumer(path)
        out = []
        app = out.append
        poll = c.poll
        got = 0
        timer.start()
        for _ in range(n):
            m = poll(1.0)
            if m is None:
                break
            got += 1
            if touch:
                app((m.offset(), m.key(), m.value()))
        timer.stop()
        c.close()
        out_holder[:] = [out, got]
    return run


# ================================================================== confluent-kafka

def ck_produce(records):
    def run(timer):
        p = confluent_kafka.Producer({
            "bootstrap.servers": "127.0.0.1:1",          # closed port: no broker, produce() only queues
            "queue.buffering.max.messages": max(2_000_000, len(records) + 1000),
            "queue.buffering.max.kbytes": 2097151,
            "linger.ms": 100000,
            "log_level": 0,                              # no "connection refused" lines on stderr
        })
        produce = p.produce
        timer.start()
        for k, v in records:
            produce(TOPIC, v, k)
        timer.stop()
        queued = len(p)
        p.purge(in_queue=True, in_flight=True)
        p.poll(0)
        del p
        check(queued >= len(records), f"confluent-kafka: {queued} queued of {len(records)}")
        return {"queued": queued}
    return run


# ================================================================== SQLite

def sqlite_open(path):
    con = sqlite3.connect(path, isolation_level=None)      # explicit BEGIN/COMMIT below
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    check(mode.lower() == "wal", f"SQLite journal_mode is {mode}")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def sqlite_write(path, records):
    def run(timer):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        con = sqlite_open(path)
        con.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, key BLOB, value BLOB)")
        execute, executemany = con.execute, con.executemany
        sql = "INSERT INTO log (key, value) VALUES (?, ?)"
        n = len(records)
        timer.start()
        for i in range(0, n, SQL_TXN_ROWS):
            execute("BEGIN")
            executemany(sql, records[i:i + SQL_TXN_ROWS])
            execute("COMMIT")
        timer.stop()
        count, top = con.execute("SELECT count(*), max(id) FROM log").fetchone()
        check(count == n and top == n, f"SQLite: {count} rows, max id {top}, want {n}")
        rng = random.Random(7)
        for i in [0, n - 1] + [rng.randrange(n) for _ in range(200)]:
            row = con.execute("SELECT key, value FROM log WHERE id = ?", (i + 1,)).fetchone()
            check(row == records[i], f"SQLite: row {i + 1} differs")
        con.close()
    return run


def sqlite_read(path, out_holder, keep_rows=False):
    def run(timer):
        con = sqlite_open(path)
        out = []
        app = out.append
        timer.start()
        cur = con.execute("SELECT id, key, value FROM log ORDER BY id")
        fetchmany = cur.fetchmany
        while True:
            rows = fetchmany(READ_CHUNK)
            if not rows:
                break
            if keep_rows:
                out.extend(rows)
            else:
                for i, k, v in rows:
                    app((i, k, v))
        timer.stop()
        con.close()
        # ids are 1-based: shift to offsets for the common check (outside the timing)
        out_holder[:] = [[(i - 1, k, v) for i, k, v in out], len(out)]
    return run


# ================================================================== Redis

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, temp dir, AOF everysec; stopped by its pid."""

    def __init__(self, root):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=root)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--auto-aof-rewrite-percentage", "0", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start (see {self.dir}/redis.log)")
                time.sleep(0.05)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def aof_bytes(self):
        total = 0
        for dirpath, _dirs, files in os.walk(self.dir):
            for name in files:
                if "appendonly" in name or dirpath.endswith("appendonlydir"):
                    total += os.path.getsize(os.path.join(dirpath, name))
        return total

    def stop(self):
        try:
            self.client.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_write_read(root, records):
    """One fresh server: timed XADD write, checks, timed XREADGROUP+XACK read, checks.
    Returns ((write wall, cpu, extra), (read wall, cpu, extra))."""
    n = len(records)
    server = RedisServer(root)
    try:
        r = server.client
        pipe = r.pipeline(transaction=False)
        xadd, execute = pipe.xadd, pipe.execute
        timer = Timer()
        cpu0 = server.cpu_seconds()
        timer.start()
        i = 0
        for k, v in records:
            xadd(TOPIC, {"k": k, "v": v})
            i += 1
            if i == REDIS_PIPELINE:
                execute()
                i = 0
        if i:
            execute()
        timer.stop()
        w_server_cpu = server.cpu_seconds() - cpu0
        check(r.xlen(TOPIC) == n, f"Redis: XLEN {r.xlen(TOPIC)}, want {n}")
        mem = r.info("memory")["used_memory"]
        time.sleep(1.1)                      # let everysec fsync the AOF before its size is taken
        aof = server.aof_bytes()
        write = (timer.wall, timer.cpu, {"server_cpu_s": round(w_server_cpu, 3),
                                         "used_memory_B_per_msg": round(mem / n, 1),
                                         "aof_B_per_msg": round(aof / n, 1)})

        r.xgroup_create(TOPIC, "g", id="0")
        out = []
        app = out.append
        xreadgroup, xack = r.xreadgroup, r.xack
        timer = Timer()
        cpu0 = server.cpu_seconds()
        timer.start()
        while True:
            res = xreadgroup("g", "c", {TOPIC: ">"}, count=READ_CHUNK)
            if not res:
                break
            entries = res[0][1]
            if not entries:
                break
            for mid, f in entries:
                app((mid, f[b"k"], f[b"v"]))
            xack(TOPIC, "g", *[e[0] for e in entries])
        timer.stop()
        r_server_cpu = server.cpu_seconds() - cpu0
        pending = r.xpending(TOPIC, "g")["pending"]
        check(pending == 0, f"Redis: {pending} pending after the group read")
        check_read_ids(out, records, "Redis XREADGROUP")
        read = (timer.wall, timer.cpu, {"server_cpu_s": round(r_server_cpu, 3), "pending_after": pending})
        return write, read
    finally:
        server.stop()


def redis_server_version():
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)     # "Redis server v=7.0.15 ... malloc=..."
    return f"{fields.get('v', out.strip())} ({fields.get('malloc', '?')})"


# ================================================================== breakdown

class StepTimer:
    """Wall seconds spent inside some bound methods of one object, wrapped on the instance
    (the class and module are untouched; the sender thread calls them through the instance)."""

    def __init__(self, obj, names):
        self.seconds = dict.fromkeys(names, 0.0)
        for name in names:
            setattr(obj, name, self._wrap(name, getattr(obj, name)))

    def _wrap(self, name, fn):
        seconds = self.seconds
        clock = time.perf_counter

        def timed_call(*a, **k):
            t0 = clock()
            try:
                result = fn(*a, **k)
                if name == "_split":
                    result = list(result)          # a generator: time its whole run here
                return result
            finally:
                seconds[name] += clock() - t0
        return timed_call


def breakdown(root, records, read_dir, repeat):
    """Sub-steps of embedlog's produce and consume paths, best of `repeat`: [(label, seconds, n)].
    Uses private methods read-only (wrapped on one instance to time them)."""
    n = len(records)
    rows = []

    def best(fn, reps=repeat):
        return min(run_timed(fn)[0] for _ in range(reps))

    def gc_off(make):
        def run(timer):
            gc.collect()
            gc.disable()
            try:
                make(timer)
            finally:
                gc.enable()
        return run

    # ---- produce
    rows.append(("-- produce path (acks=1, none; gc.disable() in the sub-step rows)", None, None))

    def noop_loop(timer):
        def f(topic, value=None, key=None):
            pass
        timer.start()
        for k, v in records:
            f(TOPIC, v, k)
        timer.stop()
    rows.append(("loop calling a no-op Python function f(topic, v, k) (floor)", best(gc_off(noop_loop)), n))

    nq = min(n, 999_999)          # batch.num.messages is at most 1,000,000: stay below it
    queue_only = {"linger.ms": 900000, "batch.num.messages": 1_000_000, "batch.size": INT_MAX,
                  "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": INT_MAX}

    def calls_only(timer):
        path = fresh_dir(root, "bd-queue")
        el_create_topic(path)
        p = Producer({**el_conf(path), "acks": 1, "compression.type": "none", **queue_only})
        produce = p.produce
        timer.start()
        for k, v in records[:nq]:
            produce(TOPIC, v, k)
        timer.stop()
        p.purge()
        p.close()
    rows.append(("produce() calls only (linger 900 s, batch limits above N: queue only)",
                 best(gc_off(calls_only)), nq))

    steps = {}

    def with_steps(linger):
        def run(timer):
            path = fresh_dir(root, f"bd-steps-{linger}")
            el_create_topic(path)
            p = Producer({**el_conf(path), "acks": 1, "compression.type": "none", "linger.ms": linger})
            st = StepTimer(p, ["_send_topic", "_partitions", "_split", "_send_batch", "_append_with_retries"])
            produce = p.produce
            timer.start()
            for k, v in records:
                produce(TOPIC, v, k)
            p.flush()
            timer.stop()
            p.close()
            log = embedlog.open(path)
            bs = batch_stats(log.partition(TOPIC, 0))
            log.close()
            if linger not in steps or timer.wall < steps[linger][0]:
                steps[linger] = (timer.wall, dict(st.seconds), bs)
        return run
    for linger in (5, 1000):
        best(gc_off(with_steps(linger)))
        wall, sec, bs = steps[linger]
        who = "the sender thread sends most batches" if linger == 5 else "produce() sends each full batch itself"
        rows.append((f"produce()+flush(), linger.ms={linger} ({who})", wall, n))
        send = sec["_send_topic"]
        rows.append(("  in the send path (Producer._send_topic, either thread)", send, n))
        rows.append(("    take the queue: popleft, split the (value, key, cb, extras) tuples",
                     send - sec["_partitions"] - sec["_split"] - sec["_send_batch"], n))
        rows.append(("    _partitions: murmur2 of every key (the topic has 1 partition)", sec["_partitions"], n))
        rows.append(("    _split: size check per chunk (per-record loop when over the limit)", sec["_split"], n))
        rows.append(("    build_batch + bookkeeping (_send_batch minus the append)",
                     sec["_send_batch"] - sec["_append_with_retries"], n))
        rows.append(("    Partition.append_batches (pwrite, state, index)", sec["_append_with_retries"], n))
        rows.append(("  outside the send path: produce() calls + loop", wall - send, n))
        rows.append((f"  {batch_line(bs)}", None, None))

    # ---- consume
    rows.append(("-- consume path (log written with acks=1, none)", None, None))
    holder = []

    def fetch_only(timer):
        log = embedlog.open(read_dir)
        part = log.partition(TOPIC, 0)
        fetch = part.fetch
        off = 0
        timer.start()
        while off < n:
            _cols, off = fetch(off, 1 << 20)
        timer.stop()
        log.close()
    rows.append(("Partition.fetch(offset, 1 MiB) loop: read + CRC + decode to columns", best(fetch_only), n))

    def fetch_zip(timer):
        log = embedlog.open(read_dir)
        part = log.partition(TOPIC, 0)
        fetch = part.fetch
        out = []
        off = 0
        timer.start()
        while off < n:
            cols, off = fetch(off, 1 << 20)
            out += zip(cols.offsets, cols.keys, cols.values)
        timer.stop()
        log.close()
    rows.append(("  + zip(offsets, keys, values) into one list of tuples (no Message objects), gc off",
                 best(gc_off(fetch_zip)), n))
    rows.append(("consume() loop, messages not touched (fetch + Message objects)",
                 best(el_consume(read_dir, n, holder, touch=False)), n))

    def touch_only(timer):
        c = el_consumer(read_dir)
        batches = []
        got = 0
        while got < n:
            msgs = c.consume(num_messages=READ_CHUNK, timeout=1.0)
            if not msgs:
                break
            got += len(msgs)
            batches.append(msgs)
        out = []
        app = out.append
        timer.start()
        for msgs in batches:
            for m in msgs:
                app((m.offset(), m.key(), m.value()))
        timer.stop()
        c.close()
    rows.append(("the per-message step alone: (m.offset(), m.key(), m.value()) + append, gc off",
                 best(gc_off(touch_only)), n))
    rows.append(("consume() as in the table, gc.disable()",
                 best(gc_off(el_consume(read_dir, n, holder))), n))
    rows.append(("poll() loop, messages not touched", best(el_poll(read_dir, n, holder, touch=False)), n))
    rows.append(("poll() as in the table, gc.disable()", best(gc_off(el_poll(read_dir, n, holder))), n))

    rows.append(("-- the cyclic collector during one read run (collections per generation 0/1/2)", None, None))
    db = os.path.join(root, "src.db")
    for label, make in (("consume()", lambda: el_consume(read_dir, n, holder)),
                        ("poll()", lambda: el_poll(read_dir, n, holder)),
                        ("SQLite read", lambda: sqlite_read(db, holder))):
        wall, counts = gc_counts(make())
        gc.collect()
        gc.freeze()              # the harness's input (and everything else alive) out of the collector
        try:
            wall_f, counts_f = gc_counts(make())
        finally:
            gc.unfreeze()
        rows.append((f"{label} as in the table: {counts}", wall, n))
        rows.append((f"  the same after gc.freeze() of the heap (input list included): {counts_f}", wall_f, n))
    holder.clear()
    return rows


def gc_counts(make):
    """(wall seconds, collections per generation) of one run of a measurement."""
    timer = CountingTimer()
    make(timer)
    return timer.wall, timer.counts


# ================================================================== report

def versions():
    import platform
    v = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "embedlog": embedlog.__version__,
        "sqlite": sqlite3.sqlite_version,
    }
    try:
        import lz4
        v["lz4 (python)"] = lz4.__version__
    except Exception:
        pass
    if confluent_kafka is not None:
        v["confluent-kafka / librdkafka"] = f"{confluent_kafka.__version__} / {confluent_kafka.libversion()[0]} (bundled)"
    if redis is not None:
        hi = None
        try:
            import hiredis
            hi = hiredis.__version__
        except Exception:
            pass
        parser = "hiredis" if getattr(redis.utils, "HIREDIS_AVAILABLE", False) else "pure-Python parser"
        v["redis-py / hiredis"] = f"{redis.__version__} / {hi} (in use: {parser})"
    rs = redis_server_version()
    if rs:
        v["redis-server"] = rs
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    v["OS"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return v


def dirty_files():
    """`git status --porcelain` of embedlog/ and csrc/, on one line ('' when clean)."""
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(HERE), "status", "--porcelain", "--", "embedlog", "csrc"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return ", ".join(f"`{line.strip()}`" for line in out.splitlines() if line.strip())


def fmt_x(x):
    return f"{x:.2f}x" if x == x and x != float("inf") else "-"


def compute(samples, n):
    rates = {k: {"best": s.rate(n, "best"), "median": s.rate(n, "median")} for k, s in samples.items() if s.times}
    targets = []
    for label, a, b, target in TARGETS:
        if a in rates and b in rates:
            rb = rates[a]["best"] / rates[b]["best"]
            rm = rates[a]["median"] / rates[b]["median"]
            targets.append({"label": label, "best": rb, "median": rm, "target": target,
                            "pass_best": rb >= target, "pass_median": rm >= target})
        else:
            targets.append({"label": label, "best": None, "median": None, "target": target,
                            "pass_best": None, "pass_median": None})
    info = []
    for label, a, b in INFO_RATIOS:
        if a in rates and b in rates:
            info.append({"label": label, "best": rates[a]["best"] / rates[b]["best"],
                         "median": rates[a]["median"] / rates[b]["median"]})
    return rates, targets, info


def verdict(t):
    if t["best"] is None:
        return "not measured"
    f = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    return f"{f(t['pass_best'])} / {f(t['pass_median'])}"


def text_tables(samples, rates, targets, info, n):
    lines = []
    hdr = f"{'measurement':<52} {'best msg/s':>11} {'median msg/s':>13} {'best MB/s':>10} {'runs':>5} {'CPU/wall':>9}"
    lines += [hdr, "-" * len(hdr)]
    for k in ORDER:
        s = samples.get(k)
        if s is None or not s.times:
            continue
        r = rates[k]
        i = s.times.index(min(s.times))
        cpuw = s.cpu[i] / s.times[i] if s.times[i] else 0
        lines.append(f"{ROWS[k][0]:<52} {fmt_rate(r['best']):>11} {fmt_rate(r['median']):>13} "
                     f"{r['best'] * 116 / MB:>10.1f} {len(s.times):>5} {cpuw:>8.2f}")
    lines.append("")
    hdr = f"{'ratio (same run)':<50} {'best':>7} {'median':>7} {'target':>8}  verdict (best / median)"
    lines += [hdr, "-" * len(hdr)]
    for t in targets:
        if t["best"] is None:
            lines.append(f"{t['label']:<50} {'-':>7} {'-':>7} {'>= ' + format(t['target'], 'g') + 'x':>8}  not measured")
        else:
            lines.append(f"{t['label']:<50} {fmt_x(t['best']):>7} {fmt_x(t['median']):>7} "
                         f"{'>= ' + format(t['target'], 'g') + 'x':>8}  {verdict(t)}")
    for t in info:
        lines.append(f"{t['label']:<50} {fmt_x(t['best']):>7} {fmt_x(t['median']):>7} {'-':>8}  (informational)")
    return "\n".join(lines)


def md_report(args, minfo, vers, samples, rates, targets, info, bd_rows, loads, extras, elapsed, n, started):
    L = []
    L.append(f"## Run {started} (embedlog {minfo['embedlog']} at {minfo['embedlog_git']}, N = {n:,})")
    L.append("")
    cmd = " ".join(["python bench/compare_clients.py"] + sys.argv[1:])
    L.append(f"Command: `{cmd}` ({elapsed:.0f} s). Machine: {machine_line(minfo)}.")
    dirty = dirty_files()
    if dirty:
        L.append(f"Uncommitted under embedlog/ and csrc/ during the run (the `+dirty`): {dirty}.")
    la = [x for x in loads if x]
    if la:
        L.append(f"Load average (1 min) at the start {la[0][0]:.2f}, after each round "
                 f"{', '.join(f'{x[0]:.2f}' for x in la[1:-1]) or '-'}, at the end {la[-1][0]:.2f}; "
                 f"max {max(x[0] for x in la):.2f} on {minfo['cores']} cores.")
    L.append("")
    L.append("| component | version |")
    L.append("|---|---|")
    for k, v in vers.items():
        L.append(f"| {k} | {v} |")
    L.append("")
    L.append("| measurement | durability / what is timed | best msg/s | median msg/s | best MB/s | runs | CPU/wall |")
    L.append("|---|---|---|---|---|---|---|")
    for k in ORDER:
        s = samples.get(k)
        if s is None or not s.times:
            continue
        r = rates[k]
        i = s.times.index(min(s.times))
        L.append(f"| {ROWS[k][0]} | {ROWS[k][1]} | {r['best']:,.0f} | {r['median']:,.0f} | "
                 f"{r['best'] * 116 / MB:.1f} | {len(s.times)} | {s.cpu[i] / s.times[i]:.2f} |")
    L.append("")
    L.append("| ratio (same run) | best | median | target | verdict (best / median) |")
    L.append("|---|---|---|---|---|")
    for t in targets:
        if t["best"] is None:
            L.append(f"| {t['label']} | - | - | ≥ {t['target']:g}x | not measured |")
        else:
            L.append(f"| {t['label']} | {fmt_x(t['best'])} | {fmt_x(t['median'])} | ≥ {t['target']:g}x | "
                     f"**{verdict(t)}** |")
    for t in info:
        L.append(f"| {t['label']} | {fmt_x(t['best'])} | {fmt_x(t['median'])} | - | informational |")
    L.append("")
    if extras:
        L.append("Details: " + "; ".join(f"{k}: {v}" for k, v in extras.items()) + ".")
        L.append("")
    if bd_rows:
        L.append("Where embedlog's time goes (best of the runs; same records):")
        L.append("")
        L.append("```")
        L.append(bd_text(bd_rows))
        L.append("```")
        L.append("")
    return "\n".join(L)


def bd_text(rows):
    out = []
    for label, secs, n in rows:
        if secs is None:
            out.append(label)
        else:
            out.append(f"   {label:<86} {secs * 1e3:9.1f} ms {secs / n * 1e9:8.0f} ns/msg")
    return "\n".join(out)


MD_HEADER = """# embedlog against its peers: results of bench/compare_clients.py

Generated by `python bench/compare_clients.py` (see bench/README.md for what each row
times and how). The machine is shared and noisy: compare the **ratios of one run**, not
absolute rates across runs. "best" is the fastest of a measurement's runs, "median" their
median; a target is evaluated on both. MB/s means 10^6 bytes of key+value payload (116 bytes
a message). CPU/wall is this process's CPU seconds over wall seconds for the best run (above 1:
threads running in parallel; well below 1: waiting, or the machine was busy elsewhere).

Workload: N random 16-byte keys and 100-byte values (`random.Random(42)`), one topic with one
partition / one table / one stream, written once and read back in order; every read is
checked against what was written (count, order, every key and value).

Settings: embedlog Producer `acks` 1 or all, `compression.type` none or lz4, `linger.ms` 5, other
keys at their defaults (batch.size 1,000,000 bytes, batch.num.messages 10,000), no delivery
callback; Consumer `group.id` bench, `auto.offset.reset` earliest, `enable.auto.commit` false,
`assign()`ed to partition 0 at offset 0, no commits. confluent-kafka: `bootstrap.servers`
127.0.0.1:1 (closed: no broker), `queue.buffering.max.messages` 2,000,000,
`queue.buffering.max.kbytes` 2,097,151, `linger.ms` 100,000, `log_level` 0. SQLite:
`journal_mode=WAL`, `synchronous=NORMAL`, 10,000 rows per `BEGIN`/`executemany`/`COMMIT`,
read with `fetchmany(10000)`. Redis: a fresh `redis-server` per run on 127.0.0.1 with
`appendonly yes`, `appendfsync everysec`, `save ""`, no AOF rewrite; `XADD` through a
non-transactional pipeline executed every 1,000 commands; read by one consumer of group `g`
with `XREADGROUP COUNT 10000` and one `XACK` of each chunk's ids. Every reader builds one
(offset or id, key, value) tuple per message and appends it to one list. The cyclic collector
stays on, as in real code, with the harness's input list (1M tuples) on the heap.

"""


# ================================================================== main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    ap.add_argument("--redis-repeat", type=int, default=2, help="Redis write+read runs (default 2)")
    ap.add_argument("--dir", default=None, help="data directory (default: a new temp dir under /tmp)")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--no-confluent", action="store_true")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true", help="do not write the results file")
    ap.add_argument("--append", action="store_true", help="append this run to the results file")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = ap.parse_args(argv)
    n = args.records
    if n < 1000:
        ap.error("--records must be at least 1000")

    missing = []
    if confluent_kafka is None and not args.no_confluent:
        missing.append("confluent-kafka (or pass --no-confluent)")
    if not args.no_redis:
        if redis is None:
            missing.append("redis + hiredis (or pass --no-redis)")
        elif not getattr(redis.utils, "HIREDIS_AVAILABLE", False):
            missing.append("hiredis (redis-py's C parser; without it Redis would be measured slower than "
                           "peers-measured.md did) (or pass --no-redis)")
        if shutil.which("redis-server") is None:
            missing.append("redis-server on PATH: apt-get install redis-server (or pass --no-redis)")
    if missing:
        eprint("compare_clients.py: missing peers: " + "; ".join(missing))
        eprint("  install them with: " + MISSING_HINT)
        return 2

    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    t_start = time.perf_counter()
    root = os.path.realpath(args.dir) if args.dir else tempfile.mkdtemp(prefix="embedlog-compare-")
    os.makedirs(root, exist_ok=True)
    minfo = machine_info(root)
    vers = versions()
    eprint(machine_line(minfo))
    eprint("versions: " + "; ".join(f"{k} {v}" for k, v in vers.items()))
    loads = [loadavg()]

    eprint(f"generating {n:,} records ...")
    keys, values = gen_records(n)
    records = list(zip(keys, values))
    key_column, value_column = list(keys), list(values)     # produce_batch's input, made untimed
    del keys, values

    samples = {k: Samples() for k in ORDER}
    extras = {}
    bd_rows = []
    try:
        # read sources, untimed: the same code as the timed writes
        eprint("writing the read sources (untimed) ...")
        src_none = fresh_dir(root, "src-none")
        run_timed(el_produce(src_none, records, 1, "none"))
        bs = el_check_written(src_none, records, "none")
        extras["embedlog batches (acks=1, none, linger 5 ms; read source)"] = batch_line(bs)
        src_lz4 = fresh_dir(root, "src-lz4")
        run_timed(el_produce(src_lz4, records, 1, "lz4"))
        el_check_written(src_lz4, records, "lz4")
        src_db = os.path.join(root, "src.db")
        run_timed(sqlite_write(src_db, records))

        holder = []

        def m_write_el(key, acks, codec):
            def go():
                path = fresh_dir(root, f"w-{key}")
                wall, cpu, _ = run_timed(el_produce(path, records, acks, codec))
                st = el_check_written(path, records, codec)
                samples[key].add(wall, cpu, st)
                shutil.rmtree(path, ignore_errors=True)
            return go

        def m_read(key, make, checker=check_read):
            def go():
                wall, cpu, _ = run_timed(make)
                out, got = holder
                checker(out, records, key)
                samples[key].add(wall, cpu)
                holder.clear()
            return go

        def m_ck():
            wall, cpu, ex = run_timed(ck_produce(records))
            samples["ck_produce"].add(wall, cpu, ex)

        def m_sqlite_w():
            path = os.path.join(root, "w.db")
            wall, cpu, _ = run_timed(sqlite_write(path, records))
            samples["sqlite_w"].add(wall, cpu)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)

        def m_redis():
            (ww, wc, wex), (rw, rc, rex) = redis_write_read(root, records)
            samples["redis_w"].add(ww, wc, wex)
            samples["redis_r"].add(rw, rc, rex)

        def m_write_other(key, make):
            def go():
                path = fresh_dir(root, f"w-{key}")
                wall, cpu, _ = run_timed(make(path))
                st = el_check_written(path, records, key)
                samples[key].add(wall, cpu, st)
                shutil.rmtree(path, ignore_errors=True)
            return go

        items = [
            ("el_none", m_write_el("el_none", 1, "none")),
            ("el_part", m_write_other("el_part", lambda path: el_produce_partition(path, records))),
            ("el_ts", m_write_other("el_ts", lambda path: el_produce_partition(path, records, "timestamp"))),
            ("el_hdr", m_write_other("el_hdr", lambda path: el_produce_partition(path, records, "headers"))),
            ("el_batch", m_write_other("el_batch", lambda path: el_produce_batch(path, key_column, value_column))),
            ("el_cbatch", m_read("el_cbatch", el_consume_batch(src_none, n, holder))),
            ("el_arrow", m_read("el_arrow", el_to_arrow(src_none, n, holder))),
            ("el_lz4", m_write_el("el_lz4", 1, "lz4")),
            ("el_all", m_write_el("el_all", "all", "none")),
            ("sqlite_w", m_sqlite_w),
            ("el_consume", m_read("el_consume", el_consume(src_none, n, holder))),
            ("el_poll", m_read("el_poll", el_poll(src_none, n, holder))),
            ("el_consume_lz4", m_read("el_consume_lz4", el_consume(src_lz4, n, holder))),
            ("sqlite_r", m_read("sqlite_r", sqlite_read(src_db, holder))),
            ("sqlite_r_rows", m_read("sqlite_r_rows", sqlite_read(src_db, holder, keep_rows=True))),
        ]
        if not args.no_confluent:
            items.insert(3, ("ck_produce", m_ck))
        rounds = max(args.repeat, 0 if args.no_redis else args.redis_repeat)
        for r in range(rounds):
            todo = [it for it in items if r < args.repeat]
            if not args.no_redis and r < args.redis_repeat:
                todo.insert(len(todo) // 2, ("redis", m_redis))
            shift = (r * len(todo)) // max(rounds, 1)
            todo = todo[shift:] + todo[:shift]
            eprint(f"round {r + 1}/{rounds}: " + ", ".join(k for k, _ in todo))
            for key, fn in todo:
                fn()
                if key == "redis":
                    eprint(f"  redis: write {fmt_rate(n / samples['redis_w'].times[-1])}msg/s, "
                           f"read {fmt_rate(n / samples['redis_r'].times[-1])}msg/s")
                else:
                    eprint(f"  {key}: {fmt_rate(n / samples[key].times[-1])}msg/s")
            loads.append(loadavg())

        if samples["redis_w"].extra:
            ex = samples["redis_w"].extra
            extras["Redis server / client CPU s during the writes"] = ", ".join(
                f"{e['server_cpu_s']:.1f} / {c:.1f}" for e, c in zip(ex, samples["redis_w"].cpu))
            extras["Redis memory and AOF"] = (f"used_memory {ex[-1]['used_memory_B_per_msg']} B/msg, "
                                              f"AOF {ex[-1]['aof_B_per_msg']} B/msg")
        bsz = [e.get("records_per_batch") for e in samples["el_all"].extra if e]
        if bsz:
            extras["embedlog acks=all: mean records per batch in each run"] = ", ".join(map(str, bsz))
        bsz = [e.get("records_per_batch") for e in samples["el_none"].extra if e]
        if bsz:
            extras["embedlog acks=1 none: mean records per batch in each run"] = ", ".join(map(str, bsz))

        if not args.no_breakdown:
            eprint("breakdown ...")
            bd_rows = breakdown(root, records, src_none, min(args.repeat, 2))
        loads.append(loadavg())
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
        elif not args.keep:
            for name in os.listdir(root):
                p = os.path.join(root, name)
                if name.startswith(("src", "w-", "w.db", "bd-", "redis-")):
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)

    elapsed = time.perf_counter() - t_start
    rates, targets, info = compute(samples, n)
    table = text_tables(samples, rates, targets, info, n)
    eprint("")
    eprint(machine_line(minfo))
    la = [x for x in loads if x]
    eprint(f"load average (1 min): start {la[0][0]:.2f}, end {la[-1][0]:.2f}, max {max(x[0] for x in la):.2f}")
    eprint("")
    eprint(table)
    if extras:
        eprint("")
        for k, v in extras.items():
            eprint(f"{k}: {v}")
    if bd_rows:
        eprint("")
        eprint("where embedlog's time goes (best of the runs)")
        eprint(bd_text(bd_rows))
    eprint(f"\ntotal {elapsed:.0f} s")

    if not args.no_results:
        section = md_report(args, minfo, vers, samples, rates, targets, info, bd_rows, loads, extras,
                            elapsed, n, started)
        if args.append and os.path.exists(args.results):
            with open(args.results) as f:
                old = f.read().rstrip("\n")
            text = old + "\n\n" + section
        else:
            text = MD_HEADER + section
        with open(args.results, "w") as f:
            f.write(text.rstrip("\n") + "\n")
        eprint(f"results written to {args.results}")

    if args.json:
        doc = {"machine": minfo, "versions": vers, "records": n, "loadavg": loads,
               "runs": {k: {"seconds": s.times, "cpu_seconds": s.cpu, "extra": s.extra}
                        for k, s in samples.items() if s.times},
               "rates": rates, "targets": targets, "informational": info, "extras": extras,
               "breakdown": [{"what": l, "seconds": s, "messages": c} for l, s, c in bd_rows],
               "elapsed_s": elapsed}
        print(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
