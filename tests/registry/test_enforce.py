"""The produce-time schema check (not yet wired into produce(): see _enforce.py)."""
import json

import pytest

from embedlog.registry import Serializer, registry_for
from embedlog.registry._enforce import InvalidRecordError, check_records

A = json.dumps({"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]})
B = json.dumps({"type": "record", "name": "B", "fields": [{"name": "b", "type": "int"}]})


def test_check_records(embedlog):
    reg = registry_for(embedlog)
    good = Serializer(reg, A)({"a": 1}, "orders")
    other = Serializer(reg, B)({"b": 1}, "payments")          # id 2, registered for another subject
    check_records(reg, "orders", [good, None, good])
    with pytest.raises(InvalidRecordError, match="record 1 .*not registered under subject 'orders-value'"):
        check_records(reg, "orders", [good, other])
    with pytest.raises(InvalidRecordError, match="record 0 .*schema id 77 is unknown"):
        check_records(reg, "orders", [b"\x00\x00\x00\x00\x4d" + good[5:]])
    with pytest.raises(InvalidRecordError, match="does not start with Confluent's schema header"):
        check_records(reg, "orders", [b"plain"])
    with pytest.raises(InvalidRecordError):
        check_records(reg, "orders", [good], field="key")     # no orders-key subject
    reg.delete_version("orders-value", 1)
    with pytest.raises(InvalidRecordError):
        check_records(reg, "orders", [good])                  # soft-deleted: no longer held
