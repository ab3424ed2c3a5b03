"""The schema registry (issue #15): Confluent's model, REST API and wire format, with the
schemas kept as records in the compacted `_schemas` topic of the log directory."""
