"""`embedlog maintain [TOPIC...]`: apply retention and compaction now (what a writing
process does by itself every log.retention.check.interval.ms), like a manual run of
Kafka's log retention check and log cleaner."""
from __future__ import annotations

import click

from ._common import CliError, dir_option, emit_rows, human_bytes, open_log, output_options


@click.command()
@dir_option
@click.argument("topics", nargs=-1)
@click.option("--force-compaction", is_flag=True,
              help="Clean compacted topics whatever their dirty ratio (min.cleanable.dirty.ratio).")
@click.option("--now-ms", type=int, default=None, hidden=True, help="Clock override (tests).")
@output_options()
def maintain(topics, force_compaction, now_ms, fmt):
    """Delete expired segments and compact compacted topics now.

    Also aborts transactions past transaction.timeout.ms and finishes those whose
    producer died after the commit point."""
    from embedlog import UnknownTopicOrPartitionError
    from embedlog.storage._txn_coordinator import expire_and_recover
    log = open_log()
    rows = []
    try:
        # Abandoned transactions first (past transaction.timeout.ms, or prepared by a
        # producer that died): their markers are part of what retention then sees.
        expire_and_recover(log)
        names = list(topics) or log.topics()
        for name in names:
            try:
                parts = log.topic(name).partitions
            except UnknownTopicOrPartitionError:
                raise CliError(f"topic {name!r} does not exist in {log.path}") from None
            for p, part in enumerate(parts):
                r = part.maintain(now_ms, force_compaction=force_compaction)
                ret = r.get("retention") or {}
                comp = r.get("compaction") or {}
                rows.append({
                    "topic": name, "partition": p, "skipped": r.get("skipped"),
                    "deleted_segments": ret.get("deleted_segments", 0),
                    "deleted_bytes": ret.get("deleted_bytes", 0),
                    "reasons": ret.get("reasons", []),
                    "log_start_offset": part.log_start_offset,
                    "compaction": comp or None,
                })
    finally:
        log.close()
    if fmt != "table":
        emit_rows(fmt, rows, [], [])
        return
    table = []
    for r in rows:
        comp = r["compaction"]
        table.append({
            "tp": f"{r['topic']}-{r['partition']}",
            "deleted": "skipped (busy)" if r["skipped"] else
            (f"{r['deleted_segments']} ({human_bytes(r['deleted_bytes'])}, {', '.join(r['reasons'])})"
             if r["deleted_segments"] else "-"),
            "start": r["log_start_offset"],
            "compacted": (f"{comp['records_in']} -> {comp['records_out']} records, "
                          f"{human_bytes(comp['bytes_in'])} -> {human_bytes(comp['bytes_out'])}"
                          if comp else "-"),
        })
    emit_rows(fmt, table, ["PARTITION", "DELETED-SEGMENTS", "LOG-START-OFFSET", "COMPACTED"],
              ["tp", "deleted", "start", "compacted"])
