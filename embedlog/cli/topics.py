"""`embedlog topics create|list|describe|alter|add-partitions|delete|delete-records` (kafka-topics.sh)."""
from __future__ import annotations

import os
import warnings

import click

from ._common import (CliError, Group, dir_option, echo_json, echo_nl, echo_table, emit_rows, human_bytes, note, open_log,
                      output_options, parse_key_value)

OFFSETS_TOPIC = "__consumer_offsets"


@click.group(cls=Group)
def topics():
    """Create, list, describe, alter and delete topics."""


def _internal(name: str) -> bool:
    return name.startswith("__")


@topics.command()
@dir_option
@click.option("--topic", "-t", required=True, help="Topic name ([a-zA-Z0-9._-], at most 249 characters).")
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of partitions.")
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), default=1, show_default=True,
              help="Copies of each partition: the primary plus mirrors (`embedlog replicas add`).")
@click.option("--config", "-c", "configs", multiple=True, metavar="KEY=VALUE",
              help="Topic config override, e.g. retention.ms=604800000 (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="Succeed without change if the topic exists.")
def create(topic, partitions, replication_factor, configs, if_not_exists):
    """Create a topic.

    Also creates the log directory if it does not exist yet."""
    config = dict(parse_key_value(configs, "--config"))
    from embedlog import InvalidReplicationFactorError, TopicExistsError
    with open_log(create=True) as log:
        try:
            log.create_topic(topic, partitions, config, replication_factor=replication_factor)
        except TopicExistsError:
            if if_not_exists:
                return
            raise CliError(f"topic {topic!r} already exists in {log.path}") from None
        except InvalidReplicationFactorError as e:
            raise CliError(str(e)) from None
    click.echo(f"Created topic {topic}.")


@topics.command("list")
@dir_option
@click.option("--exclude-internal", is_flag=True, help=f"Leave out internal topics such as {OFFSETS_TOPIC}.")
@output_options()
def list_(exclude_internal, fmt):
    """List the topics and their partition counts."""
    with open_log() as log:
        rows = []
        for name in log.topics():
            if exclude_internal and _internal(name):
                continue
            rows.append({"topic": name, "partitions": log.topic(name).num_partitions,
                         "internal": _internal(name)})
    emit_rows(fmt, rows, ["TOPIC", "PARTITIONS"], ["topic", "partitions"])


def _segments(path: str) -> int:
    try:
        return sum(1 for n in os.listdir(path) if n.endswith(".log") and len(n) == 24)
    except FileNotFoundError:
        return 0


def describe_topic(log, name: str) -> dict:
    t = log.topic(name)
    parts = []
    for p in range(t.num_partitions):
        part = t.partition(p)
        start, end = part.watermarks()
        parts.append({"partition": p, "log_start_offset": start, "log_end_offset": end,
                      "size_bytes": part.size_bytes(), "segments": _segments(part.path)})
    return {"topic": name, "topic_id": t.topic_id, "partitions": t.num_partitions, "replication_factor": t.replication_factor,
            "internal": _internal(name), "config": t.config_overrides,
            "effective_config": dict(t.config), "partition_details": parts}


def _config_text(config: dict) -> str:
    return ",".join(f"{k}={_value(v)}" for k, v in sorted(config.items()))


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@topics.command()
@dir_option
@click.option("--topic", "-t", "names", multiple=True, help="Topic to describe (repeatable; default: all).")
@click.option("--all-configs", is_flag=True, help="Show every config value, not only the overrides.")
@output_options()
def describe(names, all_configs, fmt):
    """Show topics' partitions and config.

    For each partition: log start and end offsets, size on disk, segments."""
    with open_log() as log:
        docs = [describe_topic(log, n) for n in (names or log.topics())]
    if fmt == "json":
        echo_json(docs)
        return
    if fmt == "nl":
        for d in docs:
            echo_nl(d)
        return
    for i, d in enumerate(docs):
        if i:
            click.echo()
        head = (f"Topic: {d['topic']}  TopicId: {d['topic_id'] or '-'}  PartitionCount: {d['partitions']}  "
                f"ReplicationFactor: {d['replication_factor']}  Configs:")
        if all_configs:          # one per line, as kafka-configs.sh --describe --all prints them
            click.echo(head)
            for k, v in sorted(d["effective_config"].items()):
                mark = "" if k in d["config"] else "  (default)"
                click.echo(f"  {k}={_value(v)}{mark}")
        else:
            click.echo(f"{head} {_config_text(d['config'])}")
        echo_table(["PARTITION", "LOG-START-OFFSET", "LOG-END-OFFSET", "SIZE", "SEGMENTS"],
                   [[p["partition"], p["log_start_offset"], p["log_end_offset"], human_bytes(p["size_bytes"]),
                     p["segments"]] for p in d["partition_details"]])


@topics.command()
@dir_option
@click.option("--topic", "-t", required=True, help="Topic to change.")
@click.option("--config", "-c", "configs", multiple=True, metavar="KEY=VALUE",
              help="Set a config override (repeatable).")
@click.option("--delete-config", "deletes", multiple=True, metavar="KEY",
              help="Remove an override, restoring the default (repeatable).")
def alter(topic, configs, deletes):
    """Change a topic's config.

    --config sets overrides and --delete-config restores defaults; other keys keep
    their values. Processes that have the log open apply the change from their next
    append: no restart."""
    changes: dict = dict(parse_key_value(configs, "--config"))
    for key in deletes:
        if key in changes:
            raise click.BadParameter(f"{key} is both set and deleted", param_hint="--delete-config")
        changes[key] = None
    if not changes:
        raise click.UsageError("nothing to change: give --config KEY=VALUE or --delete-config KEY")
    from embedlog.storage import _config
    with open_log() as log:
        values = log.alter_topic_config(topic, changes, incremental=True)
    click.echo(f"Updated config of topic {topic}: {_config_text(_config.topic_overrides(values)) or '(defaults)'}")


@topics.command("add-partitions")
@dir_option
@click.option("--topic", "-t", required=True, help="Topic to grow.")
@click.option("--partitions", "-p", type=click.IntRange(min=1), required=True,
              help="The new total number of partitions (larger than the current one).")
def add_partitions(topic, partitions):
    """Grow a topic to --partitions in total. Partitions can be added, never removed;
    keyed records map to other partitions from then on. Open producers route with the
    new count at once, and subscribed consumer groups rebalance to include the new
    partitions."""
    with open_log() as log:
        before = log.topic(topic).num_partitions
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log.add_partitions(topic, partitions)
    for w in caught:
        note(f"Warning: {w.message}")
    click.echo(f"Topic {topic} now has {partitions} partitions (was {before}).")


@topics.command()
@dir_option
@click.option("--topic", "-t", required=True, help="Topic to delete, with all its records.")
def delete(topic):
    """Delete a topic and its records."""
    if topic == OFFSETS_TOPIC:
        raise CliError(f"{OFFSETS_TOPIC} is internal: it holds the consumer groups' committed offsets")
    with open_log() as log:
        log.delete_topic(topic)
    click.echo(f"Deleted topic {topic}.")


@topics.command("delete-records")
@dir_option
@click.option("--topic", "-t", default=None, help="The topic whose records go.")
@click.option("--partition", "-p", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeatable; default: all of the topic's).")
@click.option("--before", "--offset", "before", type=click.IntRange(min=-1), default=None,
              help="Delete the records below this offset (-1: all, up to the high watermark).")
@click.option("--offset-json-file", type=click.File("r"), default=None, metavar="FILE",
              help='kafka-delete-records.sh\'s file: {"partitions": [{"topic": T, "partition": P, "offset": O}]}.')
@output_options(nl=False)
def delete_records(topic, partition, before, offset_json_file, fmt):
    """Delete the records below an offset (Kafka's DeleteRecords).

    The log start offset moves up at once for every reader; segments wholly below it
    are deleted by the next maintenance."""
    import json
    from embedlog.storage._errors import EmbedlogError
    if (offset_json_file is None) == (topic is None):
        raise click.UsageError("give --topic T --before OFFSET, or --offset-json-file FILE")
    if offset_json_file is not None:
        try:
            doc = json.load(offset_json_file)
            wanted = [(e["topic"], int(e["partition"]), int(e["offset"])) for e in doc["partitions"]]
        except (ValueError, KeyError, TypeError) as e:
            raise click.BadParameter(f"not kafka-delete-records' shape ({e})", param_hint="--offset-json-file")
    else:
        if before is None:
            raise click.UsageError("--topic needs --before OFFSET (-1 for all)")
        wanted = None
    rows, failed = [], []
    with open_log() as log:
        if wanted is None:
            t = log.topic(topic)
            wanted = [(topic, p, before) for p in (partition or range(t.num_partitions))]
        for name, p, offset in wanted:
            try:
                start = log.topic(name).partition(p).delete_records(offset)
                rows.append({"topic": name, "partition": p, "low_watermark": start, "error": None})
            except EmbedlogError as e:
                rows.append({"topic": name, "partition": p, "low_watermark": None, "error": str(e)})
                failed.append(f"{name} [{p}]: {e}")
    if fmt == "json":
        echo_json(rows)
    else:
        echo_table(["TOPIC", "PARTITION", "LOW-WATERMARK", "ERROR"],
                   [[r["topic"], r["partition"], r["low_watermark"], r["error"]] for r in rows])
    if failed:
        raise CliError(f"{len(failed)} of {len(rows)} partition(s) failed: {failed[0]}")
