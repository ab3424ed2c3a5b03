"""pytest fixtures for code that uses embedlog, or Kafka's client API through it.

Registered through the `pytest11` entry point: installing embedlog is enough.

    embedlog_dir      a fresh, empty log directory for this test (a pathlib.Path)
    embedlog_config   {"bootstrap.servers": "file://<embedlog_dir>"}: give it to the code under test
    embedlog          an open embedlog.Log on embedlog_dir, closed after the test
    make_topic        make_topic(name=None, partitions=None, config=None) -> embedlog.Topic
    make_producer     make_producer(config=None) -> Producer, flushed and closed after the test
    make_consumer     make_consumer(topics=None, config=None, group_id=None) -> Consumer (earliest,
                      a unique group id unless given, subscribed to `topics` if given), closed after
    embedlog_broker   `embedlog serve` on embedlog_dir at a free loopback port: `.bootstrap`
                      is the bootstrap.servers value for any Kafka client
    make_embedlog     make_embedlog(topics={"t": 3}, config={...}) -> another Log in its own fresh
                      directory, for tests that need more than one
    schema_registry   Confluent's schema registry REST API on embedlog_dir: `.url` for
                      confluent-kafka's SchemaRegistryClient, `.log` the served Log

Settings (factory argument > command-line option > ini key > default):

    --embedlog-partitions / embedlog_partitions     partitions of make_topic's topics (default 1)
    --embedlog-lock-timeout / embedlog_lock_timeout seconds a test waits for a lock before it
                                                    fails (default 10; the library's is 30)

This module imports nothing from embedlog at import time: pytest loads it in every
session of every project that has embedlog installed. (Importing any submodule runs
embedlog/__init__.py, which loads the C extension; the fixtures import lazily so that
at least nothing else is loaded before a test asks for it.)
"""
from __future__ import annotations

import itertools
import re

import pytest

DEFAULT_PARTITIONS = 1
DEFAULT_LOCK_TIMEOUT = 10.0


def pytest_addoption(parser):
    group = parser.getgroup("embedlog", "embedlog log directories for tests")
    group.addoption("--embedlog-partitions", type=int, default=None, metavar="N",
                    help=f"partitions of topics made by make_topic (default {DEFAULT_PARTITIONS})")
    group.addoption("--embedlog-lock-timeout", type=float, default=None, metavar="SECONDS",
                    help=f"how long a test waits for an embedlog lock (default {DEFAULT_LOCK_TIMEOUT:g})")
    parser.addini("embedlog_partitions", "partitions of topics made by make_topic", default=None)
    parser.addini("embedlog_lock_timeout", "seconds a test waits for an embedlog lock", default=None)


def _setting(config, name: str, kind, default):
    """Command-line option, then ini key, then the default."""
    value = config.getoption(f"--{name.replace('_', '-')}")
    if value is None:
        raw = config.getini(name)
        if raw not in (None, ""):
            try:
                value = kind(raw)
            except ValueError:
                raise pytest.UsageError(f"ini key {name} = {raw!r} is not a {kind.__name__}") from None
    return default if value is None else value


def _slug(request) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:60] or "test"


@pytest.fixture
def embedlog_dir(tmp_path):
    """A fresh log directory for this test (created, empty: no topics)."""
    from embedlog.storage._log import Log
    path = tmp_path / "embedlog"
    Log(path).close()
    return path


@pytest.fixture
def embedlog_config(embedlog_dir) -> dict:
    """Client config for the test's log directory: pass it to Producer, Consumer or
    AdminClient (add your own keys to a copy)."""
    return {"bootstrap.servers": f"file://{embedlog_dir}"}


@pytest.fixture
def embedlog_broker(embedlog_dir):
    """`embedlog serve` on embedlog_dir, on a free loopback port, for Kafka clients and
    tools (confluent-kafka, kafka-python, aiokafka, kcat): give them
    `{"bootstrap.servers": embedlog_broker.bootstrap}`. The same directory stays open to
    the in-process API (the `embedlog` fixture). Stopped after the test."""
    from embedlog.server._server import serve
    server = serve(embedlog_dir, port=0)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def _embedlog_lock_timeout(request) -> float:
    return _setting(request.config, "embedlog_lock_timeout", float, DEFAULT_LOCK_TIMEOUT)


