"""confluent-kafka's clients behind embedlog's names, for a `bootstrap.servers` that names
Kafka brokers (DESIGN.md §2, "the way off one machine"; issue #14).

`embedlog.Producer/Consumer/AdminClient(conf)` return one of the proxies below when
`storage._config.bootstrap_brokers` says the value names brokers. A proxy delegates every
attribute to confluent-kafka's client and converts at the boundary, so a program written
with embedlog's names runs unchanged:

- in: embedlog's TopicPartition, NewTopic, NewPartitions, ConfigResource and
  ConsumerGroupTopicPartitions become confluent-kafka's (also inside lists and dicts);
  a callable argument is wrapped so that it gets what the program would get back;
- out: confluent-kafka's TopicPartition and KafkaError become embedlog's (also inside lists,
  dicts and confluent-kafka's plain result objects), a message carrying an error becomes an
  embedlog Message, the client itself becomes the proxy (on_assign's first argument), a
  result keyed by an argument is keyed by the caller's object, and an admin future's
  .result() raises embedlog's exception;
- confluent_kafka.KafkaException is raised as embedlog.KafkaException with a KafkaError of
  the same code, name, text and flags, chained from it (`except` clauses do not consult
  __subclasscheck__, so the exception itself has to be embedlog's).

The config is passed through, except that keys only a log directory understands are refused
(storage._config.local_only_keys; a Python callable partitioner too), and a producer
without `partitioner` gets murmur2_random (the Java client's, and embedlog's, placement of
keyed records) instead of librdkafka's consistent_random (CRC32).

May import: embedlog.client and embedlog.storage, and confluent_kafka lazily (the `kafka`
extra), only when a client for brokers is made.
"""
from __future__ import annotations

import enum
import weakref
from concurrent.futures import Future

from ..storage._config import bootstrap_brokers, local_only_keys
from ..storage._errors import ConfigError
from ._kafka import KafkaError, KafkaException, Message, TopicPartition

_CALLBACK_KEYS = ("on_delivery", "dr_cb", "dr_msg_cb", "error_cb", "on_commit")
_PLAIN = (type(None), bool, int, float, str, bytes)
_ck = None                          # the confluent_kafka module, once imported


def _confluent(kind: str, servers: str):
    global _ck
    if _ck is None:
        try:
            import confluent_kafka
            import confluent_kafka.admin  # noqa: F401 (AdminClient, NewTopic, ... are used below)
        except ImportError as e:
            raise ImportError(f"embedlog.{kind} with bootstrap.servers={servers!r} talks to a Kafka cluster "
                              "through confluent-kafka, which is not installed: pip install 'embedlog[kafka]' "
                              "(for a log directory of that name use 'file:...')") from e
        _ck = confluent_kafka
    return _ck


def remote_client(kind: str, conf, kwargs: dict):
    """The proxy for confluent-kafka's `kind` ("Producer", "Consumer", "AdminClient") when
    the config names Kafka brokers; None when it names a log directory (or is not a dict:
    embedlog's own validation reports that)."""
    if conf is not None and not isinstance(conf, dict):
        return None
    conf = dict(conf or {}, **kwargs)
    servers = conf.get("bootstrap.servers")
    if conf.get("embedlog.path") or not bootstrap_brokers(servers):
        return None
    refused = local_only_keys(conf)
    if refused:
        raise ConfigError(f"{refused[0]!r} is an embedlog setting for a log directory; bootstrap.servers "
                          f"{servers!r} names a Kafka cluster, which has no such client setting: remove it")
    nested = conf.get("default.topic.config") if isinstance(conf.get("default.topic.config"), dict) else {}
    partitioner = conf.get("partitioner", nested.get("partitioner"))
    if partitioner is not None and not isinstance(partitioner, str):
        raise ConfigError(f"'partitioner' must be a name (murmur2_random, consistent_random, ...) with "
                          f"bootstrap.servers {servers!r}: librdkafka cannot call a Python "
                          f"{type(partitioner).__name__}")
    ck = _confluent(kind, servers)
    if kind == "Producer" and partitioner is None:
        conf["partitioner"] = "murmur2_random"      # as embedlog and the Java client place keys
    proxy = _PROXIES[kind].__new__(_PROXIES[kind])
    for key in _CALLBACK_KEYS:
        if callable(conf.get(key)):
            conf[key] = _calling(conf[key], proxy)
    cls = ck.admin.AdminClient if kind == "AdminClient" else getattr(ck, kind)
    try:
        client = cls(conf)
    except ck.KafkaException as e:
        raise _exception(e) from e
    proxy.__init__(client)
    return proxy


