#!/usr/bin/env python3
"""End-to-end latency from a producer process to a tailing consumer process, beside Redis
Streams and a UNIX-domain socket, and consumer-group rebalance time after a SIGKILL (issue #5).

    python bench/latency.py [--messages 100000] [--rate 5000] [--size 100] [--rounds 2]
                            [--warmup 1000] [--spin-us 0] [--breakdown-messages 20000]
                            [--rebalance-repeat 5] [--heartbeats 3000,100]
                            [--no-redis] [--no-breakdown] [--no-micro] [--no-rebalance]
                            [--dir DIR] [--keep] [--json PATH]

Latency: one producer process and one consumer process per system, started fresh for each
round. The producer sends `--messages / --rounds` messages per round (plus `--warmup`, not
counted) one at a time at a fixed rate (`--rate` msg/s): message i is due at t0 + i/rate; the
producer sleeps until then (timer slack set to 1 us; `--spin-us` busy-waits the last few us
instead) and sends at once if it is late (a fixed schedule: no message is skipped, a late
producer catches up). Each payload (`--size` bytes, default 100) starts with the sequence
number and the send timestamp, CLOCK_MONOTONIC (time.monotonic_ns(), system-wide), taken
immediately before the send call; the consumer takes CLOCK_MONOTONIC as soon as the message is
in its hands (the call that returned it came back) and stores receive - send for that sequence
number. Every message must arrive exactly once and in order (checked).

  uds     the floor: socketpair(AF_UNIX, SOCK_SEQPACKET); producer sock.send(payload),
          consumer blocks in sock.recv().
  redis   redis-server (started here on a free 127.0.0.1 port, temp dir, appendonly no,
          save "": the in-memory floor), redis-py + hiredis over TCP loopback; producer
          XADD s * v <payload> (waits for the reply), consumer XREAD COUNT 1000 BLOCK 0
          STREAMS s <last id>.
  engine  embedlog storage engine: producer Partition.append_records([payload]) (returns once
          the record is in the page cache and published in the shared state); consumer
          Partition.wait(next, 1.0) (futex in the mmap'd state file) then Partition.read(next).
  api     embedlog Producer({acks: 1, linger.ms: 0}): produce(topic, value=payload) then
          flush() per message; Consumer({group.id, auto.offset.reset latest,
          enable.auto.commit false}).assign([TopicPartition(topic, 0)]); poll(1.0) loop.

Rounds run in a rotating order of the systems so drift on the shared machine hits all alike;
percentiles pool all rounds' counted messages. Targets (issue #5): embedlog p50 < 100 us,
p99 < 1 ms, and at or below Redis Streams (p50, p99 and p99.9 compared one by one).

Breakdown (embedlog only, one extra round each of `--breakdown-messages`): the same runs with
two class attributes wrapped in the child processes (the library is not changed):
SharedState.publish in the producer (time of the publish, which stores the new end offset and
wakes futex waiters) and Partition.wait in the consumer (time it returned). For messages
published while the consumer slept in wait(): send -> publish start (producer-side Python and
the write), publish start -> wait() returned (futex wake + scheduling the consumer), wait()
returned -> message in hand (consumer-side Python: read / poll). Micro timings (one process,
no wake-up) give the CPU cost of each side's call alone.

Rebalance: a topic with 6 partitions, 3 consumer processes subscribe() in one group (poll(1.0)
loop, roundrobin assignor as configured by default); each worker writes a line with a
CLOCK_MONOTONIC timestamp to a shared pipe from on_revoke and from on_assign. Once the group
is stable (2 partitions each, all 6 covered, no change for 0.6 s), one worker gets SIGKILL and
the time from the kill until the two survivors' on_assign report all 6 partitions is
measured (also: until the first survivor reacted). A replacement worker is then started and
the group allowed to settle before the next kill. Repeated `--rebalance-repeat` times for each
heartbeat.interval.ms in `--heartbeats`.

Side table per system: the producer's send call (send timestamp -> the call returned), CPU
time per message of the producer, the consumer (and redis-server) over the counted part of the
run (the producer's includes its sleeps' wake-ups), involuntary context switches (preemptions:
a woken process placed on the waker's CPU preempts it, and other jobs preempt both), how late
the producer sent against its schedule (p50 / p99, and how many sends were > 1 ms late), and
the rate achieved.

The machine is shared and noisy: compare the ratios of one run; the load average is printed
with the results.
"""
from __future__ import annotations

import argparse
import array
import ctypes
import datetime
import json
import math
import os
import pickle
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

mono = time.monotonic_ns
HDR = struct.Struct("<qq")           # seq, send timestamp (CLOCK_MONOTONIC ns)
SYSTEMS = ["uds", "redis", "engine", "api"]
LABELS = {
    "uds": "UNIX socket ping (floor)",
    "redis": "Redis Streams XADD / XREAD BLOCK 0",
    "engine": "embedlog engine append_records / wait+read",
    "api": "embedlog Producer/Consumer (produce+flush / poll)",
}
TARGET_P50_US = 100.0
TARGET_P99_US = 1000.0


