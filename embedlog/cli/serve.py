"""`embedlog serve`: the log directory over Kafka's wire protocol, until Ctrl-C or SIGTERM
(embedlog/server/). Any Kafka client or tool (librdkafka and its bindings, kafka-python,
aiokafka, kcat) works against it while in-process users keep using the directory."""
from __future__ import annotations

import click

from ._common import CliError, dir_option, log_dir


def _listen(ctx, param, value):
    from embedlog.server._server import parse_hostport
    try:
        parse_hostport(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.command()
@dir_option
@click.option("--listen", default="127.0.0.1:9092", show_default=True, metavar="HOST:PORT", callback=_listen,
              help="Address to listen on (port 0: a free one).")
@click.option("--advertise", default=None, metavar="HOST:PORT", callback=lambda c, p, v: v and _listen(c, p, v),
              help="Address clients are told to connect to (Kafka's advertised.listeners); default: --listen.")
@click.option("--no-auto-create", is_flag=True, help="Refuse produce/metadata for unknown topics "
              "(Kafka's auto.create.topics.enable=false).")
@click.option("--partitions", "default_partitions", type=click.IntRange(1, 1 << 20), default=1, show_default=True,
              help="Partitions of auto-created topics (Kafka's num.partitions).")
@click.option("--max-partitions", type=click.IntRange(1, 2**31 - 1), default=10_000, show_default=True,
              help="Most partitions a topic may be given over the wire (CreateTopics, CreatePartitions).")
@click.option("--idle-timeout-ms", type=click.IntRange(0, 2**31 - 1), default=600_000, show_default=True,
              help="Close connections silent for this long, 0 = never (Kafka's connections.max.idle.ms).")
def serve(listen, advertise, no_auto_create, default_partitions, max_partitions, idle_timeout_ms):
    """Serve the log directory over Kafka's protocol (stop with Ctrl-C / SIGTERM)."""
    from embedlog.server._server import run_forever
    path = log_dir()

    def ready(broker):
        host, port = broker.advertised
        click.echo(f"embedlog serve: {path} on {broker.host}:{broker.port} "
                   f"(bootstrap.servers={host}:{port}); Ctrl-C to stop", err=True)

    try:
        stats = run_forever(path, listen, advertise, on_ready=ready, auto_create_topics=not no_auto_create,
                            default_partitions=default_partitions, max_partitions=max_partitions,
                            idle_timeout_ms=idle_timeout_ms)
    except OSError as e:
        raise CliError(f"cannot listen on {listen}: {e.strerror or e}") from None
    click.echo(f"embedlog serve: stopped after {stats['requests']} requests on {stats['connections']} "
               "connections", err=True)
