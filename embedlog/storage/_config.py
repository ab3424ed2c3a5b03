"""Every config key embedlog knows, in one table per scope, with Kafka's names and defaults.

Values may be given as Python values or as the strings Kafka's tools take
("604800000", "true", "compact,delete"); they are normalized to Python values here.
Unknown keys are an error that names the nearest known key. Kafka keys that have no
meaning on one node are accepted and documented as no-ops (`noop=True`).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ._errors import ConfigError

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    parse: Callable[[str, Any], Any]
    doc: str
    noop: bool = False
    pending: str = ""      # stored and validated, but not yet acted on: which issue will
    local_only: bool = False   # means something only for a log directory: refused with Kafka brokers




def _int(lo: int, hi: int = LONG_MAX) -> Callable[[str, Any], int]:
    def parse(name, value):
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, not {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{name} must be an integer, not {value!r}") from None
        if not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, not {type(value).__name__} {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
        return value

    return parse


def _float(lo: float, hi: float):
    def parse(name, value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
        return value

    return parse


def _bool(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _choice(*choices: str):
    def parse(name, value):
        v = str(value).strip()
        if v not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return v

    return parse


def _cleanup_policy(name, value):
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    parts = sorted({str(p).strip() for p in items if str(p).strip()})
    if not parts or any(p not in ("compact", "delete") for p in parts):
        raise ConfigError(f"{name} must be delete, compact or compact,delete; got {value!r}")
    return ",".join(parts)


def _str(name, value):
    return str(value)


COMPRESSION_TYPES = ("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd")

_TOPIC_KEYS = [
    Key("cleanup.policy", "delete", _cleanup_policy, "delete, compact, or compact,delete"),
    Key("compression.type", "producer", _choice(*COMPRESSION_TYPES),
        "codec batches are stored with; producer keeps the producer's codec"),
    Key("confluent.key.schema.validation", False, _bool,
        "produce refuses a record whose key lacks Confluent's schema header naming an id "
        "registered under `<topic>-key` (README, Schema registry)"),
    Key("confluent.value.schema.validation", False, _bool,
        "produce refuses a record whose value lacks Confluent's schema header naming an id "
        "registered under `<topic>-value` (README, Schema registry)"),
    Key("delete.retention.ms", 86400000, _int(0), "how long tombstones survive after cleaning"),
    Key("file.delete.delay.ms", 60000, _int(0),
        "accepted; files are unlinked at once (readers keep open descriptors, POSIX)", noop=True),
    Key("flush.messages", LONG_MAX, _int(1), "fdatasync after this many appended records"),
    Key("flush.ms", LONG_MAX, _int(0), "fdatasync when the oldest unsynced append is this old"),
    Key("index.interval.bytes", 4096, _int(0, INT_MAX), "bytes of log between offset-index entries"),
    Key("log.cleaner.dedupe.buffer.size", 134217728, _int(48),
        "memory of compaction's key map: 24 bytes a distinct key, filled to 90% (about 5.0M keys at "
        "the default); a dirty range with more keys is cleaned over several passes (a broker setting in Kafka)"),
    Key("max.compaction.lag.ms", LONG_MAX, _int(1), "longest a record may stay uncompacted"),
    Key("max.message.bytes", 1048588, _int(0, INT_MAX), "largest batch, with its 12-byte log overhead"),
    Key("message.timestamp.type", "CreateTime", _choice("CreateTime", "LogAppendTime"),
        "whose timestamp records carry"),
    Key("message.timestamp.before.max.ms", LONG_MAX, _int(0), "reject CreateTime older than this", pending="timestamp validation"),
    Key("message.timestamp.after.max.ms", LONG_MAX, _int(0), "reject CreateTime further ahead than this", pending="timestamp validation"),
    Key("message.timestamp.difference.max.ms", LONG_MAX, _int(0), "deprecated in Kafka; accepted", noop=True),
    Key("min.cleanable.dirty.ratio", 0.5, _float(0.0, 1.0), "dirty share of the log that triggers cleaning"),
    Key("min.compaction.lag.ms", 0, _int(0), "youngest a record may be and still be compacted"),
    Key("min.insync.replicas", 1, _int(1, INT_MAX), "in-sync replicas (the primary counts) acks=all needs"),
    Key("replica.lag.time.max.ms", 30000, _int(1),
        "a mirror behind for longer leaves the in-sync set (a broker setting in Kafka)"),
    Key("preallocate", False, _bool, "accepted; segments are not preallocated", noop=True),
    Key("retention.bytes", -1, _int(-1), "largest size of one partition before old segments go; -1 unlimited"),
    Key("retention.ms", 604800000, _int(-1), "age after which segments are deleted; -1 unlimited"),
    Key("segment.bytes", 1073741824, _int(14, INT_MAX), "size at which a segment rolls"),
    Key("segment.index.bytes", 10485760, _int(4, INT_MAX), "largest offset index; a full index rolls the segment"),
    Key("segment.jitter.ms", 0, _int(0), "random jitter subtracted from segment.ms"),
    Key("segment.ms", 604800000, _int(1), "age (by record timestamps) at which a segment rolls"),
    Key("unclean.leader.election.enable", False, _bool, "no leader elections on one node", noop=True),
    Key("message.downconversion.enable", True, _bool, "no old-format clients to convert for", noop=True),
    Key("leader.replication.throttled.replicas", "", _str, "no replication throttling", noop=True),
    Key("follower.replication.throttled.replicas", "", _str, "no replication throttling", noop=True),
    Key("remote.storage.enable", False, _bool, "tiered storage is not supported", noop=True),
    Key("local.retention.ms", -2, _int(-2), "tiered storage is not supported", noop=True),
    Key("local.retention.bytes", -2, _int(-2), "tiered storage is not supported", noop=True),
]
TOPIC_CONFIG = {k.name: k for k in _TOPIC_KEYS}


def _unknown(name: str, table: dict, scope: str) -> ConfigError:
    close = difflib.get_close_matches(str(name), list(table), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {scope} config key {name!r}{hint}")


def validate(config: dict | None, table: dict, scope: str) -> dict:
    """Normalized copy of `config`; raises ConfigError naming the first bad key."""
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"{scope} config must be a dict of Kafka config keys, not {type(config).__name__} "
                          f"{config!r:.60}")
    out = {}
    for name, value in (config or {}).items():
        key = table.get(name)
        if key is None:
            raise _unknown(name, table, scope)
        out[name] = key.parse(name, value)
    return out


def topic_config(config: dict | None) -> dict:
    """Validated topic config with Kafka's defaults filled in."""
    values = {k.name: k.default for k in _TOPIC_KEYS}
    values.update(validate(config, TOPIC_CONFIG, "topic"))
    return values


