"""Confluent Schema Registry's REST API over a log directory, with aiohttp.

Routes are matched on the raw (still percent-encoded) path, one segment at a time, so a
subject holding "/" or ".." (sent as %2F, %2E%2E) is just a name. Registry calls block on
file locks and fdatasync, so they run on the default executor, off the event loop.
Bodies are application/vnd.schemaregistry.v1+json; errors {"error_code", "message"}.

Not served: contexts, /subjects/{s}/metadata, schema guids, exporters, DEK registry,
rule sets and metadata on schemas, ?format= and ?normalize= (accepted, ignored).
"""
from __future__ import annotations

import asyncio
import json
import signal
import threading
from urllib.parse import unquote

from aiohttp import web

from . import _errors as E
from ._formats import TYPES
from ._registry import Registry, parse_version, registry_for

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _reply(doc, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(doc).encode(), content_type=CONTENT_TYPE)


def _flag(request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


async def _body(request) -> dict:
    try:
        doc = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("Unrecognized request body: not JSON") from None
    if not isinstance(doc, dict):
        raise _BadRequest("Unrecognized request body: not a JSON object")
    return doc


class _BadRequest(E.RegistryError):
    error_code = 400
    http_status = 400


class _NotFound(E.RegistryError):
    error_code = 404
    http_status = 404


class _Api:
    def __init__(self, reg: Registry):
        self.reg = reg

    async def call(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    async def formatted(self, request, s) -> dict:
        """s.to_json(), with the schema in the ?format= Confluent's clients ask for when the
        format module has that form (Parsed.formatted, _formats.py); else the stored text."""
        out = s.to_json()
        fmt = request.query.get("format")
        if fmt:
            parsed = await self.call(self.reg.parsed_by_id, s.id)
            convert = getattr(parsed, "formatted", None)
            text = convert(fmt) if convert is not None else None
            if text is not None:
                out["schema"] = text
        return out

    async def handle(self, request: web.Request) -> web.Response:
        raw = request.raw_path.split("?", 1)[0]
        parts = [unquote(p) for p in raw.strip("/").split("/")] if raw.strip("/") else []
        try:
            return await self.route(request, request.method, parts)
        except E.RegistryError as e:
            return _reply(e.body(), e.http_status)

    async def route(self, request, method, p):
        r = self.reg
        n = len(p)
        if n == 0:
            return _reply({})
        head = p[0]
        if head == "subjects":
            if n == 1 and method == "GET":
                return _reply(await self.call(r.subjects, _flag(request, "deleted"),
                                              request.query.get("subjectPrefix", "")))
            if n < 2:
                raise _NotFound("HTTP 404 Not Found")
            subject = p[1]
            if n == 2:
                if method == "POST":
                    doc = await _body(request)
                    s = await self.call(r.lookup, subject, *_schema_args(doc), deleted=_flag(request, "deleted"))
                    return _reply(s.to_json())
                if method == "DELETE":
                    return _reply(await self.call(r.delete_subject, subject, _flag(request, "permanent")))
            if n >= 3 and p[2] == "versions":
                if n == 3 and method == "GET":
                    return _reply(await self.call(r.versions, subject, _flag(request, "deleted")))
                if n == 3 and method == "POST":
                    doc = await _body(request)
                    s = await self.call(r.register, subject, *_schema_args(doc), id=doc.get("id"),
                                        version=doc.get("version"))
                    out = s.to_json()
                    out.pop("subject", None)
                    return _reply(out)
                if n >= 4:
                    version = p[3]
                    if n == 4 and method == "GET":
                        s = await self.call(r.get_version, subject, version, deleted=_flag(request, "deleted"))
                        return _reply(await self.formatted(request, s))
                    if n == 4 and method == "DELETE":
                        return _reply(await self.call(r.delete_version, subject, version,
                                                      _flag(request, "permanent")))
                    if n == 5 and p[4] == "schema" and method == "GET":
                        s = await self.call(r.get_version, subject, version, deleted=_flag(request, "deleted"))
                        return web.Response(body=s.schema.encode(), content_type=CONTENT_TYPE)
                    if n == 5 and p[4] == "referencedby" and method == "GET":
                        return _reply(await self.call(r.referenced_by, subject, version))
        elif head == "schemas":
            if n == 1 and method == "GET":
                rows = await self.call(r.all_schemas, _flag(request, "deleted"), request.query.get("subjectPrefix", ""))
                return _reply([row.to_json() for row in rows])
            if n == 2 and p[1] == "types" and method == "GET":
                return _reply(list(TYPES))
            if n >= 3 and p[1] == "ids" and method == "GET":
                try:
                    sid = int(p[2])
                except ValueError:
                    raise E.SchemaNotFound(f"Schema {p[2]} not found") from None
                s = await self.call(r.get_by_id, sid)
                if n == 3:
                    out = await self.formatted(request, s)
                    out.pop("id")
                    return _reply(out)
                if n == 4 and p[3] == "schema":
                    return web.Response(body=s.schema.encode(), content_type=CONTENT_TYPE)
                if n == 4 and p[3] in ("versions", "subjects"):
                    pairs = await self.call(r.id_versions, sid, _flag(request, "deleted"))
                    if p[3] == "subjects":
                        return _reply(sorted({subject for subject, _v in pairs}))
                    return _reply([{"subject": subject, "version": v} for subject, v in pairs])
        elif head == "compatibility":
            if n in (3, 5) and p[1] == "subjects" and method == "POST" and (n == 3 or p[3] == "versions"):
                doc = await _body(request)
                version = parse_version(p[4]) if n == 5 else None
                msgs = await self.call(r.check_compatibility, p[2], *_schema_args(doc), version=version)
                out = {"is_compatible": not msgs}
                if _flag(request, "verbose"):
                    out["messages"] = msgs
                return _reply(out)
            if n == 4 and p[1] == "subjects" and p[3] == "versions" and method == "POST":
                doc = await _body(request)
                msgs = await self.call(r.check_compatibility, p[2], *_schema_args(doc), version=None)
                out = {"is_compatible": not msgs}
                if _flag(request, "verbose"):
                    out["messages"] = msgs
                return _reply(out)
        elif head == "config" and n <= 2:
            subject = p[1] if n == 2 else None
            if method == "GET":
                level = await self.call(r.get_compatibility, subject,
                                        default_to_global=_flag(request, "defaultToGlobal"))
                return _reply({"compatibilityLevel": level})
            if method == "PUT":
                doc = await _body(request)
                level = await self.call(r.set_compatibility, doc.get("compatibility", doc.get("compatibilityLevel")),
                                        subject)
                return _reply({"compatibility": level})
            if method == "DELETE":
                return _reply({"compatibilityLevel": await self.call(r.delete_compatibility, subject)})
        elif head == "mode" and n <= 2:
            subject = p[1] if n == 2 else None
            if method == "GET":
                return _reply({"mode": await self.call(r.get_mode, subject,
                                                        default_to_global=_flag(request, "defaultToGlobal"))})
            if method == "PUT":
                doc = await _body(request)
                return _reply({"mode": await self.call(r.set_mode, doc.get("mode"), subject,
                                                        force=_flag(request, "force"))})
            if method == "DELETE" and subject is not None:
                return _reply({"mode": await self.call(r.delete_mode, subject)})
        raise _NotFound("HTTP 404 Not Found")


def _schema_args(doc: dict) -> tuple:
    schema = doc.get("schema")
    if not isinstance(schema, str):
        raise E.InvalidSchemaError("Invalid schema: the body needs a \"schema\" string")
    return schema, doc.get("schemaType") or "AVRO", doc.get("references") or ()


def make_app(reg: Registry) -> web.Application:
    api = _Api(reg)
    app = web.Application(client_max_size=16 << 20)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app


def _host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen takes HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class RegistryServer:
    """A REST server on a background thread (`serve()`); `.url`, `.close()`, a context manager."""

    def __init__(self, log, host: str = "127.0.0.1", port: int = 0, *, owns_log: bool = False):
        self.log = log
        self._owns_log = owns_log
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self._runner = None
        self._thread = threading.Thread(target=self._run, args=(host, port), name="embedlog-registry", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self, host, port):
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.port = self._loop.run_until_complete(start(registry_for(self.log), host, port))
        except Exception as e:  # noqa: BLE001 - any failure to bind is re-raised by serve() in the caller
            self._error = e
            self._ready.set()
            return
        self.host = host
        self.url = f"http://{host}:{self.port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def close(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        if self._owns_log:
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<embedlog.registry.RegistryServer {getattr(self, 'url', '?')} {self.log.path}>"


async def start(reg: Registry, host: str, port: int):
    runner = web.AppRunner(make_app(reg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def serve(log_dir, port: int = 0, host: str = "127.0.0.1") -> RegistryServer:
    """Serve the registry of `log_dir` (a path or an open Log) on a background thread."""
    from ..storage._log import Log, open_log
    if isinstance(log_dir, Log):
        return RegistryServer(log_dir, host, port)
    return RegistryServer(open_log(log_dir), host, port, owns_log=True)


def run_forever(log, listen: str, on_ready=None):
    """`embedlog registry serve`: serve in the foreground until SIGINT or SIGTERM (both
    handled here: a process started in the background by a shell ignores SIGINT)."""
    host, port = _host_port(listen)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner, bound = await start(registry_for(log), host, port)
        if on_ready is not None:
            on_ready(f"http://{host}:{bound}")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
