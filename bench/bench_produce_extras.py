"""Producer.produce() with partition=, timestamp=, headers= vs the plain call (issue #17).

Each case: N records (16-byte keys b"key-%011d", 100-byte values), acks=1, no compression,
linger.ms=5, into a fresh tmp directory; the produce loop + flush() is timed. Every loop
iterates the same (key, value, partition) triples, so the cases differ only in the call.

    1 partition:  plain       produce(t, v, k)
                  partition   produce(t, v, k, partition=0)
                  timestamp   produce(t, v, k, timestamp=ts)     (one constant ts)
                  headers     produce(t, v, k, headers=hs)       (hs = [("h", b"v")], one object)
                  headers_new produce(t, v, k, headers=[("h", b"v")])   (a new list per call)
    4 partitions: plain4      produce(t, v, k)                   (murmur2 of the key)
                  partition4  produce(t, v, k, partition=i % 4)

Cases alternate over ROUNDS rounds, so load from other processes hits them alike. Printed:
each case's best msg/s, and its ratio to the plain case of the same topic: the median of
the per-round ratios (each round's plain run is its reference) and the ratio of the bests.

    python bench/bench_produce_extras.py [N] [ROUNDS]
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

from embedlog import Producer
from embedlog.admin import AdminClient, NewTopic

TOPIC = "t"
CASES = [("plain", 1), ("partition", 1), ("timestamp", 1), ("headers", 1), ("headers_new", 1),
         ("plain4", 4), ("partition4", 4)]


def run(case, nparts, records):
    d = tempfile.mkdtemp(prefix="el-extras-")
    try:
        conf = {"bootstrap.servers": f"file://{d}"}
        a = AdminClient(conf)
        a.create_topics([NewTopic(TOPIC, nparts)])[TOPIC].result()
        a.close()
        p = Producer({**conf, "acks": 1, "compression.type": "none", "linger.ms": 5})
        produce = p.produce
        ts = int(time.time() * 1000)
        hs = [("h", b"v")]
        t0 = time.perf_counter()
        if case in ("plain", "plain4"):
            for k, v, _ in records:
                produce(TOPIC, v, k)
        elif case == "partition":
            for k, v, _ in records:
                produce(TOPIC, v, k, partition=0)
        elif case == "partition4":
            for k, v, q in records:
                produce(TOPIC, v, k, partition=q)
        elif case == "timestamp":
            for k, v, _ in records:
                produce(TOPIC, v, k, timestamp=ts)
        elif case == "headers":
            for k, v, _ in records:
                produce(TOPIC, v, k, headers=hs)
        elif case == "headers_new":
            for k, v, _ in records:
                produce(TOPIC, v, k, headers=[("h", b"v")])
        left = p.flush()
        dt = time.perf_counter() - t0
        p.close()
        assert left == 0
        return len(records) / dt
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    value = os.urandom(100)
    records = [(b"key-%011d" % i, value, i % 4) for i in range(n)]
    rates = {c: [] for c, _ in CASES}
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for _ in range(rounds):
        for c, nparts in CASES:
            rates[c].append(run(c, nparts, records))
    print(f"load after:  {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"{n:,} records, {rounds} alternated rounds")
    print(f"{'case':12s} {'best msg/s':>12s} {'median ratio':>13s} {'ratio of bests':>15s}")
    for c, nparts in CASES:
        ref = "plain" if nparts == 1 else "plain4"
        med = statistics.median(r / p for r, p in zip(rates[c], rates[ref]))
        best = max(rates[c]) / max(rates[ref])
        print(f"{c:12s} {max(rates[c]):12,.0f} {med:12.2f}x {best:14.2f}x")


if __name__ == "__main__":
    main()
