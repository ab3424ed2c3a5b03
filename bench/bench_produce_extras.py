"""Producer.produce() with partition=, timestamp=, headers= vs the plain call (issue #17).

One run: N records of 100 bytes (key b"k%07d"), acks=1, no compression, linger.ms=5, into a
fresh tmp directory per case; produce loop + flush() timed; prints msg/s and the ratio to
plain. Cases alternate over ROUNDS rounds and each keeps its best, so noise hits all alike.

    python bench/bench_produce_extras.py [N] [ROUNDS]
"""
import os
import shutil
import sys
import tempfile
import time

from embedlog import Producer
from embedlog.admin import AdminClient, NewTopic

TOPIC = "t"


def run(case, n, records):
    d = tempfile.mkdtemp(prefix="el-extras-")
    try:
        conf = {"bootstrap.servers": f"file://{d}"}
        a = AdminClient(conf)
        a.create_topics([NewTopic(TOPIC, 4)])[TOPIC].result()
        a.close()
        p = Producer({**conf, "acks": 1, "compression.type": "none", "linger.ms": 5})
        produce = p.produce
        ts = int(time.time() * 1000)
        hs = [("h", b"v")]
        t0 = time.perf_counter()
        if case == "plain":
            for k, v in records:
                produce(TOPIC, v, k)
        elif case == "partition":
            for k, v in records:
                produce(TOPIC, v, k, partition=0)
        elif case == "timestamp":
            for k, v in records:
                produce(TOPIC, v, k, timestamp=ts)
        elif case == "headers":
            for k, v in records:
                produce(TOPIC, v, k, headers=hs)
        left = p.flush()
        dt = time.perf_counter() - t0
        p.close()
        assert left == 0
        return n / dt
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    value = os.urandom(100)
    records = [(b"k%07d" % i, value) for i in range(n)]
    cases = ["plain", "partition", "timestamp", "headers"]
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for c in cases:
            best[c] = max(best[c], run(c, n, records))
    for c in cases:
        print(f"{c:10s} {best[c]:12,.0f} msg/s  {best[c] / best['plain']:.2f}x plain")


if __name__ == "__main__":
    main()