def set_configs(values: dict, given: dict | None) -> dict:
    """What a topic's metadata stores: the keys the user set (normalized values from
    `values`, even when equal to the default), plus any key whose value differs from the
    default (so files of older versions, which kept only those, mean the same)."""
    out = topic_overrides(values)
    for key in given or {}:
        canonical = key if key in values else None
        if canonical is not None:
            out[canonical] = values[canonical]
    return dict(sorted(out.items()))


def topic_overrides(config: dict) -> dict:
    """Only the keys that differ from the defaults (what is persisted and described)."""
    return {k: v for k, v in config.items() if TOPIC_CONFIG[k].default != v}


# ---------------------------------------------------------------- client configs
# confluent-kafka (librdkafka) names. Aliases map to one canonical key, as librdkafka's do.

def _callable(name, value):
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be callable, not {type(value).__name__}")
    return value


def _acks(name, value):
    v = str(value).strip().lower()
    if v in ("all", "-1"):
        return -1
    if v in ("0", "1"):
        return int(v)
    raise ConfigError(f"{name} must be 0, 1, -1 or all; got {value!r}")


def _offset_reset(name, value):
    v = str(value).strip().lower()
    table = {"earliest": "earliest", "smallest": "earliest", "beginning": "earliest",
             "latest": "latest", "largest": "latest", "end": "latest", "error": "error"}
    if v not in table:
        raise ConfigError(f"{name} must be earliest, latest or error; got {value!r}")
    return table[v]


