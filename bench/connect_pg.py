"""PostgreSQL CDC throughput: rows per second from one `INSERT ... SELECT generate_series` of N
rows to durable records through the PostgreSQL CDC connector (embedlog/connect/_postgres.py run
by the connector runner, a `Worker` on a temp log directory), beside PostgreSQL's own
`COPY ... TO` of the same rows in the same run.

    python bench/connect_pg.py            # N = 1,000,000
    python bench/connect_pg.py --quick    # N = 100,000
    python bench/connect_pg.py --rows 250000 --json
    python bench/connect_pg.py --rows 20000 --profile   # + cProfile of the connector's task thread

It starts its own PostgreSQL in a temp directory (tests/connect/pg.py's `PgServer`: initdb,
wal_level=logical, fsync off), creates `public.bench (id int PRIMARY KEY, name text, qty int,
price numeric(10,2), at timestamptz)`, starts the connector (snapshot of the empty table, then
streaming) with the JSON converter and schemas on, Debezium's envelope (no unwrap), and waits
for it to be RUNNING. Then, timed:

1. CDC: from the `INSERT INTO bench SELECT ... FROM generate_series(1, N)` (one transaction)
   until the topic `bench.public.bench` holds N records and the connector's stored source
   offset has moved past that transaction (every record produced with acks=all, fdatasync'd).
   The INSERT's own time is reported apart (it is inside the CDC time).
2. COPY: `COPY public.bench TO STDOUT` of the same N rows (psycopg2's copy_expert into a file
   in the temp directory, text format) and, for scale, `COPY ... TO STDOUT (FORMAT binary)`.

Each record is checked: N distinct keys 1..N, the last record's `after` equal to the row.
The ratio `CDC rows/s ÷ COPY rows/s` is the figure to compare across runs; the machine is
2 shared cores, so absolute rates move with its load (printed at start and end).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "connect"))

import _benchutil
import pg

TABLE = """CREATE TABLE public.bench (id int PRIMARY KEY, name text NOT NULL, qty int,
  price numeric(10,2), at timestamptz)"""
INSERT = """INSERT INTO public.bench SELECT i, 'item-' || i, i % 1000, (i % 100000) / 100.0,
  timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' FROM generate_series(1, {n}) AS i"""
TOPIC = "bench.public.bench"


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def _end(log, topic: str) -> int:
    return log.partition(topic, 0).log_end_offset if topic in log.topics() else 0


def _check(log_dir, n: int) -> None:
    """N records, keys 1..N each once, the last one's `after` is row N."""
    import embedlog as el
    with el.open(log_dir, read_only=True) as log:
        part = log.partition(TOPIC, 0)
        ids, pos, last = set(), 0, None
        while pos < part.log_end_offset:
            cols, nxt = part.fetch(pos, max_bytes=8 << 20)
            for k, v in zip(cols.keys, cols.values):
                ids.add(json.loads(k)["payload"]["id"])
                last = v
            if nxt <= pos:
                break
            pos = nxt
    if ids != set(range(1, n + 1)):
        raise SystemExit(f"CDC check: {len(ids)} distinct keys, want 1..{n}")
    after = json.loads(last)["payload"]["after"]
    if after["id"] != n or after["name"] != f"item-{n}" or after["qty"] != n % 1000:
        raise SystemExit(f"CDC check: the last record's after is {after}, want row {n}")


def _profiled():
    """cProfile around each connector task thread's run (the thread that polls PostgreSQL,
    converts and produces); returns the list the profiles go to."""
    import cProfile

    from embedlog.connect import _runner
    profiles, plain = [], _runner._Task.run

    def run(self):
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            plain(self)
        finally:
            prof.disable()
    _runner._Task.run = run
    return profiles


