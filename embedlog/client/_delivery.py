"""Delivery reports of produce(): one _Sent per appended batch, shared by the lazy
_DeliveryReport Message each of its records' callbacks receive."""
from __future__ import annotations

from ._kafka import OFFSET_INVALID, Message


class _Sent:
    """One appended batch, shared by the delivery reports of its records."""

    __slots__ = (
        "base_offset",
        "error",
        "headers",
        "keys",
        "partition",
        "timestamps",
        "topic",
        "ts_type",
        "values",
    )


class _DeliveryReport(Message):
    """The Message a delivery callback receives; fields are read from the batch lazily."""

    __slots__ = ("_i", "_sent")

    def __init__(self, sent: _Sent, i: int):
        self._sent = sent
        self._i = i

    def topic(self):
        return self._sent.topic

    def partition(self):
        return self._sent.partition

    def offset(self):
        s = self._sent
        return OFFSET_INVALID if s.base_offset < 0 else s.base_offset + self._i

    def key(self):
        return self._sent.keys[self._i]

    def value(self):
        return self._sent.values[self._i]

    def headers(self):
        h = self._sent.headers
        return None if h is None or not h[self._i] else list(h[self._i])

    def timestamp(self):
        return self._sent.ts_type, self._sent.timestamps[self._i]

    def error(self):
        return self._sent.error

    def latency(self):
        return None

    def leader_epoch(self):
        return None

    def __len__(self):
        v = self.value()
        return len(v) if v is not None else 0

    def __repr__(self):
        return f"<Message {self.topic()}[{self.partition()}]@{self.offset()} (delivery report)>"
