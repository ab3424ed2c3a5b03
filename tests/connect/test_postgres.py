"""PostgreSQL CDC (embedlog/connect/_postgres.py) against a real server started by the tests
(tests/connect/pg.py): snapshot then stream, Debezium's envelopes, filters, schema changes,
the unwrap transform, bad input, driven by pg.Driver (the runner's contract in a few lines, so
a failure points at the connector); test_postgres_runner.py runs it through the runner."""
from __future__ import annotations

import base64
import json
import sys

import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import pg

from embedlog.connect._data import ConnectError

pytestmark = pytest.mark.skipif(pg.skip_reason() is not None, reason=pg.skip_reason() or "")

server, db = pg.fixtures("shop")


def _run(server, db, tmp_path, *, setup=None, changes=None, **config):
    """Start the connector, read the snapshot, run `changes` SQL, read until quiet."""
    if setup:
        server.execute(setup, db)
    d = pg.Driver(server.config(db, **config), tmp_path / "log", tmp_path / "offsets.json")
    try:
        d.drain(quiet=1.0)
        if changes:
            server.execute(changes, db)
            d.drain(quiet=1.5)
    finally:
        d.close()
    return d


def _payloads(log_dir, topic):
    return [(k and k["payload"], v and v["payload"]) for k, v in pg.read_topic(log_dir, topic)]


SETUP = """
CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, qty smallint, price numeric(10,2),
  weight float8, big bigint, paid bool, at timestamp, at_tz timestamptz, day date, doc jsonb, ref uuid, raw bytea);
INSERT INTO public.orders VALUES (1, 'pen', 2, 1.50, 0.25, 9000000000, true, '2024-01-02 03:04:05.5',
  '2024-01-02 03:04:05+02', '2024-01-02', '{"a": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x0102');
"""