# ====================================================================== child processes

def _set_timer_slack(ns: int):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, ns, 0, 0, 0)   # PR_SET_TIMERSLACK
    except Exception:
        pass


def _rusage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": r.ru_utime + r.ru_stime, "vcsw": r.ru_nvcsw, "ivcsw": r.ru_nivcsw}


def _usage_delta(a, b, n):
    return {"cpu_us_per_msg": (b["cpu"] - a["cpu"]) / n * 1e6, "vcsw": b["vcsw"] - a["vcsw"],
            "ivcsw": b["ivcsw"] - a["ivcsw"]}


def _say(line: str):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _conf(d):
    return {"bootstrap.servers": f"file://{d}"}


class _Instr:
    """Wrappers installed on library classes in an instrumented child (never on disk)."""
    on = False
    pub0 = pub1 = None
    npub = 0
    w_in = w_out = 0

    @classmethod
    def install_producer(cls, total):
        from embedlog.storage import _state
        orig = _state.SharedState.publish
        cls.pub0 = array.array("q", [0]) * total
        cls.pub1 = array.array("q", [0]) * total

        def publish(self, fields):
            if not cls.on:
                return orig(self, fields)
            t0 = mono()
            r = orig(self, fields)
            t1 = mono()
            i = cls.npub
            if i < total:
                cls.pub0[i] = t0
                cls.pub1[i] = t1
            cls.npub = i + 1
            return r
        _state.SharedState.publish = publish

    @classmethod
    def install_consumer(cls):
        from embedlog import Partition
        orig = Partition.wait

        def wait(self, offset, timeout=None):
            t0 = mono()
            r = orig(self, offset, timeout)
            if r:
                cls.w_in, cls.w_out = t0, mono()
            return r
        Partition.wait = wait


def child_producer(a):
    _set_timer_slack(1000)
    total = a.count
    pad = bytes(max(0, a.size - HDR.size))
    pack = HDR.pack
    if a.instrument:
        _Instr.install_producer(total)
    if a.system == "api":
        from embedlog import Producer
        p = Producer({**_conf(a.dir), "acks": 1, "linger.ms": 0})
        produce, flush, topic = p.produce, p.flush, a.topic

        def send(v):
            produce(topic, value=v)
            if flush():
                raise RuntimeError("flush() left records queued")
    elif a.system == "engine":
        import embedlog
        log = embedlog.open(a.dir)
        part = log.partition(a.topic, 0)
        ap = part.append_records

        def send(v):
            ap([v])
    elif a.system == "redis":
        import redis
        r = redis.Redis(host="127.0.0.1", port=a.port)
        r.ping()
        xadd, key = r.xadd, a.topic

        def send(v):
            xadd(key, {b"v": v})
    elif a.system == "uds":
        sock = socket.socket(fileno=a.fd)
        send = sock.send
    else:
        raise SystemExit(f"unknown system {a.system}")
    sent = array.array("q", [0]) * total
    ret = array.array("q", [0]) * total
    due = array.array("q", [0]) * total
    _say("ready")
    line = sys.stdin.readline().split()
    if not line or line[0] != "go":
        return
    t0 = int(line[1])
    interval = 1e9 / a.rate
    spin = int(a.spin_us * 1000)
    sleep = time.sleep
    u0 = _rusage()
    _Instr.on = True
    for i in range(total):
        target = t0 + int(i * interval)
        d = target - mono()
        if d > spin:
            sleep((d - spin) / 1e9)
        if spin:
            while mono() < target:
                pass
        ts = mono()
        send(pack(i, ts) + pad)
        ret[i] = mono()
        sent[i] = ts
        due[i] = target
    _Instr.on = False
    u1 = _rusage()
    out = {"sent": sent, "ret": ret, "due": due}
    if a.instrument:
        out.update(pub0=_Instr.pub0, pub1=_Instr.pub1, npub=_Instr.npub)
    with open(a.out, "wb") as f:
        pickle.dump(out, f)
    _say("done " + json.dumps(_usage_delta(u0, u1, total)))
    if a.system == "api":
        p.close()


