"""The storage engine: a log directory on disk, and nothing above it.

Owns the bytes and the rules that keep them: Kafka's RecordBatch (`_records`), segments
and their offset/time indexes (`_segment`, `_index`), the shared memory-mapped partition
state and cross-process locks (`_state`), partitions (`_partition`, with its append path,
read path, recovery and maintenance split into `_partition_*`), the log directory and its
topics (`_log`), retention and compaction (`_cleaner`, `_maintenance`), mirrors
(`_replication`), the committed-offsets topic `__consumer_offsets` (`_offsets`), topic and
client configuration values (`_config`), the I/O table every file operation goes through
(`_io`), compression codecs, murmur2 partitioning, the exception tree (`_errors`), crash
points for tests (`_failpoints`) and the one binding of the C extension (`_hotpath`).

May import: the standard library, cffi's `_native`, lz4/msgpack, and `embedlog._version`.
Nothing in `embedlog.client`, `embedlog.cli` or any later subsystem.
"""
