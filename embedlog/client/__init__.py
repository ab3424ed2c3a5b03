"""The clients: confluent-kafka's API over a log directory.

Owns `Producer` (`_producer`), `Consumer` (`_consumer`), `AdminClient` and its value types
(`_admin`), cross-process consumer groups and their rebalances (`_groups`), confluent-kafka's
value types and error codes (`_kafka`), and the per-process sharing of one open Log per
directory (`_clients`).

May import: `embedlog.storage` and the standard library. Not `embedlog.cli`, nor the
server, registry or connect subsystems built on top of it.
"""