def child_consumer(a):
    total = a.count
    unpack = HDR.unpack_from
    recv_t = array.array("q", [-1]) * total
    send_t = array.array("q", [-1]) * total
    w_in = array.array("q", [0]) * total if a.instrument else None
    w_out = array.array("q", [0]) * total if a.instrument else None
    if a.instrument:
        _Instr.install_consumer()
    state = {"got": 0, "expect": 0, "disorder": 0, "dups": 0}

    def take(v, t):
        seq, ts = unpack(v)
        if seq != state["expect"]:
            state["disorder"] += 1
        state["expect"] = seq + 1
        if recv_t[seq] != -1:
            state["dups"] += 1
        recv_t[seq] = t
        send_t[seq] = ts
        if w_in is not None:
            w_in[seq] = _Instr.w_in
            w_out[seq] = _Instr.w_out
        state["got"] += 1

    stall = 60e9
    if a.system == "api":
        from embedlog import Consumer, TopicPartition
        c = Consumer({**_conf(a.dir), "group.id": "lat", "auto.offset.reset": "latest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(a.topic, 0)])
        c.poll(0)                                   # resolves the start position (end)
        poll = c.poll
        _say("ready")
        u0 = _rusage()
        last = mono()
        while state["got"] < total:
            m = poll(1.0)
            t = mono()
            if m is None:
                if t - last > stall:
                    break
                continue
            if m.error() is not None:
                continue
            take(m.value(), t)
            last = t
        u1 = _rusage()
        c.close()
    elif a.system == "engine":
        import embedlog
        log = embedlog.open(a.dir)
        part = log.partition(a.topic, 0)
        nxt = part.high_watermark
        wait, read = part.wait, part.read
        _say("ready")
        u0 = _rusage()
        last = mono()
        while state["got"] < total:
            if not wait(nxt, 1.0):
                if mono() - last > stall:
                    break
                continue
            recs = read(nxt)
            t = mono()
            for r in recs:
                take(r.value, t)
            nxt = recs[-1].offset + 1
            last = t
        u1 = _rusage()
    elif a.system == "redis":
        import redis
        r = redis.Redis(host="127.0.0.1", port=a.port)
        r.ping()
        xread, key = r.xread, a.topic
        last_id = b"0-0"
        _say("ready")
        u0 = _rusage()
        while state["got"] < total:
            resp = xread({key: last_id}, count=1000, block=0)
            t = mono()
            for _name, entries in resp:
                for eid, fields in entries:
                    take(fields[b"v"], t)
                    last_id = eid
        u1 = _rusage()
    elif a.system == "uds":
        sock = socket.socket(fileno=a.fd)
        recv = sock.recv
        _say("ready")
        u0 = _rusage()
        while state["got"] < total:
            v = recv(4096)
            t = mono()
            if not v:
                break
            take(v, t)
        u1 = _rusage()
    else:
        raise SystemExit(f"unknown system {a.system}")
    out = {"recv": recv_t, "send": send_t}
    if w_in is not None:
        out.update(w_in=w_in, w_out=w_out)
    with open(a.out, "wb") as f:
        pickle.dump(out, f)
    info = _usage_delta(u0, u1, max(1, state["got"]))
    info.update(got=state["got"], disorder=state["disorder"], dups=state["dups"])
    _say("done " + json.dumps(info))


def child_rworker(a):
    from embedlog import Consumer
    fd = a.fd
    pid = os.getpid()

    def report(kind, parts):
        ps = ",".join(str(p.partition) for p in sorted(parts, key=lambda p: p.partition))
        os.write(fd, f"{kind} {pid} {mono()} {ps}\n".encode())

    c = Consumer({**_conf(a.dir), "group.id": a.group, "enable.auto.commit": False,
                  "auto.offset.reset": "latest", "heartbeat.interval.ms": a.hb})
    os.write(fd, f"S {pid} {mono()} \n".encode())
    c.subscribe([a.topic], on_assign=lambda cons, parts: report("A", parts),
                on_revoke=lambda cons, parts: report("R", parts))
    signal.signal(signal.SIGTERM, lambda *x: sys.exit(0))
    try:
        while True:
            c.poll(1.0)
    finally:
        c.close()


# ====================================================================== parent helpers

class Child:
    """A child process with line-based stdout, read with timeouts (select)."""

    def __init__(self, args, pass_fds=()):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=pass_fds)
        self.buf = b""

    def line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"child {self.proc.pid} said nothing for {timeout:.0f} s")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"child {self.proc.pid} exited (rc {self.proc.wait()})")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def expect(self, word: str, timeout: float) -> str:
        line = self.line(timeout)
        if not line.startswith(word):
            raise RuntimeError(f"child {self.proc.pid}: expected {word!r}, got {line!r}")
        return line[len(word):].strip()

    def send(self, text: str):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class RedisServer:
    def __init__(self, root):
        import redis
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=root)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "no", "--save", "", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        self.version = self.client.info("server")["redis_version"]

    def cpu(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def stop(self):
        try:
            self.client.shutdown(nosave=True)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(sorted_vals, p):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


PCTS = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]


def summary_us(vals_ns):
    s = sorted(vals_ns)
    out = {name: pct(s, p) / 1000.0 for name, p in PCTS}
    out["max"] = s[-1] / 1000.0 if s else float("nan")
    out["mean"] = statistics.fmean(s) / 1000.0 if s else float("nan")
    out["n"] = len(s)
    return out


def fmt_us(x):
    if x != x:
        return "-"
    if x >= 10000:
        return f"{x / 1000:.1f} ms"
    if x >= 1000:
        return f"{x / 1000:.2f} ms"
    return f"{x:.0f} us" if x >= 100 else f"{x:.1f} us"


