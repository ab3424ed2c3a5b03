"""The two kinds of end a bridge joins: a log directory (`DirEnd`) and a Kafka cluster
(`KafkaEnd`, through confluent-kafka). Both answer the same questions: topics with their
partition counts and non-default configs, watermarks, records from an offset, a durable
write of records to one partition, consumer groups and their committed offsets.

Records travel as `Rec` (offset, timestamp, key, value, headers); headers are a tuple of
(str, bytes | None) pairs on both sides.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import NamedTuple

from ..client._groups import describe_group, list_groups
from ..storage import _config
from ..storage._config import bootstrap_brokers
from ..storage._errors import EmbedlogError
from ..storage._log import open_log
from ..storage._offsets import store_for
from ..storage._records import encode_batch, now_ms


class BridgeError(EmbedlogError):
    """The bridge cannot go on; the message says where and why. Nothing acknowledged is lost."""


class Rec(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple


STATE_TOPIC = "__embedlog_bridge"
STATE_CONFIG = {"cleanup.policy": "compact"}
# Kafka codes of compression.type; "producer" keeps what the bridge chooses: lz4.
_CODECS = {"none": 0, "uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4, "producer": 3}
_WRITE_CHUNK = 512 * 1024                  # bytes of payload per batch, well under max.message.bytes


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def skipped_topic(name: str) -> bool:
    """Internal topics stay where they are: `__consumer_offsets` travels as translated group
    offsets, the bridge's own state stays with its directory."""
    return name.startswith("__")


