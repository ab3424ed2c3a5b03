"""`embedlog groups list|describe|delete|reset-offsets|lag` (kafka-consumer-groups.sh)."""
from __future__ import annotations

import datetime as dt
import os

import click

from embedlog.storage._errors import EmbedlogError

from ._common import (CliError, Failed, Group, dir_option, echo_json, echo_nl, echo_table, emit_rows, note, open_log,
                      output_options)

OFFSETS_TOPIC = "__consumer_offsets"


@click.group(cls=Group)
def groups():
    """Consumer groups: list, describe, lag, reset offsets, delete."""


# ------------------------------------------------------------------ reading group state

def _store(log):
    """The committed-offset store, or None when nothing was ever committed (reading
    must not create __consumer_offsets as a side effect)."""
    if OFFSETS_TOPIC not in log.topics():
        return None
    from embedlog.storage._offsets import store_for
    store = store_for(log)
    store.refresh()
    return store


def _committed(log, group: str) -> dict:
    store = _store(log)
    return store.group_offsets(group) if store is not None else {}


def _state(log, group: str) -> dict | None:
    """group.json with only its live members. A member that died (kill -9, a crash, a
    backup taken while it ran) stays listed until a live member rebalances, which never
    happens in a directory nobody may write; its member file's lock tells, read-only."""
    from embedlog.client._groups import describe_group
    state = describe_group(log, group)
    if state and state.get("members"):
        state = {**state, "members": {mid: m for mid, m in state["members"].items() if _alive(log, group, mid)}}
    return state


def _alive(log, group: str, member_id: str) -> bool:
    """Whether a process holds the lock of this member's file (FORMAT.md §13): probed with
    a shared lock, which needs no write permission and conflicts with the owner's
    exclusive one; the kernel drops the owner's lock when it dies."""
    from embedlog.client._groups import GROUPS_DIR, group_dir_name
    from embedlog.storage import _hotpath as hp
    path = os.path.join(log.path, GROUPS_DIR, group_dir_name(group), "members", member_id)
    if os.path.basename(path) != member_id:
        return False                      # not a member file name: group.json is not ours
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False                      # it left, or died and was cleaned up
    try:
        return not hp.lock(fd, 0, 1, False, 0)
    finally:
        os.close(fd)                      # also drops the probe's lock if it got one


def _all_groups(log) -> list[str]:
    from embedlog.client._groups import list_groups
    names = set(list_groups(log))
    store = _store(log)
    if store is not None:
        names |= store.groups()
    return sorted(names)


def _state_name(state: dict | None) -> str:
    if state and state.get("members"):
        return "Stable"
    return "Empty"


def _owners(state: dict | None) -> dict:
    """(topic, partition) -> (member id, client id, host) from the current generation's assignment."""
    out = {}
    for member_id, m in ((state or {}).get("members") or {}).items():
        for topic, p in m.get("assignment") or []:
            out[(topic, p)] = (member_id, m.get("client_id"), _host(m))
    return out


def _host(member: dict) -> str:
    """Where a member runs, as kafka-consumer-groups.sh's HOST: the address of a member that
    came over the wire, and /pid-N for one in a process on this directory (as DescribeGroups says)."""
    return member.get("host") or f"/pid-{member.get('pid')}"


def _group_or_fail(log, group: str):
    state = _state(log, group)
    offsets = _committed(log, group)
    if state is None and not offsets:
        raise CliError(f"consumer group {group!r} does not exist in {log.path} "
                       "(no members and no committed offsets)")
    return state, offsets


