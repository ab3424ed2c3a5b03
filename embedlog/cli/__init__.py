"""The `embedlog` command line: an operator's tools for a log directory, with Kafka's
nouns and long flags (kafka-topics.sh, kafka-console-producer/consumer.sh,
kafka-consumer-groups.sh, kafka-dump-log.sh) and rpk-style short ones.

    embedlog [--dir DIR] topics create|list|describe|alter|add-partitions|delete
    embedlog [--dir DIR] produce TOPIC | consume TOPIC
    embedlog [--dir DIR] groups list|describe|reset-offsets|lag
    embedlog dump FILE.log | verify [DIR]
    embedlog plan --rate 10MB/s --retention 7d | [--dir DIR] du [TOPIC...]
    embedlog [--dir DIR] maintain [TOPIC...]
    embedlog [--dir DIR] replicas add|remove|status|promote|repair
    embedlog [--dir DIR] serve [--listen HOST:PORT] [--advertise HOST:PORT]
    embedlog bridge --from DIR|BROKERS --to BROKERS|DIR [--topics RE] [--groups RE] [--follow]
    embedlog [--dir DIR] schemas list|get|register|check|delete|config | registry serve
    embedlog [--dir DIR] connect run|list|status|pause|resume|delete|serve
    embedlog demo [DIR]

The directory comes from --dir (before or after the command) or EMBEDLOG_DIR. Read
commands take --json. Exit codes: 0 ok, 1 failure (one `Error: ...` line on stderr),
2 usage, 130 interrupted. Each command is a thin layer over the public API; click is
imported only here, under cli/. May import every subsystem below it (storage, client,
and later server, registry, connect); nothing imports the CLI.
"""
from __future__ import annotations

import os
import sys
import warnings

import click

from ._common import DIR_KEY, Failed, Group
from .bridge import bridge
from .connect import connect
from .demo import demo
from .groups import groups
from .inspect import dump, verify
from .maintain import maintain
from .replicas import replicas
from .du import du
from .plan import plan
from .records import consume, produce
from .schemas import registry, schemas
from .serve import serve
from .topics import topics

__all__ = ["cli", "main"]


def _version() -> str:
    from embedlog._version import __version__
    return __version__


class _PipeClosed(Exception):
    """stdout's reader went away; carried past click, which would exit 1 on EPIPE."""


class _Root(Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dir", "-d", "--bootstrap-server", "dir_", metavar="DIR", envvar="EMBEDLOG_DIR", default=None,
              help="Log directory (or set EMBEDLOG_DIR); --bootstrap-server file:///path as Kafka's tools spell it.")
@click.version_option(_version(), "--version", prog_name="embedlog")
@click.pass_context
def cli(ctx, dir_):
    """Kafka's data model in a local directory: topics, records, consumer groups and
    the segment files, from the shell."""
    if dir_:
        ctx.meta[DIR_KEY] = dir_


for _command in (topics, produce, consume, groups, dump, verify, plan, du, maintain, replicas, serve, bridge,
                 schemas, registry, connect, demo):
    cli.add_command(_command)
del _command


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _kafka_message(e) -> str:
    err = e.args[0] if e.args else None
    return err.str() if hasattr(err, "str") else str(e)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"Warning: {_one_line(message)}", err=True)


def main(argv=None) -> int:
    """Run the command line; returns the exit code (`python -m embedlog` exits with it).
    Every failure becomes one `Error: ...` line on stderr, never a traceback; set
    EMBEDLOG_DEBUG=1 to see the traceback of an unexpected one."""
    from embedlog import EmbedlogError, KafkaException
    args = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("EMBEDLOG_DEBUG") not in (None, "", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            rv = cli.main(args=args, prog_name="embedlog", standalone_mode=False)
            return rv if isinstance(rv, int) else 0
        except click.UsageError as e:
            hint = ""
            if e.ctx is not None:
                hint = f" (see '{e.ctx.command_path} --help')"
            click.echo(f"Error: {_one_line(e.format_message())}{hint}", err=True)
            return 2
        except click.ClickException as e:
            click.echo(f"Error: {_one_line(e.format_message())}", err=True)
            return e.exit_code
        except Failed as e:
            if str(e):
                click.echo(f"Error: {_one_line(str(e))}", err=True)
            return e.exit_code
        except (click.Abort, KeyboardInterrupt):
            return 130
        except (_PipeClosed, BrokenPipeError):
            # The reader went away (`embedlog consume t | head`): stop quietly, and keep
            # the interpreter's final flush of stdout from failing too.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 0
        except KafkaException as e:
            if debug:
                raise
            click.echo(f"Error: {_one_line(_kafka_message(e))}", err=True)
            return 1
        except (EmbedlogError, OSError) as e:
            if debug:
                raise
            message = str(e)
            if isinstance(e, OSError) and not isinstance(e, EmbedlogError) and e.filename:
                message = f"{e.strerror or e}: {e.filename}"
            click.echo(f"Error: {_one_line(message)}", err=True)
            return 1
        except Exception as e:   # a bug: still one line, with the way to the traceback
            if debug:
                raise
            click.echo(f"Error: unexpected {type(e).__name__}: {_one_line(str(e))} "
                       "(set EMBEDLOG_DEBUG=1 to see the traceback)", err=True)
            return 1