# ====================================================================== directory
class DirEnd:
    kind = "directory"

    def __init__(self, path: str, *, create: bool):
        self.log = open_log(path, create=create)
        self.label = self.log.path
        self.identity = "dir:" + self.log.path
        self._state = None

    def close(self):
        self.log.close()

    # -- topics
    def topics(self) -> dict[str, int]:
        return {t: self.log.topic(t).num_partitions for t in self.log.topics()}

    def topic_config(self, name: str) -> dict[str, str]:
        return {k: _text(v) for k, v in _config.topic_overrides(self.log.topic(name).config).items()}

    def create_topic(self, name: str, partitions: int, config: dict[str, str]) -> list[str]:
        """Create with the configs embedlog knows; returns the keys left out."""
        known = {k: v for k, v in config.items() if k in _config.TOPIC_CONFIG}
        self.log.create_topic(name, partitions, known)
        return sorted(set(config) - set(known))

    def add_partitions(self, name: str, total: int):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "keys will move": the caller asked for it
            self.log.add_partitions(name, total)

    # -- records
    def watermarks(self, topic: str, p: int) -> tuple[int, int]:
        return self.log.partition(topic, p).watermarks()

    def read(self, topic: str, p: int, offset: int, max_records: int) -> tuple[list[Rec], int]:
        part = self.log.partition(topic, p)
        start = part.log_start_offset
        if offset < start:
            offset = start                       # retention removed them before they were copied
        cols, nxt = part.fetch(offset, max_bytes=max(1 << 20, max_records * 64))
        recs = list(map(Rec._make, zip(*cols)))
        if len(recs) > max_records:
            recs = recs[:max_records]
            nxt = recs[-1].offset + 1
        return recs, nxt

    def iter_records(self, topic: str, p: int, start: int, stop: int):
        while start < stop:
            recs, nxt = self.read(topic, p, start, 10000)
            for r in recs:
                if r.offset >= stop:
                    return
                yield r
            if nxt <= start:
                return
            start = nxt

    def write(self, topic: str, p: int, recs: list[Rec]) -> tuple[int, int]:
        """Append durably (fdatasync'd) in order; (first offset, end offset after)."""
        part = self.log.partition(topic, p)
        codec = _CODECS.get(str(part.config.get("compression.type", "producer")), 3)
        batches, i = [], 0
        while i < len(recs):
            j, size = i, 0
            while j < len(recs) and (j == i or size < _WRITE_CHUNK):
                r = recs[j]
                size += 24 + len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v or b"")
                                                                            for k, v in r.headers)
                j += 1
            chunk = recs[i:j]
            batches.append(encode_batch([r.value for r in chunk], [r.key for r in chunk],
                                        [r.timestamp for r in chunk],
                                        [list(r.headers) if r.headers else None for r in chunk],
                                        compression=codec))
            i = j
        results = part.append_batches(batches, sync=True, _built_here=True)
        return results[0].base_offset, results[-1].last_offset + 1

    def end_offset(self, topic: str, p: int) -> int:
        return self.log.partition(topic, p).log_end_offset

    def wait(self, timeout: float):
        seen = self.log.notifier.value()
        self.log.notifier.wait(seen, timeout)

    # -- groups
    def groups(self) -> list[str]:
        store = store_for(self.log)
        store.refresh()
        return sorted(set(list_groups(self.log)) | store.groups())

    def group_offsets(self, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        store = store_for(self.log)
        store.refresh()
        return {tp: (v[0], v[1]) for tp, v in store.group_offsets(group).items()}

    def group_active(self, group: str) -> bool:
        st = describe_group(self.log, group)
        return bool(st and st.get("members"))

    def commit_group(self, group: str, offsets: dict[tuple[str, int], tuple[int, str]]):
        store_for(self.log).commit(group, [(t, p, o, m or "") for (t, p), (o, m) in sorted(offsets.items())])

    # -- the bridge's own state: (next source offset, destination end) per partition
    def _state_part(self):
        if STATE_TOPIC not in self.log.topics():
            try:
                self.log.create_topic(STATE_TOPIC, 1, STATE_CONFIG)
            except EmbedlogError:
                pass                              # created by another process meanwhile
        return self.log.partition(STATE_TOPIC, 0)

    def state_load(self, bridge: str) -> dict[tuple[str, int], tuple[int, int]]:
        part = self._state_part()
        out, pos = {}, part.log_start_offset
        while True:
            cols, nxt = part.fetch(pos)
            for key, value in zip(cols.keys, cols.values):
                name, topic, p = json.loads(key)
                if name == bridge:
                    if value is None:
                        out.pop((topic, p), None)
                    else:
                        v = json.loads(value)
                        out[(topic, p)] = (v["src"], v["dst"])
            if nxt <= pos:
                return out
            pos = nxt

    def state_save(self, bridge: str, syncs: dict[tuple[str, int], tuple[int, int]]):
        if not syncs:
            return
        keys = [json.dumps([bridge, t, p]).encode() for (t, p) in syncs]
        ms = now_ms()
        values = [json.dumps({"src": s, "dst": d, "ms": ms}).encode() for s, d in syncs.values()]
        self._state_part().append_records(values, keys, sync=True)


# ====================================================================== Kafka cluster
def _kafka():
    try:
        import confluent_kafka
        from confluent_kafka import admin
    except ImportError:
        raise BridgeError("a Kafka cluster end needs confluent-kafka: pip install 'embedlog[kafka]'") from None
    return confluent_kafka, admin


class KafkaEnd:
    kind = "cluster"

    def __init__(self, bootstrap: str, conf: dict | None = None, *, timeout: float = 10.0):
        ck, admin = _kafka()
        self.ck, self.ak = ck, admin
        self.bootstrap = bootstrap
        self.timeout = timeout
        # librdkafka's own log lines (connection refused, retries) go to Python logging,
        # not straight to stderr: the bridge reports failures itself.
        self.conf = {"logger": logging.getLogger("embedlog.bridge.kafka"), **(conf or {}),
                     "bootstrap.servers": bootstrap}
        self.admin = admin.AdminClient(self.conf)
        md = self._metadata()
        self.label = bootstrap
        self.identity = "kafka:" + (md.cluster_id or bootstrap)
        self._producer = None
        self._reader = None
        self._reader_at = {}
        self._errors = []

    def _metadata(self, topic: str | None = None):
        try:
            return self.admin.list_topics(topic=topic, timeout=self.timeout)
        except self.ck.KafkaException as e:
            raise BridgeError(f"cannot reach the Kafka brokers at {self.bootstrap} within {self.timeout:g} s "
                              f"({e.args[0].str()})") from None

    def close(self):
        if self._producer is not None:
            self._producer.flush(self.timeout)
        if self._reader is not None:
            self._reader.close()

    def _wait(self, futures: dict, what: str):
        out = {}
        for k, f in futures.items():
            try:
                out[k] = f.result(timeout=self.timeout)
            except self.ck.KafkaException as e:
                raise BridgeError(f"{what} {k} on {self.bootstrap}: {e.args[0].str()}") from None
            except Exception as e:                 # a timeout of the future itself
                raise BridgeError(f"{what} {k} on {self.bootstrap}: {type(e).__name__}: {e}") from None
        return out

    # -- topics
    def topics(self) -> dict[str, int]:
        md = self._metadata()
        return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}

    def topic_config(self, name: str) -> dict[str, str]:
        res = self.ak.ConfigResource(self.ak.ResourceType.TOPIC, name)
        (cfg,) = self._wait(self.admin.describe_configs([res]), "describe configs of").values()
        dynamic = self.ak.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        return {k: c.value for k, c in cfg.items() if c.source == dynamic and c.value is not None}

    def create_topic(self, name: str, partitions: int, config: dict[str, str]) -> list[str]:
        nt = self.ak.NewTopic(name, partitions, -1, config=dict(config))
        self._wait(self.admin.create_topics([nt], request_timeout=self.timeout), "create topic")
        self._await_topic(name, partitions)
        return []

    def add_partitions(self, name: str, total: int):
        self._wait(self.admin.create_partitions([self.ak.NewPartitions(name, total)]), "add partitions to")
        self._await_topic(name, total)

    def _await_topic(self, name: str, partitions: int):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            t = self._metadata(name).topics.get(name)
            if t is not None and t.error is None and len(t.partitions) >= partitions:
                return
            time.sleep(0.1)
        raise BridgeError(f"topic {name} was created on {self.bootstrap} but its {partitions} partitions "
                          f"did not show in the metadata within {self.timeout:g} s")

    # -- records
    def _consumer(self):
        return self.ck.Consumer({**self.conf, "group.id": f"embedlog-bridge-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False, "enable.auto.offset.store": False,
                                 "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
                                 "enable.partition.eof": True})

    def watermarks(self, topic: str, p: int) -> tuple[int, int]:
        c = self._reader or self._consumer()
        try:
            return c.get_watermark_offsets(self.ck.TopicPartition(topic, p), timeout=self.timeout)
        except self.ck.KafkaException as e:
            raise BridgeError(f"watermarks of {topic} [{p}] on {self.bootstrap}: {e.args[0].str()}") from None
        finally:
            if c is not self._reader:
                c.close()

    def end_offset(self, topic: str, p: int) -> int:
        """The log end, read from a Fetch response's high watermark: some brokers (Tansu
        0.6) answer ListOffsets(latest) with the last batch's base offset + 1."""
        low, high = self.watermarks(topic, p)
        c = self._consumer()
        try:
            c.assign([self.ck.TopicPartition(topic, p, max(low, high - 1))])
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None:
                    _lo, hw = c.get_watermark_offsets(self.ck.TopicPartition(topic, p), cached=True)
                    return max(high, hw)
                if high == low:
                    return high
            return high
        finally:
            c.close()

    def read_many(self, positions: dict[tuple[str, int], int], max_records: int,
                  timeout: float) -> dict[tuple[str, int], tuple[list[Rec], int]]:
        """Records from many partitions at once: {tp: (records, next offset)}."""
        ck = self.ck
        if self._reader is None:
            self._reader = self._consumer()
        if self._reader_at != positions:
            self._reader.assign([ck.TopicPartition(t, p, o) for (t, p), o in positions.items()])
        out: dict = {}
        for m in self._reader.consume(max_records, timeout):
            err = m.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    continue
                raise BridgeError(f"reading {m.topic()} [{m.partition()}] from {self.bootstrap}: {err.str()}")
            tp = (m.topic(), m.partition())
            recs = out.setdefault(tp, [])
            recs.append(Rec(m.offset(), m.timestamp()[1], m.key(), m.value(), tuple(m.headers() or ())))
        result = {tp: (recs, recs[-1].offset + 1) for tp, recs in out.items()}
        self._reader_at = dict(positions)
        for tp, (_recs, nxt) in result.items():
            self._reader_at[tp] = nxt
        return result

    def iter_records(self, topic: str, p: int, start: int, stop: int):
        _low, high = self.watermarks(topic, p)
        stop = min(stop, max(high, self.end_offset(topic, p)))
        if start >= stop:
            return
        c = self._consumer()
        try:
            c.assign([self.ck.TopicPartition(topic, p, start)])
            idle_until = time.monotonic() + self.timeout
            while time.monotonic() < idle_until:
                msgs = c.consume(10000, 0.2)
                for m in msgs:
                    if m.error() is not None:
                        if m.error().code() == self.ck.KafkaError._PARTITION_EOF:
                            return
                        raise BridgeError(f"reading {topic} [{p}] from {self.bootstrap}: {m.error().str()}")
                    if m.offset() >= stop:
                        return
                    yield Rec(m.offset(), m.timestamp()[1], m.key(), m.value(), tuple(m.headers() or ()))
                    if m.offset() + 1 >= stop:
                        return
                if msgs:
                    idle_until = time.monotonic() + self.timeout
        finally:
            c.close()

    def write(self, topic: str, p: int, recs: list[Rec]) -> tuple[int, int]:
        """Produce in order with an idempotent producer (acks=all) and wait for every
        delivery report; (first offset, end offset after)."""
        if self._producer is None:
            self._producer = self.ck.Producer({
                "linger.ms": 5, "compression.type": "lz4", **self.conf,
                "enable.idempotence": True, "acks": "all", "queue.buffering.max.messages": 1_000_000,
                "message.timeout.ms": max(int(self.timeout * 1000) * 3, 30000)})
        offsets, errors = [], []

        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                offsets.append(msg.offset())

        produce, poll = self._producer.produce, self._producer.poll
        for r in recs:
            while True:
                try:
                    produce(topic, r.value, r.key, partition=p, on_delivery=report, timestamp=r.timestamp,
                            headers=list(r.headers) or None)
                    break
                except BufferError:
                    poll(0.05)
        left = self._producer.flush(max(self.timeout * 3, 30))
        if errors or left or len(offsets) != len(recs):
            why = errors[0].str() if errors else f"{left} records not acknowledged in time"
            raise BridgeError(f"writing {topic} [{p}] to {self.bootstrap}: {why}")
        return min(offsets), max(offsets) + 1

    def wait(self, timeout: float):
        time.sleep(timeout)

    # -- groups
    def groups(self) -> list[str]:
        try:
            res = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
        except self.ck.KafkaException as e:
            raise BridgeError(f"listing groups on {self.bootstrap}: {e.args[0].str()}") from None
        return sorted(g.group_id for g in res.valid if not g.group_id.startswith("embedlog-bridge-"))

    def group_offsets(self, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        req = [self.ck.ConsumerGroupTopicPartitions(group)]
        (res,) = self._wait(self.admin.list_consumer_group_offsets(req), "committed offsets of group").values()
        return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "")
                for tp in res.topic_partitions or [] if tp.offset >= 0}

    def group_active(self, group: str) -> bool:
        (d,) = self._wait(self.admin.describe_consumer_groups([group]), "describe group").values()
        return bool(d.members)

    def commit_group(self, group: str, offsets: dict[tuple[str, int], tuple[int, str]]):
        tps = [self.ck.TopicPartition(t, p, o, metadata=m or "") for (t, p), (o, m) in sorted(offsets.items())]
        self._wait(self.admin.alter_consumer_group_offsets([self.ck.ConsumerGroupTopicPartitions(group, tps)]),
                   "commit offsets of group")


def is_brokers(value: str) -> bool:
    """`host:port[,host:port]` (optionally with a listener prefix such as PLAINTEXT://): the
    clients' own rule (storage._config.bootstrap_brokers), so `--from`/`--to` and
    `bootstrap.servers` never disagree; a value that half looks like brokers is a ConfigError."""
    return bool(bootstrap_brokers(value))


def open_end(value: str, *, create: bool, kafka_config: dict | None = None, timeout: float = 10.0):
    if is_brokers(value):
        return KafkaEnd(value, kafka_config, timeout=timeout)
    return DirEnd(value, create=create)
