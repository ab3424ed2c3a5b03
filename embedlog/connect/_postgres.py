"""PostgreSQL change data capture: Debezium's PostgreSQL connector (pgoutput), in the library.

    {"name": "inventory", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
     "database.hostname": "127.0.0.1", "database.port": "5432", "database.user": "postgres",
     "database.password": "...", "database.dbname": "shop", "topic.prefix": "dbserver1",
     "table.include.list": "public.orders,public.customers"}

How it runs (one task):

1. Connect (psycopg2; TimeZone=UTC, DateStyle=ISO), check or create the publication
   (`publication.autocreate.mode`: all_tables, filtered = only the tables the filters keep,
   disabled = it must exist).
2. No stored offset (or a snapshot that never finished) and snapshot.mode=initial: create
   the slot with `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput EXPORT_SNAPSHOT` and read every
   kept table in a REPEATABLE READ transaction that imports that snapshot (`SET TRANSACTION
   SNAPSHOT`): the rows as of the slot's consistent point, op "r". The stream then starts at
   that point, so no change is missed or seen twice. initial_only reads a plain snapshot and
   streams nothing; never creates the slot if missing and only streams.
3. Streaming: `START_REPLICATION SLOT ... (proto_version '1', publication_names '...')`;
   pgoutput's messages (`_pgoutput`) become one record per change on
   `<topic.prefix>.<schema>.<table>`, keyed by the primary key, with Debezium's envelope; a
   delete is followed by a tombstone (tombstones.on.delete); an update that changes the key
   is a delete (+ tombstone) of the old key and a create of the new, as Debezium emits it.
4. Offsets (source partition {"server": topic.prefix}): a change's offset is {"lsn_commit":
   its transaction's commit LSN, "lsn": its own LSN, "txId", "ts_usec", "event": its place in
   the transaction (1, 2, ...)}. pgoutput v1 sends each transaction whole, in commit order,
   so (lsn_commit, event) orders every change.
5. `commit(records)` (the runner made them durable, acks=all, and stored their offsets) sends
   a standby status update: flush = the end LSN of the last transaction wholly durable, or
   the commit LSN of a transaction durable only in part (PostgreSQL replays a transaction
   whose commit record is at or after the confirmed LSN, so that one comes again whole).
   After a crash the slot replays from there and every change at or before the stored
   (lsn_commit, event) is skipped: at least once, never lost, each change once past the
   last durable offset. With nothing outstanding, the position of the last message read
   (or a keepalive's) is confirmed, so a slot whose tables are quiet does not hold WAL.

Column types are mapped as Debezium maps them (`_pgtypes`), a constant DEFAULT becoming the
field's default in the schema (so ADD COLUMN ... DEFAULT is a compatible Avro change with the
registry converters, `_registryconv`); the key is the primary key
(null for a table without one); `before` is the whole old row only with REPLICA IDENTITY
FULL, else the key columns (deletes) or null (updates). TRUNCATE is skipped unless
skipped.operations leaves "t" out (then op "t" events, no key). A new Relation message
(ALTER TABLE ...) gives later changes their new schema.
"""
from __future__ import annotations

import re
import select
import time

from . import _pgoutput as pgo
from ._configs import Key
from ._data import ConnectError, Connector, SourceRecord, field, primitive, struct
from ._pgtypes import column_type, zero

CONNECTOR = "postgresql"
VERSION = "2.7.0.Final"            # the Debezium release whose event shape this follows
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