def test_snapshot_then_inserts_updates_deletes_with_debezium_envelopes(server, db, tmp_path):
    _run(server, db, tmp_path, setup=SETUP, changes="""
        INSERT INTO public.orders (id, item) VALUES (2, 'ink');
        UPDATE public.orders SET qty = 7 WHERE id = 2;
        DELETE FROM public.orders WHERE id = 1;""")
    got = pg.read_topic(tmp_path / "log", "dbserver1.public.orders")
    ops = [v and v["payload"]["op"] for _, v in got]
    assert ops == ["r", "c", "u", "d", None]
    key, snap = got[0]
    assert key["payload"] == {"id": 1}
    assert key["schema"] == {"type": "struct", "optional": False, "name": "dbserver1.public.orders.Key",
                             "fields": [{"type": "int32", "optional": False, "field": "id"}]}
    after = snap["payload"]["after"]
    assert after == {"id": 1, "item": "pen", "qty": 2, "price": base64.b64encode((150).to_bytes(2, "big")).decode(),
                     "weight": 0.25, "big": 9000000000, "paid": True, "at": 1704164645500000,
                     "at_tz": "2024-01-02T01:04:05Z", "day": 19724, "doc": '{"a": 1}',
                     "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "raw": base64.b64encode(b"\1\2").decode()}
    src = snap["payload"]["source"]
    assert (src["connector"], src["name"], src["db"], src["schema"], src["table"], src["snapshot"]) == \
        ("postgresql", "dbserver1", db, "public", "orders", "last")
    schema = snap["schema"]
    assert schema["name"] == "dbserver1.public.orders.Envelope"
    assert [f["field"] for f in schema["fields"]] == ["before", "after", "source", "op", "ts_ms", "transaction"]
    cols = {f["field"]: f for f in schema["fields"][1]["fields"]}
    assert cols["price"]["name"] == "org.apache.kafka.connect.data.Decimal"
    assert cols["price"]["parameters"] == {"scale": "2", "connect.decimal.precision": "10"}
    assert cols["at"]["name"] == "io.debezium.time.MicroTimestamp"
    assert cols["at_tz"]["name"] == "io.debezium.time.ZonedTimestamp"
    assert cols["doc"]["name"] == "io.debezium.data.Json"
    assert cols["day"]["name"] == "io.debezium.time.Date"
    assert (cols["id"]["optional"], cols["item"]["optional"], cols["qty"]["optional"]) == (False, False, True)

    c, u, d, tomb = (v["payload"] if v else None for _, v in got[1:])
    assert c["before"] is None and c["after"]["id"] == 2 and c["after"]["item"] == "ink" and c["after"]["qty"] is None
    assert c["source"]["snapshot"] == "false" and c["source"]["txId"] > 0 and c["source"]["lsn"] > 0
    assert u["before"] is None and u["after"]["qty"] == 7          # REPLICA IDENTITY DEFAULT: no old row
    assert d["after"] is None and d["before"]["id"] == 1 and d["before"]["item"] == ""   # key only
    assert tomb is None and got[4][0]["payload"] == {"id": 1}
    assert c["source"]["lsn"] < u["source"]["lsn"] < d["source"]["lsn"]


def test_replica_identity_full_gives_the_whole_old_row_and_key_change_is_delete_then_create(server, db, tmp_path):
    _run(server, db, tmp_path, setup="""
        CREATE TABLE t (id int PRIMARY KEY, name text, note text);
        ALTER TABLE t REPLICA IDENTITY FULL;""", changes="""
        INSERT INTO t VALUES (1, 'a', repeat('x', 100000));
        UPDATE t SET name = 'b' WHERE id = 1;
        UPDATE t SET id = 2 WHERE id = 1;""")
    got = _payloads(tmp_path / "log", "dbserver1.public.t")
    assert [v and v["op"] for _, v in got] == ["c", "u", "d", None, "c"]
    u = got[1][1]
    assert u["before"]["name"] == "a" and u["after"]["name"] == "b"
    assert u["before"]["note"] == "x" * 100000          # FULL: the old row is sent whole, TOAST included
    assert [k for k, _ in got[2:]] == [{"id": 1}, {"id": 1}, {"id": 2}]


def test_unchanged_toasted_value_is_debeziums_placeholder(server, db, tmp_path):
    _run(server, db, tmp_path, setup="CREATE TABLE t (id int PRIMARY KEY, n int, body text)", changes="""
        INSERT INTO t VALUES (1, 0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g));
        UPDATE t SET n = 1 WHERE id = 1;""", **{"snapshot.mode": "never"})
    got = _payloads(tmp_path / "log", "dbserver1.public.t")
    assert len(got[0][1]["after"]["body"]) == 64000
    assert got[1][1]["after"] == {"id": 1, "n": 1, "body": "__debezium_unavailable_value"}


def test_no_change_missed_or_doubled_between_snapshot_and_stream(server, db, tmp_path):
    server.execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 500) g",
                   db)
    d = pg.Driver(server.config(db, **{"max.batch.size": "100"}), tmp_path / "log", tmp_path / "offsets.json")
    try:
        d.step()                      # the slot and its snapshot exist; 100 rows read
        server.execute("INSERT INTO t VALUES (501, 1); UPDATE t SET v = 1 WHERE id = 1; DELETE FROM t WHERE id = 2",
                       db)
        d.drain(quiet=2.0)
    finally:
        d.close()
    got = _payloads(tmp_path / "log", "dbserver1.public.t")
    snap = [v["after"]["id"] for _, v in got if v and v["op"] == "r"]
    assert sorted(snap) == list(range(1, 501))                  # as of the slot's creation: v = 0, row 2 there
    assert all(v["after"]["v"] == 0 for _, v in got if v and v["op"] == "r")
    assert [(v["op"], k["id"]) for k, v in got if v and v["op"] != "r"] == [("c", 501), ("u", 1), ("d", 2)]


def test_table_include_list_keeps_only_matching_tables(server, db, tmp_path):
    _run(server, db, tmp_path, setup="""
        CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
        CREATE SCHEMA inv; CREATE TABLE inv.a (id int PRIMARY KEY); INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);""",
         changes="INSERT INTO a VALUES (2); INSERT INTO b VALUES (2); INSERT INTO inv.a VALUES (2);",
         **{"table.include.list": "public.a,inv\\..*,public.nosuchtable"})
    from embedlog import AdminClient
    topics = set(AdminClient({"bootstrap.servers": f"file://{tmp_path / 'log'}"}).list_topics().topics)
    assert {t for t in topics if t.startswith("dbserver1.")} == {"dbserver1.public.a", "dbserver1.inv.a"}
    assert [k["id"] for k, _ in _payloads(tmp_path / "log", "dbserver1.public.a")] == [1, 2]
    assert [k["id"] for k, _ in _payloads(tmp_path / "log", "dbserver1.inv.a")] == [2]