def source_id():
    """Where `embedlog` is imported from and a short SHA-1 of its .py files: the repo may
    hold uncommitted changes, and the children import the same package."""
    import hashlib
    import embedlog
    d = os.path.dirname(os.path.abspath(embedlog.__file__))
    h = hashlib.sha1()
    for name in sorted(os.listdir(d)):
        if name.endswith(".py"):
            with open(os.path.join(d, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return d, h.hexdigest()[:10]


def loadavg():
    return tuple(round(x, 2) for x in os.getloadavg())


# ====================================================================== latency runs

def run_pair(a, system, topic, count, warmup, redis_srv, instrument=False):
    """One producer + one consumer process; returns the per-message arrays and child info."""
    tag = f"{topic}"
    out_c = os.path.join(a.work, f"{tag}-c.pkl")
    out_p = os.path.join(a.work, f"{tag}-p.pkl")
    total = count + warmup
    common = ["--system", system, "--dir", a.logdir, "--topic", topic, "--count", str(total),
              "--size", str(a.size), "--rate", str(a.rate), "--spin-us", str(a.spin_us)]
    if instrument:
        common.append("--instrument")
    pfds, cfds = (), ()
    c_extra, p_extra = [], []
    if system == "uds":
        s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pfds, cfds = (s1.fileno(),), (s2.fileno(),)
        p_extra, c_extra = ["--fd", str(s1.fileno())], ["--fd", str(s2.fileno())]
    if system == "redis":
        p_extra = c_extra = ["--port", str(redis_srv.port)]
    if system in ("api", "engine"):
        from embedlog.admin import AdminClient, NewTopic
        AdminClient(_conf(a.logdir)).create_topics([NewTopic(topic, 1)])[topic].result()
    cons = Child(["--_role", "consumer", *common, *c_extra, "--out", out_c], pass_fds=cfds)
    prod = None
    try:
        cons.expect("ready", 60)
        prod = Child(["--_role", "producer", *common, *p_extra, "--out", out_p], pass_fds=pfds)
        prod.expect("ready", 60)
        if system == "uds":
            s1.close()
            s2.close()
        load0 = loadavg()
        r_cpu0 = redis_srv.cpu() if system == "redis" else None
        t_start = time.monotonic_ns() + 50_000_000
        prod.send(f"go {t_start}\n")
        run_s = total / a.rate
        p_info = json.loads(prod.expect("done", run_s * 3 + 60))
        c_info = json.loads(cons.expect("done", 60))
        r_cpu = (redis_srv.cpu() - r_cpu0) if system == "redis" else None
        prod.proc.wait(30)
        cons.proc.wait(30)
    finally:
        for ch in (prod, cons):
            if ch is not None:
                ch.stop()
    with open(out_c, "rb") as f:
        c = pickle.load(f)
    with open(out_p, "rb") as f:
        p = pickle.load(f)
    os.unlink(out_c)
    os.unlink(out_p)
    if c_info["got"] != total or c_info["dups"] or c_info["disorder"]:
        raise RuntimeError(f"{system}: consumer got {c_info['got']} of {total} "
                           f"(dups {c_info['dups']}, out of order {c_info['disorder']})")
    for i in range(total):
        if c["send"][i] != p["sent"][i]:
            raise RuntimeError(f"{system}: message {i} arrived with a foreign send timestamp")
    lat = [c["recv"][i] - c["send"][i] for i in range(warmup, total)]
    send_call = [p["ret"][i] - p["sent"][i] for i in range(warmup, total)]
    late = [p["sent"][i] - p["due"][i] for i in range(warmup, total)]
    wall = (p["sent"][total - 1] - p["sent"][warmup]) / 1e9
    res = {"system": system, "lat": lat, "send_call": send_call, "late": late, "producer": p_info,
           "consumer": c_info, "load_start": load0, "load_end": loadavg(),
           "rate_achieved": (count - 1) / wall if wall > 0 else float("nan")}
    if r_cpu is not None:
        res["redis_cpu_us_per_msg"] = r_cpu / total * 1e6
    if instrument:
        res["breakdown"] = breakdown(c, p, warmup, total)
    return res


def breakdown(c, p, warmup, total):
    """Split each message's latency at the producer's publish and the consumer's wake."""
    if p["npub"] != total:
        return {"error": f"{p['npub']} publishes for {total} messages: cannot pair them"}
    seg = {"send -> publish start (producer side)": [], "publish call (store + futex wake)": [],
           "publish start -> wait() returned (wake)": [], "wait() returned -> message in hand (consumer side)": [],
           "total (these messages)": [], "send call returned (producer)": []}
    asleep = 0
    busy_lat = []
    for i in range(warmup, total):
        a, r = c["send"][i], c["recv"][i]
        p0, p1 = p["pub0"][i], p["pub1"][i]
        wi, wo = c["w_in"][i], c["w_out"][i]
        if wi and wi <= p0 <= wo:          # the consumer was in wait() when this publish began
            asleep += 1
            seg["send -> publish start (producer side)"].append(p0 - a)
            seg["publish call (store + futex wake)"].append(p1 - p0)
            seg["publish start -> wait() returned (wake)"].append(wo - p0)
            seg["wait() returned -> message in hand (consumer side)"].append(r - wo)
            seg["total (these messages)"].append(r - a)
            seg["send call returned (producer)"].append(p["ret"][i] - a)
        else:
            busy_lat.append(r - a)
    n = total - warmup
    return {"n": n, "asleep": asleep, "segments": {k: summary_us(v) for k, v in seg.items() if v},
            "not_asleep": summary_us(busy_lat) if busy_lat else None}


# ====================================================================== micro (one process)

def micro(a):
    """CPU cost of each side's call alone (no other process, no wake-up): percentiles of
    `reps` calls. Tail reads alternate with an untimed one-record append, as in the live run."""
    import embedlog
    from embedlog import Consumer, Producer, TopicPartition, build_batch
    from embedlog.admin import AdminClient, NewTopic
    reps = 3000
    pad = bytes(max(0, a.size - HDR.size))
    out = {}

    def timeit(name, fn, prep=None, n=reps):
        ts = []
        for i in range(n):
            if prep is not None:
                prep(i)
            t0 = mono()
            fn(i)
            ts.append(mono() - t0)
        out[name] = summary_us(ts)

    conf = _conf(a.logdir)
    fs = AdminClient(conf).create_topics([NewTopic("micro", 1),
                                          NewTopic("micro-idx1", 1, config={"index.interval.bytes": "1"})])
    for f in fs.values():
        f.result()
    log = embedlog.open(a.logdir)
    part = log.partition("micro", 0)
    part1 = log.partition("micro-idx1", 0)
    payload = HDR.pack(0, mono()) + pad
    timeit("payload build: struct.pack + pad", lambda i: HDR.pack(i, mono()) + pad)
    timeit("build_batch([payload])", lambda i: build_batch([payload]))
    batch = build_batch([payload])
    timeit("Partition.append(prebuilt batch)", lambda i: part.append(batch))
    timeit("Partition.append_records([payload])", lambda i: part.append_records([payload]))
    prod = Producer({**conf, "acks": 1, "linger.ms": 0})

    def pf(i):
        prod.produce("micro", value=payload)
        prod.flush()
    timeit("Producer.produce + flush (linger.ms 0)", pf)
    prod.close()

    def tail_reader(p):
        nxt = [p.high_watermark]

        def prep(i):
            p.append_records([payload])

        def fn(i):
            p.wait(nxt[0], 0)
            recs = p.read(nxt[0])
            nxt[0] = recs[-1].offset + 1
        return prep, fn
    prep, fn = tail_reader(part)
    timeit("Partition.wait(o, 0) + read(o) of the 1 new record", fn, prep)
    prep, fn = tail_reader(part1)
    timeit("  same, topic index.interval.bytes=1 (informational)", fn, prep)
    c = Consumer({**conf, "group.id": "micro", "enable.auto.commit": False})
    c.assign([TopicPartition("micro", 0, part.high_watermark)])
    timeit("Consumer.poll(0).value() of the 1 new record", lambda i: c.poll(0).value(),
           lambda i: part.append_records([payload]))
    c.close()
    s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    timeit("UDS send + recv (same process)", lambda i: (s1.send(payload), s2.recv(4096)))
    s1.close()
    s2.close()
    timeit("time.monotonic_ns() (clock read)", lambda i: mono())
    log.close()
    return out


# ====================================================================== rebalance

class Group:
    def __init__(self, a, topic, group, hb):
        self.a, self.topic, self.group, self.hb = a, topic, group, hb
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.buf = b""
        self.procs = {}          # pid -> Popen
        self.assign = {}         # pid -> (t, [partitions]) of its last on_assign
        self.events = []         # (kind, pid, t, parts)

    def spawn(self):
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_role", "rworker",
                              "--dir", self.a.logdir, "--topic", self.topic, "--group", self.group,
                              "--hb", str(self.hb), "--fd", str(self.w)], pass_fds=(self.w,),
                             stdin=subprocess.DEVNULL)
        self.procs[p.pid] = p
        return p.pid

    def pump(self, timeout):
        r, _, _ = select.select([self.r], [], [], max(0.0, timeout))
        if not r:
            return
        try:
            self.buf += os.read(self.r, 65536)
        except BlockingIOError:
            return
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            kind, pid, t, *rest = line.decode().split(" ")
            parts = [int(x) for x in rest[0].split(",") if x] if rest else []
            pid, t = int(pid), int(t)
            self.events.append((kind, pid, t, parts))
            if kind == "A":
                self.assign[pid] = (t, parts)

    def live(self):
        return [pid for pid, p in self.procs.items() if p.poll() is None]

    def stable(self, members, each):
        live = self.live()
        if len(live) != members:
            return False
        got = [self.assign.get(pid, (0, []))[1] for pid in live]
        flat = sorted(x for g in got for x in g)
        return all(len(g) == each for g in got) and flat == list(range(members * each))

    def wait_stable(self, members, each, timeout=60.0, quiet=0.6):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.05)
            if self.stable(members, each):
                n = len(self.events)
                end = time.monotonic() + quiet
                while time.monotonic() < end:
                    self.pump(end - time.monotonic())
                if len(self.events) == n and self.stable(members, each):
                    return True
        raise TimeoutError(f"group {self.group} did not settle at {members} x {each}")

    def kill_and_measure(self, victim, timeout=30.0):
        survivors = [pid for pid in self.live() if pid != victim]
        n0 = len(self.events)
        t_kill = mono()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.05)
            post = {pid: self.assign.get(pid) for pid in survivors}
            if all(v is not None and v[0] > t_kill for v in post.values()):
                flat = sorted(x for v in post.values() for x in v[1])
                if flat == list(range(6)) and all(len(v[1]) == 3 for v in post.values()):
                    self.procs[victim].wait()
                    done = max(v[0] for v in post.values())
                    first = min(t for (k, pid, t, _p) in self.events[n0:] if pid in survivors)
                    return (done - t_kill) / 1e6, (first - t_kill) / 1e6
        raise TimeoutError("survivors did not take over all 6 partitions")

    def close(self):
        for pid, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        os.close(self.r)
        os.close(self.w)


