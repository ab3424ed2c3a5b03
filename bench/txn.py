"""Transactional produce throughput (issue #19): 1, 10 and 100 records per transaction
beside plain idempotent produce, in the same run, same records, same directory kind.

Each case: a fresh directory (bench_dir, or --dir), topic t with 3 partitions, records
of 100-byte values and 16-byte keys (round-robin over the partitions). "idempotent":
enable.idempotence, acks=all, produce all then one flush(). "txn-K": transactional.id,
init_transactions, then begin / K produce() / commit_transaction per transaction (each
commit: the partitions added to __transaction_state, the data flushed, PrepareCommit,
one COMMIT marker per partition, CompleteCommit: all durable but the last). Cases
alternate over ROUNDS rounds and each keeps its best (noise hits all alike). Prints
records/s, transactions/s and the ratio to idempotent, and a JSON line.

    python bench/txn.py [--records N] [--rounds R] [--dir D]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this tree's embedlog
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchutil import gen_records, machine_info, machine_line, timed

from embedlog import Producer

TOPIC, P = "t", 3


def _case(kind, per_txn, keys, values, base):
    d = tempfile.mkdtemp(prefix="el-bench-txn-", dir=base)
    try:
        import embedlog
        with embedlog.open(d) as log:
            log.create_topic(TOPIC, partitions=P)
        conf = {"bootstrap.servers": f"file://{d}", "acks": "all", "linger.ms": 5}
        if kind == "idempotent":
            p = Producer({**conf, "enable.idempotence": True})

            def run():
                produce = p.produce
                for i, (k, v) in enumerate(zip(keys, values)):
                    produce(TOPIC, v, k, partition=i % P)
                assert p.flush(60) == 0
        else:
            p = Producer({**conf, "transactional.id": "bench"})
            p.init_transactions(30)

            def run():
                produce = p.produce
                for s in range(0, len(values), per_txn):
                    p.begin_transaction()
                    for i in range(s, min(s + per_txn, len(values))):
                        produce(TOPIC, values[i], keys[i], partition=i % P)
                    p.commit_transaction(60)
        seconds, _ = timed(run)
        p.close() if hasattr(p, "close") else p.flush(0)
        return seconds
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20_000, help="records per case (txn-1 runs a tenth)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the case directories go (default: the temp dir)")
    a = ap.parse_args()
    base = a.dir or tempfile.gettempdir()
    info = machine_info(base)
    print(machine_line(info))
    keys, values = gen_records(a.records)
    cases = [("idempotent", 0, a.records), ("txn-1", 1, max(a.records // 10, 100)),
             ("txn-10", 10, a.records), ("txn-100", 100, a.records)]
    best: dict[str, float] = {}
    for _r in range(a.rounds):
        for name, per_txn, n in cases:
            kind = "idempotent" if per_txn == 0 else "txn"
            rate = n / _case(kind, per_txn, keys[:n], values[:n], base)
            best[name] = max(best.get(name, 0.0), rate)
    ref = best["idempotent"]
    rows = []
    print(f"{'case':<12}{'records/s':>12}{'txn/s':>10}{'ratio':>8}")
    for name, per_txn, n in cases:
        r = best[name]
        tps = r / per_txn if per_txn else None
        rows.append({"case": name, "records": n, "records_per_s": round(r), "txn_per_s": tps and round(tps, 1),
                     "ratio_to_idempotent": round(r / ref, 4)})
        print(f"{name:<12}{r:>12,.0f}{(f'{tps:,.1f}' if tps else '-'):>10}{r / ref:>8.3f}")
    print(json.dumps({"machine": info, "rounds": a.rounds, "results": rows}))


if __name__ == "__main__":
    main()
