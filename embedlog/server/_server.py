"""`embedlog serve`: Kafka's binary protocol on a TCP port over a log directory.

One asyncio event loop (standard library) owns the sockets; every storage call that
can block (locks, fdatasync, group files) runs in a thread pool, so a slow disk or a
long-polling fetch never holds up another connection. Each connection is answered in
request order, one request at a time, as Kafka does; acks=0 produces get no answer.

A fetch that finds less than min_bytes waits up to max_wait_ms for an append to any
partition of the directory, by any process: one watcher thread sleeps on the
directory's `.notify` futex and wakes the waiting fetches on the loop.

Frames larger than `max_request_bytes` (Kafka's socket.request.max.bytes, 100 MiB) or
with a header that does not parse close that connection only; a body that does not
parse, an API or a version not served, gets Kafka's error answer for that API.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import threading
import time

from ..storage._log import open_log
from . import _protocol as P
from ._control import ControlPlane
from ._coordinator import Coordinator
from ._data import DataPlane, new_cluster_id
from ._schema import DecodeError

log_ = logging.getLogger("embedlog.server")

MAX_REQUEST_BYTES = 104857600
# Kafka's connections.max.idle.ms (10 minutes).
IDLE_TIMEOUT_MS = 600_000
# Partitions one topic may have when created or grown over the wire. Kafka's own bound is
# int32, but here each partition is a folder with files on one machine: a CreateTopics of
# 2**31 partitions from any client would fill the disk with folders. --max-partitions.
MAX_PARTITIONS = 10_000


def parse_hostport(value: str, default_port: int = 9092) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected HOST:PORT, not {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    host = host.strip("[]")
    try:
        n = int(port)
    except ValueError:
        raise ValueError(f"port of {value!r} is not a number") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"port of {value!r} is out of range")
    return host or "127.0.0.1", n


def _raise_fd_limit():
    """Many idle clients: lift the soft descriptor limit to the hard one."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


class _Conn:
    __slots__ = ("task", "busy", "writer", "peer", "last_active")

    def __init__(self, writer, peer):
        self.task = None
        self.busy = False
        self.writer = writer
        self.peer = peer
        self.last_active = time.monotonic()