def _strategy(name, value):
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(i).strip() for i in items if str(i).strip()]
    bad = [i for i in out if i not in ("range", "roundrobin", "cooperative-sticky")]
    if not out or bad:
        raise ConfigError(f"{name}: unknown assignor {bad[0] if bad else value!r}; use range, roundrobin "
                          "or cooperative-sticky")
    return out


def _any(name, value):
    return value


def _noop(name, default=None, parse=_any, doc="no meaning on a single node; accepted and ignored"):
    return Key(name, default, parse, doc, noop=True)


_COMMON_KEYS = [
    Key("bootstrap.servers", None, _str, "the log directory (file:///path or a path), or Kafka brokers "
        "(host:port,...: the clients are then confluent-kafka's, README \"Moving to a Kafka cluster\")"),
    Key("embedlog.path", None, _str, "the log directory (wins over bootstrap.servers)"),
    Key("embedlog.lock.timeout.ms", 30000, _int(0), "longest wait for a partition lock"),
    Key("log.retention.check.interval.ms", 300000, _int(0),
        "how often a process that writes applies retention and compaction (0: never by itself)",
        local_only=True),
    Key("client.id", "rdkafka", _str, "a name for this client in errors and group descriptions"),
    Key("error_cb", None, _callable, "called with a KafkaError for errors outside any one message"),
    Key("logger", None, _any, "a logging.Logger for embedlog's log lines"),
    Key("request.timeout.ms", 30000, _int(1), "bound on blocking calls such as lock waits"),
    Key("allow.auto.create.topics", True, _bool, "create an unknown topic on first use"),
    Key("embedlog.num.partitions", 1, _int(1, 1 << 20), "partitions of auto-created topics (num.partitions)"),
] + [_noop(k) for k in (
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "sasl.oauthbearer.config", "ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
    "ssl.key.password", "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification",
    "socket.timeout.ms", "socket.keepalive.enable", "socket.connection.setup.timeout.ms",
    "connections.max.idle.ms", "metadata.max.age.ms", "topic.metadata.refresh.interval.ms",
    "api.version.request", "broker.version.fallback", "reconnect.backoff.ms",
    "reconnect.backoff.max.ms", "retry.backoff.ms", "retry.backoff.max.ms", "statistics.interval.ms",
    "stats_cb", "throttle_cb", "oauth_cb", "client.rack", "debug", "log_level", "log.connection.close",
    "client.dns.lookup", "default.topic.config", "enable.metrics.push")]