def rebalance(a, hb, repeat, rng):
    from embedlog.admin import AdminClient, NewTopic
    topic = f"rb{hb}"
    AdminClient(_conf(a.logdir)).create_topics([NewTopic(topic, 6)])[topic].result()
    g = Group(a, topic, f"rb-{hb}", hb)
    out = {"heartbeat.interval.ms": hb, "takeover_ms": [], "first_reaction_ms": [], "join_ms": []}
    try:
        for _ in range(3):
            g.spawn()
        g.wait_stable(3, 2)
        for i in range(repeat):
            victim = rng.choice(sorted(g.live()))
            done, first = g.kill_and_measure(victim)
            out["takeover_ms"].append(done)
            out["first_reaction_ms"].append(first)
            if i < repeat - 1:
                pid = g.spawn()
                n0 = len(g.events)
                g.wait_stable(3, 2)
                # join: from the new worker's subscribe() until all three hold their 2
                s = next(t for (k, p, t, _x) in g.events[n0:] if k == "S" and p == pid)
                last_a = max(t for (k, p, t, _x) in g.events[n0:] if k == "A")
                out["join_ms"].append((last_a - s) / 1e6)
    finally:
        g.close()
    return out


def stats_ms(xs):
    if not xs:
        return "-"
    return f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f}"