def lag_rows(log, group: str, state, offsets, topics=None) -> list[dict]:
    """One row per partition of every topic the group committed offsets for or is
    assigned: the committed offset (None: nothing committed), the log end offset and
    the lag (a partition without a commit lags by its whole log, as Log.consumer_lag
    counts it)."""
    from embedlog import UnknownTopicOrPartitionError
    owners = _owners(state)
    names = sorted({t for t, _p in offsets} | {t for t, _p in owners})
    if topics:
        names = [t for t in names if t in topics]
    rows = []
    for name in names:
        try:
            t = log.topic(name)
        except UnknownTopicOrPartitionError:
            continue                      # offsets of a deleted topic
        for p in range(t.num_partitions):
            start, end = t.partition(p).watermarks()
            c = offsets.get((name, p))
            committed = c[0] if c else None
            lag = max(0, end - (max(committed, start) if committed is not None else start))
            member, client, host = owners.get((name, p), (None, None, None))
            rows.append({"group": group, "topic": name, "partition": p, "current_offset": committed,
                         "log_end_offset": end, "lag": lag, "consumer_id": member, "host": host,
                         "client_id": client})
    return rows


# ------------------------------------------------------------------ list / describe

@groups.command("list")
@dir_option
@output_options()
def list_(fmt):
    """List the consumer groups.

    Groups with members or with committed offsets."""
    with open_log() as log:
        rows = []
        for g in _all_groups(log):
            st = _state(log, g)
            rows.append({"group": g, "state": _state_name(st), "members": len((st or {}).get("members") or {}),
                         "generation": (st or {}).get("generation"), "protocol": (st or {}).get("protocol")})
    emit_rows(fmt, rows, ["GROUP", "STATE", "MEMBERS"], ["group", "state", "members"])


def _assignment_text(assignment) -> str:
    by_topic: dict[str, list[int]] = {}
    for topic, p in assignment or []:
        by_topic.setdefault(topic, []).append(p)
    return ",".join(f"{t}({','.join(str(p) for p in sorted(ps))})" for t, ps in sorted(by_topic.items())) or "-"


@groups.command()
@dir_option
@click.argument("group")
@click.option("--members", is_flag=True, help="Show the members, their assignment and the generation instead.")
@output_options()
def describe(group, members, fmt):
    """Show a group's offsets, lag and members.

    One row per partition, with kafka-consumer-groups.sh's columns; --members lists
    the members and their assignment instead."""
    with open_log() as log:
        state, offsets = _group_or_fail(log, group)
        if members:
            mlist = [{"consumer_id": mid, "client_id": m.get("client_id"), "host": _host(m), "pid": m.get("pid"),
                      "assignment": [{"topic": t, "partition": p} for t, p in m.get("assignment") or []],
                      "_assignment": m.get("assignment")}
                     for mid, m in sorted(((state or {}).get("members") or {}).items())]
            doc = {"group": group, "state": _state_name(state), "generation": (state or {}).get("generation"),
                   "protocol": (state or {}).get("protocol"),
                   "members": [{k: v for k, v in m.items() if k != "_assignment"} for m in mlist]}
        else:
            rows = lag_rows(log, group, state, offsets)
    if members:
        if fmt == "json":
            echo_json(doc)
        elif fmt == "nl":
            for m in doc["members"]:
                echo_nl({"group": group, "generation": doc["generation"], **m})
        else:
            echo_table(["GROUP", "STATE", "GENERATION", "PROTOCOL", "MEMBERS"],
                       [[group, doc["state"], doc["generation"], doc["protocol"], len(mlist)]])
            if mlist:
                click.echo()
                echo_table(["CONSUMER-ID", "HOST", "CLIENT-ID", "PID", "#PARTITIONS", "ASSIGNMENT"],
                           [[m["consumer_id"], m["host"], m["client_id"], m["pid"], len(m["assignment"]),
                             _assignment_text(m["_assignment"])] for m in mlist])
            else:
                note(f"Consumer group '{group}' has no active members.")
        return
    if fmt == "json":
        echo_json(rows)
    elif fmt == "nl":
        for r in rows:
            echo_nl(r)
    else:
        if not (state or {}).get("members"):
            note(f"Consumer group '{group}' has no active members.")
        echo_table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                    "HOST", "CLIENT-ID"],
                   [[r["group"], r["topic"], r["partition"], r["current_offset"], r["log_end_offset"], r["lag"],
                     r["consumer_id"], r["host"], r["client_id"]] for r in rows])