_PRODUCER_KEYS = [
    Key("acks", -1, _acks, "0: no wait; 1: written to the OS; all/-1: fdatasync'd (and mirrored)"),
    Key("enable.idempotence", False, _bool, "producer id + sequence numbers; retried batches stored once"),
    Key("retries", 2147483647, _int(0, INT_MAX), "attempts after a retriable append error"),
    Key("max.in.flight.requests.per.connection", 1000000, _int(1, 1000000),
        "batches in flight per partition (idempotence needs <= 5); embedlog appends one at a time, so order always holds"),
    Key("linger.ms", 5, _float(0, 900000), "how long a batch waits for more records"),
    Key("batch.size", 1000000, _int(1, INT_MAX), "bytes at which a batch is sent"),
    Key("batch.num.messages", 10000, _int(1, 1000000), "records at which a batch is sent"),
    Key("compression.type", "none", _choice("none", "gzip", "snappy", "lz4", "zstd"), "batch codec"),
    Key("compression.level", -1, _int(-1, 22), "codec level (-1: the codec's default)"),
    Key("queue.buffering.max.messages", 100000, _int(0, 2147483647),
        "records queued in the producer before produce() raises BufferError"),
    Key("queue.buffering.max.kbytes", 1048576, _int(1, INT_MAX), "KiB queued before BufferError"),
    Key("message.max.bytes", 1000000, _int(1000, 1000000000), "largest record batch the producer builds"),
    Key("delivery.timeout.ms", 300000, _int(0, INT_MAX), "time a record may wait for delivery"),
    Key("partitioner", "murmur2_random", _choice("murmur2_random", "murmur2", "consistent_random",
                                                  "consistent", "random", "fnv1a", "fnv1a_random"),
        "key -> partition; murmur2_random is the Java client's"),
    Key("on_delivery", None, _callable, "delivery report callback (err, msg)"),
    Key("delivery.report.only.error", False, _bool, "report only failed deliveries"),
    Key("transactional.id", None, _str, "enables transactions (init_transactions, ...); implies enable.idempotence"),
    Key("transaction.timeout.ms", 60000, _int(1000, 900000),
        "an open transaction older than this is aborted and its producer fenced"),
    Key("sticky.partitioning.linger.ms", 10, _int(0, 900000), "accepted; null keys stick per batch", noop=True),
    Key("enable.gapless.guarantee", False, _bool, "accepted; appends never leave gaps", noop=True),
]
_PRODUCER_ALIASES = {
    "request.required.acks": "acks", "message.send.max.retries": "retries",
    "max.in.flight": "max.in.flight.requests.per.connection", "queue.buffering.max.ms": "linger.ms",
    "compression.codec": "compression.type", "message.timeout.ms": "delivery.timeout.ms",
    "dr_cb": "on_delivery", "dr_msg_cb": "on_delivery", "retries.max": "retries",
}

_CONSUMER_KEYS = [
    Key("group.id", None, _str, "consumer group; needed for subscribe() and commits"),
    Key("group.instance.id", None, _str, "static membership id (a restart keeps the assignment)", pending="static membership (#5)"),
    Key("auto.offset.reset", "latest", _offset_reset, "where to start with no committed offset"),
    Key("enable.auto.commit", True, _bool, "commit stored offsets every auto.commit.interval.ms"),
    Key("auto.commit.interval.ms", 5000, _int(0, 86400000), "auto-commit period"),
    Key("enable.auto.offset.store", True, _bool, "store each delivered message's offset for commit"),
    Key("enable.partition.eof", False, _bool, "emit _PARTITION_EOF when a partition is drained"),
    Key("session.timeout.ms", 45000, _int(1, 3600000), "a member whose heartbeats stop this long (e.g. SIGSTOP) is evicted; a dead one goes at once (its lock is freed)"),
    Key("heartbeat.interval.ms", 3000, _int(1, 3600000), "how often membership is refreshed"),
    Key("max.poll.interval.ms", 300000, _int(1, 86400000), "a member that does not poll this long leaves the group (on_lost, _MAX_POLL_EXCEEDED) and rejoins"),
    Key("partition.assignment.strategy", ["range", "roundrobin"], _strategy,
        "assignors, in preference order; cooperative-sticky revokes only partitions that move"),
    Key("isolation.level", "read_committed", _choice("read_committed", "read_uncommitted"),
        "without transactions both read the same records"),
    Key("fetch.max.bytes", 52428800, _int(0, INT_MAX), "bytes per poll/consume across partitions"),
    Key("max.partition.fetch.bytes", 1048576, _int(1, INT_MAX), "bytes per partition per fetch"),
    Key("fetch.min.bytes", 1, _int(1, 100000000), "accepted", noop=True),
    Key("fetch.wait.max.ms", 500, _int(0, 300000), "accepted; poll wakes on the append", noop=True),
    Key("fetch.error.backoff.ms", 500, _int(0, 300000), "accepted", noop=True),
    Key("queued.min.messages", 100000, _int(1, 10000000), "records prefetched per partition"),
    Key("queued.max.messages.kbytes", 65536, _int(1, 2097151), "accepted", noop=True),
    Key("check.crcs", True, _bool, "CRCs are always checked", noop=True),
    Key("on_commit", None, _callable, "called with (err, [TopicPartition]) after each commit"),
    Key("group.protocol", "classic", _choice("classic", "consumer"), "accepted", noop=True),
    Key("group.remote.assignor", None, _str, "accepted", noop=True),
]
_CONSUMER_ALIASES = {
    "fetch.message.max.bytes": "max.partition.fetch.bytes", "topic.auto.offset.reset": "auto.offset.reset",
}