def test_alter_table_add_column_flows_through_with_a_new_schema(server, db, tmp_path):
    _run(server, db, tmp_path, setup="CREATE TABLE t (id int PRIMARY KEY)", changes="""
        INSERT INTO t VALUES (1);
        ALTER TABLE t ADD COLUMN label varchar(20) NOT NULL DEFAULT 'x';
        INSERT INTO t VALUES (2, 'two');""")
    got = pg.read_topic(tmp_path / "log", "dbserver1.public.t")
    first, second = got[0][1], got[1][1]
    assert [f["field"] for f in first["schema"]["fields"][1]["fields"]] == ["id"]
    assert [f["field"] for f in second["schema"]["fields"][1]["fields"]] == ["id", "label"]
    assert second["payload"]["after"] == {"id": 2, "label": "two"}


def test_unwrap_transform_gives_the_row(server, db, tmp_path):
    _run(server, db, tmp_path, setup="CREATE TABLE t (id int PRIMARY KEY, v text)", changes="""
        INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b'; DELETE FROM t;""",
         **{"transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.drop.tombstones": "false", "transforms.unwrap.delete.handling.mode": "rewrite",
            "transforms.unwrap.add.fields": "op,table,lsn"})
    got = _payloads(tmp_path / "log", "dbserver1.public.t")
    rows = [v for _, v in got]
    assert [(r["id"], r["v"], r["__op"], r["__table"], r["__deleted"]) for r in rows[:3]] == \
        [(1, "a", "c", "t", "false"), (1, "b", "u", "t", "false"), (1, None, "d", "t", "true")]
    assert rows[3] is None                                     # drop.tombstones=false keeps it
    assert all(isinstance(r["__lsn"], int) for r in rows[:3])


@pytest.mark.parametrize("case", ["password", "publication", "database"])
def test_bad_input_is_one_clear_error_and_nothing_written(server, db, tmp_path, case):
    server.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)", db)
    extra, words = {
        "password": ({"database.password": "wrong"}, ["password authentication failed", db, "127.0.0.1"]),
        "publication": ({"publication.autocreate.mode": "disabled", "publication.name": "nopub"},
                        ["publication 'nopub' does not exist", db, "disabled"]),
        "database": ({"database.dbname": "nosuchdb"}, ["nosuchdb", "does not exist"]),
    }[case]
    cfg = server.config(db, **extra)
    with pytest.raises(ConnectError) as e:
        pg.Driver(cfg, tmp_path / "log", tmp_path / "offsets.json")
    for w in words:
        assert w in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "offsets.json").exists()
    assert not server.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", params=(f"dbz_{db}",))


def test_a_slot_dropped_mid_stream_is_an_error_naming_it(server, db, tmp_path):
    server.execute("CREATE TABLE t (id int PRIMARY KEY)", db)
    d = pg.Driver(server.config(db), tmp_path / "log", tmp_path / "offsets.json")
    try:
        d.drain(quiet=1.0)
        server.drop_slot(f"dbz_{db}")
        with pytest.raises(ConnectError) as e:
            for _ in range(60):
                d.step(0.5)
        assert f"dbz_{db}" in str(e.value) and "dropped" in str(e.value) and db in str(e.value)
    finally:
        d.close()


def test_config_check_names_the_bad_key():
    from embedlog.connect import _configs
    base = pg.PgServer.config(type("S", (), {"port": 5432})(), "x")
    with pytest.raises(ConnectError, match="snapshot.mode must be one of"):
        _configs.check({**base, "snapshot.mode": "sometimes"})
    with pytest.raises(ConnectError, match="slot.name"):
        _configs.check({**base, "slot.name": "Bad-Name"})
    with pytest.raises(ConnectError, match="did you mean table.include.list"):
        _configs.check({**base, "table.include.lst": "a"})
    assert json.dumps(_configs.check(base).values["table.include.list"]) == "null"


