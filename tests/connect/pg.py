"""A real PostgreSQL server for the CDC tests, and a small loop that does what the runner does.

`PgServer` runs initdb into a fresh directory (wal_level=logical, a few replication slots),
listens on 127.0.0.1 at a free port and on a UNIX socket in the same directory, and stops
with `pg_ctl stop -m immediate`. PostgreSQL refuses to run as root: as root the server runs
as the `postgres` user when it exists (Debian's package creates it), else as `nobody`,
through `runuser`. The superuser is `postgres` with password `secret` (scram-sha-256 on the
port, trust on the socket). `skip_reason()` says why no server can run here.

`drive()` is the runner's contract (embedlog/connect/_data.py) in a few lines: poll, apply
the transforms, convert, produce with acks=all, flush, then store the offsets (a JSON file,
written with rename), then `connector.commit(records)`. `python pg.py CONFIG.json OFFSETS.json
LOGDIR` runs that loop until killed (the kill -9 test).
"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PASSWORD = "secret"


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _run_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    return "?"


def skip_reason() -> str | None:
    if _bindir() is None:
        return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; .ci/run installs it)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (the connect extra)"
    if _run_user() == "?":
        return "running as root and neither a postgres nor a nobody user exists to run the server"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as an unprivileged user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self):
        self.bindir = _bindir()
        self.user = _run_user()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="embedlog-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()

    def _cmd(self, *argv: str) -> list[str]:
        argv = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def start(self) -> PgServer:
        if self.user:
            os.chmod(self.dir, 0o777)
        pw = self.dir / "pw"
        pw.write_text(PASSWORD + "\n")
        os.chmod(pw, 0o644)
        subprocess.run(self._cmd("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(pw),
                                 "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                 "--no-sync"), check=True, capture_output=True, cwd=self.dir)
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write(f"wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
                    f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\nsynchronous_commit = off\n"
                    f"full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 40\n"
                    f"wal_sender_timeout = 60s\n")
        r = subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                                     "-w", "-t", "120", "start"), check=False, capture_output=True, cwd=self.dir)
        if r.returncode != 0:
            log = (self.dir / "server.log").read_text(errors="replace") if (self.dir / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.decode()} {log[-2000:]}")
        return self

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                       check=False, capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, dbname: str = "postgres"):
        import psycopg2
        conn = psycopg2.connect(host=str(self.dir), port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, dbname: str = "postgres", params=None):
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def drop_slot(self, slot: str) -> None:
        """Drop a replication slot a connector is streaming from: terminate its walsender and
        drop it before the connector reconnects (retried until it wins the race)."""
        import psycopg2
        for _ in range(100):
            self.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND active", params=(slot,))
            try:
                self.execute("SELECT pg_drop_replication_slot(%s)", params=(slot,))
                return
            except psycopg2.errors.ObjectInUse:
                time.sleep(0.05)                  # still active: the connector reconnected first
        raise AssertionError(f"replication slot {slot} stayed active")

    def config(self, dbname: str, **extra) -> dict:
        return {"name": "pg", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname": "127.0.0.1", "database.port": str(self.port),
                "database.user": "postgres", "database.password": PASSWORD, "database.dbname": dbname,
                "topic.prefix": "dbserver1", "plugin.name": "pgoutput", "slot.name": f"dbz_{dbname}", **extra}


def fixtures(prefix: str):
    """The `server` (one PostgreSQL per test module) and `db` (a fresh database per test)
    fixtures: `server, db = pg.fixtures("shop")` in a test module."""
    import itertools

    import pytest
    numbers = itertools.count()

    @pytest.fixture(scope="module")
    def server():
        s = PgServer().start()
        yield s
        s.stop()

    @pytest.fixture
    def db(server):
        name = f"{prefix}{next(numbers)}"
        server.execute(f"CREATE DATABASE {name}")
        return name

    return server, db


# ---- the runner's loop, small -------------------------------------------------------------

class OffsetFile:
    """Source offsets as a JSON file {json(partition): offset}, replaced by rename + fsync."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, partition: dict):
        return self.data.get(json.dumps(partition, sort_keys=True))

    def store(self, records) -> None:
        for r in records:
            if r.partition is not None and r.offset is not None:
                self.data[json.dumps(r.partition, sort_keys=True)] = r.offset
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Driver:
    """Runs one connector from a config as the runner will: produce acks=all, store, commit."""

    def __init__(self, config: dict, log_dir, offsets_path):
        from embedlog import Producer
        from embedlog.connect import _configs, _converters, _transforms
        checked = _configs.check(config)
        self.connector = checked.cls()
        self.chain = _transforms.transforms(checked.raw)
        self.keys = _converters.converter(checked.raw, "key")
        self.vals = _converters.converter(checked.raw, "value")
        self.offsets = OffsetFile(offsets_path)
        self.producer = Producer({"bootstrap.servers": f"file://{log_dir}", "acks": "all", "linger.ms": 5})
        self.connector.start(checked.values, self.offsets.get)
        self.written = 0

    def between(self) -> None:
        """Runs after the records are durable and before their offsets are stored."""

    def step(self, timeout: float = 0.5) -> int:
        records = self.connector.poll(timeout)
        if not records:
            return 0
        errors = []
        for r in records:
            t = _apply(self.chain, r)
            if t is None or t.topic is None:
                continue
            self.producer.produce(t.topic, key=self.keys.from_connect(t.key_schema, t.key, topic=t.topic),
                                  value=self.vals.from_connect(t.value_schema, t.value, topic=t.topic),
                                  headers=list(t.headers) or None,
                                  on_delivery=lambda err, msg: err and errors.append(err))
            self.written += 1
        assert self.producer.flush(60) == 0
        assert not errors, errors
        self.between()
        self.offsets.store(records)
        self.connector.commit(records)
        return len(records)

    def run_until(self, predicate, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"connector did not reach the state in {timeout}s (wrote {self.written})")
            self.step()

    def drain(self, quiet: float = 2.0, timeout: float = 120.0) -> None:
        """Poll until nothing arrives for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            if time.monotonic() > deadline:
                raise TimeoutError("connector kept producing records")
            if self.step(0.3):
                last = time.monotonic()

    def close(self) -> None:
        self.connector.stop()
        self.producer.flush(30)


def _apply(chain, record):
    from embedlog.connect import _transforms
    return _transforms.apply_all(chain, record)


def read_topic(log_dir, topic: str, *, timeout: float = 60.0) -> list[tuple]:
    """Every record of a topic as (key, value) decoded from JSON, through the normal Consumer
    (a group of its own, from the earliest offset), up to the high watermarks it finds."""
    from embedlog import AdminClient, Consumer, TopicPartition
    conf = {"bootstrap.servers": f"file://{log_dir}"}
    meta = AdminClient(conf).list_topics().topics.get(topic)
    if meta is None:
        return []
    c = Consumer({**conf, "group.id": f"read-{time.monotonic_ns()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        total = sum(c.get_watermark_offsets(TopicPartition(topic, p))[1] for p in meta.partitions)
        c.subscribe([topic])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < total and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            k, v = msg.key(), msg.value()
            out.append((json.loads(k) if k is not None else None, json.loads(v) if v is not None else None))
        assert len(out) == total, f"read {len(out)} of {total} records of {topic}"
        return out
    finally:
        c.close()


if __name__ == "__main__":          # python pg.py CONFIG.json OFFSETS.json LOGDIR: run until killed
    cfg = json.loads(pathlib.Path(sys.argv[1]).read_text())
    d = Driver(cfg, sys.argv[3], sys.argv[2])
    print("started", flush=True)
    pause = float(os.environ.get("PG_DRIVER_PAUSE", "0"))   # seconds between durable and stored
    if pause:
        def _between():
            print("produced", flush=True)
            time.sleep(pause)
        d.between = _between
    while True:
        n = d.step(0.5)
        if n:
            print("stored", n, flush=True)