# ------------------------------------------------------------------ conversions

def _error(err) -> KafkaError:
    out = _RemoteError(err.code(), err.str(), fatal=err.fatal(), retriable=err.retriable(),
                       txn_requires_abort=err.txn_requires_abort())
    out._name = err.name()
    return out


class _RemoteError(KafkaError):
    """embedlog's KafkaError for one of confluent-kafka's: its name() too, for codes
    embedlog's table has no name for."""

    __slots__ = ("_name",)

    def name(self) -> str:
        return self._name


def _exception(e) -> KafkaException:
    err = e.args[0] if e.args else None
    return KafkaException(_error(err) if isinstance(err, _ck.KafkaError) else err, *e.args[1:])


def _to_ck_tp(tp: TopicPartition):
    extra = {} if tp.leader_epoch is None else {"leader_epoch": tp.leader_epoch}
    if tp.metadata is not None:
        return _ck.TopicPartition(tp.topic, tp.partition, tp.offset, tp.metadata, **extra)
    return _ck.TopicPartition(tp.topic, tp.partition, tp.offset, **extra)


def _config_str(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _to_ck_table() -> dict:
    from . import _admin as el          # imported here: _admin imports this module
    ck = _ck.admin

    def new_topic(t):
        opt = {"replica_assignment": t.replica_assignment} if t.replica_assignment is not None else {}
        return ck.NewTopic(t.topic, t.num_partitions, t.replication_factor,
                           config={k: _config_str(v) for k, v in t.config.items()}, **opt)

    def new_partitions(n):
        opt = {"replica_assignment": n.replica_assignment} if n.replica_assignment is not None else {}
        return ck.NewPartitions(n.topic, n.new_total_count, **opt)

    return {
        TopicPartition: _to_ck_tp,
        el.NewTopic: new_topic,
        el.NewPartitions: new_partitions,
        el.ConfigResource: lambda r: ck.ConfigResource(r.restype.name, r.name, set_config={
            k: _config_str(v) for k, v in r.set_config_dict.items()}),
        el.ConsumerGroupTopicPartitions: lambda g: _ck.ConsumerGroupTopicPartitions(
            g.group_id, None if g.topic_partitions is None else [_to_ck_tp(tp) for tp in g.topic_partitions]),
    }


_TO_CK: dict = {}


def _in(x, proxy, memo: dict):
    """An argument for confluent-kafka; `memo` maps id(converted) -> the caller's object."""
    t = type(x)
    if t in _PLAIN:
        return x
    if not _TO_CK:
        _TO_CK.update(_to_ck_table())
    convert = _TO_CK.get(t)
    if convert is not None:
        out = convert(x)
        memo[id(out)] = (out, x)         # `out` kept alive: its id is not reused in the result
        return out
    if t is list or t is tuple:
        return t(_in(i, proxy, memo) for i in x)
    if t is dict:
        return {_in(k, proxy, memo): _in(v, proxy, memo) for k, v in x.items()}
    if isinstance(x, _Remote):
        return x._client
    if callable(x) and not isinstance(x, type):
        return _calling(x, proxy)
    return x


def _out(x, proxy, memo=None, seen=None):
    """A value from confluent-kafka, as embedlog's types (see the module docstring)."""
    t = type(x)
    if t in _PLAIN:
        return x
    if t is _ck.TopicPartition:
        tp = TopicPartition(x.topic, x.partition, x.offset, x.metadata, x.leader_epoch)
        tp.error = None if x.error is None else _error(x.error)
        return tp
    if t is _ck.KafkaError:
        return _error(x)
    if t is _ck.Message:
        if x.error() is None:
            return x
        return Message(x.topic(), x.partition(), x.offset(), x.key(), x.value(), x.headers(), x.timestamp(),
                       _error(x.error()), x.latency(), x.leader_epoch())
    if proxy is not None and x is proxy._client:
        return proxy
    if memo and id(x) in memo:
        return memo[id(x)][1]
    if isinstance(x, Future):
        return _future(x, proxy)
    seen = set() if seen is None else seen
    if id(x) in seen:
        return x
    seen.add(id(x))
    if t is list or t is tuple:
        return t(_out(i, proxy, memo, seen) for i in x)
    if t is dict:
        return {_out(k, proxy, memo, seen): _out(v, proxy, memo, seen) for k, v in x.items()}
    if t.__module__.startswith("confluent_kafka") and hasattr(x, "__dict__") and not isinstance(x, enum.Enum):
        fields = vars(x)                 # a plain result object: convert its fields in place
        for k, v in list(fields.items()):
            fields[k] = _out(v, proxy, None, seen)
    return x


def _future(f: Future, proxy) -> Future:
    out = Future()

    def done(f):
        try:
            out.set_result(_out(f.result(), proxy))
        except _ck.KafkaException as e:
            exc = _exception(e)
            exc.__cause__ = e
            out.set_exception(exc)
        except BaseException as e:
            out.set_exception(e)

    out.set_running_or_notify_cancel()
    f.add_done_callback(done)
    return out


def _calling(fn, proxy):
    """`fn` as confluent-kafka calls it, with embedlog's types for arguments. It holds the
    proxy weakly: the client holds `call`, and a cycle through the client is never freed."""
    ref = weakref.ref(proxy)

    def call(*args):
        return fn(*[_out(a, ref()) for a in args])
    call.__wrapped__ = fn
    return call


# ------------------------------------------------------------------ the proxies

class _Remote:
    """confluent-kafka's client behind embedlog's names: attributes are delegated, methods
    convert arguments, results and exceptions (module docstring)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        if name.startswith("__") or name == "_client":
            raise AttributeError(name)
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def method(self, *args, **kwargs):
            memo = {}
            args = [_in(a, self, memo) for a in args]
            kwargs = {k: _in(v, self, memo) for k, v in kwargs.items()}
            try:
                result = getattr(self._client, name)(*args, **kwargs)
            except _ck.KafkaException as e:
                raise _exception(e) from e
            return _out(result, self, memo)

        method.__name__ = method.__qualname__ = name
        method.__doc__ = attr.__doc__
        setattr(type(self), name, method)   # on the class: found directly next time, no cycle
        return getattr(self, name)

    def __enter__(self):
        self._client.__enter__()
        return self

    def __exit__(self, *exc):
        return self._client.__exit__(*exc)

    def __repr__(self):
        return f"<embedlog {type(self).__name__} for a Kafka cluster: {self._client!r}>"


class RemoteProducer(_Remote):
    """confluent_kafka.Producer; produce() and poll() spelled out to keep the per-record path short."""

    def produce(self, topic, value=None, key=None, *args, **kwargs):
        if args or kwargs:
            memo = {}
            args = [_in(a, self, memo) for a in args]
            kwargs = {k: _in(v, self, memo) for k, v in kwargs.items()}
        try:
            return self._client.produce(topic, value, key, *args, **kwargs)
        except _ck.KafkaException as e:
            raise _exception(e) from e

    def poll(self, *args, **kwargs):
        try:
            return self._client.poll(*args, **kwargs)
        except _ck.KafkaException as e:
            raise _exception(e) from e

    def __len__(self):
        return len(self._client)


class RemoteConsumer(_Remote):
    """confluent_kafka.Consumer; poll() spelled out: only a message with an error is converted."""

    def poll(self, *args, **kwargs):
        try:
            msg = self._client.poll(*args, **kwargs)
        except _ck.KafkaException as e:
            raise _exception(e) from e
        return msg if msg is None or msg.error() is None else _out(msg, self)


class RemoteAdminClient(_Remote):
    """confluent_kafka.admin.AdminClient; close() as embedlog's (confluent-kafka's has none)."""

    def close(self):
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


_PROXIES = {"Producer": RemoteProducer, "Consumer": RemoteConsumer, "AdminClient": RemoteAdminClient}
