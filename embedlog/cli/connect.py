"""`embedlog connect ...`: connectors run in the library (embedlog/connect/).

    embedlog --dir DIR connect run CONFIG.json      store the config, run it until Ctrl-C / SIGTERM
    embedlog --dir DIR connect run --name NAME      run a stored connector
    embedlog --dir DIR connect list|status|pause|resume|delete [NAME] [--json]
    embedlog --dir DIR connect serve --listen 127.0.0.1:8083   every connector + Kafka Connect's REST API
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading

import click

from ._common import CliError, Group, dir_option, echo_json, echo_table, log_dir, note


def _load(path: str) -> dict:
    """A config file: Kafka Connect's JSON ({"name", "config"} or the flat config) or a
    .properties file (key=value lines, as connect-standalone takes)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    if path.endswith(".properties"):
        doc = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise CliError(f"{path}:{n}: not key=value: {line!r}")
            doc[key.strip()] = value.strip()
        return doc
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise CliError(f"{path} is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path}: a connector config is a JSON object")
    if isinstance(doc.get("config"), dict):
        config = dict(doc["config"])
        if doc.get("name"):
            if config.get("name", doc["name"]) != doc["name"]:
                raise CliError(f"{path}: name {doc['name']!r} and config.name {config['name']!r} differ")
            config["name"] = doc["name"]
        return config
    return doc


@contextlib.contextmanager
def _connect_errors():
    """A ConnectError (a refused config, an unknown connector) is the CLI's one error line."""
    from embedlog.connect._data import ConnectError
    try:
        yield
    except ConnectError as e:
        raise CliError(str(e)) from None


def _managed(fn):
    """fn(manager) on the connectors of the directory, with the log open around it."""
    from embedlog.connect._manage import Manager
    from embedlog.connect._store import Store
    from embedlog.storage._log import open_log

    from ._common import check_log_dir
    with open_log(check_log_dir(log_dir())) as log, _connect_errors():
        return fn(Manager(Store(log)))


def _wait_for_signal():
    done = threading.Event()
    old = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@click.group(cls=Group)
def connect():
    """Run and manage connectors (Kafka Connect-shaped configs)."""


@connect.command(short_help="Store a connector config and run it (or run a stored one by --name).")
@click.argument("config_file", required=False, metavar="CONFIG.json")
@click.option("--name", default=None, help="Run the stored connector of this name (or check CONFIG's name).")
@dir_option
def run(config_file, name):
    """Store CONFIG (checked first: nothing is written when it is refused) and run it, or
    run the stored connector --name, until Ctrl-C / SIGTERM. Source offsets and the
    sink's group offsets are stored, so a restart resumes where it stopped."""
    from embedlog.connect import _configs
    from embedlog.connect._runner import Worker
    if not config_file and not name:
        raise click.UsageError("give CONFIG.json or --name NAME")
    config = None
    if config_file:
        config = _load(config_file)
        with _connect_errors():
            name = _configs.check(config, name=name).name
    path = log_dir()
    if config is None:
        from ._common import check_log_dir
        check_log_dir(path)
    worker = Worker(path, names=[name])
    try:
        if config is not None:
            worker.submit(config, name=name)
        else:
            worker.store.refresh()
            if name not in worker.store.configs:
                known = ", ".join(sorted(worker.store.configs)) or "none"
                raise CliError(f"no connector {name!r} in {path} (known: {known})")
        worker.start()
        note(f"connect: running {name} on {path} (Ctrl-C to stop)")
        _wait_for_signal()
    finally:
        worker.stop()


def _state_row(name, st):
    task = st["tasks"][0]
    trace = (task.get("trace") or st["connector"].get("trace") or "").strip().splitlines()
    return [name, st["type"], st["connector"]["state"], task["state"], task.get("worker_id"),
            trace[-1] if trace else None]


@connect.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document ({name: {status, info}}).")
@dir_option
def list_(as_json):
    """The connectors stored in the directory with their states."""
    out = _managed(lambda m: {n: {"status": m.status(n), "info": m.info(n)} for n in m.names()})
    if as_json:
        echo_json(out)
    elif out:
        echo_table(["NAME", "TYPE", "STATE", "TASK", "WORKER", "TRACE"],
                   [_state_row(n, v["status"]) for n, v in out.items()])


@connect.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print Kafka Connect's status JSON.")
@dir_option
def status(name, as_json):
    """A connector's state and its task's, with the failure's trace."""
    st, cfg, offs = _managed(lambda m: (m.status(name), m.config(name), m.offsets(name)["offsets"]))
    if as_json:
        echo_json(st)
        return
    echo_table(["NAME", "TYPE", "STATE", "TASK", "WORKER", "TRACE"], [_state_row(name, st)])
    click.echo(f"class: {cfg.get('connector.class')}")
    for o in offs:
        click.echo(f"offset: {json.dumps(o['partition'])} -> {json.dumps(o['offset'])}")
    trace = st["tasks"][0].get("trace") or st["connector"].get("trace")
    if trace and "\n" in trace.strip():
        click.echo(trace.rstrip())


def _simple(verb, doc):
    @connect.command(name=verb, help=doc)
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @dir_option
    def cmd(name, as_json):
        _managed(lambda m: getattr(m, verb)(name))
        if as_json:
            echo_json({"name": name, "action": verb, "ok": True})
        else:
            note(f"connector {name}: {verb} stored; a running worker applies it within a second")
    return cmd


pause = _simple("pause", "Pause a connector (its worker stops polling; state PAUSED).")
resume = _simple("resume", "Resume a paused connector.")
delete = _simple("delete", "Delete a connector: its config and status (its source offsets stay).")
restart = _simple("restart", "Restart a connector (a FAILED one runs again).")


@connect.command(short_help="Run every connector of the directory with Kafka Connect's REST API.")
@click.option("--listen", default="127.0.0.1:8083", show_default=True, metavar="HOST:PORT",
              help="Where Kafka Connect's REST API listens (port 0: any free one).")
@click.option("--json", "as_json", is_flag=True, help="Print the listening address as JSON.")
@dir_option
def serve(listen, as_json):
    """Run every connector of the directory (and those added later) with Kafka Connect's
    REST API, until Ctrl-C / SIGTERM."""
    from embedlog.connect._rest import serve as rest_serve
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"{listen!r}: use HOST:PORT", param_hint="--listen")
    with _connect_errors():
        worker, server = rest_serve(log_dir(), host, int(port))
    try:
        if as_json:
            click.echo(json.dumps({"url": server.url, "dir": worker.log.path}), nl=True)
        else:
            note(f"connect: REST on {server.url}, directory {worker.log.path} (Ctrl-C to stop)")
        import sys
        sys.stdout.flush()
        _wait_for_signal()
    finally:
        server.close()
        worker.stop()
