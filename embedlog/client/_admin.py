"""AdminClient with confluent-kafka's shape: results are futures keyed by name.

Metadata answers describe one node (id 0) that leads every partition, with replicas
and ISR [0] (mirroring, issue #7, adds replicas).
"""
from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..storage import _config
from ..storage._config import admin_config
from ..storage._errors import EmbedlogError, InvalidPartitionsError
from ..storage._offsets import consumer_lag, store_for  # noqa: F401 (consumer_lag: re-exported)
from ._clients import acquire_log, release_log
from ._groups import describe_group, list_groups
from ._kafka import (
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    TopicPartition,
    error_from,
)
from ._remote import remote_client

if TYPE_CHECKING:
    from typing_extensions import Self


# ------------------------------------------------------------------ metadata (confluent_kafka.admin shapes)
class BrokerMetadata:
    def __init__(self, path):
        self.id, self.host, self.port = 0, path, 0

    def __repr__(self):
        return f"BrokerMetadata(0, {self.host})"


class PartitionMetadata:
    def __init__(self, pid):
        self.id, self.leader, self.replicas, self.isrs, self.error = pid, 0, [0], [0], None

    def __repr__(self):
        return f"PartitionMetadata({self.id})"


class TopicMetadata:
    def __init__(self, name, partitions, error=None):
        self.topic = name
        self.partitions = {p: PartitionMetadata(p) for p in range(partitions)}
        self.error = error

    def __repr__(self):
        return f"TopicMetadata({self.topic}, {len(self.partitions)} partitions)"


class ClusterMetadata:
    def __init__(self, log):
        self.cluster_id = os.path.basename(log.path)
        self.controller_id = 0
        self.brokers = {0: BrokerMetadata(log.path)}
        self.topics: dict[str, TopicMetadata] = {}
        self.orig_broker_id = 0
        self.orig_broker_name = log.path


def cluster_metadata(log, topic=None) -> ClusterMetadata:
    md = ClusterMetadata(log)
    names = [topic] if topic is not None else log.topics()
    for name in names:
        try:
            md.topics[name] = TopicMetadata(name, log.topic(name).num_partitions)
        except EmbedlogError as e:
            md.topics[name] = TopicMetadata(name, 0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, str(e)))
    return md


