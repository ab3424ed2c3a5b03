"""The data plane on the wire: Metadata, Produce, Fetch, ListOffsets, InitProducerId.

Each function takes the decoded request body (and the broker's view) and returns the
response body; they run off the event loop (they take partition locks and fdatasync).
A produced batch is handed to Partition.append_batches as the client built it (the
storage checks its CRC, size and producer sequence and stamps the offsets); a fetch
answers with the stored bytes of whole batches (read_raw), never re-encoded: one
storage call per partition, no Python step per record.
"""
from __future__ import annotations

import random
import uuid

from ..client._produce_input import record_check
from ..storage._errors import (EmbedlogError, InvalidTopicError, OffsetOutOfRangeError,
                               UnknownTopicOrPartitionError)
from ..storage._log import validate_topic_name
from ..storage._offsets import OFFSETS_TOPIC
from ..storage._records import parse_header
from . import _protocol as P
from ._schema import ZERO_UUID

# Topics Kafka calls internal (is_internal in Metadata); DeleteTopics refuses them.
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC})
HEADER = 61


def error_code(e: BaseException) -> int:
    code = getattr(e, "code", None)
    if isinstance(e, EmbedlogError) and isinstance(code, int) and code != -1:
        return code
    return P.UNKNOWN_SERVER_ERROR


def topic_uuid(t) -> bytes:
    try:
        return bytes.fromhex(t.topic_id) if t.topic_id else ZERO_UUID
    except ValueError:
        return ZERO_UUID