PRODUCER_CONFIG = {k.name: k for k in _COMMON_KEYS + _PRODUCER_KEYS}
CONSUMER_CONFIG = {k.name: k for k in _COMMON_KEYS + _CONSUMER_KEYS}
ADMIN_CONFIG = {k.name: k for k in _COMMON_KEYS}
_ALL_CLIENT_KEYS = {**PRODUCER_CONFIG, **CONSUMER_CONFIG}


def client_config(conf, table: dict, aliases: dict, scope: str) -> dict:
    """Validated client config with defaults; aliases resolved; unknown keys rejected."""
    if not isinstance(conf, dict):
        raise ConfigError(f"{scope} config must be a dict, not {type(conf).__name__}")
    values = {k.name: k.default for k in table.values()}
    given = {}
    for name, value in conf.items():
        canonical = aliases.get(name, name)
        if canonical not in table:
            raise _unknown(name, {**table, **aliases}, scope)
        if canonical == "default.topic.config" and isinstance(value, dict):
            for k, v in value.items():   # librdkafka's legacy nesting of topic-level keys
                canonical_k = aliases.get(k, k)
                if canonical_k in table:
                    given[canonical_k] = table[canonical_k].parse(canonical_k, v)
            continue
        given[canonical] = table[canonical].parse(canonical, value)
    values.update(given)
    values["_given"] = set(given)
    return values


def producer_config(conf) -> dict:
    return client_config(conf, PRODUCER_CONFIG, _PRODUCER_ALIASES, "producer")


def consumer_config(conf) -> dict:
    return client_config(conf, CONSUMER_CONFIG, _CONSUMER_ALIASES, "consumer")


def admin_config(conf) -> dict:
    return client_config(conf, ADMIN_CONFIG, {}, "admin client")


# ---------------------------------------------------------------- a directory or Kafka brokers

# librdkafka's listener prefixes (PLAINTEXT://host:9092); it refuses any other.
_SECURITY_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-_]*)://")
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%\w+)?\]|[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?)"
                        r":([0-9]{1,5})")
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def bootstrap_brokers(value) -> list[str] | None:
    """The Kafka broker addresses a `bootstrap.servers` value names, or None when it names a
    log directory. The one place that decides (the clients, `embedlog.open` and log_path).

    A directory: a non-str, `file:...`, a value starting with / ./ ../ ~ (or absolute), or
    an existing path. Brokers: every comma-separated item is `host:port` (a name, IPv4 or
    [IPv6]), optionally with librdkafka's PLAINTEXT:// SSL:// SASL_PLAINTEXT:// SASL_SSL://
    prefix. A value that is neither but looks like brokers (another scheme://, some items
    host:port and some not) raises ConfigError rather than becoming a directory of that
    name. A bare `host` without a port is a directory name."""
    if not isinstance(value, str):
        return None
    v = value.strip()
    if not v or v.startswith("file:") or v.startswith(_PATH_PREFIXES) or v in (".", "..") \
            or os.path.isabs(v) or os.path.exists(v):
        return None
    items = [item.strip() for item in v.split(",")]
    brokers, odd = [], []
    for item in items:
        if not item:
            continue
        scheme = _SCHEME.match(item)
        rest = item[scheme.end():] if scheme else item
        port = _HOST_PORT.fullmatch(rest)
        ok = port is not None and 0 < int(port.group(1)) < 65536
        if ok and (scheme is None or scheme.group(1).lower() in _SECURITY_PROTOCOLS):
            brokers.append(item)
        else:
            odd.append((item, scheme, port))
    if not odd:
        return brokers or None
    if brokers or any(scheme or port for _item, scheme, port in odd):
        item, scheme, port = odd[0]
        if scheme and scheme.group(1).lower() not in _SECURITY_PROTOCOLS:
            why = (f"librdkafka has no listener prefix {scheme.group(1)!r}:// (it takes "
                   f"{', '.join(p.upper() for p in _SECURITY_PROTOCOLS)})")
        elif port:
            why = f"the port of {item!r} is not between 1 and 65535"
        else:
            why = f"{item!r} is not host:port"
        raise ConfigError(f"bootstrap.servers {value!r} looks like Kafka broker addresses, but {why}; "
                          f"for a log directory of that name use 'file:{v}' or './{v}'")
    return None