def run(n: int, profile: bool = False) -> dict:
    from embedlog.connect import Worker
    profiles = _profiled() if profile else None
    server = pg.PgServer().start()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="embedlog-bench-pg-"))
    info = _benchutil.machine_info(str(tmp))
    out = {"rows": n, "machine": _benchutil.machine_line(info), "load_start": _load()}
    worker = None
    try:
        server.execute("CREATE DATABASE bench")
        server.execute(TABLE, "bench")
        log_dir = tmp / "log"
        worker = Worker(log_dir)
        worker.submit(server.config("bench", **{
            "name": "pgbench", "topic.prefix": "bench", "slot.name": "bench_slot",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "max.batch.size": "10000", "status.update.interval.ms": "1000"}))
        worker.start()
        worker.wait_for("pgbench", "RUNNING", 120)
        time.sleep(1.0)                                   # the empty snapshot is done, streaming

        conn = server.connect("bench")
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(INSERT.format(n=int(n)))
            cur.execute("SELECT txid_current() % 4294967296")
            (xid,), = cur.fetchall()
            cur.execute("COMMIT")
        t_insert = time.perf_counter() - t0
        conn.close()
        deadline = time.monotonic() + max(600, n / 500)
        log = worker.log
        while _end(log, TOPIC) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"CDC: {_end(log, TOPIC)} of {n} records after the deadline; "
                                 f"status {worker.store.connector_status('pgbench')}")
            st = worker.store.connector_status("pgbench")
            if st["tasks"][0]["state"] == "FAILED":
                raise SystemExit(f"CDC: the connector failed: {st['tasks'][0].get('trace')}")
            time.sleep(0.02)
        t_durable = time.perf_counter() - t0
        # the source offset of the transaction's last change stored too
        while True:
            worker.store.refresh()
            offs = [o for _p, o in worker.store.source_offsets("pgbench").values()]
            if any(o.get("txId") == xid and o.get("event", 0) >= n - 1 for o in offs):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"CDC: the stored offset did not reach transaction {xid}'s end: {offs}")
            time.sleep(0.02)
        t_offsets = time.perf_counter() - t0
        worker.stop()
        worker = None
        if profiles:
            import io
            import pstats
            text = io.StringIO()
            pstats.Stats(*profiles, stream=text).sort_stats("tottime").print_stats(25)
            out["profile"] = text.getvalue()
        _check(log_dir, n)
        out.update(insert_s=t_insert, cdc_s=t_durable, cdc_offsets_s=t_offsets,
                   cdc_rows_per_s=n / t_durable, log_bytes=sum(
                       p.stat().st_size for p in (log_dir / f"{TOPIC}-0").glob("*.log")))

        conn = server.connect("bench")
        for fmt, sql in (("text", "COPY public.bench TO STDOUT"),
                         ("binary", "COPY public.bench TO STDOUT (FORMAT binary)")):
            target = tmp / f"copy.{fmt}"
            with open(target, "wb") as f, conn.cursor() as cur:
                t0 = time.perf_counter()
                cur.copy_expert(sql, f)
                f.flush()
                os.fsync(f.fileno())
                dt = time.perf_counter() - t0
            out[f"copy_{fmt}_s"] = dt
            out[f"copy_{fmt}_rows_per_s"] = n / dt
            out[f"copy_{fmt}_bytes"] = target.stat().st_size
        (count,), = server.execute("SELECT count(*) FROM public.bench", "bench")
        if count != n:
            raise SystemExit(f"COPY check: the table has {count} rows, want {n}")
        conn.close()
        out["ratio_text"] = out["cdc_rows_per_s"] / out["copy_text_rows_per_s"]
        out["ratio_binary"] = out["cdc_rows_per_s"] / out["copy_binary_rows_per_s"]
        out["load_end"] = _load()
        return out
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the connector's task thread "
                    "(slows it: its rates are not the benchmark's)")
    args = ap.parse_args(argv)
    reason = pg.skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    n = 100_000 if args.quick else args.rows
    if n < 1:
        ap.error("--rows must be at least 1")
    r = run(n, profile=args.profile)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"Machine: {r['machine']}")
    print(f"Load average at start {r['load_start']}, at end {r['load_end']}")
    print(f"| N = {n:,} rows | seconds | rows/s | bytes |")
    print("|---|---:|---:|---:|")
    print(f"| INSERT ... SELECT generate_series (in the CDC time) | {r['insert_s']:.2f} | "
          f"{n / r['insert_s']:,.0f} | |")
    print(f"| CDC: INSERT start to N durable records | {r['cdc_s']:.2f} | {r['cdc_rows_per_s']:,.0f} | "
          f"{r['log_bytes']:,} |")
    print(f"| CDC: ... and the source offset stored | {r['cdc_offsets_s']:.2f} | {n / r['cdc_offsets_s']:,.0f} | |")
    for fmt in ("text", "binary"):
        print(f"| COPY ... TO STDOUT ({fmt}) | {r[f'copy_{fmt}_s']:.2f} | {r[f'copy_{fmt}_rows_per_s']:,.0f} | "
              f"{r[f'copy_{fmt}_bytes']:,} |")
    print(f"Ratio CDC / COPY text: {r['ratio_text']:.3f}; CDC / COPY binary: {r['ratio_binary']:.3f}")
    if r.get("profile"):
        print(r["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