class DataPlane:
    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self._rng = random.SystemRandom()

    # ------------------------------------------------------------ topics
    def topic(self, name: str, *, create: bool = False):
        """The Topic, auto-created (auto.create.topics.enable) when asked and allowed."""
        try:
            return self.log.topic(name)
        except UnknownTopicOrPartitionError:
            if not (create and self.broker.auto_create):
                raise
        validate_topic_name(name)
        try:
            return self.log.create_topic(name, self.broker.default_partitions)
        except EmbedlogError as e:
            if getattr(e, "code", None) == P.TOPIC_ALREADY_EXISTS:
                return self.log.topic(name)
            raise

    def topic_by_id(self, topic_id: bytes):
        for name in self.log.topics():
            try:
                t = self.log.topic(name)
            except UnknownTopicOrPartitionError:
                continue
            if topic_uuid(t) == bytes(topic_id):
                return t
        return None

    # ------------------------------------------------------------ Metadata
    def metadata(self, body: dict, version: int) -> dict:
        b = self.broker
        requested = body.get("topics")
        allow = body.get("allow_auto_topic_creation", True)
        if requested is None or (version == 0 and not requested):
            names = [n for n in self.log.topics()]
            wanted = [(n, None) for n in names]
        else:
            wanted = [(r.get("name"), r.get("topic_id")) for r in requested]
        topics = []
        for name, tid in wanted:
            # A topic asked for by id that is not found: its name is null from v12 on, and
            # an empty string before, where the schema does not allow null.
            entry = {"error_code": P.NONE, "name": name if name is not None or version >= 12 else "", "topic_id": ZERO_UUID, "is_internal": False,
                     "partitions": [], "topic_authorized_operations": -2147483648}
            try:
                if name is None:
                    t = self.topic_by_id(tid or ZERO_UUID)
                    if t is None:
                        topics.append({**entry, "error_code": P.UNKNOWN_TOPIC_ID, "topic_id": tid})
                        continue
                else:
                    t = self.topic(name, create=allow)
            except InvalidTopicError:
                topics.append({**entry, "error_code": P.INVALID_TOPIC_EXCEPTION})
                continue
            except UnknownTopicOrPartitionError:
                topics.append({**entry, "error_code": P.UNKNOWN_TOPIC_OR_PARTITION})
                continue
            except EmbedlogError as e:
                topics.append({**entry, "error_code": error_code(e)})
                continue
            parts = [{"error_code": P.NONE, "partition_index": p, "leader_id": b.node_id, "leader_epoch": 0,
                      "replica_nodes": [b.node_id], "isr_nodes": [b.node_id], "offline_replicas": []}
                     for p in range(t.num_partitions)]
            topics.append({**entry, "name": t.name, "topic_id": topic_uuid(t),
                           "is_internal": t.name in INTERNAL_TOPICS, "partitions": parts})
        return {"throttle_time_ms": 0, "brokers": [b.broker_entry()], "cluster_id": b.cluster_id,
                "controller_id": b.node_id, "topics": topics, "cluster_authorized_operations": -2147483648}

    # ------------------------------------------------------------ Produce
    def produce(self, body: dict, version: int) -> dict:
        acks = body["acks"]
        out = []
        if acks not in (0, 1, -1):
            for td in body["topic_data"]:
                out.append({"name": td["name"], "partition_responses": [
                    {"index": pd["index"], "error_code": P.INVALID_REQUIRED_ACKS, "base_offset": -1,
                     "log_append_time_ms": -1, "log_start_offset": -1} for pd in td["partition_data"]]})
            return {"responses": out, "throttle_time_ms": 0}
        if body.get("transactional_id") is not None:
            code = P.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        else:
            code = None
        for td in body["topic_data"]:
            parts = []
            try:
                t = self.topic(td["name"], create=True)
            except InvalidTopicError:
                t, terr = None, P.INVALID_TOPIC_EXCEPTION
            except EmbedlogError as e:
                t, terr = None, error_code(e) if not isinstance(e, UnknownTopicOrPartitionError) else \
                    P.UNKNOWN_TOPIC_OR_PARTITION
            for pd in td["partition_data"]:
                if code is not None:
                    parts.append(_pr(pd["index"], code))
                elif t is None:
                    parts.append(_pr(pd["index"], terr))
                else:
                    parts.append(self._produce_partition(t, pd, acks))
            out.append({"name": td["name"], "partition_responses": parts})
        return {"responses": out, "throttle_time_ms": 0}

    def _produce_partition(self, t, pd: dict, acks: int) -> dict:
        index = pd["index"]
        records = pd.get("records")
        if not isinstance(index, int) or not 0 <= index < t.num_partitions:
            return _pr(index, P.UNKNOWN_TOPIC_OR_PARTITION)
        if records is None or len(records) == 0:
            return _pr(index, P.CORRUPT_MESSAGE, "no records")
        batches = []
        view = memoryview(records)
        pos = 0
        try:
            while pos < len(view):
                if len(view) - pos < HEADER:
                    return _pr(index, P.CORRUPT_MESSAGE, f"{len(view) - pos} trailing bytes are not a batch")
                magic = view[pos + 16]
                if magic != 2:
                    return _pr(index, P.UNSUPPORTED_FOR_MESSAGE_FORMAT,
                               f"message format v{magic} is not stored; use RecordBatch v2 (Produce v3+)")
                size = int.from_bytes(view[pos + 8:pos + 12], "big", signed=True) + 12
                if size < HEADER or pos + size > len(view):
                    return _pr(index, P.CORRUPT_MESSAGE, f"batch length {size} at byte {pos} does not fit")
                batches.append(view[pos:pos + size])
                pos += size
            if (check := record_check(self.log, t)) is not None:
                check.batches(batches, index)      # schema validation (#15): INVALID_RECORD, nothing written
            part = t.partition(index)
            results = part.append_batches(batches, sync=acks == -1)
        except EmbedlogError as e:
            return _pr(index, error_code(e), str(e))
        except OSError as e:
            return _pr(index, P.KAFKA_STORAGE_ERROR, str(e))
        first = results[0]
        return {"index": index, "error_code": P.NONE, "base_offset": first.base_offset,
                "log_append_time_ms": first.log_append_time, "log_start_offset": part.log_start_offset,
                "record_errors": [], "error_message": None}

    # ------------------------------------------------------------ Fetch
    def fetch_once(self, body: dict, version: int, budget: list) -> tuple[dict, int]:
        """One pass over the requested partitions: (response, bytes gathered). KIP-74:
        the response's max_bytes and each partition's limit are soft for the first
        batch of the first non-empty partition, so a consumer always makes progress."""
        total_max = body.get("max_bytes", 0x7FFFFFFF)
        total = 0
        responses = []
        for ft in body["topics"]:
            name = ft.get("topic")
            tid = ft.get("topic_id")
            t = None
            terr = P.NONE
            try:
                if version >= 13:
                    t = self.topic_by_id(tid or ZERO_UUID)
                    if t is None:
                        terr = P.UNKNOWN_TOPIC_ID
                    else:
                        name = t.name
                else:
                    t = self.log.topic(name)
            except InvalidTopicError:
                terr = P.UNKNOWN_TOPIC_OR_PARTITION
            except UnknownTopicOrPartitionError:
                terr = P.UNKNOWN_TOPIC_OR_PARTITION
            parts = []
            for fp in ft["partitions"]:
                index = fp["partition"]
                r = {"partition_index": index, "error_code": terr, "high_watermark": -1,
                     "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
                     "preferred_read_replica": -1, "records": None}
                if terr != P.NONE:
                    parts.append(r)
                    continue
                if not 0 <= index < t.num_partitions:
                    parts.append({**r, "error_code": P.UNKNOWN_TOPIC_OR_PARTITION})
                    continue
                part = t.partition(index)
                start, hw = part.watermarks()
                r.update(high_watermark=hw, last_stable_offset=hw, log_start_offset=start)
                offset = fp["fetch_offset"]
                if offset < start or (offset > hw and offset > part.log_end_offset):
                    parts.append({**r, "error_code": P.OFFSET_OUT_OF_RANGE})
                    continue
                limit = min(fp["partition_max_bytes"], total_max - total)
                data = b""
                if offset < hw and (limit > 0 or total == 0):
                    try:
                        data = part.read_raw(offset, max_bytes=max(limit, 1))
                    except OffsetOutOfRangeError:
                        parts.append({**r, "error_code": P.OFFSET_OUT_OF_RANGE})
                        continue
                    except EmbedlogError as e:
                        parts.append({**r, "error_code": error_code(e)})
                        continue
                    if limit <= 0 or (len(data) > limit and total > 0):
                        data = _first_batches(data, limit) if total > 0 else _first_batches(data, 0)
                total += len(data)
                r["records"] = data
                parts.append(r)
            resp = {"topic": name, "partitions": parts}
            if version >= 13:
                resp["topic_id"] = tid
            responses.append(resp)
        return {"throttle_time_ms": 0, "error_code": P.NONE, "session_id": 0, "responses": responses}, total

    # ------------------------------------------------------------ ListOffsets
    def list_offsets(self, body: dict, version: int) -> dict:
        topics = []
        for lt in body["topics"]:
            try:
                t = self.log.topic(lt["name"])
                terr = P.NONE
            except (UnknownTopicOrPartitionError, InvalidTopicError):
                t, terr = None, P.UNKNOWN_TOPIC_OR_PARTITION
            parts = []
            for lp in lt["partitions"]:
                index = lp["partition_index"]
                r = {"partition_index": index, "error_code": terr, "timestamp": -1, "offset": -1,
                     "leader_epoch": -1, "old_style_offsets": []}
                if t is not None and not 0 <= index < t.num_partitions:
                    r["error_code"] = P.UNKNOWN_TOPIC_OR_PARTITION
                if r["error_code"] != P.NONE:
                    parts.append(r)
                    continue
                part = t.partition(index)
                ts = lp["timestamp"]
                start, hw = part.watermarks()
                r["leader_epoch"] = 0
                if ts == -1:                  # LATEST
                    r["offset"] = hw
                elif ts in (-2, -4):          # EARLIEST, EARLIEST_LOCAL (no tiered storage)
                    r["offset"] = start
                elif ts == -3:                # MAX_TIMESTAMP (KIP-734)
                    r["offset"], r["timestamp"] = max_timestamp_offset(part, start, hw)
                elif ts == -5:                # LATEST_TIERED: nothing is tiered
                    r["offset"] = -1
                elif ts < 0:
                    r["error_code"] = P.INVALID_REQUEST
                else:
                    found = part.offset_for_time(ts)
                    if found is not None:
                        r["offset"], r["timestamp"] = found
                parts.append(r)
            topics.append({"name": lt["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    # ------------------------------------------------------------ InitProducerId
    def init_producer_id(self, body: dict, version: int) -> dict:
        if body.get("transactional_id") is not None:
            return {"throttle_time_ms": 0, "error_code": P.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "producer_id": -1, "producer_epoch": -1}
        pid, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
        if pid >= 0 and 0 <= epoch < 32766:
            return {"throttle_time_ms": 0, "error_code": P.NONE, "producer_id": pid, "producer_epoch": epoch + 1}
        return {"throttle_time_ms": 0, "error_code": P.NONE, "producer_id": self._rng.getrandbits(62),
                "producer_epoch": 0}


def max_timestamp_offset(part, start: int, hw: int) -> tuple[int, int]:
    """ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the first record carrying the
    partition's largest timestamp; (-1, -1) when empty. Reads the batch headers of the
    whole partition (an admin call, rare), then the records of one batch."""
    best_ts, best_base = -1, None
    offset = start
    while offset < hw:
        raw = part.read_raw(offset, max_bytes=16 << 20)
        if not raw:
            break
        pos = 0
        while pos + HEADER <= len(raw):
            h = parse_header(raw, pos, verify_crc=False)
            if h.max_timestamp > best_ts and h.base_offset < hw:
                best_ts, best_base = h.max_timestamp, max(h.base_offset, start)
            pos += h.size
            offset = h.last_offset + 1
    if best_base is None:
        return -1, -1
    cols = part.read_columns(best_base, max_records=1 << 16)
    for off, ts in zip(cols.offsets, cols.timestamps):
        if ts == best_ts:
            return off, ts
    return best_base, best_ts


def _pr(index: int, code: int, message: str | None = None) -> dict:
    return {"index": index, "error_code": code, "base_offset": -1, "log_append_time_ms": -1,
            "log_start_offset": -1, "record_errors": [], "error_message": message}


def _first_batches(data: bytes, limit: int) -> bytes:
    """Whole batches of `data` within `limit` bytes, at least the first one if limit is 0."""
    pos = 0
    view = memoryview(data)
    while pos + 12 <= len(view):
        size = int.from_bytes(view[pos + 8:pos + 12], "big") + 12
        if pos + size > limit and (pos > 0 or limit > 0):
            break
        pos += size
        if limit == 0:
            break
    return bytes(view[:pos])


def new_cluster_id(path: str) -> str:
    """A stable cluster id for a log directory: 22 base64url characters, as Kafka's."""
    import base64
    return base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_URL, "embedlog:" + path).bytes).decode().rstrip("=")


__all__ = ["DataPlane", "parse_header", "new_cluster_id"]