# ====================================================================== report

def latency_table(results, order):
    hdr = f"{'system':<52}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>10}{'max':>10}{'mean':>9}"
    lines = [hdr, "-" * len(hdr)]
    for s in order:
        r = results[s]["all"]
        lines.append(f"{LABELS[s]:<52}" + "".join(f"{fmt_us(r[k]):>{w}}" for k, w in
                                                   (("p50", 9), ("p90", 9), ("p99", 9), ("p99.9", 10),
                                                    ("max", 10), ("mean", 9))))
    return lines


def markdown_table(results, order):
    if not order:
        return []
    lines = ["| system | p50 | p90 | p99 | p99.9 | max | producer send call p50 / p99 "
             "| CPU us/msg prod / cons (/ server) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in order:
        r = results[s]
        x = r["all"]
        sc = r["send_call"]
        cpu = f"{r['cpu_p']:.0f} / {r['cpu_c']:.0f}"
        if r.get("cpu_server") is not None:
            cpu += f" / {r['cpu_server']:.0f}"
        lines.append(f"| {LABELS[s]} | {fmt_us(x['p50'])} | {fmt_us(x['p90'])} | {fmt_us(x['p99'])} | "
                     f"{fmt_us(x['p99.9'])} | {fmt_us(x['max'])} | {fmt_us(sc['p50'])} / {fmt_us(sc['p99'])} | {cpu} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000, help="counted messages per system (all rounds)")
    ap.add_argument("--rate", type=float, default=5000.0, help="messages per second")
    ap.add_argument("--size", type=int, default=100, help="payload bytes (>= 16)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per system, rotating order")
    ap.add_argument("--warmup", type=int, default=1000, help="uncounted messages at the start of each round")
    ap.add_argument("--spin-us", type=float, default=0.0, help="busy-wait this long before each send")
    ap.add_argument("--breakdown-messages", type=int, default=20_000)
    ap.add_argument("--rebalance-repeat", type=int, default=5)
    ap.add_argument("--heartbeats", default="3000,100", help="heartbeat.interval.ms values for the rebalance runs")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-micro", action="store_true")
    ap.add_argument("--no-rebalance", action="store_true")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs (rebalance/micro only)")
    ap.add_argument("--dir", default=None, help="parent of the temp data directory (default /tmp)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None, help="write the results as JSON to this path")
    # child roles (internal)
    ap.add_argument("--_role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--system", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--topic", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--fd", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--instrument", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--group", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--hb", type=int, default=3000, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._role == "producer":
        return child_producer(a)
    if a._role == "consumer":
        return child_consumer(a)
    if a._role == "rworker":
        return child_rworker(a)
    if a.size < HDR.size:
        ap.error(f"--size must be at least {HDR.size}")

    from _benchutil import machine_info, machine_line
    t_begin = time.monotonic()
    root = tempfile.mkdtemp(prefix="embedlog-latency-", dir=a.dir)
    a.logdir = os.path.join(root, "log")
    a.work = os.path.join(root, "work")
    os.makedirs(a.logdir)
    os.makedirs(a.work)
    info = machine_info(a.logdir)
    print(f"machine: {machine_line(info)}", flush=True)
    src_dir, src_sha = source_id()
    info["embedlog_source"] = {"dir": src_dir, "py_sha1": src_sha}
    print(f"embedlog imported from {src_dir} (sha1 of its .py files {src_sha})", flush=True)
    systems = [s for s in a.systems.split(",") if s]
    if a.no_redis and "redis" in systems:
        systems.remove("redis")
    redis_srv = None
    results = {}
    doc = {"machine": info, "params": {k: v for k, v in vars(a).items() if not k.startswith("_")
                                       and k not in ("system", "topic", "count", "out", "port", "fd",
                                                     "instrument", "group", "hb")},
           "date": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        if a.no_latency:
            systems = []
        if "redis" in systems:
            try:
                import redis  # noqa: F401
                redis_srv = RedisServer(root)
                doc["redis_version"] = redis_srv.version
            except (ImportError, OSError, RuntimeError) as e:
                print(f"Redis skipped ({e}): pip install redis hiredis; apt-get install redis-server")
                systems.remove("redis")
        per_round = max(1, a.messages // a.rounds)
        if systems:
            print(f"latency: {per_round * a.rounds:,} counted messages per system ({a.rounds} rounds of "
                  f"{per_round:,} + {a.warmup:,} warmup each), {a.size}-byte payload, {a.rate:,.0f} msg/s, "
                  f"spin {a.spin_us:g} us, Redis appendonly no / save \"\"", flush=True)
        runs = {s: [] for s in systems}
        for rnd in range(a.rounds if systems else 0):
            order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
            for s in order:
                t0 = time.monotonic()
                r = run_pair(a, s, f"{s}{rnd}", per_round, a.warmup, redis_srv)
                runs[s].append(r)
                x = summary_us(r["lat"])
                print(f"  round {rnd + 1} {s:<7} p50 {fmt_us(x['p50']):>8}  p99 {fmt_us(x['p99']):>8}  "
                      f"p99.9 {fmt_us(x['p99.9']):>8}  max {fmt_us(x['max']):>8}  "
                      f"({time.monotonic() - t0:.1f} s, {r['rate_achieved']:,.0f} msg/s, load {r['load_end'][0]})",
                      flush=True)
        for s in systems:
            rs = runs[s]
            lat = [v for r in rs for v in r["lat"]]
            late = sorted(v for r in rs for v in r["late"])
            results[s] = {
                "all": summary_us(lat),
                "rounds": [{k: summary_us(r["lat"])[k] for k in ("p50", "p99", "p99.9", "max")} for r in rs],
                "send_call": summary_us([v for r in rs for v in r["send_call"]]),
                "late_p50_us": pct(late, 50) / 1000, "late_p99_us": pct(late, 99) / 1000,
                "late_over_1ms": sum(1 for v in late if v > 1_000_000),
                "cpu_p": statistics.fmean(r["producer"]["cpu_us_per_msg"] for r in rs),
                "cpu_c": statistics.fmean(r["consumer"]["cpu_us_per_msg"] for r in rs),
                "cpu_server": statistics.fmean(r["redis_cpu_us_per_msg"] for r in rs) if s == "redis" else None,
                "ivcsw_c": sum(r["consumer"]["ivcsw"] for r in rs),
                "ivcsw_p": sum(r["producer"]["ivcsw"] for r in rs),
                "rate": statistics.fmean(r["rate_achieved"] for r in rs),
                "load": [r["load_end"][0] for r in rs],
            }
        order = [s for s in ["uds", "redis", "engine", "api"] if s in results]
        verdicts = []
        if order:
            print()
            print("end-to-end latency, producer process -> consumer process (receive - send, CLOCK_MONOTONIC)")
            for line in latency_table(results, order):
                print(line)
            print()
            hdr2 = f"{'system':<10}{'send call p50/p99':>22}{'CPU us/msg prod/cons/server':>30}" \
                   f"{'invol. csw prod/cons':>22}{'late p50/p99, >1ms':>24}{'rate':>9}"
            print(hdr2)
            for s in order:
                r = results[s]
                srv = f"/{r['cpu_server']:.0f}" if r["cpu_server"] is not None else ""
                call = f"{fmt_us(r['send_call']['p50'])} / {fmt_us(r['send_call']['p99'])}"
                cpu = f"{r['cpu_p']:.0f}/{r['cpu_c']:.0f}{srv}"
                csw = f"{r['ivcsw_p']}/{r['ivcsw_c']}"
                late = f"{fmt_us(r['late_p50_us'])}/{fmt_us(r['late_p99_us'])}, {r['late_over_1ms']}"
                print(f"{s:<10}{call:>22}{cpu:>30}{csw:>22}{late:>24}{r['rate']:>9,.0f}")
            print()
            for s in ("engine", "api"):
                if s not in results:
                    continue
                x = results[s]["all"]
                checks = [("p50 < 100 us", x["p50"] < TARGET_P50_US, f"{fmt_us(x['p50'])}"),
                          ("p99 < 1 ms", x["p99"] < TARGET_P99_US, f"{fmt_us(x['p99'])}")]
                if "redis" in results:
                    rx = results["redis"]["all"]
                    for k in ("p50", "p99", "p99.9"):
                        checks.append((f"{k} <= Redis", x[k] <= rx[k], f"{fmt_us(x[k])} vs {fmt_us(rx[k])} "
                                                                      f"({x[k] / rx[k]:.2f}x)"))
                for name, ok, detail in checks:
                    verdicts.append({"system": s, "target": name, "pass": ok, "detail": detail})
                    print(f"{'PASS' if ok else 'MISS'}  {s:<7} {name:<14} {detail}")
            if "uds" in results:
                u = results["uds"]["all"]
                print("ratios to the UNIX-socket floor (p50 / p99): " + ", ".join(
                    f"{s} {results[s]['all']['p50'] / u['p50']:.1f}x / {results[s]['all']['p99'] / u['p99']:.1f}x"
                    for s in order if s != "uds"))
        doc["latency"] = results
        doc["verdicts"] = verdicts
        if redis_srv is not None:
            redis_srv.stop()
            redis_srv = None

        if not a.no_breakdown:
            print()
            print(f"where embedlog's latency goes ({a.breakdown_messages:,} messages each, wrapped "
                  f"SharedState.publish / Partition.wait in the children)")
            doc["breakdown"] = {}
            for s in ("engine", "api"):
                if s not in systems:
                    continue
                r = run_pair(a, s, f"bd-{s}", a.breakdown_messages, a.warmup, None, instrument=True)
                b = r["breakdown"]
                b["all"] = summary_us(r["lat"])
                doc["breakdown"][s] = b
                if "error" in b:
                    print(f"  {s}: {b['error']}")
                    continue
                print(f"  {LABELS[s]}: all messages p50 {fmt_us(b['all']['p50'])} p99 {fmt_us(b['all']['p99'])}; "
                      f"{b['asleep']:,} of {b['n']:,} published while the consumer slept in wait()")
                print(f"    {'segment':<56}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>10}")
                for name, x in b["segments"].items():
                    print(f"    {name:<56}{fmt_us(x['p50']):>9}{fmt_us(x['p90']):>9}{fmt_us(x['p99']):>9}"
                          f"{fmt_us(x['p99.9']):>10}")
                if b["not_asleep"]:
                    x = b["not_asleep"]
                    print(f"    {'messages found with the consumer awake (n=' + str(x['n']) + ')':<56}"
                          f"{fmt_us(x['p50']):>9}{fmt_us(x['p90']):>9}{fmt_us(x['p99']):>9}{fmt_us(x['p99.9']):>10}")

        if not a.no_micro:
            print()
            print("micro: one call alone in one process (no other process, no wake-up), 3000 calls")
            m = micro(a)
            doc["micro"] = m
            print(f"    {'call':<56}{'p50':>9}{'p90':>9}{'p99':>9}")
            for name, x in m.items():
                print(f"    {name:<56}{fmt_us(x['p50']):>9}{fmt_us(x['p90']):>9}{fmt_us(x['p99']):>9}")

        if not a.no_rebalance:
            print()
            print("rebalance after SIGKILL: 3 consumer processes, one group, 6-partition topic, poll(1.0) loops; "
                  f"{a.rebalance_repeat} kills per setting (ms: min / median / max)")
            rng = random.Random(5)
            doc["rebalance"] = []
            for hb in [int(x) for x in a.heartbeats.split(",") if x]:
                r = rebalance(a, hb, a.rebalance_repeat, rng)
                doc["rebalance"].append(r)
                print(f"  heartbeat.interval.ms {hb:>5}: survivors hold all 6 after {stats_ms(r['takeover_ms'])}; "
                      f"first survivor reacted after {stats_ms(r['first_reaction_ms'])}; "
                      f"join of a replacement {stats_ms(r['join_ms'])}")
                print(f"      takeover ms: {', '.join(f'{x:.0f}' for x in r['takeover_ms'])}")
    finally:
        if redis_srv is not None:
            redis_srv.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    doc["load_end"] = loadavg()
    doc["seconds"] = time.monotonic() - t_begin
    print()
    print(f"load average at start {tuple(round(x, 2) for x in info['loadavg_start'])}, at end {doc['load_end']}; "
          f"total {doc['seconds']:.0f} s")
    if results:
        print()
        print("markdown:")
    for line in markdown_table(results, [s for s in ["uds", "redis", "engine", "api"] if s in results]):
        print(line)
    if a.json:
        def enc(o):
            if isinstance(o, array.array):
                return None
            raise TypeError(type(o).__name__)
        for s in results.values():
            s.pop("lat", None)
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1, default=enc)


if __name__ == "__main__":
    main()
