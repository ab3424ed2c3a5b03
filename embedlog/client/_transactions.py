"""The transactional Producer's side of KIP-98 (issue #19): librdkafka's transaction state
machine and errors over the coordinator (storage/_txn_coordinator.py). Split from
_producer.py, which calls it only when transactional.id is set.

    INIT -init_transactions-> READY -begin_transaction-> IN_TRANSACTION
    IN_TRANSACTION -commit_transaction-> COMMITTING -> READY
    IN_TRANSACTION | ABORTABLE_ERROR -abort_transaction-> ABORTING -> READY
    a failed delivery or offsets refusal -> ABORTABLE_ERROR (txn_requires_abort)
    fenced (another instance, or the timeout abort) -> FATAL_ERROR (_FENCED, fatal)
"""
from __future__ import annotations

import os
import threading

from ..storage import _hotpath as hp
from ..storage._errors import EmbedlogError, LockTimeoutError, ProducerFencedError
from ..storage._offsets import OFFSETS_TOPIC, encode_key, encode_value, store_for
from ..storage._txn_coordinator import coordinator_for, expire_and_recover
from ._groups import GROUPS_DIR, describe_group_path, group_dir_name
from ._kafka import KafkaError, KafkaException

INIT, READY, IN_TRANSACTION, COMMITTING, ABORTING, ABORTABLE_ERROR, FATAL_ERROR = (
    "INIT", "READY", "IN_TRANSACTION", "COMMITTING", "ABORTING", "ABORTABLE_ERROR", "FATAL_ERROR")


class Transactions:
    """One transactional producer's transaction state (the producer holds one)."""

    def __init__(self, producer, transactional_id: str, timeout_ms: int):
        self.p = producer
        self.id = transactional_id
        self.timeout_ms = timeout_ms
        self.state = INIT
        self.error: KafkaError | None = None       # the abortable or fatal error
        self.partitions: set[tuple[str, int]] = set()
        self.lock = threading.RLock()
        self.coordinator = coordinator_for(producer._log)

    # -- errors
    def _raise_state(self, what):
        if self.state == FATAL_ERROR:
            raise KafkaException(self.error)
        if self.state == ABORTABLE_ERROR and what != "abort_transaction":
            raise KafkaException(self.error)
        raise KafkaException(KafkaError(KafkaError._STATE, f"Operation not valid in state {self.state}"))

    def require(self, what, *states):
        if self.state not in states:
            self._raise_state(what)

    def fatal(self, reason: str) -> KafkaError:
        self.state = FATAL_ERROR
        self.error = KafkaError(KafkaError._FENCED, reason, fatal=True)
        self.p._txn_gate(False)
        return self.error

    def abortable(self, err: KafkaError) -> None:
        if self.state in (IN_TRANSACTION, COMMITTING):
            self.state = ABORTABLE_ERROR
            self.error = KafkaError(err.code(), err.str(), txn_requires_abort=True)
            self.p._txn_gate(False)

    def produce_error(self) -> KafkaException:
        """What produce() raises outside a transaction (librdkafka: _STATE, or the error)."""
        if self.state in (FATAL_ERROR, ABORTABLE_ERROR):
            return KafkaException(self.error)
        return KafkaException(KafkaError(KafkaError._STATE, f"produce() outside a transaction (state {self.state})"))

    def _call(self, fn, *args, timeout=None):
        """A coordinator call with its errors as confluent-kafka's."""
        try:
            return fn(*args, lock_timeout=None if timeout is None or timeout < 0 else timeout)
        except ProducerFencedError as e:
            raise KafkaException(self.fatal(str(e))) from e
        except LockTimeoutError as e:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, str(e), retriable=True)) from e
        except EmbedlogError as e:
            raise KafkaException(KafkaError(e.code if e.code > 0 else KafkaError._FAIL, str(e))) from e

    # -- the API
    def init(self, timeout):
        with self.lock:
            self.require("init_transactions", INIT)
            expire_and_recover(self.p._log)
            pid, epoch = self._call(self.coordinator.init_producer, self.id, self.timeout_ms, timeout=timeout)
            self.p._producer_id, self.p._epoch = pid, epoch
            self.p._sequences.clear()
            self.state = READY

    def begin(self):
        with self.lock:
            self.require("begin_transaction", READY)
            self.partitions = set()
            self.state = IN_TRANSACTION
            self.p._txn_gate(True)

    def add_partition(self, topic: str, partition: int) -> None:
        """Before the first write to a partition in this transaction (the send path)."""
        if (topic, partition) not in self.partitions:
            self.add_partitions(topic, (partition,))

    def add_partitions(self, topic: str, partitions) -> None:
        """Every partition a send is about to write, in one durable coordinator record
        (Kafka's AddPartitionsToTxn takes a list too): a send to 3 new partitions costs one
        fdatasync of __transaction_state, not three."""
        new = [(topic, p) for p in partitions if (topic, p) not in self.partitions]
        if not new:
            return
        if self.state == FATAL_ERROR:
            raise KafkaException(self.error)
        self._call(self.coordinator.add_partitions, self.id, self.p._producer_id, self.p._epoch, new)
        self.partitions.update(new)

    def delivery_failed(self, err: KafkaError) -> None:
        if err.code() in (KafkaError.INVALID_PRODUCER_EPOCH, KafkaError.PRODUCER_FENCED, KafkaError._FENCED):
            self.fatal(err.str())
        else:
            self.abortable(err)

    def send_offsets(self, positions, group_metadata, timeout):
        with self.lock:
            self.require("send_offsets_to_transaction", IN_TRANSACTION)
            group, member, generation = _group_of(group_metadata)
            todo = []
            for tp in positions:
                if tp.offset >= 0:              # librdkafka skips invalid (logical) offsets
                    todo.append((tp.topic, tp.partition, tp.offset, tp.metadata or ""))
            if not todo:
                return
            store = store_for(self.p._log)
            with _group_guard(self.p._log, group, timeout):
                why = _stale_member(self.p._log, group, member, generation)
                if why is not None:
                    err = KafkaError(why[0], why[1], txn_requires_abort=True)
                    self.abortable(err)
                    raise KafkaException(self.error)
                self.add_partition(OFFSETS_TOPIC, 0)
                keys = [encode_key(group, t, p) for t, p, _o, _m in todo]
                values = [encode_value(o, m) for _t, _p, o, m in todo]
                key = (OFFSETS_TOPIC, 0)
                seq = self.p._sequences.get(key, 0)
                try:
                    store._part().append_records(values, keys, sync=True, producer_id=self.p._producer_id,
                                                 producer_epoch=self.p._epoch, base_sequence=seq,
                                                 transactional=True)
                except EmbedlogError as e:
                    err = KafkaError(e.code if e.code > 0 else KafkaError._FAIL, str(e))
                    self.delivery_failed(err)
                    raise KafkaException(self.error) from e
                self.p._sequences[key] = (seq + len(values)) % 2**31

    def commit(self, timeout):
        with self.lock:
            if self.state == ABORTABLE_ERROR:
                raise KafkaException(self.error)
            self.require("commit_transaction", IN_TRANSACTION, COMMITTING)
            self.state = COMMITTING
            self.p._txn_gate(False)
            left = self.p.flush(timeout)
            if self.state != COMMITTING:        # a delivery failed: abortable, or fenced
                raise KafkaException(self.error)
            if left:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{left} message(s) not yet delivered: "
                                                "call commit_transaction() again", retriable=True))
            if self.partitions:
                self._call(self.coordinator.end_transaction, self.id, self.p._producer_id, self.p._epoch, True,
                           timeout=timeout)
            self.partitions = set()
            self.state = READY

    def abort(self, timeout):
        with self.lock:
            self.require("abort_transaction", IN_TRANSACTION, ABORTABLE_ERROR, ABORTING, COMMITTING)
            self.state = ABORTING
            self.p._txn_gate(False)
            self.p.purge(in_queue=True)
            left = self.p.flush(timeout)           # in-flight appends end; reports served
            if left:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "messages still in flight: call "
                                                "abort_transaction() again", retriable=True))
            if self.partitions:
                self._call(self.coordinator.end_transaction, self.id, self.p._producer_id, self.p._epoch, False,
                           timeout=timeout)
            self.partitions = set()
            self.error = None
            self.state = READY