@groups.command()
@dir_option
@click.argument("names", metavar="GROUP...", nargs=-1)
@click.option("--group", "-g", "opt_names", multiple=True, help="A group to delete (repeatable), as Kafka spells it.")
def delete(names, opt_names):
    """Delete consumer groups that have no live member.

    Their committed offsets and state go (kafka-consumer-groups.sh --delete). A group
    with live members is refused and nothing of it is deleted."""
    from embedlog.client._groups import delete_group
    names = list(dict.fromkeys([*names, *opt_names]))
    if not names:
        raise click.UsageError("name at least one GROUP")
    failed = []
    with open_log() as log:
        for g in names:
            try:
                n = delete_group(log, g)
            except EmbedlogError as e:
                failed.append(str(e))
                continue
            click.echo(f"Deleted consumer group '{g}' ({n} committed offset(s)).")
    if failed:
        raise CliError("; ".join(failed))


# ------------------------------------------------------------------ lag

@groups.command()
@dir_option
@click.argument("group")
@click.option("--max-lag", type=click.IntRange(min=0, max=2**63 - 1), default=None,
              help="Exit 1 when any partition's lag is above this (for cron and health checks).")
@click.option("--topic", "-t", "topics", multiple=True, help="Only these topics (repeatable).")
@output_options()
def lag(group, max_lag, topics, fmt):
    """Show a group's lag; fail above --max-lag.

    Lag of GROUP per partition and in total. With --max-lag N, exits 1 when any
    partition lags by more than N records (for cron jobs and health checks)."""
    with open_log() as log:
        state, offsets = _group_or_fail(log, group)
        rows = lag_rows(log, group, state, offsets, topics=set(topics) or None)
    if topics and not rows:
        raise CliError(f"group {group!r} has no offsets or assignment for {', '.join(sorted(topics))}")
    over = [r for r in rows if max_lag is not None and r["lag"] > max_lag]
    total = sum(r["lag"] for r in rows)
    if fmt == "json":
        echo_json({"group": group, "total_lag": total, "max_lag": max_lag, "ok": not over,
                   "partitions": [{k: r[k] for k in ("topic", "partition", "current_offset", "log_end_offset", "lag")}
                                  for r in rows]})
    elif fmt == "nl":
        for r in rows:
            echo_nl({k: r[k] for k in ("group", "topic", "partition", "current_offset", "log_end_offset", "lag")})
    else:
        echo_table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"],
                   [[r["group"], r["topic"], r["partition"], r["current_offset"], r["log_end_offset"], r["lag"]]
                    for r in rows])
        click.echo(f"total lag: {total}")
    if over:
        worst = ", ".join(f"{r['topic']} [{r['partition']}] {r['lag']}" for r in over[:5])
        more = f" and {len(over) - 5} more" if len(over) > 5 else ""
        raise Failed(f"lag of group {group!r} is above {max_lag} on {len(over)} partition(s): {worst}{more}")


# ------------------------------------------------------------------ reset-offsets

