"""Connectors: data in and out of a log directory, run in the library.

Owns the bridge between a log directory and a Kafka cluster (`_bridge`, with its two kinds
of end in `_ends`): topics, their configs and committed group offsets copied either way,
resuming where it stopped. File and PostgreSQL sources and sinks belong here too.

May import: `embedlog.storage`, `embedlog.client` and the standard library; confluent-kafka
(the `kafka` extra) only inside `_ends.KafkaEnd`. Not `embedlog.cli` nor the server.
"""
from ._bridge import Bridge, BridgeError, bridge
from ._data import ConnectError, Connector, SinkRecord, SourceRecord
from ._runner import Worker, run

__all__ = ["Bridge", "BridgeError", "ConnectError", "Connector", "SinkRecord", "SourceRecord", "Worker", "bridge",
           "run"]