CONFIG = {
    "database.hostname": Key(required=True, doc="PostgreSQL's host name, IP address or UNIX socket directory"),
    "database.port": Key("5432", "int", doc="PostgreSQL's port"),
    "database.user": Key(required=True, doc="a user with REPLICATION and SELECT on the captured tables"),
    "database.password": Key("", "password", doc="that user's password"),
    "database.dbname": Key(required=True, doc="the database to capture"),
    "topic.prefix": Key(required=True, doc="topics are <topic.prefix>.<schema>.<table>; the source partition"),
    "plugin.name": Key("pgoutput", choices=("pgoutput",), doc="the logical decoding plugin (pgoutput only)"),
    "slot.name": Key("debezium", doc="the logical replication slot"),
    "slot.drop.on.stop": Key("false", "bool", doc="drop the slot when the connector stops (tests only)"),
    "publication.name": Key("dbz_publication", doc="the publication pgoutput streams"),
    "publication.autocreate.mode": Key("all_tables", choices=("all_tables", "filtered", "disabled"),
                                       doc="create a missing publication for all tables, for the filtered "
                                           "tables, or never (it must exist)"),
    "table.include.list": Key(None, "list", doc="regular expressions of schema.table to capture (all if unset)"),
    "table.exclude.list": Key(None, "list", doc="regular expressions of schema.table not to capture"),
    "snapshot.mode": Key("initial", choices=("initial", "never", "initial_only"),
                         doc="read the tables' rows first (initial), never, or only that (initial_only)"),
    "tombstones.on.delete": Key("true", "bool", doc="a tombstone (null value) follows each delete"),
    "decimal.handling.mode": Key("precise", choices=("precise", "string", "double"),
                                 doc="numeric as Connect Decimal bytes (precise), string or double"),
    "skipped.operations": Key("t", "list", doc="operations not emitted: c, u, d, t (truncate); none for all"),
    "max.batch.size": Key("2048", "int", doc="at most this many records per poll"),
    "status.update.interval.ms": Key("10000", "int", doc="standby status updates at least this often"),
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Table:
    """One captured table: its topic, schemas and the text -> value function of each column."""

    def __init__(self, prefix: str, namespace: str, name: str, columns, notnull: set, pk: list,
                 decimal_mode: str, full_identity: bool, defaults: dict | None = None):
        self.namespace, self.name = namespace, name
        self.topic = f"{prefix}.{namespace}.{name}"
        self.full_identity = full_identity
        self.names = [c[0] for c in columns]
        types = [column_type(oid, typmod, optional=cname not in notnull and cname not in pk,
                             decimal_mode=decimal_mode) for cname, oid, typmod in columns]
        for t, cname in zip(types, self.names):
            t.schema = _with_default(t.schema, t.convert, (defaults or {}).get(cname))
        self.converts = [t.convert for t in types]
        self.placeholders = [t.placeholder for t in types]
        self._cols = list(zip(self.names, [_from_bytes(t.convert) for t in types], self.placeholders))
        self.zeros = [None if t.schema["optional"] else zero(t.schema) for t in types]
        self.pk = [self.names.index(k) for k in pk if k in self.names]
        self._pk_names = [self.names[i] for i in self.pk]
        self.value_schema = struct(f"{self.topic}.Value", [field(n, t.schema) for n, t in zip(self.names, types)],
                                   optional=True)
        self.key_schema = (struct(f"{self.topic}.Key", [field(self.names[i], {**types[i].schema, "optional": False})
                                                         for i in self.pk]) if self.pk else None)
        self.envelope_schema = struct(f"{self.topic}.Envelope", [
            field("before", self.value_schema), field("after", self.value_schema), field("source", SOURCE_SCHEMA),
            field("op", primitive("string", optional=False)), field("ts_ms", primitive("int64")),
            field("transaction", TRANSACTION_SCHEMA)], version=1)

    def row(self, values, *, key_only: bool = False) -> dict:
        out = {}
        for i, (name, v) in enumerate(zip(self.names, values)):
            if v is None:
                out[name] = self.zeros[i] if key_only else None
            elif v is pgo.UNCHANGED:
                out[name] = self.placeholders[i]
            else:
                out[name] = self.converts[i](v.decode() if isinstance(v, bytes) else v)
        return out

    def row_bytes(self, values) -> dict:
        """row() of pgoutput's tuple (bytes), each column by its decoder built once."""
        if len(values) != len(self._cols):
            return self.row(values)
        return {name: (dec(v) if v.__class__ is bytes else None if v is None else ph)
                for (name, dec, ph), v in zip(self._cols, values)}

    def key(self, row: dict | None):
        if row is None or not self.pk:
            return None
        return {name: row[name] for name in self._pk_names}


def _from_bytes(convert):
    """A column's text -> value function as a bytes -> value one: int and float read bytes
    themselves, a string is the text decoded, anything else gets the text."""
    if convert is int or convert is float:
        return convert
    if convert is str:
        return _utf8
    return lambda b: convert(b.decode())


_utf8 = bytes.decode


SOURCE_SCHEMA = struct("io.debezium.connector.postgresql.Source", [
    field("version", primitive("string", optional=False)), field("connector", primitive("string", optional=False)),
    field("name", primitive("string", optional=False)), field("ts_ms", primitive("int64", optional=False)),
    field("snapshot", primitive("string", name="io.debezium.data.Enum", version=1,
                                parameters={"allowed": "true,last,false,incremental"}, default="false")),
    field("db", primitive("string", optional=False)), field("sequence", primitive("string")),
    field("schema", primitive("string", optional=False)), field("table", primitive("string", optional=False)),
    field("txId", primitive("int64")), field("lsn", primitive("int64")), field("xmin", primitive("int64"))])
TRANSACTION_SCHEMA = struct("event.block", [
    field("id", primitive("string", optional=False)), field("total_order", primitive("int64", optional=False)),
    field("data_collection_order", primitive("int64", optional=False))], optional=True, version=1)


class PostgresConnector(Connector):
    kind = "source"
    CONFIG = CONFIG

    @classmethod
    def check(cls, values: dict) -> None:
        if values["table.include.list"] and values["table.exclude.list"]:
            raise ConnectError("table.include.list and table.exclude.list may not both be set")
        for key in ("table.include.list", "table.exclude.list"):
            for rx in values[key] or ():
                try:
                    re.compile(rx)
                except re.error as e:
                    raise ConnectError(f"{key}: {rx!r} is not a regular expression ({e})") from None
        if not re.fullmatch(r"[a-z0-9_]{1,63}", values["slot.name"]):
            raise ConnectError(f"slot.name {values['slot.name']!r}: PostgreSQL's slot names are lower-case "
                               f"letters, digits and '_' (at most 63)")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", values["topic.prefix"]):
            raise ConnectError(f"topic.prefix {values['topic.prefix']!r}: use letters, digits, '.', '_' and '-'")
        bad = set(values["skipped.operations"]) - {"c", "u", "d", "t", "none"}
        if bad:
            raise ConnectError(f"skipped.operations: unknown operation(s) {', '.join(sorted(bad))} (c, u, d, t, none)")

    # ---- start -------------------------------------------------------------------------

    def start(self, values: dict, offsets) -> None:
        import psycopg2
        import psycopg2.extras
        self._pg, self._extras = psycopg2, psycopg2.extras
        self.check(values)
        self.v = values
        self.prefix = values["topic.prefix"]
        self.db, self.slot, self.pub = values["database.dbname"], values["slot.name"], values["publication.name"]
        self.where = f"database {self.db!r} at {values['database.hostname']}:{values['database.port']}"
        self.partition = {"server": self.prefix}
        ops = set(values["skipped.operations"]) - {"none"}
        self.skipped = ops
        self._include = [re.compile(rx, re.IGNORECASE) for rx in values["table.include.list"] or ()]
        self._exclude = [re.compile(rx, re.IGNORECASE) for rx in values["table.exclude.list"] or ()]
        self._meta = self._connect()
        self._repl = self._cur = None
        self._snapshot = None                 # (connection, tables left, cursor, table, offset, ts) while reading
        self._streaming = False
        self._tables: dict[int, _Table | None] = {}
        self._tx: pgo.Begin | None = None
        self._event = 0
        self._tx_end: dict[int, tuple[int, int]] = {}     # commit LSN -> (events, end LSN), for commit()
        self._read_lsn = 0                    # every message before this was read
        self._emitted = self._durable = None  # (lsn_commit, event) of the last record returned / made durable
        self._last_feedback = 0.0
        try:
            self._publication()
            stored = offsets(self.partition)
            mode = values["snapshot.mode"]
            if stored and not stored.get("snapshot"):
                self._skip = (stored.get("lsn_commit", 0), stored.get("event", 0))
                if mode != "initial_only":
                    self._start_stream(resume=stored)
            elif mode == "never":
                self._skip = (0, 0)
                self._start_stream(resume=None)
            else:
                self._skip = (0, 0)
                self._start_snapshot(with_slot=mode == "initial")
        except BaseException:
            self.stop()
            raise

    def _connect(self, replication: bool = False):
        v = self.v
        kw = {"host": v["database.hostname"], "port": v["database.port"], "user": v["database.user"],
              "password": v["database.password"] or None, "dbname": self.db, "connect_timeout": 30,
              "options": "-c TimeZone=UTC -c DateStyle=ISO -c bytea_output=hex -c extra_float_digits=3",
              "application_name": f"embedlog-{self.prefix}"}
        if replication:
            kw["connection_factory"] = self._extras.LogicalReplicationConnection
        try:
            conn = self._pg.connect(**kw)
        except self._pg.Error as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConnectError(f"cannot connect to PostgreSQL {self.where} as {v['database.user']!r}: {msg}") from None
        if not replication:
            conn.autocommit = True
        return conn

    def _query(self, sql: str, params=()):
        with self._meta.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _keeps(self, schema: str, table: str) -> bool:
        if schema in _SYSTEM_SCHEMAS:
            return False
        name = f"{schema}.{table}"
        if self._include:
            return any(rx.fullmatch(name) for rx in self._include)
        return not any(rx.fullmatch(name) for rx in self._exclude)

    def _user_tables(self) -> list[tuple[str, str]]:
        rows = self._query("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1, 2")
        return [(s, t) for s, t in rows if self._keeps(s, t)]

    def _publication(self) -> None:
        mode = self.v["publication.autocreate.mode"]
        found = self._query("SELECT puballtables FROM pg_publication WHERE pubname = %s", (self.pub,))
        tables = ", ".join(f"{_ident(s)}.{_ident(t)}" for s, t in self._user_tables())
        if not found:
            if mode == "disabled":
                raise ConnectError(f"publication {self.pub!r} does not exist in {self.where} and "
                                   f"publication.autocreate.mode is disabled: CREATE PUBLICATION {self.pub} "
                                   f"FOR ALL TABLES (or for the captured tables) first")
            sql = f"CREATE PUBLICATION {_ident(self.pub)}"
            if mode == "all_tables":
                sql += " FOR ALL TABLES"
            elif tables:
                sql += f" FOR TABLE {tables}"
            try:
                self._query(sql)
            except self._pg.Error as e:
                raise ConnectError(f"cannot create publication {self.pub!r} in {self.where}: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        elif mode == "filtered" and not found[0][0] and tables:
            self._query(f"ALTER PUBLICATION {_ident(self.pub)} SET TABLE {tables}")

    def _slot_row(self):
        rows = self._query("SELECT plugin, active, confirmed_flush_lsn, database FROM pg_replication_slots "
                           "WHERE slot_name = %s", (self.slot,))
        if rows and rows[0][3] != self.db:
            raise ConnectError(f"replication slot {self.slot!r} on {self.where.split(' at ')[1]} belongs to "
                               f"database {rows[0][3]!r}, not {self.db!r}: set slot.name (one slot per connector)")
        return rows[0] if rows else None

    # ---- snapshot ----------------------------------------------------------------------

    def _start_snapshot(self, *, with_slot: bool) -> None:
        snap_name = lsn = None
        if with_slot:
            row = self._slot_row()
            if row is not None:
                if row[1]:
                    raise ConnectError(f"replication slot {self.slot!r} in {self.where} is in use by another "
                                       f"process; a snapshot needs it re-created")
                # No durable offset yet: what the slot holds is older than the new snapshot.
                self._query("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            self._repl = self._connect(replication=True)
            self._cur = self._repl.cursor()
            try:
                self._cur.execute(f"CREATE_REPLICATION_SLOT {_ident(self.slot)} LOGICAL pgoutput EXPORT_SNAPSHOT")
            except self._pg.Error as e:
                raise ConnectError(f"cannot create replication slot {self.slot!r} in {self.where}: "
                                   f"{str(e).strip().splitlines()[0]}") from None
            _, consistent, snap_name, _ = self._cur.fetchone()
            lsn = _lsn(consistent)
        conn = self._connect()
        conn.autocommit = False
        cur = conn.cursor()
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if snap_name:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snap_name,))
        cur.execute("SELECT txid_snapshot_xmin(txid_current_snapshot())")
        xmin = cur.fetchone()[0]
        tables = self._user_tables()
        ts_us = int(time.time() * 1_000_000)
        offset = {"lsn": lsn, "txId": xmin, "ts_usec": ts_us, "snapshot": True, "last_snapshot_record": False}
        self._snapshot = {"conn": conn, "tables": tables, "cursor": None, "table": None, "offset": offset,
                          "ts_ms": ts_us // 1000, "with_slot": with_slot}

    def _snapshot_table(self, conn, schema: str, name: str) -> tuple[_Table, object]:
        cur = conn.cursor()
        cur.execute("SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull FROM pg_attribute a "
                    "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    (f"{_ident(schema)}.{_ident(name)}",))
        cols = cur.fetchall()
        pk, full = self._key_of(f"{_ident(schema)}.{_ident(name)}", cur)
        table = _Table(self.prefix, schema, name, [(c[0], c[1], c[2]) for c in cols], {c[0] for c in cols if c[3]},
                       pk, self.v["decimal.handling.mode"], full, _defaults(f"{_ident(schema)}.{_ident(name)}", cur))
        select_list = ", ".join(f"{_ident(c[0])}::text" for c in cols) or "NULL"
        rows = conn.cursor(name=f"embedlog_snapshot_{len(self._snapshot['tables'])}")
        rows.itersize = self.v["max.batch.size"]
        rows.execute(f"SELECT {select_list} FROM {_ident(schema)}.{_ident(name)}")
        return table, rows

    def _key_of(self, regclass: str, cur) -> tuple[list[str], bool]:
        cur.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                    "ORDER BY array_position(i.indkey, a.attnum)", (regclass,))
        pk = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (regclass,))
        return pk, cur.fetchone()[0] == "f"

    def _poll_snapshot(self) -> list[SourceRecord]:
        s = self._snapshot
        out = []
        n = self.v["max.batch.size"]
        while len(out) < n:
            if s["cursor"] is None:
                if not s["tables"]:
                    return out + self._finish_snapshot()
                schema, name = s["tables"].pop(0)
                s["table"], s["cursor"] = self._snapshot_table(s["conn"], schema, name)
            want = n - len(out)
            rows = s["cursor"].fetchmany(want)
            table = s["table"]
            for row in rows:
                out.append(self._record(table, "r", None, table.row(row), s["offset"], s["ts_ms"], "true",
                                        txid=s["offset"]["txId"], lsn=s["offset"]["lsn"], seq=None))
            if len(rows) < want:
                s["cursor"].close()
                s["cursor"] = None
                if not s["tables"] and out:
                    last = out[-1]
                    last.value["source"]["snapshot"] = "last"
        return out

    def _finish_snapshot(self) -> list[SourceRecord]:
        s, self._snapshot = self._snapshot, None
        s["conn"].rollback()
        s["conn"].close()
        done = {"lsn": s["offset"]["lsn"], "txId": s["offset"]["txId"], "ts_usec": s["offset"]["ts_usec"],
                "lsn_commit": 0, "event": 0, "snapshot_completed": True}
        if s["with_slot"]:
            self._start_stream(resume=None, created=True)
        return [SourceRecord(None, None, None, partition=self.partition, offset=done)]

    # ---- streaming ---------------------------------------------------------------------

    def _start_stream(self, *, resume: dict | None, created: bool = False) -> None:
        if not created:
            row = self._slot_row()
            if row is None:
                if resume is not None:
                    raise ConnectError(f"replication slot {self.slot!r} does not exist in {self.where}, but the "
                                       f"stored offset (LSN {_lsn_text(resume.get('lsn_commit') or resume.get('lsn'))})"
                                       f" expects it: it was dropped, and changes since are lost to it; delete "
                                       f"the connector's offsets to snapshot again")
                self._repl = self._connect(replication=True)
                self._cur = self._repl.cursor()
                try:
                    self._cur.execute(f"CREATE_REPLICATION_SLOT {_ident(self.slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT")
                    self._cur.fetchall()
                except self._pg.Error as e:
                    raise ConnectError(f"cannot create replication slot {self.slot!r} in {self.where}: "
                                       f"{str(e).strip().splitlines()[0]}") from None
            elif row[0] != "pgoutput":
                raise ConnectError(f"replication slot {self.slot!r} in {self.where} uses plugin {row[0]!r}, not pgoutput")
        if self._repl is None:
            self._repl = self._connect(replication=True)
            self._cur = self._repl.cursor()
        try:
            self._cur.start_replication(slot_name=self.slot, decode=False, start_lsn=0,
                                        options={"proto_version": "1", "publication_names": self.pub},
                                        status_interval=max(1, self.v["status.update.interval.ms"] // 1000))
        except self._pg.Error as e:
            raise ConnectError(f"cannot stream from replication slot {self.slot!r} (publication {self.pub!r}) in "
                               f"{self.where}: {str(e).strip().splitlines()[0]}") from None
        self._streaming = True
        self._tx = None

    def poll(self, timeout: float) -> list[SourceRecord]:
        if self._snapshot is not None:
            return self._poll_snapshot()
        if not self._streaming:
            time.sleep(min(timeout, 0.5))
            return []
        out: list[SourceRecord] = []
        deadline = time.monotonic() + timeout
        limit = self.v["max.batch.size"]
        while len(out) < limit:
            try:
                msg = self._cur.read_message()
                if msg is None:
                    self._idle_feedback()
                    if out:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    # poll, not select: a process holding more than 1024 descriptors (a
                    # worker with many partitions open) is past select()'s FD_SETSIZE.
                    waiter = select.poll()
                    waiter.register(self._cur.fileno(), select.POLLIN)
                    waiter.poll(1000 * min(left, 1.0))
                    continue
            except self._pg.Error as e:
                self._lost(e)
                continue
            self._read_lsn = max(self._read_lsn, msg.data_start)
            self._message(pgo.decode(msg.payload), msg.data_start, out)
        return out

    def _lost(self, error) -> None:
        """The replication connection broke: a dropped slot is an error; anything else, reconnect
        and go on after the last record returned."""
        _close(self._repl)
        self._repl = self._cur = None
        self._streaming = False
        try:
            if self._meta.closed:
                self._meta = self._connect()
            row = self._slot_row()
        except (self._pg.Error, ConnectError) as e:
            raise ConnectError(f"lost the replication connection to {self.where} (slot {self.slot!r}) and cannot "
                               f"reconnect: {str(e).strip().splitlines()[0]}") from None
        if row is None:
            raise self._dropped()
        if self._emitted is not None:
            self._skip = max(self._skip, self._emitted)
        for attempt in range(20):             # the old walsender may still hold the slot a moment
            time.sleep(0.5)
            try:
                self._start_stream(resume={"lsn": 0})
                return
            except ConnectError:
                if self._slot_row() is None:
                    raise self._dropped() from None
                if attempt == 19:
                    raise
                self._repl = self._cur = None

    def _dropped(self) -> ConnectError:
        lsn = self._durable[0] if self._durable else 0
        since = f"after LSN {_lsn_text(lsn)}" if lsn else "since the snapshot"
        return ConnectError(f"replication slot {self.slot!r} was dropped from {self.where} while streaming "
                            f"(publication {self.pub!r}); the changes {since} are lost to it")

    def _message(self, m, lsn: int, out: list) -> None:
        if isinstance(m, pgo.Begin):
            self._tx, self._event = m, 0
        elif isinstance(m, pgo.Commit):
            self._tx_end[m.commit_lsn] = (self._event, m.end_lsn)
            self._read_lsn = max(self._read_lsn, m.end_lsn)
            self._tx = None
        elif isinstance(m, pgo.Relation):
            self._relation(m)
        elif isinstance(m, (pgo.Insert, pgo.Update, pgo.Delete)):
            self._event += 1
            table = self._tables.get(m.relid)
            pos = (self._tx.final_lsn, self._event)
            if table is None or pos <= self._skip:
                return
            self._change(table, m, lsn, pos, out)
        elif isinstance(m, pgo.Truncate):
            self._event += 1
            pos = (self._tx.final_lsn, self._event)
            if "t" in self.skipped or pos <= self._skip:
                return
            for relid in m.relids:
                table = self._tables.get(relid)
                if table is not None:
                    out.append(self._record(table, "t", None, None, self._offset(pos, lsn), self._tx_ms(), "false",
                                            txid=self._tx.xid, lsn=lsn, seq=None, key=False))
                    self._emitted = pos

    def _relation(self, m: pgo.Relation) -> None:
        if not self._keeps(m.namespace, m.name):
            self._tables[m.relid] = None
            return
        reg = f"{_ident(m.namespace)}.{_ident(m.name)}"
        with self._meta.cursor() as cur:
            try:
                pk, _ = self._key_of(reg, cur)
                cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                            "AND attnotnull AND NOT attisdropped", (reg,))
                notnull = {r[0] for r in cur.fetchall()}
                defaults = _defaults(reg, cur)
            except self._pg.Error:            # dropped since: what the message says is all there is
                pk = [c.name for c in m.columns if c.flags & 1]
                notnull, defaults = set(), {}
        self._tables[m.relid] = _Table(self.prefix, m.namespace, m.name,
                                       [(c.name, c.type_oid, c.typmod) for c in m.columns], notnull, pk,
                                       self.v["decimal.handling.mode"], m.replica_identity == "f", defaults)

    def _offset(self, pos, lsn: int) -> dict:
        return {"lsn_commit": pos[0], "lsn": lsn, "txId": self._tx.xid, "ts_usec": self._tx.commit_ts_us,
                "event": pos[1]}

    def _tx_ms(self) -> int:
        return self._tx.commit_ts_us // 1000

    def _change(self, table: _Table, m, lsn: int, pos, out: list) -> None:
        offset = self._offset(pos, lsn)
        ts, txid = self._tx_ms(), self._tx.xid
        seq = f'["{pos[0]}", "{lsn}"]'                 # json.dumps([str(commit LSN), str(LSN)])

        def emit(op, before, after):
            out.append(self._record(table, op, before, after, offset, ts, "false", txid=txid, lsn=lsn, seq=seq))
            if op == "d" and self.v["tombstones.on.delete"]:
                out.append(SourceRecord(table.topic, out[-1].key, None, table.key_schema, None, self.partition,
                                        offset))
        if isinstance(m, pgo.Insert):
            if "c" not in self.skipped:
                emit("c", None, table.row_bytes(m.new))
        elif isinstance(m, pgo.Delete):
            if "d" not in self.skipped:
                emit("d", table.row(m.old, key_only=m.old_kind == "K"), None)
        else:
            after = table.row_bytes(m.new)
            before = (None if m.old is None else table.row(m.old, key_only=True) if m.old_kind == "K"
                      else table.row_bytes(m.old))
            if before is not None and table.pk and table.key(before) != table.key(after):
                if "d" not in self.skipped:
                    emit("d", before, None)
                if "c" not in self.skipped:
                    emit("c", None, after)
            elif "u" not in self.skipped:
                emit("u", before if m.old_kind == "O" else None, after)
        self._emitted = pos

    def _record(self, table: _Table, op: str, before, after, offset, ts_ms: int, snapshot: str, *, txid, lsn, seq,
                key: bool = True) -> SourceRecord:
        source = {"version": VERSION, "connector": CONNECTOR, "name": self.prefix, "ts_ms": ts_ms,
                  "snapshot": snapshot, "db": self.db, "sequence": seq, "schema": table.namespace,
                  "table": table.name, "txId": txid, "lsn": lsn, "xmin": None}
        value = {"before": before, "after": after, "source": source, "op": op,
                 "ts_ms": int(time.time() * 1000), "transaction": None}
        k = table.key(after if after is not None else before) if key else None
        return SourceRecord(table.topic, k, value, table.key_schema if key else None, table.envelope_schema,
                            self.partition, offset)

    # ---- acknowledgements ----------------------------------------------------------------

    def commit(self, records: list[SourceRecord]) -> None:
        best = None
        for r in records:
            o = r.offset
            if o and "event" in o and o.get("lsn_commit"):
                p = (o["lsn_commit"], o["event"])
                if best is None or p > best:
                    best = p
        if best is None or self._cur is None:
            return
        self._durable = best if self._durable is None else max(self._durable, best)
        self._feedback()

    def _flush_lsn(self) -> int:
        if self._durable is None:
            return 0
        lsn_commit, event = self._durable
        if self._emitted == self._durable and self._tx is None:
            return self._read_lsn            # nothing outstanding: everything read is done with
        events, end = self._tx_end.get(lsn_commit, (None, None))
        return end if events == event else lsn_commit

    def _feedback(self) -> None:
        lsn = self._flush_lsn()
        if lsn:
            for k in [k for k in self._tx_end if k < (self._durable[0] if self._durable else 0)]:
                del self._tx_end[k]
            try:
                self._cur.send_feedback(write_lsn=lsn, flush_lsn=lsn, apply_lsn=lsn, force=True)
            except self._pg.Error:
                pass                           # the next poll notices a broken connection
        self._last_feedback = time.monotonic()

    def _idle_feedback(self) -> None:
        """No message waiting: with every record returned durable, confirm what was read (and,
        between transactions, the server's keepalive position)."""
        if self._tx is not None or self._emitted != self._durable:
            return
        if time.monotonic() - self._last_feedback < 1.0:
            return
        wal_end = getattr(self._cur, "wal_end", 0) or 0
        self._read_lsn = max(self._read_lsn, wal_end)
        if self._durable is None:
            self._durable = self._emitted = (0, 0)
        self._feedback()

    def stop(self) -> None:
        for conn in (getattr(self, "_repl", None), (self._snapshot or {}).get("conn") if getattr(
                self, "_snapshot", None) else None):
            _close(conn)
        self._repl = self._cur = None
        self._streaming = False
        meta = getattr(self, "_meta", None)
        if meta is not None and not meta.closed:
            if getattr(self, "v", {}).get("slot.drop.on.stop"):
                try:
                    self._query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                "WHERE slot_name = %s AND NOT active", (self.slot,))
                except self._pg.Error:
                    pass
            meta.close()


PostgresSource = PostgresConnector


_LITERAL = re.compile(r"'((?:[^']|'')*)'(?:::[\w .\[\]\"()]+)?")
_NUMBER = re.compile(r"\(?(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\)?(?:::[\w .()]+)?")


def _defaults(regclass: str, cur) -> dict[str, str]:
    """The columns whose DEFAULT is a constant, with its text (what PostgreSQL would store):
    Debezium puts those defaults in the schema, so ADD COLUMN ... NOT NULL DEFAULT 'x' is a
    compatible change for the registry. Other defaults (now(), nextval(...)) are left out."""
    cur.execute("SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
                "ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = %s::regclass "
                "AND NOT a.attisdropped AND a.attgenerated = ''", (regclass,))
    out = {}
    for name, expr in cur.fetchall():
        m = _LITERAL.fullmatch(expr)
        if m:
            out[name] = m.group(1).replace("''", "'")
        elif _NUMBER.fullmatch(expr):
            out[name] = _NUMBER.fullmatch(expr).group(1)
        elif expr in ("true", "false"):
            out[name] = expr
    return out


def _with_default(schema: dict, convert, text: str | None) -> dict:
    if text is None:
        return schema
    try:
        value = convert(text)
    except (ValueError, ArithmeticError):
        return schema
    if isinstance(value, (bytes, dict)):
        return schema                      # bytes/decimal defaults: not in the schema here
    return {**schema, "default": value}


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _close(conn) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection; the error that broke it is reported
        return