def _slot_lsn(server, db) -> int:
    (text,), = server.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                              params=(f"dbz_{db}",))
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def test_a_transaction_of_10000_rows_then_a_restart_emits_nothing_again(server, db, tmp_path):
    server.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", db)
    cfg = server.config(db, **{"snapshot.mode": "never"})
    d = pg.Driver(cfg, tmp_path / "log", tmp_path / "offsets.json")
    try:
        before = _slot_lsn(server, db)
        server.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 10000) g", db)
        (end,), = server.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn", db)
        d.run_until(lambda: d.written >= 10000)
        d.drain(quiet=1.5)
        assert d.written == 10000
        assert _slot_lsn(server, db) > before      # confirmed only now, after the records were durable
        assert _slot_lsn(server, db) >= int(end) - 200   # past the commit (the insert's own WAL is ~1 MB)
    finally:
        d.close()
    got = _payloads(tmp_path / "log", "dbserver1.public.t")
    assert sorted(k["id"] for k, _ in got) == list(range(1, 10001))
    assert len({v["source"]["txId"] for _, v in got}) == 1
    assert all(v["after"]["v"] for _, v in got)
    stored = json.loads((tmp_path / "offsets.json").read_text())
    assert next(iter(stored.values()))["event"] == 10000
    d2 = pg.Driver(cfg, tmp_path / "log", tmp_path / "offsets.json")          # a clean restart
    try:
        server.execute("INSERT INTO t VALUES (10001, 'x')", db)
        d2.run_until(lambda: d2.written >= 1)
        d2.drain(quiet=1.0)
        assert d2.written == 1
    finally:
        d2.close()


def test_killed_mid_stream_and_restarted_loses_nothing_and_replays_only_past_the_durable_offset(server, db, tmp_path):
    import os
    import signal
    import subprocess
    import threading
    import time

    server.execute("CREATE TABLE t (id int PRIMARY KEY, v int)", db)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(server.config(db, **{"snapshot.mode": "never", "max.batch.size": "300"})))
    offsets, log_dir = tmp_path / "offsets.json", tmp_path / "log"

    def spawn():
        p = subprocess.Popen([sys.executable, pg.__file__, str(cfg_path), str(offsets), str(log_dir)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PG_DRIVER_PAUSE": "0.2"})
        assert p.stdout.readline().strip() == "started"
        return p

    def writer(first, n, big=False):        # single-row transactions (and a 2001-row one in the middle)
        conn = server.connect(db)
        with conn.cursor() as cur:
            for i in range(first, first + n):
                if big and i == first + n // 2:
                    cur.execute("INSERT INTO t SELECT g, 0 FROM generate_series(100000, 102000) g")
                cur.execute("INSERT INTO t VALUES (%s, 0)", (i,))
                cur.execute("UPDATE t SET v = 1 WHERE id = %s", (i,))
        conn.close()

    p = spawn()
    w = threading.Thread(target=writer, args=(1, 400, True))
    w.start()
    stored_lines = 0
    while True:                             # killed after a batch is durable, before its offset is stored
        line = p.stdout.readline()
        assert line, "the connector process ended"
        stored_lines += line.startswith("stored")
        if stored_lines >= 3 and line.startswith("produced"):
            break
    alive_at_kill = w.is_alive()
    p.send_signal(signal.SIGKILL)
    p.wait()
    at_kill = next(iter(json.loads(offsets.read_text()).values()))
    w.join()
    p = spawn()
    writer(1000, 50)
    deadline = time.monotonic() + 120
    expected = 2 * 450 + 2001
    try:
        while time.monotonic() < deadline:
            got = _payloads(log_dir, "dbserver1.public.t")
            if len({(k["id"], v["op"]) for k, v in got}) >= expected:
                break
            time.sleep(1)
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.wait()
    seen = {}
    for k, v in got:
        o = v["source"]
        seen.setdefault((k["id"], v["op"], o["lsn"]), []).append(json.loads(o["sequence"]))
    ids = [i for i in range(1, 401)] + [i for i in range(1000, 1050)]
    want = {(i, op) for i in ids for op in ("c", "u")} | {(i, "c") for i in range(100000, 102001)}
    assert {(i, op) for i, op, _ in seen} == want              # nothing lost
    assert len(seen) == len(want)                              # one LSN per change
    # Each change once past the last durable offset; a change at or before it is never re-sent.
    count = {}
    for _, v in got:
        lsn_commit, lsn = map(int, json.loads(v["source"]["sequence"]))
        count[(lsn_commit, lsn)] = count.get((lsn_commit, lsn), 0) + 1
    durable = (at_kill["lsn_commit"], at_kill["lsn"])
    replayed = [pos for pos, n in count.items() if n > 1]
    assert all(pos > durable for pos in replayed), (durable, sorted(replayed)[:3])
    assert max(count.values()) <= 2
    assert replayed                          # the batch durable but not stored at the kill came again
    assert any(pos <= durable for pos in count) and any(pos > durable for pos in count)
    print(f"kill -9: {len(got)} records, {len(count)} changes, {len(replayed)} replayed past the durable offset, "
          f"writer still running at the kill: {alive_at_kill}")