def _parse_datetime(value: str) -> int:
    """Epoch ms from Kafka's YYYY-MM-DDTHH:mm:SS.sss (local time unless it names a zone)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date-time like 2024-05-01T12:00:00.000 "
                                 "(optionally with Z or +HH:MM)", param_hint="--to-datetime") from None
    if when.tzinfo is None:
        when = when.astimezone()          # local time, as Kafka's tool reads it
    return int(when.timestamp() * 1000)


def _parse_topic_spec(spec: str) -> tuple[str, list[int] | None]:
    name, sep, plist = spec.partition(":")
    if not sep:
        return name, None
    try:
        parts = sorted({int(p) for p in plist.split(",") if p.strip() != ""})
    except ValueError:
        raise click.BadParameter(f"{spec!r}: use TOPIC or TOPIC:0,1,2", param_hint="--topic") from None
    if not parts:
        raise click.BadParameter(f"{spec!r}: no partitions after ':'", param_hint="--topic")
    return name, parts


def _parse_duration(value: str) -> int:
    """Java's Duration.parse form that kafka-consumer-groups --by-duration takes
    (PnDTnHnMn.nS, e.g. PT1H, P1DT12H, PT0.5S) -> milliseconds."""
    import re
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", value.strip().upper())
    if not m or value.strip().upper() in ("P", "PT") or not any(m.groups()):
        raise click.BadParameter(f"{value!r} is not a duration such as PT1H, P1DT12H or PT30M",
                                 param_hint="--by-duration")
    d, h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return int(((d * 24 + h) * 60 + mi) * 60_000 + sec * 1000)


def _read_plan_file(f) -> list[tuple[str, int, int]]:
    """kafka-consumer-groups --from-file: CSV lines TOPIC,PARTITION,OFFSET (what --export writes)."""
    out = []
    for n, line in enumerate(f, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            out.append((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            raise click.BadParameter(f"line {n} is {line!r}, not TOPIC,PARTITION,OFFSET",
                                     param_hint="--from-file") from None
    return out


@groups.command("reset-offsets")
@dir_option
@click.argument("group", required=False)
@click.option("--group", "-g", "group_opt", default=None, metavar="GROUP", help="The group, as Kafka spells it.")
@click.option("--topic", "-t", "topic_specs", multiple=True, metavar="TOPIC[:P,P]",
              help="Topic, optionally with partitions (repeatable).")
@click.option("--all-topics", is_flag=True, help="Every topic the group has committed offsets for or is assigned.")
@click.option("--to-earliest", is_flag=True, help="Reset to the log start offset.")
@click.option("--to-latest", is_flag=True, help="Reset to the log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0, max=2**63 - 1), default=None, metavar="N",
              help="Reset to offset N (kept within the log).")
@click.option("--to-datetime", default=None, metavar="YYYY-MM-DDTHH:mm:SS.sss",
              help="Reset to the first record at or after this time (local time unless a zone is given).")
@click.option("--shift-by", type=click.IntRange(min=-(2**63 - 1), max=2**63 - 1), default=None, metavar="N",
              help="Move the committed offset by N (negative: back).")
@click.option("--by-duration", default=None, metavar="PnDTnHnMnS",
              help="Reset to the first record at or after now minus this duration (e.g. PT1H).")
@click.option("--to-current", is_flag=True, help="Reset to the committed offset (it stays; handy with --export).")
@click.option("--from-file", type=click.File("r"), default=None, metavar="CSV",
              help="Reset to the offsets of a TOPIC,PARTITION,OFFSET file (as --export writes it).")
@click.option("--export", is_flag=True, help="Print the plan as TOPIC,PARTITION,OFFSET lines (for --from-file).")
@click.option("--execute", is_flag=True, help="Commit the new offsets; without it this is a dry run.")
@click.option("--dry-run", is_flag=True, help="Only print the plan (the default).")
@output_options(nl=False)
def reset_offsets(group, group_opt, topic_specs, all_topics, to_earliest, to_latest, to_offset, to_datetime,
                  shift_by, by_duration, to_current, from_file, export, execute, dry_run, fmt):
    """Move a group's committed offsets.

    Prints the plan for GROUP (a dry run) unless --execute is given; executing needs
    a group with no active members, as in Kafka."""
    chosen = [name for name, on in (("--to-earliest", to_earliest), ("--to-latest", to_latest),
                                    ("--to-offset", to_offset is not None),
                                    ("--to-datetime", to_datetime is not None),
                                    ("--shift-by", shift_by is not None),
                                    ("--by-duration", by_duration is not None), ("--to-current", to_current),
                                    ("--from-file", from_file is not None)) if on]
    if group and group_opt and group != group_opt:
        raise click.UsageError(f"two groups given: {group!r} and --group {group_opt!r}")
    group = group or group_opt
    if not group:
        raise click.UsageError("missing GROUP (as an argument or --group GROUP)")
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, "
                               "--shift-by, --by-duration, --to-current, --from-file"
                               f"{' (got ' + ', '.join(chosen) + ')' if chosen else ''}")
    from_plan = _read_plan_file(from_file) if from_file is not None else None
    if from_plan is not None:
        if topic_specs or all_topics:
            raise click.UsageError("--from-file names its topics and partitions; drop --topic/--all-topics")
    elif bool(topic_specs) == all_topics:
        raise click.UsageError("give --topic TOPIC[:PARTITIONS] (repeatable) or --all-topics")
    if by_duration is not None:
        import time as _time
        to_datetime_ms = int(_time.time() * 1000) - _parse_duration(by_duration)
    else:
        to_datetime_ms = None
    if execute and dry_run:
        raise click.UsageError("--execute and --dry-run exclude each other")
    when_ms = _parse_datetime(to_datetime) if to_datetime is not None else to_datetime_ms
    specs = [_parse_topic_spec(s) for s in topic_specs]
    from_file_offsets = {}
    if from_plan is not None:
        for name, p, o in from_plan:
            from_file_offsets[(name, p)] = o
        specs = [(name, sorted({p for n, p, _o in from_plan if n == name}))
                 for name in dict.fromkeys(n for n, _p, _o in from_plan)]

    with open_log() as log:
        state = _state(log, group)
        offsets = _committed(log, group)
        if all_topics:
            names = sorted({t for t, _p in offsets} | {t for t, _p in _owners(state)})
            if not names:
                raise CliError(f"group {group!r} has no committed offsets or assignment: name the topics with --topic")
            specs = [(n, None) for n in names]
        plan = []
        for name, parts in specs:
            t = log.topic(name)
            for p in parts if parts is not None else range(t.num_partitions):
                part = t.partition(p)     # a partition the topic lacks is an error before any commit
                start, end = part.watermarks()
                c = offsets.get((name, p))
                current = c[0] if c else None
                if to_earliest:
                    new = start
                elif to_latest:
                    new = end
                elif to_offset is not None:
                    new = to_offset
                elif when_ms is not None:
                    found = part.offset_for_time(when_ms)
                    new = found[0] if found is not None else end
                elif from_plan is not None:
                    new = from_file_offsets[(name, p)]
                elif to_current:
                    if current is None:
                        raise CliError(f"cannot keep {name} [{p}] at its current offset: group {group!r} has no "
                                       "committed offset there")
                    new = current
                else:
                    if current is None:
                        raise CliError(f"cannot shift {name} [{p}]: group {group!r} has no committed offset there")
                    new = current + shift_by
                if not start <= new <= end:
                    clamped = min(max(new, start), end)
                    note(f"Warning: new offset {new} of {name} [{p}] is outside the log ({start}..{end}); "
                         f"using {clamped}")
                    new = clamped
                plan.append({"group": group, "topic": name, "partition": p, "current_offset": current,
                             "new_offset": new})
        active = (state or {}).get("members") or {}
        if execute:
            if active:
                who = ", ".join(f"{mid} (pid {m.get('pid')})" for mid, m in sorted(active.items()))
                raise CliError(f"group {group!r} has {len(active)} active member(s): {who}; stop them before "
                               "resetting offsets (Kafka requires an inactive group too)")
            from embedlog.storage._offsets import store_for
            if plan:
                store_for(log).commit(group, [(r["topic"], r["partition"], r["new_offset"], "") for r in plan])
    if export:
        for r in plan:
            click.echo(f"{r['topic']},{r['partition']},{r['new_offset']}")
    elif fmt == "json":
        echo_json({"group": group, "executed": execute, "partitions": plan})
    else:
        echo_table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
                   [[r["group"], r["topic"], r["partition"], r["current_offset"], r["new_offset"]] for r in plan])
    if not execute:
        extra = " (the group has active members: --execute will refuse until they stop)" if active else ""
        note(f"Dry run: nothing was committed; add --execute to commit these offsets{extra}.")