def _group_of(md):
    """(group, member id, generation) of a consumer's group metadata."""
    if isinstance(md, dict) and md.get("group_id"):
        return md["group_id"], md.get("member_id") or "", int(md.get("generation_id", -1))
    raise KafkaException(KafkaError(KafkaError._INVALID_ARG,
                                    "group_metadata must be a consumer's consumer_group_metadata() "
                                    f"(with a group.id), not {md!r}"))


class _group_guard:
    """The group's lock held shared (as a commit holds it) while the member is checked and
    the offsets written, so no rebalance falls between the two."""

    def __init__(self, log, group, timeout):
        self.path = os.path.join(log.path, GROUPS_DIR, group_dir_name(group), ".lock")
        self.timeout = None if timeout is None or timeout < 0 else timeout
        self.fd = None

    def __enter__(self):
        if os.path.exists(self.path):
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            if not hp.lock(self.fd, 0, 1, False, self.timeout):
                os.close(self.fd)
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"timed out waiting for {self.path}",
                                                retriable=True))
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            hp.unlock(self.fd, 0, 1)
            os.close(self.fd)


def _stale_member(log, group, member, generation):
    """None if (member, generation) may commit for the group now (KIP-447: the group's
    current generation; a consumer outside the group, generation -1, is not checked),
    else (code, reason)."""
    if not member and generation < 0:
        return None
    state = describe_group_path(os.path.join(log.path, GROUPS_DIR, group_dir_name(group), "group.json")) or {}
    if member not in state.get("members", {}):
        return KafkaError.UNKNOWN_MEMBER_ID, f"member {member} is not in group {group!r} any more"
    if state.get("generation") != generation:
        why = (f"group {group!r} is at generation {state.get('generation')}, the consumer's metadata says "
               f"{generation}: the consumer was rebalanced; abort and re-read from the committed offsets")
        return KafkaError.ILLEGAL_GENERATION, why
    return None
