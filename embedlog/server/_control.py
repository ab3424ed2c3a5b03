"""The control plane on the wire: group offsets (OffsetCommit, OffsetFetch, OffsetDelete),
group listing (ListGroups, DescribeGroups, DeleteGroups) and the admin APIs
(CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs, DeleteRecords, DescribeCluster).

Committed offsets are the same `__consumer_offsets` records the in-process clients
write (storage/_offsets.py); topics are created, altered and deleted through the same
Log calls as `embedlog.admin`, so every process sees the change at its next call.
Like the data plane, every function runs off the event loop.
"""
from __future__ import annotations

import logging
import warnings

from ..client._groups import describe_group, list_groups
from ..storage import _config
from ..storage._errors import (ConfigError, EmbedlogError, InvalidTopicError,
                               UnknownTopicOrPartitionError)
from ..storage._log import validate_topic_name
from ..storage._offsets import store_for
from . import _protocol as P
from ._coordinator import encode_assignment, encode_subscription
from ._data import INTERNAL_TOPICS, error_code, topic_uuid

log_ = logging.getLogger("embedlog.server")
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5


def _type_of(value) -> int:
    """DescribeConfigs v3 config_type: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 5
    if isinstance(value, float):
        return 6
    return 2


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ControlPlane:
    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self.coord = broker.coordinator

    # ------------------------------------------------------------ offsets
    def offset_commit(self, body: dict, version: int) -> dict:
        group = body["group_id"]
        tps = [(t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]]
        code = self.coord.check_commit(group, body.get("member_id", ""), body.get("generation_id_or_member_epoch",
                                                                               body.get("generation_id", -1)), tps)
        results = {}
        todo = []
        for t in body["topics"]:
            try:
                topic = self.log.topic(t["name"])
                n = topic.num_partitions
            except (UnknownTopicOrPartitionError, InvalidTopicError):
                n = None
            for p in t["partitions"]:
                key = (t["name"], p["partition_index"])
                if code != P.NONE:
                    results[key] = code
                elif n is None or not 0 <= key[1] < n:
                    results[key] = P.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    results[key] = P.NONE
                    todo.append((key[0], key[1], p["committed_offset"], p.get("committed_metadata") or ""))
        if todo:
            try:
                store_for(self.log).commit(group, todo)
            except EmbedlogError as e:
                for tp in todo:
                    results[(tp[0], tp[1])] = error_code(e)
        return {"throttle_time_ms": 0, "topics": [
            {"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"], "error_code": results[(t["name"], p["partition_index"])]}
                for p in t["partitions"]]} for t in body["topics"]]}

    def _fetch_group(self, group: str, topics) -> tuple[list, int]:
        store = store_for(self.log)
        store.refresh()
        offsets = store.group_offsets(group)
        if topics is None:
            by_topic = {}
            for (t, p), v in sorted(offsets.items()):
                by_topic.setdefault(t, []).append(p)
            topics = [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]
        out = []
        for t in topics:
            parts = []
            for p in t["partition_indexes"]:
                v = offsets.get((t["name"], p))
                parts.append({"partition_index": p, "committed_offset": v[0] if v else -1,
                              "committed_leader_epoch": -1, "metadata": (v[1] if v else "") or "",
                              "error_code": P.NONE})
            out.append({"name": t["name"], "partitions": parts})
        return out, P.NONE

    def offset_fetch(self, body: dict, version: int) -> dict:
        if version >= 8:
            groups = []
            for g in body["groups"]:
                topics = g.get("topics")
                topics = None if topics is None else [{"name": t["name"], "partition_indexes": t["partition_indexes"]}
                                                      for t in topics]
                res, code = self._fetch_group(g["group_id"], topics)
                groups.append({"group_id": g["group_id"], "topics": res, "error_code": code})
            return {"throttle_time_ms": 0, "groups": groups}
        topics = body.get("topics")
        res, code = self._fetch_group(body["group_id"], topics)
        return {"throttle_time_ms": 0, "topics": res, "error_code": code}

    def offset_delete(self, body: dict, version: int) -> dict:
        group = body["group_id"]
        state = describe_group(self.log, group) or {}
        subscribed = set()
        for m in (state.get("members") or {}).values():
            subscribed.update(m.get("subscription", []))
        store = store_for(self.log)
        store.refresh()
        if not store.group_offsets(group) and not state:
            return {"error_code": P.GROUP_ID_NOT_FOUND, "throttle_time_ms": 0, "topics": []}
        out, todo = [], []
        for t in body["topics"]:
            code = P.GROUP_SUBSCRIBED_TO_TOPIC if t["name"] in subscribed else P.NONE
            out.append({"name": t["name"], "partitions": [{"partition_index": p["partition_index"], "error_code": code}
                                                           for p in t["partitions"]]})
            if code == P.NONE:
                todo.extend((t["name"], p["partition_index"]) for p in t["partitions"])
        if todo:
            store.delete(group, todo)
        return {"error_code": P.NONE, "throttle_time_ms": 0, "topics": out}

    # ------------------------------------------------------------ groups
    def _all_groups(self) -> list[str]:
        store = store_for(self.log)
        store.refresh()
        return sorted(set(list_groups(self.log)) | store.groups())

    def _state_name(self, group: str) -> str:
        st = describe_group(self.log, group)
        if st and st.get("members") and self.coord._any_live(group):
            return "Stable"
        return "Empty"

    def list_groups(self, body: dict, version: int) -> dict:
        states = set(body.get("states_filter") or [])
        types = set(body.get("types_filter") or [])
        out = []
        for g in self._all_groups():
            state = self._state_name(g)
            if states and state not in states:
                continue
            if types and "classic" not in types and "consumer" not in types:
                continue
            out.append({"group_id": g, "protocol_type": "consumer", "group_state": state, "group_type": "classic"})
        return {"throttle_time_ms": 0, "error_code": P.NONE, "groups": out}

    def describe_groups(self, body: dict, version: int) -> dict:
        out = []
        for g in body["groups"]:
            st = describe_group(self.log, g) or {}
            state = self._state_name(g) if st or g in self._all_groups() else "Dead"
            members = []
            if state == "Stable":
                wire = {m.member_id: m for m in self.coord.wire_members(g)}
                for mid, info in sorted((st.get("members") or {}).items()):
                    w = wire.get(mid)
                    members.append({
                        "member_id": mid, "group_instance_id": w.instance_id if w else None,
                        "client_id": info.get("client_id") or "",
                        "client_host": (w.client_host if w else f"/pid-{info.get('pid')}") or "",
                        "member_metadata": w.metadata if w else encode_subscription(info.get("subscription", [])),
                        "member_assignment": encode_assignment([tuple(tp) for tp in info.get("assignment", [])]),
                    })
            out.append({"error_code": P.NONE, "group_id": g, "group_state": state,
                        "protocol_type": "consumer" if state != "Dead" else "",
                        "protocol_data": (st.get("protocol") or "") if state == "Stable" else "",
                        "members": members, "authorized_operations": -2147483648})
        return {"throttle_time_ms": 0, "groups": out}

    def delete_groups(self, body: dict, version: int) -> dict:
        out = []
        known = set(self._all_groups())
        store = store_for(self.log)
        for g in body["groups_names"]:
            if g not in known:
                code = P.GROUP_ID_NOT_FOUND
            elif self._state_name(g) != "Empty":
                code = P.GROUP_NOT_EMPTY
            else:
                parts = list(store.group_offsets(g))
                if parts:
                    store.delete(g, parts)
                code = P.NONE
            out.append({"group_id": g, "error_code": code})
        return {"throttle_time_ms": 0, "results": out}

    # ------------------------------------------------------------ topics
    def create_topics(self, body: dict, version: int) -> dict:
        out = []
        validate_only = body.get("validate_only", False)
        for t in body["topics"]:
            name = t["name"]
            r = {"name": name, "topic_id": bytes(16), "error_code": P.NONE, "error_message": None,
                 "num_partitions": -1, "replication_factor": -1, "configs": None}
            n = t["num_partitions"]
            rf = t["replication_factor"]
            if t.get("assignments"):
                if n != -1 or rf != -1:
                    out.append({**r, "error_code": P.INVALID_REQUEST,
                                "error_message": "give num_partitions or assignments, not both"})
                    continue
                n = len(t["assignments"])
                rf = len(t["assignments"][0]["broker_ids"])
            n = self.broker.default_partitions if n == -1 else n
            rf = 1 if rf == -1 else rf
            config = {c["name"]: c["value"] for c in t.get("configs", [])}
            try:
                validate_topic_name(name)
                values = _config.topic_config(config)
                if n < 1:
                    raise _err(P.INVALID_PARTITIONS, f"number of partitions must be at least 1, not {n}")
                self._check_partition_limit(n)
                if rf < 1:
                    raise _err(P.INVALID_REPLICATION_FACTOR, f"replication factor must be at least 1, not {rf}")
                if validate_only:
                    if name in self.log.topics():
                        raise _err(P.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
                    topic = None
                else:
                    topic = self.log.create_topic(name, n, config, replication_factor=rf)
            except EmbedlogError as e:
                out.append({**r, "error_code": error_code(e), "error_message": str(e)})
                continue
            r.update(num_partitions=n, replication_factor=rf,
                     topic_id=topic_uuid(topic) if topic is not None else bytes(16),
                     configs=[{"name": k, "value": _text(v), "read_only": False,
                               "config_source": SOURCE_DYNAMIC_TOPIC if k in config else SOURCE_DEFAULT,
                               "is_sensitive": False} for k, v in sorted(values.items())])
            out.append(r)
        return {"throttle_time_ms": 0, "topics": out}

    def _check_partition_limit(self, n: int):
        limit = self.broker.max_partitions
        if n > limit:
            raise _err(P.INVALID_PARTITIONS, f"{n} partitions is above this server's limit of {limit} per topic "
                       "(embedlog serve --max-partitions)")

    def delete_topics(self, body: dict, version: int) -> dict:
        if version >= 6:
            wanted = [(t.get("name"), t.get("topic_id")) for t in body["topics"]]
        else:
            wanted = [(n, None) for n in body["topic_names"]]
        out = []
        for name, tid in wanted:
            r = {"name": name, "topic_id": tid or bytes(16), "error_code": P.NONE, "error_message": None}
            try:
                if name is None:
                    t = self.broker.data.topic_by_id(tid or bytes(16))
                    if t is None:
                        out.append({**r, "error_code": P.UNKNOWN_TOPIC_ID})
                        continue
                    name = r["name"] = t.name
                if name in INTERNAL_TOPICS:
                    raise _err(P.INVALID_TOPIC_EXCEPTION, f"{name} is internal (it holds the consumer groups' "
                               "committed offsets) and cannot be deleted")
                self.log.delete_topic(name)
            except EmbedlogError as e:
                r.update(error_code=error_code(e), error_message=str(e))
            out.append(r)
        return {"throttle_time_ms": 0, "responses": out}

    def create_partitions(self, body: dict, version: int) -> dict:
        out = []
        for t in body["topics"]:
            r = {"name": t["name"], "error_code": P.NONE, "error_message": None}
            try:
                self._check_partition_limit(t["count"])
                with warnings.catch_warnings(record=True) as said:     # "keys will move": the log's, not the client's
                    warnings.simplefilter("always")
                    self.log.add_partitions(t["name"], t["count"], validate_only=body.get("validate_only", False))
                for w in said:
                    log_.warning("%s", w.message)
            except EmbedlogError as e:
                r.update(error_code=error_code(e), error_message=str(e))
            out.append(r)
        return {"throttle_time_ms": 0, "results": out}

    def delete_records(self, body: dict, version: int) -> dict:
        out = []
        for t in body["topics"]:
            parts = []
            try:
                topic = self.log.topic(t["name"])
            except (UnknownTopicOrPartitionError, InvalidTopicError):
                topic = None
            for p in t["partitions"]:
                r = {"partition_index": p["partition_index"], "low_watermark": -1, "error_code": P.NONE}
                if topic is None or not 0 <= p["partition_index"] < topic.num_partitions:
                    parts.append({**r, "error_code": P.UNKNOWN_TOPIC_OR_PARTITION})
                    continue
                part = topic.partition(p["partition_index"])
                offset = p["offset"]
                if offset == -1:
                    offset = part.high_watermark
                if offset < 0 or offset > part.high_watermark:
                    parts.append({**r, "error_code": P.OFFSET_OUT_OF_RANGE})
                    continue
                try:
                    r["low_watermark"] = part.delete_records(offset)
                except EmbedlogError as e:
                    r["error_code"] = error_code(e)
                parts.append(r)
            out.append({"name": t["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": out}

    # ------------------------------------------------------------ configs
    def describe_configs(self, body: dict, version: int) -> dict:
        out = []
        for res in body["resources"]:
            rtype, name = res["resource_type"], res["resource_name"]
            keys = res.get("configuration_keys")
            r = {"error_code": P.NONE, "error_message": None, "resource_type": rtype, "resource_name": name,
                 "configs": []}
            if rtype == TOPIC_RESOURCE:
                try:
                    t = self.log.topic(name)
                    meta = self.log._read_meta(name) or {}
                except (UnknownTopicOrPartitionError, InvalidTopicError) as e:
                    out.append({**r, "error_code": P.UNKNOWN_TOPIC_OR_PARTITION, "error_message": str(e)})
                    continue
                overrides = meta.get("config") or {}
                items = [(k, v, k in overrides) for k, v in sorted(t.config.items())]
                source_set = SOURCE_DYNAMIC_TOPIC
            elif rtype == BROKER_RESOURCE:
                if name not in ("", str(self.broker.node_id)):
                    out.append({**r, "error_code": P.INVALID_REQUEST, "error_message": f"no broker {name}"})
                    continue
                items = [(k, v, True) for k, v in sorted(self.broker.broker_configs().items())]
                source_set = SOURCE_STATIC_BROKER
            else:
                out.append({**r, "error_code": P.INVALID_REQUEST,
                            "error_message": f"resource type {rtype} is not served"})
                continue
            for k, v, is_set in items:
                if keys is not None and k not in keys:
                    continue
                src = source_set if is_set else SOURCE_DEFAULT
                r["configs"].append({"name": k, "value": _text(v), "read_only": rtype == BROKER_RESOURCE,
                                     "is_default": not is_set, "config_source": src, "is_sensitive": False,
                                     "synonyms": [{"name": k, "value": _text(v), "source": src}]
                                     if res and body.get("include_synonyms") else [],
                                     "config_type": _type_of(v),
                                     "documentation": _doc(k) if body.get("include_documentation") else None})
            out.append(r)
        return {"throttle_time_ms": 0, "results": out}

    def _alter(self, name: str, changes: dict, incremental: bool, validate_only: bool):
        self.log.alter_topic_config(name, changes, incremental=incremental, validate_only=validate_only)

    def alter_configs(self, body: dict, version: int) -> dict:
        out = []
        for res in body["resources"]:
            r = {"error_code": P.NONE, "error_message": None, "resource_type": res["resource_type"],
                 "resource_name": res["resource_name"]}
            if res["resource_type"] != TOPIC_RESOURCE:
                out.append({**r, "error_code": P.INVALID_REQUEST, "error_message": "only topic configs can be altered"})
                continue
            changes = {c["name"]: c["value"] for c in res["configs"]}
            try:
                self._alter(res["resource_name"], changes, False, body.get("validate_only", False))
            except EmbedlogError as e:
                r.update(error_code=error_code(e), error_message=str(e))
            out.append(r)
        return {"throttle_time_ms": 0, "responses": out}

    def incremental_alter_configs(self, body: dict, version: int) -> dict:
        out = []
        for res in body["resources"]:
            r = {"error_code": P.NONE, "error_message": None, "resource_type": res["resource_type"],
                 "resource_name": res["resource_name"]}
            if res["resource_type"] != TOPIC_RESOURCE:
                out.append({**r, "error_code": P.INVALID_REQUEST, "error_message": "only topic configs can be altered"})
                continue
            try:
                changes = {}
                current = None
                for c in res["configs"]:
                    op, key, value = c["config_operation"], c["name"], c["value"]
                    if op == 0:
                        changes[key] = value
                    elif op == 1:
                        changes[key] = None
                    elif op in (2, 3):          # APPEND / SUBTRACT on list configs
                        if key != "cleanup.policy":
                            raise ConfigError(f"{key} is not a list config: APPEND/SUBTRACT do not apply")
                        if current is None:
                            current = self.log.topic(res["resource_name"]).config
                        items = [x for x in str(changes.get(key, current[key])).split(",") if x]
                        add = [x for x in (value or "").split(",") if x]
                        items = items + [x for x in add if x not in items] if op == 2 else \
                            [x for x in items if x not in add]
                        changes[key] = ",".join(items)
                    else:
                        raise _err(P.INVALID_REQUEST, f"unknown config operation {op}")
                self._alter(res["resource_name"], changes, True, body.get("validate_only", False))
            except EmbedlogError as e:
                r.update(error_code=error_code(e), error_message=str(e))
            out.append(r)
        return {"throttle_time_ms": 0, "responses": out}

    def describe_cluster(self, body: dict, version: int) -> dict:
        b = self.broker
        return {"throttle_time_ms": 0, "error_code": P.NONE, "error_message": None, "endpoint_type": 1,
                "cluster_id": b.cluster_id, "controller_id": b.node_id, "brokers": [b.broker_entry()],
                "cluster_authorized_operations": -2147483648}


class _Coded(EmbedlogError):
    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


def _err(code: int, text: str) -> EmbedlogError:
    return _Coded(code, text)


def _doc(key: str) -> str | None:
    k = _config.TOPIC_CONFIG.get(key)
    return getattr(k, "doc", None) if k is not None else None
