"""Kafka's wire protocol over a log directory: `embedlog serve`, `embedlog.serve()`.

Owns the message codec driven by Kafka's own schema JSON (`_schema`, `messages/`), the
API table, headers and error answers (`_protocol`), the asyncio server and its
in-process handle (`_server`), the data plane (`_data`: Metadata, Produce, Fetch,
ListOffsets, InitProducerId), the control plane (`_control`: offsets, groups listing,
admin APIs) and the group coordinator that puts wire members into embedlog's
cross-process groups (`_coordinator`).

May import: `embedlog.client`, `embedlog.storage` and the standard library. Not
`embedlog.cli`.
"""
