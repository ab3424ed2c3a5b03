"""Key -> partition, as Kafka's Java client decides it (FORMAT.md §9).

1. An explicit partition wins.
2. A non-null key goes to `(murmur2(key) & 0x7fffffff) % num_partitions`, the partition
   Kafka's Java client (and librdkafka with partitioner=murmur2_random) picks.
3. Null keys stick to one randomly chosen partition until the batch being filled is
   complete, then move on (KIP-480 sticky partitioning).
"""
from __future__ import annotations

import random
import struct
from array import array

from . import _hotpath as hp


def partition_for_key(key, num_partitions: int) -> int:
    if num_partitions <= 0:
        raise ValueError("num_partitions must be positive")
    return (hp.lib.el_murmur2(key, len(key)) & 0x7FFFFFFF) % num_partitions


def partitions_for_keys(keys, num_partitions: int) -> list[int]:
    """partition_for_key over many keys in one C call; None keys give -1."""
    try:                                   # fast path: no null keys
        lens = struct.pack(f"{len(keys)}i", *map(len, keys))
        blob = b"".join(keys)
    except TypeError:
        lens = struct.pack(f"{len(keys)}i", *(-1 if k is None else len(k) for k in keys))
        blob = b"".join(k for k in keys if k is not None)
    out = array("i", bytes(4 * len(keys)))
    if hp.lib.el_partitions_for_keys(blob, hp.i32(lens), len(keys), num_partitions, hp.i32(out)) < 0:
        raise ValueError("num_partitions must be positive")
    return out.tolist()


class StickyPartitioner:
    """Chooses the partition for null keys: one random partition per batch."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, num_partitions: int) -> int:
        p = self._current.get(topic)
        if p is None or p >= num_partitions:
            p = self._current[topic] = self._rng.randrange(num_partitions)
        return p

    def batch_complete(self, topic: str, num_partitions: int):
        """Move to another partition (when there is one) after a batch was sent."""
        old = self._current.get(topic)
        if num_partitions > 1 and old is not None:
            p = self._rng.randrange(num_partitions - 1)
            self._current[topic] = p + (p >= old)
        else:
            self._current.pop(topic, None)
