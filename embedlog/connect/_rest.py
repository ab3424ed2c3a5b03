"""Kafka Connect's REST API over a Worker (aiohttp, its own event loop in a thread):

    GET  /                                       {"version", "commit", "kafka_cluster_id"}
    GET  /connectors[?expand=status|info]        names, or {name: {"status"|"info": ...}}
    POST /connectors                             {"name", "config"} -> 201 the connector
    GET  /connectors/NAME                        {"name", "config", "tasks", "type"}
    GET|PUT /connectors/NAME/config              PUT: 201 created / 200 updated
    GET  /connectors/NAME/status                 {"name", "connector", "tasks", "type"}
    GET  /connectors/NAME/tasks, /offsets
    PUT  /connectors/NAME/pause, /resume         202
    POST /connectors/NAME/restart                204
    DELETE /connectors/NAME                      204
    GET  /connector-plugins
    PUT  /connector-plugins/CLASS/config/validate

Errors are Kafka Connect's bodies: {"error_code": 404, "message": "Connector x not found"}
(400 bad config or body, 404, 405, 409 exists already, 500). Storage calls run off the loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from aiohttp import web

from .._version import __version__
from ._data import ConnectError
from ._manage import Conflict, Manager, NotFound

log = logging.getLogger("embedlog.connect")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)


@web.middleware
async def _errors(request, handler):
    try:
        return await handler(request)
    except NotFound as e:
        return _error(404, str(e))
    except Conflict as e:
        return _error(409, str(e))
    except ConnectError as e:
        return _error(400, str(e))
    except web.HTTPException as e:
        if e.status >= 400:
            return _error(e.status, e.reason)
        raise
    except Exception as e:
        log.exception("connect REST: %s %s", request.method, request.path)
        return _error(500, f"{type(e).__name__}: {e}")


async def _body(request) -> dict:
    try:
        doc = await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        raise ConnectError(f"the request body is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ConnectError("the request body must be a JSON object")
    return doc


def make_app(worker) -> web.Application:
    m = Manager(worker.store)

    def off(fn, *args, **kwargs):
        return asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    routes = web.RouteTableDef()

    @routes.get("/")
    async def root(_request):
        return web.json_response({"version": __version__, "commit": "embedlog",
                                  "kafka_cluster_id": worker.log.path})

    @routes.get("/connectors")
    async def connectors(request):
        names = await off(m.names)
        expand = request.query.getall("expand", [])
        if not expand:
            return web.json_response(names)
        out = {}
        for n in names:
            entry = {}
            if "status" in expand:
                entry["status"] = await off(m.status, n)
            if "info" in expand:
                entry["info"] = await off(m.info, n)
            out[n] = entry
        return web.json_response(out)

    @routes.post("/connectors")
    async def create(request):
        doc = await _body(request)
        config = doc.get("config")
        if not isinstance(config, dict):
            raise ConnectError("the body needs \"config\": a JSON object (and \"name\")")
        name = doc.get("name") or config.get("name")
        if not name:
            raise ConnectError("the body needs \"name\" (or config.name)")
        info = await off(m.create, config, name=name)
        return web.json_response(info, status=201, headers={"Location": f"/connectors/{name}"})

    # One handler per shape: a Manager call on the connector's name answered as JSON, or as
    # an empty response with the status Kafka Connect gives.
    def answer(fn):
        async def handler(request):
            return web.json_response(await off(fn, request.match_info["name"]))
        return handler

    def action(fn, status):
        async def handler(request):
            await off(fn, request.match_info["name"])
            return web.Response(status=status)
        return handler

    for tail, fn in (("", m.info), ("/config", m.config), ("/status", m.status), ("/tasks", m.tasks),
                     ("/offsets", m.offsets)):
        routes.get(f"/connectors/{{name}}{tail}")(answer(fn))
    for method, tail, fn, code in (("PUT", "/pause", m.pause, 202), ("PUT", "/resume", m.resume, 202),
                                   ("POST", "/restart", m.restart, 204), ("DELETE", "", m.delete, 204)):
        routes.route(method, f"/connectors/{{name}}{tail}")(action(fn, code))

    @routes.put("/connectors/{name}/config")
    async def put_config(request):
        created, info = await off(m.put_config, request.match_info["name"], await _body(request))
        return web.json_response(info, status=201 if created else 200)

    @routes.get("/connectors/{name}/tasks/{task}/status")
    async def task_status(request):
        st = await off(m.status, request.match_info["name"])
        if request.match_info["task"] != "0":
            raise NotFound(f"Task {request.match_info['name']}-{request.match_info['task']} not found")
        return web.json_response(st["tasks"][0])

    @routes.get("/connector-plugins")
    async def plugins(_request):
        return web.json_response(await off(m.plugins))

    @routes.put("/connector-plugins/{cls}/config/validate")
    async def validate(request):
        return web.json_response(await off(m.validate, request.match_info["cls"], await _body(request)))

    app = web.Application(middlewares=[_errors])
    app.add_routes(routes)
    return app


class RestServer:
    """The REST API of `worker` on host:port (port 0: any free one; `.port` says which),
    served from a thread of its own until `close()`."""

    def __init__(self, worker, host: str = "127.0.0.1", port: int = 8083):
        self.worker, self.host, self.port = worker, host, port
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name="connect-rest", daemon=True)

    def start(self):
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise ConnectError(f"cannot listen on {self.host}:{self.port}: {self._error}") from self._error
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except OSError as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _setup(self):
        self._runner = web.AppRunner(make_app(self.worker), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def close(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def serve(log_dir, host: str = "127.0.0.1", port: int = 8083):
    """A Worker running every connector of `log_dir`, and its REST API: (worker, server)."""
    from ._runner import Worker
    worker = Worker(log_dir).start()
    try:
        server = RestServer(worker, host, port).start()
    except BaseException:
        worker.stop()
        raise
    return worker, server


__all__ = ["RestServer", "make_app", "serve"]
