"""Connector configs in Kafka Connect's shape: one flat JSON object of string values.

    {"name": "lines", "connector.class": "FileStreamSource", "tasks.max": "1",
     "file": "/var/log/app.log", "topic": "app-log",
     "value.converter": "org.apache.kafka.connect.storage.StringConverter"}

`check()` validates a config before anything is stored: the class must be known (by its
Java name, its simple name, or that without `Connector`, as Kafka Connect resolves them),
every key must be one the worker or the connector knows (a near miss is suggested), values
must have their type. Values are stored as strings, as Kafka Connect stores them. Keys that
Kafka Connect has but that mean nothing for one process on one directory are accepted and
do nothing (NOOP_KEYS).
"""
from __future__ import annotations

import difflib
import importlib
import re
from typing import NamedTuple

from . import _converters, _transforms
from ._data import ConnectError


class Key(NamedTuple):
    default: str | None = None
    type: str = "string"            # string, int, bool, list, password, class
    required: bool = False
    choices: tuple = ()
    doc: str = ""


# The worker's keys, for every connector (Kafka's ConnectorConfig).
COMMON = {
    "name": Key(required=True, doc="the connector's name, unique in the log directory"),
    "connector.class": Key(required=True, doc="the connector's class"),
    "tasks.max": Key("1", "int", doc="at most this many tasks (the connectors here run one)"),
    "key.converter": Key(_converters.DEFAULT, "class", doc="converter of record keys"),
    "value.converter": Key(_converters.DEFAULT, "class", doc="converter of record values"),
    "transforms": Key("", "list", doc="aliases of the single message transforms, in order"),
    "errors.tolerance": Key("none", choices=("none",), doc="a record that fails stops the task (none)"),
}
SOURCE = {
    "topic.creation.default.partitions": Key("1", "int", doc="partitions of a topic the connector creates"),
}
SINK = {
    "topics": Key(None, "list", doc="topics to consume (or topics.regex)"),
    "topics.regex": Key(None, doc="a regular expression of topics to consume"),
}
# Accepted and ignored: about a cluster of workers, Connect's own logging or retries.
NOOP_KEYS = {"header.converter", "config.action.reload", "errors.log.enable", "errors.log.include.messages",
             "errors.retry.timeout", "errors.retry.delay.max.ms", "topic.creation.default.replication.factor",
             "offset.flush.interval.ms", "offset.flush.timeout.ms", "consumer.override.auto.offset.reset"}
_SUB_PREFIXES = ("key.converter.", "value.converter.", "transforms.", "topic.creation.default.")

# connector.class (its Java name) -> "module:Class" of the embedlog implementation, imported
# only when a connector of that class is checked or run, so a missing or broken module fails
# only the connectors that use it. Add a connector with one line here.
PLUGINS = {
    "org.apache.kafka.connect.file.FileStreamSourceConnector": "embedlog.connect._file:FileStreamSource",
    "org.apache.kafka.connect.file.FileStreamSinkConnector": "embedlog.connect._file:FileStreamSink",
    "io.debezium.connector.postgresql.PostgresConnector": "embedlog.connect._postgres:PostgresSource",
}


def _aliases() -> dict[str, str]:
    out = {}
    for full in PLUGINS:
        simple = full.rsplit(".", 1)[1]
        for a in (full, simple, simple.removesuffix("Connector")):
            out[a] = full
    return out


