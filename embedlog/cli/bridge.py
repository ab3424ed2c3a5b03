"""`embedlog bridge --from DIR|BROKERS --to BROKERS|DIR`: topics, configs and committed
group offsets copied between a log directory and a Kafka cluster (embedlog/connect/)."""
from __future__ import annotations

import signal

import click

from ._common import echo_json, parse_key_value, progress


def _summary_lines(s: dict) -> list[str]:
    lines = [f"bridge: {s['records']:,} records from {s['source']} to {s['destination']} in "
             f"{s['seconds']:.1f} s ({s.get('records_per_second', 0):,}/s)"]
    for t, info in sorted(s["topics"].items()):
        extra = " (created)" if info.get("created") else ""
        if info.get("partitions_added"):
            extra += f" (+{info['partitions_added']} partitions)"
        if info.get("configs_not_copied"):
            extra += f" (configs not copied: {', '.join(info['configs_not_copied'])})"
        lines.append(f"  topic {t}: {info['partitions']} partitions, {info['records']:,} records{extra}")
    for g, info in sorted(s["groups"].items()):
        why = f" — {info['skipped']}" if info.get("skipped") else ""
        ahead = f", {info['ahead_of_bridge']} partitions not copied that far yet" if info.get("ahead_of_bridge") \
            else ""
        lines.append(f"  group {g}: {info['committed']} offsets committed{ahead}{why}")
    for tp, n in sorted(s["resumed"].items()):
        lines.append(f"  resumed {tp}: {n} records were already on the destination past the last sync")
    return lines


@click.command()
@click.option("--from", "source", required=True, metavar="DIR|BROKERS",
              help="Where to copy from: a log directory or host:port[,host:port].")
@click.option("--to", "dest", required=True, metavar="BROKERS|DIR",
              help="Where to copy to (a directory is created if missing).")
@click.option("--topics", default=None, metavar="REGEX[,REGEX]",
              help="Topics to copy (full-match regular expressions; default: all but internal ones).")
@click.option("--groups", default=None, metavar="REGEX[,REGEX]",
              help="Consumer groups whose committed offsets to translate (default: all).")
@click.option("--follow", is_flag=True, help="Keep copying new records until Ctrl-C / SIGTERM.")
@click.option("--name", default=None, help="The bridge's name in its sync records (default: both ends' ids).")
@click.option("--add-partitions", is_flag=True,
              help="Grow a destination topic that has fewer partitions than the source.")
@click.option("-X", "--kafka-config", "kafka_config", multiple=True, metavar="KEY=VALUE",
              help="A confluent-kafka setting for the cluster end (security.protocol, sasl.*, ...).")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Seconds to wait for the cluster before giving up.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document.")
def bridge(source, dest, topics, groups, follow, name, add_partitions, kafka_config, timeout, as_json):
    """Copy topics, configs and group offsets between a directory and a cluster."""
    from embedlog.connect._bridge import Bridge
    conf = dict(parse_key_value(kafka_config, "-X"))
    b = Bridge(source, dest, topics=topics, groups=groups, name=name, add_partitions=add_partitions,
               kafka_config=conf, timeout=timeout)
    bar = {"bar": None, "done": 0}

    def on_progress(done, total):
        if total is None or total <= 0:
            return
        if bar["bar"] is None:
            bar["bar"] = progress(total, "bridge").__enter__()
        bar["bar"].update(min(done, total) - bar["done"])
        bar["done"] = min(done, total)

    b.on_progress = on_progress

    def stop(_signum, _frame):
        b.stop()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with b:
            summary = b.run(follow=follow)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if bar["bar"] is not None:
            bar["bar"].__exit__(None, None, None)
    if as_json:
        echo_json(summary)
    else:
        for line in _summary_lines(summary):
            click.echo(line, err=True)
    if summary["stopped"] == "interrupted":
        click.echo("bridge: interrupted; run the same command again to go on where it stopped", err=True)
        return 130
    return 0
