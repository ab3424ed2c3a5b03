"""Every config key embedlog knows, in one table per scope, with Kafka's names and defaults.

Values may be given as Python values or as the strings Kafka's tools take
("604800000", "true", "compact,delete"); they are normalized to Python values here.
Unknown keys are an error that names the nearest known key. Kafka keys that have no
meaning on one node are accepted and documented as no-ops (`noop=True`).
"""
from __future__ import annotations

import difflib
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
    Key("delete.retention.ms", 86400000, _int(0), "how long tombstones survive after cleaning"),
    Key("file.delete.delay.ms", 60000, _int(0), "delay before a deleted segment's files are removed"),
    Key("flush.messages", LONG_MAX, _int(1), "fdatasync after this many appended records"),
    Key("flush.ms", LONG_MAX, _int(0), "fdatasync when the oldest unsynced append is this old"),
    Key("index.interval.bytes", 4096, _int(0, INT_MAX), "bytes of log between offset-index entries"),
    Key("max.compaction.lag.ms", LONG_MAX, _int(1), "longest a record may stay uncompacted"),
    Key("max.message.bytes", 1048588, _int(0, INT_MAX), "largest batch, with its 12-byte log overhead"),
    Key("message.timestamp.type", "CreateTime", _choice("CreateTime", "LogAppendTime"),
        "whose timestamp records carry"),
    Key("message.timestamp.before.max.ms", LONG_MAX, _int(0), "reject CreateTime older than this"),
    Key("message.timestamp.after.max.ms", LONG_MAX, _int(0), "reject CreateTime further ahead than this"),
    Key("message.timestamp.difference.max.ms", LONG_MAX, _int(0), "deprecated in Kafka; accepted", noop=True),
    Key("min.cleanable.dirty.ratio", 0.5, _float(0.0, 1.0), "dirty share of the log that triggers cleaning"),
    Key("min.compaction.lag.ms", 0, _int(0), "youngest a record may be and still be compacted"),
    Key("min.insync.replicas", 1, _int(1, INT_MAX), "in-sync replicas acks=all needs"),
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


def topic_overrides(config: dict) -> dict:
    """Only the keys that differ from the defaults (what is persisted and described)."""
    return {k: v for k, v in config.items() if TOPIC_CONFIG[k].default != v}
