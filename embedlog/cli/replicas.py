"""`embedlog replicas add|remove|status|promote|repair`: the mirror directories of a log
(FORMAT.md §15), Kafka's replicas and ISR as a shim on one host."""
from __future__ import annotations

import os

import click

from ._common import (
    CliError,
    Group,
    dir_option,
    echo_json,
    emit_rows,
    log_dir,
    note,
    open_log,
    output_options,
)


@click.group(cls=Group)
def replicas():
    """Mirror directories: add, remove, status, promote, repair."""


def _storage(fn, *args):
    from embedlog import EmbedlogError
    try:
        return fn(*args)
    except EmbedlogError as e:
        raise CliError(str(e)) from None


@replicas.command(short_help="Add a mirror directory, or bring back or rebuild one.")
@dir_option
@click.argument("path")
def add(path):
    """Add a mirror directory (or bring a removed one back, or rebuild one that vanished).

    The log directory may be an existing empty directory: it becomes a log, as with
    `topics create`."""
    where = log_dir()
    create = os.path.isdir(where) and not os.listdir(where)
    log = open_log(create=create)
    try:
        entry = _storage(log.add_replica, path)
    except CliError:
        if create:            # it was empty: a refused mirror leaves it so, not half a log
            log.close()
            _empty(where)
        raise
    finally:
        log.close()
    click.echo(f"Added mirror {entry['id']} at {entry['path']}.")


def _empty(path):
    import shutil
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)


@replicas.command()
@dir_option
@click.argument("path")
def remove(path):
    """Detach a mirror: its partitions leave the in-sync set; its files stay."""
    log = open_log()
    try:
        entry = _storage(log.remove_replica, path)
    finally:
        log.close()
    click.echo(f"Removed mirror {entry['id']} ({entry['path']}); its files are left in place.")


@replicas.command()
@dir_option
@click.argument("topics", nargs=-1)
@output_options()
def status(topics, fmt):
    """Each mirrored partition's replicas: log end offset, lag, in-sync."""
    log = open_log()
    try:
        rows = _storage(log.replica_status, list(topics) or None)
        if fmt == "json":
            echo_json({"replicas": log.replicas(), "partitions": rows})
            return
    finally:
        log.close()
    for r in rows:
        r["tp"] = f"{r['topic']}-{r['partition']}"
        r["leo"] = "?" if r["log_end_offset"] is None else r["log_end_offset"]
        r["lag_"] = "?" if r["lag"] is None else r["lag"]
        r["isr"] = "yes" if r["in_sync"] else ("vanished" if r.get("vanished") else
                                               "failed" if r.get("failed") else
                                               "removed" if r.get("removed") else "no")
    emit_rows(fmt, rows, ["PARTITION", "REPLICA", "ROLE", "LOG-END-OFFSET", "LAG", "IN-SYNC", "PATH"],
              ["tp", "replica", "role", "leo", "lag_", "isr", "path"])


@replicas.command()
@click.argument("path")
def promote(path):
    """Make mirror PATH the primary (failover); the old primary becomes its mirror."""
    from embedlog.storage._failover import promote as do_promote
    doc = _storage(do_promote, path)
    click.echo(f"{doc['primary']} is now the primary; {doc['old_primary']} is its mirror "
               f"(truncated to the common prefix when next copied to).")
    if doc["old_primary"] not in doc["fenced"]:
        note(f"warning: {doc['old_primary']} was not reachable; do not open it as a log: "
             "add it back as a mirror of the new primary")


@replicas.command(short_help="Repair damaged segments from an in-sync mirror; rebuild vanished mirrors.")
@dir_option
def repair():
    """Replace damaged segments of the primary by an in-sync mirror's copy, and rebuild
    mirrors that vanished (removed, replaced, unmounted)."""
    from embedlog.storage._failover import repair as do_repair
    from embedlog.storage._replication import rebuild_vanished
    log = open_log()
    done, rebuilt = [], []
    try:
        for name in log.topics():
            t = log.topic(name)
            if t.replicas:
                for part in t.partitions:
                    rebuilt += [dict(r, tp=f"{name}-{part.partition}") for r in _storage(rebuild_vanished, part)]
                    done += _storage(do_repair, part)
    finally:
        log.close()
    for r in rebuilt:
        if r["error"] is None:
            click.echo(f"Rebuilding mirror {r['mirror']} of {r['tp']} at {r['path']} (copied from scratch).")
    if not done and not rebuilt:
        click.echo("No damaged segment found.")
    for d in done:
        click.echo(f"Repaired {d['segment']} from {d['from']} "
                   f"({d['valid_bytes_before']} -> {d['valid_bytes_after']} valid bytes).")
    refused = sorted({r["error"] for r in rebuilt if r["error"]})
    if refused:
        raise CliError(refused[0] + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))