@pytest.fixture
def embedlog(embedlog_dir, _embedlog_lock_timeout):
    """An open embedlog.Log on the test's directory, closed after the test."""
    from embedlog.storage._log import Log
    log = Log(embedlog_dir, lock_timeout=_embedlog_lock_timeout)
    yield log
    log.close()


@pytest.fixture
def make_topic(embedlog, request):
    """make_topic(name=None, partitions=None, config=None) -> embedlog.Topic in the test's log.

    The name defaults to one made from the test's name; partitions to
    --embedlog-partitions / embedlog_partitions (1)."""
    default_partitions = _setting(request.config, "embedlog_partitions", int, DEFAULT_PARTITIONS)
    counter = itertools.count(1)
    slug = _slug(request)

    def make_topic(name: str | None = None, partitions: int | None = None, config: dict | None = None):
        if name is None:
            name = f"{slug}-{next(counter)}"
        return embedlog.create_topic(name, default_partitions if partitions is None else partitions, config)

    return make_topic


def _conf(embedlog_config, lock_timeout, config) -> dict:
    return {**embedlog_config, "embedlog.lock.timeout.ms": int(lock_timeout * 1000), **(config or {})}


@pytest.fixture
def make_producer(embedlog_config, _embedlog_lock_timeout):
    """make_producer(config=None) -> embedlog.Producer on the test's log.

    `config` adds or overrides keys, with confluent-kafka's names ({"acks": "all",
    "linger.ms": 0}). Every producer is flushed and closed after the test."""
    from embedlog import Producer
    made = []

    def make_producer(config: dict | None = None):
        p = Producer(_conf(embedlog_config, _embedlog_lock_timeout, config))
        made.append(p)
        return p

    yield make_producer
    for p in reversed(made):
        p.close()


@pytest.fixture
def make_consumer(embedlog_config, _embedlog_lock_timeout, request):
    """make_consumer(topics=None, config=None, group_id=None) -> embedlog.Consumer on the test's log.

    Test defaults: auto.offset.reset=earliest, and a group.id unique to this consumer
    unless `group_id` (or config["group.id"]) names one to share. With `topics` (a
    name or a list), the consumer is subscribed. Every consumer is closed (committing
    as its config says and leaving its group) after the test."""
    from embedlog import Consumer
    made = []
    counter = itertools.count(1)
    slug = _slug(request)

    def make_consumer(topics=None, config: dict | None = None, group_id: str | None = None):
        conf = {"group.id": group_id or f"{slug}-group-{next(counter)}", "auto.offset.reset": "earliest"}
        conf.update(_conf(embedlog_config, _embedlog_lock_timeout, config))
        c = Consumer(conf)
        made.append(c)
        if topics is not None:
            c.subscribe([topics] if isinstance(topics, str) else list(topics))
        return c

    yield make_consumer
    for c in reversed(made):
        c.close()


@pytest.fixture
def make_embedlog(tmp_path_factory, _embedlog_lock_timeout):
    """make_embedlog(topics=None, config=None, path=None) -> another open embedlog.Log.

    Each call opens a fresh directory (or `path`); `topics` maps names to partition
    counts and `config` is the topic config they are created with. Closed after the test."""
    from embedlog.storage._log import Log
    made = []

    def make_embedlog(topics: dict | None = None, config: dict | None = None, path=None):
        if path is None:
            path = tmp_path_factory.mktemp("embedlog")
        log = Log(path, lock_timeout=_embedlog_lock_timeout)
        made.append(log)
        for name, partitions in (topics or {}).items():
            log.create_topic(name, partitions, config)
        return log

    yield make_embedlog
    for log in reversed(made):
        log.close()


@pytest.fixture
def schema_registry(embedlog_dir):
    """Confluent Schema Registry's REST API on the test's log directory, at a free loopback
    port on a background thread: `.url` is what SchemaRegistryClient({"url": ...}) takes,
    `.log` the Log it serves. Closed after the test."""
    from embedlog.registry import serve
    server = serve(embedlog_dir)
    yield server
    server.close()