def local_only_keys(conf: Mapping):
    """The keys of a client config that only a log directory understands (embedlog.*, and
    keys marked local_only), nested default.topic.config included, in order."""
    names = list(conf)
    nested = conf.get("default.topic.config")
    if isinstance(nested, Mapping):
        names += list(nested)
    return [n for n in names if isinstance(n, str) and (
        n.startswith("embedlog.") or getattr(_ALL_CLIENT_KEYS.get(n), "local_only", False))]


def log_path(values: dict) -> str:
    path = values.get("embedlog.path") or values.get("bootstrap.servers")
    if not values.get("embedlog.path") and bootstrap_brokers(path):
        raise ConfigError(f"bootstrap.servers {path!r} names Kafka brokers, not a log directory; a directory "
                          f"of that name is 'file:{path.strip()}'")
    if not path:
        raise ConfigError("no log directory: set 'bootstrap.servers' to 'file:///path/to/dir' "
                          "(or 'embedlog.path')")
    return path


def config_markdown() -> str:
    """CONFIG.md: every key embedlog accepts, from the tables above (regenerate with
    `python -m embedlog.storage._config > CONFIG.md`; a test checks it is current)."""

    def show(v):
        if v is None:
            return "—"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return ",".join(v)
        if isinstance(v, int) and v >= LONG_MAX:
            return "Long.MAX"
        if isinstance(v, int) and v == INT_MAX:
            return "Int.MAX"
        return f"{v}"

    out = ["# Configuration", "",
           "Every key embedlog accepts, with Kafka's names. Unknown keys are an error naming the",
           "nearest known key. Keys marked *no-op* are Kafka keys with no meaning on one node:",
           "accepted so that Kafka programs run unchanged, and ignored.", "",
           "Generated from `embedlog/storage/_config.py` by `python -m embedlog.storage._config > CONFIG.md`.", ""]
    sections = [("Topic configs (`create_topic(config=...)`, `NewTopic(config=...)`)", _TOPIC_KEYS, {}),
                ("Common client configs (Producer, Consumer, AdminClient)", _COMMON_KEYS, {}),
                ("Producer configs", _PRODUCER_KEYS, _PRODUCER_ALIASES),
                ("Consumer configs", _CONSUMER_KEYS, _CONSUMER_ALIASES)]
    for title, keys, aliases in sections:
        out += [f"## {title}", "", "| key | default | meaning |", "|---|---|---|"]
        for k in keys:
            doc = k.doc + (" *(no-op)*" if k.noop else "") + \
                (" *(log directory only: refused with Kafka brokers)*"
                 if k.local_only or (k.name.startswith("embedlog.") and k.name != "embedlog.path") else "") + \
                (f" *(validated and stored; not enforced yet: {k.pending})*" if k.pending else "")
            out.append(f"| `{k.name}` | {show(k.default)} | {doc} |")
        if aliases:
            out += ["", "Aliases (librdkafka names): " + ", ".join(
                f"`{a}` = `{c}`" for a, c in sorted(aliases.items()))]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(config_markdown(), end="")