def resolve_class(name: str) -> str:
    """The Java name of a connector.class given as Kafka Connect accepts it (full, simple,
    or simple without `Connector`)."""
    full = _aliases().get(name)
    if full is None:
        near = difflib.get_close_matches(name, list(_aliases()), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConnectError(f"unknown connector.class {name!r}{hint}; known: {', '.join(sorted(PLUGINS))}")
    return full


def plugin(class_name: str):
    full = resolve_class(class_name)
    module, _, cls = PLUGINS[full].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConnectError(f"connector.class {full}: its implementation {PLUGINS[full]} cannot be loaded "
                           f"({type(e).__name__}: {e})") from None


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if value is None:
        raise ConnectError("config values may not be null")
    if isinstance(value, dict):
        raise ConnectError("config values are strings (Kafka Connect's flat config), not JSON objects")
    return str(value)


def _typed(key: str, spec: Key, value: str):
    if spec.type == "int":
        try:
            n = int(value)
        except ValueError:
            raise ConnectError(f"{key} must be an integer, not {value!r}") from None
        if n < 1 and key in ("tasks.max", "batch.size", "batch.max.rows",
                                  "topic.creation.default.partitions"):
            raise ConnectError(f"{key} must be at least 1, not {n}")
        return n
    if spec.type == "bool":
        if value.lower() not in ("true", "false"):
            raise ConnectError(f"{key} must be true or false, not {value!r}")
        return value.lower() == "true"
    if spec.type == "list":
        return [v.strip() for v in value.split(",") if v.strip()]
    if spec.choices and value not in spec.choices:
        raise ConnectError(f"{key} must be one of {', '.join(spec.choices)}, not {value!r}")
    return value


class Checked(NamedTuple):
    name: str
    cls: type                       # the connector class
    raw: dict                       # every key as given, values as strings (what is stored)
    values: dict                    # every known key, typed, defaults filled in


def check(config: dict, *, name: str | None = None) -> Checked:
    """Validate a connector config; raises ConnectError naming the first problem."""
    if not isinstance(config, dict):
        raise ConnectError(f"a connector config is a JSON object, not {type(config).__name__}")
    raw = {}
    for k, v in config.items():
        try:
            raw[str(k)] = _text(v)
        except ConnectError as e:
            raise ConnectError(f"config key {k!r}: {e}") from None
    if name is not None:
        if raw.get("name", name) != name:
            raise ConnectError(f"the config's name {raw['name']!r} is not the connector's name {name!r}")
        raw["name"] = name
    for key in ("name", "connector.class"):
        if not raw.get(key):
            raise ConnectError(f"{key} is missing from the connector config")
    cname = raw["name"]
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", cname):
        raise ConnectError(f"connector name {cname!r}: use letters, digits, '.', '_' and '-' (at most 200)")
    cls = plugin(raw["connector.class"])
    table = {**COMMON, **(SOURCE if cls.kind == "source" else SINK), **cls.CONFIG}
    for key in raw:
        if key in table or key in NOOP_KEYS or key.startswith(_SUB_PREFIXES):
            continue
        near = difflib.get_close_matches(key, list(table) + sorted(NOOP_KEYS), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConnectError(f"connector {cname}: unknown config key {key!r} for {resolve_class(raw['connector.class'])}"
                           f"{hint}")
    values = {}
    for key, spec in table.items():
        if key in raw:
            values[key] = _typed(key, spec, raw[key])
        elif spec.required:
            raise ConnectError(f"connector {cname}: {key} is required ({spec.doc})")
        else:
            values[key] = None if spec.default is None else _typed(key, spec, spec.default)
    values["topic.creation.default"] = {k[len("topic.creation.default."):]: v for k, v in raw.items()
                                        if k.startswith("topic.creation.default.")
                                        and k not in table and k not in NOOP_KEYS}
    if cls.kind == "sink" and bool(values["topics"]) == bool(values["topics.regex"]):
        raise ConnectError(f"connector {cname}: a sink needs topics or topics.regex (one of them)")
    if cls.kind == "sink" and values["topics.regex"]:
        try:
            re.compile(values["topics.regex"])
        except re.error as e:
            raise ConnectError(f"connector {cname}: topics.regex {values['topics.regex']!r} is not a regular "
                               f"expression ({e})") from None
    try:
        _converters.converter(raw, "key")
        _converters.converter(raw, "value")
        _transforms.transforms(raw)
        cls.check(values)
    except ConnectError as e:
        raise ConnectError(f"connector {cname}: {e}") from None
    return Checked(cname, cls, raw, values)


def plugin_kind(class_name: str) -> str:
    """"source" or "sink" for a connector.class ("unknown" when it cannot be loaded)."""
    try:
        return plugin(class_name).kind
    except ConnectError:
        return "unknown"