class Broker:
    """The server's state: the open log, the coordinator, the handlers."""

    node_id = 0

    def __init__(self, path, *, host: str = "127.0.0.1", port: int = 9092, advertise: str | None = None,
                 auto_create_topics: bool = True, default_partitions: int = 1,
                 max_request_bytes: int = MAX_REQUEST_BYTES, max_partitions: int = MAX_PARTITIONS,
                 idle_timeout_ms: int = IDLE_TIMEOUT_MS, workers: int = 32, log=None):
        self.owns_log = log is None
        self.log = open_log(path) if log is None else log
        self.path = self.log.path
        self.host, self.port = host, port
        self.advertise = advertise
        self.auto_create = auto_create_topics
        self.default_partitions = default_partitions
        self.max_request_bytes = max_request_bytes
        self.max_partitions = max_partitions
        self.idle_timeout_ms = idle_timeout_ms
        self.cluster_id = new_cluster_id(self.path)
        self.coordinator = Coordinator(self.log)
        self.data = DataPlane(self)
        self.control = ControlPlane(self)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embedlog-serve")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._conns: set[_Conn] = set()
        self._waiters: set[asyncio.Future] = set()
        self._closing = False
        self._watcher = None
        self._stop_watch = threading.Event()
        self.stats = {"connections": 0, "requests": 0, "bad_frames": 0, "errors": 0, "idle_closed": 0}
        self._handlers = {
            0: self._produce, 1: self._fetch, 2: self._sync(self.data.list_offsets),
            3: self._sync(self.data.metadata), 8: self._sync(self.control.offset_commit),
            9: self._sync(self.control.offset_fetch), 10: self._find_coordinator, 11: self._join_group,
            12: self._heartbeat, 13: self._leave_group, 14: self._sync_group,
            15: self._sync(self.control.describe_groups), 16: self._sync(self.control.list_groups),
            18: self._api_versions, 19: self._sync(self.control.create_topics),
            20: self._sync(self.control.delete_topics), 21: self._sync(self.control.delete_records),
            22: self._sync(self.data.init_producer_id), 32: self._sync(self.control.describe_configs),
            33: self._sync(self.control.alter_configs), 37: self._sync(self.control.create_partitions),
            42: self._sync(self.control.delete_groups), 44: self._sync(self.control.incremental_alter_configs),
            47: self._sync(self.control.offset_delete), 60: self._sync(self.control.describe_cluster),
        }

    # ------------------------------------------------------------ addresses
    @property
    def advertised(self) -> tuple[str, int]:
        if self.advertise:
            return parse_hostport(self.advertise, self.port)
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return host, self.port

    def broker_entry(self) -> dict:
        host, port = self.advertised
        return {"node_id": self.node_id, "host": host, "port": port, "rack": None}

    def broker_configs(self) -> dict:
        return {"auto.create.topics.enable": self.auto_create, "num.partitions": self.default_partitions,
                "log.dirs": self.path, "socket.request.max.bytes": self.max_request_bytes,
                "connections.max.idle.ms": self.idle_timeout_ms,
                "broker.id": self.node_id, "offsets.topic.replication.factor": 1}

    # ------------------------------------------------------------ lifecycle
    async def start(self):
        _raise_fd_limit()
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve_conn, self.host, self.port, backlog=1024,
                                                  limit=1 << 16)
        self.port = self._server.sockets[0].getsockname()[1]
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="embedlog-serve-notify")
        self._watcher.start()
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self):
        while not self._closing:
            await asyncio.sleep(min(2.0, max(self.idle_timeout_ms, 10) / 2000.0))
            self._close_idle()
            try:
                await self._run(self.coordinator.sweep)
            except RuntimeError:
                return                    # the pool is shutting down

    def _close_idle(self):
        """Kafka's connections.max.idle.ms: a connection that sent nothing for that long
        (and has no request in flight) is closed, so abandoned clients do not pin sockets."""
        if self.idle_timeout_ms <= 0:
            return
        cutoff = time.monotonic() - self.idle_timeout_ms / 1000.0
        for c in list(self._conns):
            if not c.busy and c.last_active < cutoff and c.task is not None:
                log_.info("closing %s: idle for more than %d ms", c.peer, self.idle_timeout_ms)
                self.stats["idle_closed"] += 1
                c.task.cancel()

    def _watch(self):
        """Wake long-polling fetches on every append to the directory (any process)."""
        notifier = self.log.notifier
        seen = notifier.value()
        while not self._stop_watch.is_set():
            notifier.wait(seen, 0.5)
            now = notifier.value()
            if now != seen:
                seen = now
                try:
                    self.loop.call_soon_threadsafe(self._wake)
                except RuntimeError:
                    return                # the loop is closed

    def _wake(self):
        waiters, self._waiters = self._waiters, set()
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def _wait_append(self, timeout: float):
        f = self.loop.create_future()
        self._waiters.add(f)
        try:
            await asyncio.wait_for(f, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(f)

    async def shutdown(self, grace: float = 5.0):
        """Stop accepting, answer the requests being served (long polls are answered at
        once with what they have), close idle connections, leave the groups, close files."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if getattr(self, "_sweeper", None) is not None:
            self._sweeper.cancel()
        self._wake()
        deadline = time.monotonic() + grace
        for c in list(self._conns):
            if not c.busy and c.task is not None:
                c.task.cancel()
        while any(c.busy for c in self._conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for c in list(self._conns):
            if c.task is not None:
                c.task.cancel()
            c.writer.close()
        self._stop_watch.set()
        self.log.notifier.bump()           # wakes the watcher (it holds a pointer into .notify)
        await self.loop.run_in_executor(self.pool, self._watcher.join)
        await self.loop.run_in_executor(self.pool, self.coordinator.close)
        self.pool.shutdown(wait=True)
        if self.owns_log:
            self.log.close()

    # ------------------------------------------------------------ connections
    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        peer = writer.get_extra_info("peername")
        conn = _Conn(writer, f"/{peer[0]}" if peer else "")
        conn.task = asyncio.current_task()
        self._conns.add(conn)
        self.stats["connections"] += 1
        try:
            while not self._closing:
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big", signed=True)
                if size < 8 or size > self.max_request_bytes:
                    self.stats["bad_frames"] += 1
                    log_.warning("closing %s: frame of %d bytes (limit %d)", conn.peer, size,
                                 self.max_request_bytes)
                    break
                frame = await reader.readexactly(size)
                conn.busy = True
                conn.last_active = time.monotonic()
                try:
                    try:
                        req = P.parse_request(frame)
                    except DecodeError as e:
                        self.stats["bad_frames"] += 1
                        log_.warning("closing %s: request header does not parse: %s", conn.peer, e)
                        break
                    self.stats["requests"] += 1
                    parts = await self._dispatch(req, conn)
                    if parts:
                        writer.writelines(parts)
                        await writer.drain()
                finally:
                    conn.busy = False
                    conn.last_active = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(conn)
            try:
                writer.close()
            except RuntimeError:
                pass

    async def _dispatch(self, req: P.Request, conn: _Conn):
        if req.body is None:
            code = P.UNSUPPORTED_VERSION if req.error and req.error.startswith("unsupported") else P.INVALID_REQUEST
            if req.error and not req.error.startswith("unsupported"):
                log_.info("%s: %s", conn.peer, req.error)
            return P.error_response(req, code, req.error)
        handler = self._handlers[req.api_key]
        try:
            body = await handler(req, conn)
            # Encoded inside the try: a body this version cannot carry (a null where the
            # schema forbids one) is a bug to answer, not a reason to drop the connection.
            return None if body is None else P.encode_response(req, body)
        except Exception as e:             # a bug or an unexpected storage failure: answer, stay up
            self.stats["errors"] += 1
            log_.exception("%s: api %d v%d failed", conn.peer, req.api_key, req.version)
            code = P.KAFKA_STORAGE_ERROR if isinstance(e, OSError) else P.UNKNOWN_SERVER_ERROR
            return P.error_response(req, code, f"{type(e).__name__}: {e}")

    def _run(self, fn, *args):
        return self.loop.run_in_executor(self.pool, fn, *args)

    def _sync(self, fn):
        async def handler(req, conn):
            return await self._run(fn, req.body, req.version)
        return handler

    # ------------------------------------------------------------ handlers on the loop
    async def _api_versions(self, req, conn):
        keys = [{"api_key": k, "min_version": lo, "max_version": hi} for k, (_n, lo, hi) in sorted(P.APIS.items())]
        return {"error_code": P.NONE, "api_keys": keys, "throttle_time_ms": 0}

    async def _produce(self, req, conn):
        body = await self._run(self.data.produce, req.body, req.version)
        return None if req.body["acks"] == 0 else body

    async def _fetch(self, req, conn):
        body = req.body
        deadline = time.monotonic() + max(0, body["max_wait_ms"]) / 1000.0
        min_bytes = body["min_bytes"]
        if body.get("session_id", 0) != 0 or body.get("session_epoch", -1) > 0:
            return {"throttle_time_ms": 0, "error_code": P.FETCH_SESSION_ID_NOT_FOUND, "session_id": 0,
                    "responses": []}
        while True:
            resp, total = await self._run(self.data.fetch_once, body, req.version, None)
            left = deadline - time.monotonic()
            if total >= max(min_bytes, 1) or left <= 0 or self._closing or _has_error(resp):
                return resp
            await self._wait_append(left)

    async def _find_coordinator(self, req, conn):
        host, port = self.advertised
        body = req.body
        if req.version >= 4:
            keys = body.get("coordinator_keys", [])
        else:
            keys = [body.get("key", "")]
        out = []
        for key in keys:
            if body.get("key_type", 0) != 0:
                out.append({"key": key, "node_id": -1, "host": "", "port": -1,
                            "error_code": P.COORDINATOR_NOT_AVAILABLE,
                            "error_message": "transactions are not served"})
            else:
                out.append({"key": key, "node_id": self.node_id, "host": host, "port": port,
                            "error_code": P.NONE, "error_message": None})
        if req.version >= 4:
            return {"throttle_time_ms": 0, "coordinators": out}
        return {"throttle_time_ms": 0, **{k: v for k, v in out[0].items() if k != "key"}}

    async def _join_group(self, req, conn):
        resp, member = await self._run(self.coordinator.join, req.body, req.version, req.client_id or "",
                                       conn.peer)
        if member is not None:
            deadline = time.monotonic() + max(member.rebalance_timeout_ms, 0) / 1000.0
            while not self._closing and time.monotonic() < deadline:
                if await self._run(self.coordinator.join_complete, member):
                    break
                await asyncio.sleep(0.05)
            resp["generation_id"] = member.joined_generation
        resp.setdefault("throttle_time_ms", 0)
        resp.setdefault("skip_assignment", False)
        return resp

    async def _sync_group(self, req, conn):
        resp = await self._run(self.coordinator.sync, req.body)
        resp["throttle_time_ms"] = 0
        return resp

    async def _heartbeat(self, req, conn):
        code = await self._run(self.coordinator.heartbeat, req.body)
        return {"throttle_time_ms": 0, "error_code": code}

    async def _leave_group(self, req, conn):
        body = req.body
        group = body["group_id"]
        if req.version >= 3:
            results = []
            for m in body["members"]:
                code = await self._run(self.coordinator.leave, group, m["member_id"])
                results.append({"member_id": m["member_id"], "group_instance_id": m.get("group_instance_id"),
                                "error_code": code})
            return {"throttle_time_ms": 0, "error_code": P.NONE, "members": results}
        code = await self._run(self.coordinator.leave, group, body["member_id"])
        return {"throttle_time_ms": 0, "error_code": code, "members": []}


def _has_error(resp: dict) -> bool:
    return any(p["error_code"] for t in resp["responses"] for p in t["partitions"])


class Server:
    """A running `embedlog serve` in this process (a background thread with its own
    event loop). `.bootstrap` is the address to give clients; close() stops it."""

    def __init__(self, path, port: int = 0, host: str = "127.0.0.1", advertise: str | None = None, **options):
        self.broker = Broker(path, host=host, port=port, advertise=advertise, **options)
        self._ready = threading.Event()
        self._error = None
        self._loop = None
        self._stopped = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="embedlog-serve")
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self):
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stopped = asyncio.Event()
        try:
            loop.run_until_complete(self.broker.start())
        except BaseException as e:
            self._error = e if isinstance(e, Exception) else RuntimeError(str(e))
            self._ready.set()
            self.broker.pool.shutdown(wait=False)
            if self.broker.owns_log:
                self.broker.log.close()
            loop.close()
            return
        self._ready.set()
        loop.run_until_complete(self._stopped.wait())
        loop.run_until_complete(self.broker.shutdown())
        loop.close()

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def bootstrap(self) -> str:
        host, port = self.broker.advertised
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def path(self) -> str:
        return self.broker.path

    def close(self):
        if self._thread.is_alive() and self._loop is not None and self._stopped is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<embedlog.Server {self.bootstrap} dir={self.path}>"


def serve(path, port: int = 0, *, host: str = "127.0.0.1", advertise: str | None = None, **options) -> Server:
    """Serve the log directory `path` over Kafka's protocol on host:port (0 = a free port);
    returns the running Server (`.bootstrap`, `.close()`; a context manager)."""
    return Server(path, port=port, host=host, advertise=advertise, **options)


def run_forever(path, listen: str = "127.0.0.1:9092", advertise: str | None = None, *, on_ready=None, **options):
    """The `embedlog serve` command: serve until SIGINT/SIGTERM, then stop cleanly."""
    import signal
    host, port = parse_hostport(listen)

    async def main():
        broker = Broker(path, host=host, port=port, advertise=advertise, **options)
        try:
            await broker.start()
        except BaseException:
            broker.pool.shutdown(wait=False)
            broker.log.close()
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(broker)
        await stop.wait()
        await broker.shutdown()
        return broker.stats

    return asyncio.run(main())


__all__ = ["Broker", "Server", "serve", "run_forever", "parse_hostport"]