class NewTopic:
    def __init__(self, topic: str, num_partitions: int = -1, replication_factor: int = -1,
                 replica_assignment: list[list[int]] | None = None, config: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.replica_assignment = replica_assignment
        self.config = dict(config or {})

    def __repr__(self):
        return f"NewTopic(topic={self.topic},num_partitions={self.num_partitions})"


class NewPartitions:
    def __init__(self, topic: str, new_total_count: int, replica_assignment: list[list[int]] | None = None) -> None:
        self.topic = topic
        self.new_total_count = new_total_count
        self.replica_assignment = replica_assignment


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    BROKER = 4


class ConfigSource(enum.IntEnum):
    UNKNOWN_CONFIG = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DEFAULT_CONFIG = 5


class ConfigEntry:
    def __init__(self, name, value, source=ConfigSource.UNKNOWN_CONFIG, is_read_only=False,
                 is_default=False, is_sensitive=False, is_synonym=False, synonyms=None):
        self.name, self.value, self.source = name, value, source
        self.is_read_only, self.is_default, self.is_sensitive = is_read_only, is_default, is_sensitive
        self.is_synonym, self.synonyms = is_synonym, synonyms or {}

    def __repr__(self):
        return f"ConfigEntry({self.name}=\"{self.value}\")"

    def __str__(self):
        return f"{self.name}=\"{self.value}\""


class ConfigResource:
    Type = ResourceType

    def __init__(self, restype: ResourceType | int | str, name: str, set_config: Mapping[str, str] | None = None,
                 described_configs: dict[str, ConfigEntry] | None = None, error: KafkaError | None = None) -> None:
        if isinstance(restype, str):
            restype = ResourceType[restype.upper()]
        self.restype = ResourceType(restype)
        self.name = name
        self.set_config_dict = dict(set_config or {})
        self.configs = described_configs
        self.error = error

    def set_config(self, name: str, value: str, overwrite: bool = True) -> None:
        if not overwrite and name in self.set_config_dict:
            return
        self.set_config_dict[name] = value

    def __hash__(self):
        return hash((self.restype, self.name))

    def __eq__(self, other):
        return isinstance(other, ConfigResource) and (self.restype, self.name) == (other.restype, other.name)

    def __repr__(self):
        return f"ConfigResource({self.restype.name},{self.name})"


class ConsumerGroupTopicPartitions:
    def __init__(self, group_id, topic_partitions=None):
        self.group_id = group_id
        self.topic_partitions = topic_partitions


class ConsumerGroupListing:
    def __init__(self, group_id, is_simple_consumer_group, state=None):
        self.group_id, self.is_simple_consumer_group, self.state = group_id, is_simple_consumer_group, state


class ListConsumerGroupsResult:
    def __init__(self, valid=None, errors=None):
        self.valid, self.errors = valid or [], errors or []


class MemberAssignment:
    def __init__(self, topic_partitions=None):
        self.topic_partitions = topic_partitions or []


class MemberDescription:
    def __init__(self, member_id, client_id, host, assignment, group_instance_id=None):
        self.member_id, self.client_id, self.host = member_id, client_id, host
        self.assignment, self.group_instance_id = assignment, group_instance_id


class ConsumerGroupDescription:
    def __init__(self, group_id, is_simple_consumer_group, members, partition_assignor, state,
                 coordinator, generation=-1):
        self.group_id, self.is_simple_consumer_group = group_id, is_simple_consumer_group
        self.members, self.partition_assignor, self.state = members, partition_assignor, state
        self.coordinator, self.generation = coordinator, generation


def _done(value=None, exc=None) -> Future:
    f: Future = Future()
    if exc is not None:
        f.set_exception(exc)
    else:
        f.set_result(value)
    return f


def _kexc(e) -> KafkaException:
    return KafkaException(error_from(e) if isinstance(e, EmbedlogError) else KafkaError(KafkaError._FAIL, str(e)))


class AdminClient:
    """confluent_kafka.admin.AdminClient for a log directory."""

    def __new__(cls, conf=None, **kwargs):
        """For a log directory, this class; for Kafka brokers in bootstrap.servers,
        confluent-kafka's AdminClient behind embedlog's names (_remote)."""
        remote = remote_client("AdminClient", conf, kwargs)
        return super().__new__(cls) if remote is None else remote

    def __init__(self, conf: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._conf = admin_config(dict(conf or {}, **kwargs))
        self._log = acquire_log(self._conf)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_log(self._log)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self):
        if self._closed:
            raise RuntimeError("AdminClient closed")

    # -- topics
    def create_topics(self, new_topics: Sequence[NewTopic], operation_timeout: float = 0,
                      request_timeout: float | None = None, validate_only: bool = False) -> dict[str, Future]:
        self._check()
        out = {}
        for nt in new_topics:
            try:
                parts = nt.num_partitions if nt.num_partitions not in (-1, None) else \
                    self._conf["embedlog.num.partitions"]
                rf = 1 if nt.replication_factor in (-1, None) else nt.replication_factor
                if validate_only:
                    from ..storage._log import validate_topic_name
                    validate_topic_name(nt.topic)
                    _config.topic_config(nt.config)
                    if nt.topic in self._log:
                        raise KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS,
                                                        f"topic {nt.topic!r} already exists"))
                else:
                    self._log.create_topic(nt.topic, parts, nt.config, replication_factor=rf)
                out[nt.topic] = _done(None)
            except KafkaException as e:
                out[nt.topic] = _done(exc=e)
            except (EmbedlogError, TypeError, ValueError) as e:
                out[nt.topic] = _done(exc=_kexc(e))
        return out

    def delete_topics(self, topics: Sequence[str], operation_timeout: float = 0,
                      request_timeout: float | None = None) -> dict[str, Future]:
        self._check()
        out = {}
        for name in topics:
            try:
                self._log.delete_topic(name)
                out[name] = _done(None)
            except EmbedlogError as e:
                out[name] = _done(exc=_kexc(e))
        return out

    def create_partitions(self, new_partitions: Sequence[NewPartitions], operation_timeout: float = 0,
                          request_timeout: float | None = None, validate_only: bool = False) -> dict[str, Future]:
        self._check()
        out = {}
        for np_ in new_partitions:
            try:
                self._log.add_partitions(np_.topic, np_.new_total_count, validate_only=validate_only)
                out[np_.topic] = _done(None)
            except EmbedlogError as e:
                out[np_.topic] = _done(exc=_kexc(e))
        return out

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        self._check()
        return cluster_metadata(self._log, topic)

    # -- configs
    def describe_configs(self, resources: Sequence[ConfigResource],
                         request_timeout: float | None = None) -> dict[ConfigResource, Future]:
        self._check()
        out = {}
        for res in resources:
            try:
                if res.restype != ResourceType.TOPIC:
                    raise KafkaException(KafkaError(KafkaError.INVALID_REQUEST,
                                                    f"only TOPIC configs exist in embedlog, not {res.restype.name}"))
                t = self._log.topic(res.name)
                overrides = t.config_overrides
                entries = {}
                for name, value in t.config.items():
                    default = name not in overrides
                    entries[name] = ConfigEntry(
                        name, _config_str(value),
                        ConfigSource.DEFAULT_CONFIG if default else ConfigSource.DYNAMIC_TOPIC_CONFIG,
                        is_default=default)
                out[res] = _done(entries)
            except KafkaException as e:
                out[res] = _done(exc=e)
            except EmbedlogError as e:
                out[res] = _done(exc=_kexc(e))
        return out

    def alter_configs(self, resources: Sequence[ConfigResource], request_timeout: float | None = None,
                      validate_only: bool = False) -> dict[ConfigResource, Future]:
        """Replace each topic's config overrides with the resource's set_config (Kafka's
        non-incremental AlterConfigs: keys not given return to their defaults)."""
        return self._alter(resources, incremental=False, validate_only=validate_only)

    def incremental_alter_configs(self, resources: Sequence[ConfigResource], request_timeout: float | None = None,
                                  validate_only: bool = False) -> dict[ConfigResource, Future]:
        """Merge each resource's set_config into the topic's overrides."""
        return self._alter(resources, incremental=True, validate_only=validate_only)

    def _alter(self, resources, *, incremental, validate_only):
        self._check()
        out = {}
        for res in resources:
            try:
                self._log.alter_topic_config(res.name, res.set_config_dict, incremental=incremental,
                                             validate_only=validate_only)
                out[res] = _done(None)
            except EmbedlogError as e:
                out[res] = _done(exc=_kexc(e))
        return out

    # -- groups
    def list_consumer_groups(self, request_timeout: float | None = None, states: object = None,
                             types: object = None) -> Future:
        self._check()
        store = store_for(self._log)
        store.refresh()
        names = set(list_groups(self._log)) | store.groups()
        valid = []
        for g in sorted(names):
            st = describe_group(self._log, g)
            simple = st is None
            state = "Empty" if not st or not st.get("members") else "Stable"
            valid.append(ConsumerGroupListing(g, simple, state))
        return _done(ListConsumerGroupsResult(valid))

    def describe_consumer_groups(self, group_ids: Sequence[str], request_timeout: float | None = None,
                                 include_authorized_operations: bool = False) -> dict[str, Future]:
        self._check()
        out = {}
        for g in group_ids:
            st = describe_group(self._log, g)
            members = []
            if st:
                for mid, m in sorted(st.get("members", {}).items()):
                    members.append(MemberDescription(
                        mid, m.get("client_id"), f"pid {m.get('pid')}",
                        MemberAssignment([TopicPartition(t, p) for t, p in m.get("assignment", [])])))
            state = "Stable" if members else ("Empty" if st else "Dead")
            out[g] = _done(ConsumerGroupDescription(
                g, st is None, members, (st or {}).get("protocol") or "", state, None,
                (st or {}).get("generation", -1)))
        return out

    def list_consumer_group_offsets(self, list_consumer_group_offsets_request: Sequence[ConsumerGroupTopicPartitions],
                                    require_stable: bool = False, request_timeout: float | None = None) -> dict[str, Future]:
        self._check()
        store = store_for(self._log)
        store.refresh()
        out = {}
        for req in list_consumer_group_offsets_request:
            offsets = store.group_offsets(req.group_id)
            if req.topic_partitions:
                tps = []
                for tp in req.topic_partitions:
                    c = offsets.get((tp.topic, tp.partition))
                    tps.append(TopicPartition(tp.topic, tp.partition, c[0] if c else OFFSET_INVALID))
            else:
                tps = [TopicPartition(t, p, o[0], o[1] or None) for (t, p), o in sorted(offsets.items())]
            out[req.group_id] = _done(ConsumerGroupTopicPartitions(req.group_id, tps))
        return out

    def alter_consumer_group_offsets(self, alter_consumer_group_offsets_request: Sequence[ConsumerGroupTopicPartitions],
                                     request_timeout: float | None = None) -> dict[str, Future]:
        """Set committed offsets of a group with no active members (as Kafka requires)."""
        self._check()
        store = store_for(self._log)
        out = {}
        for req in alter_consumer_group_offsets_request:
            try:
                st = describe_group(self._log, req.group_id)
                if st and st.get("members"):
                    raise KafkaException(KafkaError(
                        KafkaError.UNKNOWN_MEMBER_ID,
                        f"group {req.group_id!r} has active members; stop them before altering offsets"))
                todo = []
                for tp in req.topic_partitions or []:
                    part = self._log.topic(tp.topic).partition(tp.partition)
                    start, end = part.watermarks()
                    if not start <= tp.offset <= end:
                        raise KafkaException(KafkaError(
                            KafkaError.OFFSET_OUT_OF_RANGE,
                            f"offset {tp.offset} is outside {tp.topic} [{tp.partition}] ({start}..{end})"))
                    todo.append((tp.topic, tp.partition, tp.offset, tp.metadata or ""))
                store.commit(req.group_id, todo)
                out[req.group_id] = _done(ConsumerGroupTopicPartitions(
                    req.group_id, [TopicPartition(t, p, o) for t, p, o, _m in todo]))
            except KafkaException as e:
                out[req.group_id] = _done(exc=e)
            except EmbedlogError as e:
                out[req.group_id] = _done(exc=_kexc(e))
        return out


def _config_str(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["AdminClient", "NewTopic", "NewPartitions", "ConfigResource", "ConfigEntry", "ResourceType",
           "ConfigSource", "ClusterMetadata", "TopicMetadata", "PartitionMetadata", "BrokerMetadata",
           "ConsumerGroupTopicPartitions", "ConsumerGroupListing", "ListConsumerGroupsResult",
           "ConsumerGroupDescription", "MemberDescription", "MemberAssignment", "consumer_lag",
           "InvalidPartitionsError", "warnings"]
