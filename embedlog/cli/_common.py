"""What every command shares: where the log directory is, opening it, output as an
aligned table, one JSON document (--json) or one JSON object per line (--nl), cells cut
to a width for a terminal, progress bars and lines on a terminal only, and the one-line
errors (`Error: ...`, exit 1)."""
from __future__ import annotations

import base64
import json
import os
import stat
import sys
import time
import unicodedata

import click

from embedlog.storage._log import MARKER  # embedlog.json: what makes a directory a log

DIR_KEY = "embedlog.dir"


class CliError(click.ClickException):
    """A failure the user can act on: printed as one `Error: ...` line, exit 1."""

    exit_code = 1


class Failed(Exception):
    """A command that printed its own findings and only needs a non-zero exit
    (verify found damage, groups lag is above --max-lag)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Group(click.Group):
    """A command group that, called without a command, prints its help to stderr and
    exits 2 (a usage error), the same on every click version."""

    def parse_args(self, ctx, args):
        if not args:
            click.echo(ctx.get_help(), err=True)
            ctx.exit(2)
        return super().parse_args(ctx, args)


# ------------------------------------------------------------------ the log directory

def _remember_dir(ctx, _param, value):
    if value is not None:
        ctx.meta[DIR_KEY] = value
    return value


def dir_option(f):
    """`--dir DIR` on a command (it may also be given before the command, or as
    EMBEDLOG_DIR); the innermost one wins."""
    return click.option("--dir", "-d", "--bootstrap-server", "dir_", metavar="DIR", default=None,
                        expose_value=False, callback=_remember_dir,
                        help="Log directory (default: the EMBEDLOG_DIR environment variable); "
                             "--bootstrap-server file:///path as Kafka's tools spell it.")(f)


def log_dir(ctx: click.Context | None = None) -> str:
    ctx = ctx or click.get_current_context()
    path = ctx.meta.get(DIR_KEY)
    if not path:
        raise click.UsageError("no log directory: pass --dir DIR or set EMBEDLOG_DIR", ctx=ctx)
    from ..storage._config import bootstrap_brokers
    from ..storage._log import path_from_config
    try:
        brokers = bootstrap_brokers(path)
    except ValueError as e:
        raise click.UsageError(str(e), ctx=ctx) from None
    if brokers:
        raise click.UsageError(f"{path!r} names Kafka brokers; embedlog's commands work on a log directory "
                               f"(file:///path or a path). For a cluster use Kafka's own tools; "
                               f"`embedlog serve` lets them work on a directory too", ctx=ctx)
    return os.path.abspath(path_from_config(path))


def pick_topic(argument: str | None, option: str | None) -> str:
    """TOPIC as an argument or as Kafka's tools spell it, --topic TOPIC (one of them, or both equal)."""
    if argument and option and argument != option:
        raise click.UsageError(f"two topics given: {argument!r} and --topic {option!r}")
    topic = argument or option
    if not topic:
        raise click.UsageError("missing TOPIC (as an argument or --topic TOPIC)")
    return topic


def properties(pairs, known: dict, what: str) -> dict:
    """Kafka console tools' `--property KEY=VALUE` among the `known` ones ({key: kind}, kind
    "bool" or "str"), as a dict of parsed values; an unknown key or a bad bool is a clear error."""
    out = {}
    for key, value in parse_key_value(pairs, what):
        kind = known.get(key)
        if kind is None:
            raise click.BadParameter(f"unknown property {key!r} (known: {', '.join(sorted(known))})",
                                     param_hint=what)
        if kind == "bool":
            if value.lower() not in ("true", "false"):
                raise click.BadParameter(f"{key}={value!r}: use true or false", param_hint=what)
            out[key] = value.lower() == "true"
        else:
            out[key] = value
    return out


def check_log_dir(path: str) -> str:
    """The directory must exist and be an embedlog directory (read commands never create one)."""
    if not os.path.exists(path):
        raise CliError(f"log directory {path} does not exist")
    if not os.path.isdir(path):
        raise CliError(f"{path} is not a directory")
    if not os.path.exists(os.path.join(path, MARKER)):
        raise CliError(f"{path} is not an embedlog log directory (it has no {MARKER})")
    return path


def open_log(ctx: click.Context | None = None, *, create: bool = False):
    """Open the command's log directory; only `create=True` commands may make a new one.
    A directory this process may not write (permissions, a read-only mount) opens
    read-only, so read commands work there and write commands say why they cannot."""
    import embedlog
    path = log_dir(ctx)
    if not create:
        check_log_dir(path)
    try:
        return embedlog.open(path, create=create)
    except embedlog.ReadOnlyLogError:
        if create:
            raise
        return embedlog.open(path, read_only=True)


def client_conf(log) -> dict:
    return {"bootstrap.servers": f"file://{log.path}"}


# ------------------------------------------------------------------ output

def output_options(nl: bool = True):
    """--json (one document) and, for lists, --nl (one JSON object per line)."""
    def deco(f):
        f = click.option("--json", "fmt", flag_value="json",
                         help="Print one JSON document instead of a table.")(f)
        if nl:
            f = click.option("--nl", "fmt", flag_value="nl",
                             help="Print one JSON object per line instead of a table.")(f)
        f = click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(f)
        return f
    return deco


def echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def echo_nl(obj) -> None:
    click.echo(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_table(headers: list[str], rows: list[list]) -> str:
    """Left-aligned columns separated by two spaces (Kafka's tools align the same way);
    no trailing spaces."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = []
    for row in [headers] + cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def emit_rows(fmt: str, rows: list[dict], headers: list[str], keys: list[str]) -> None:
    """A list command's output: one JSON document, one object per line, or a table of
    `keys` under `headers` (nothing for an empty table)."""
    if fmt == "json":
        echo_json(rows)
    elif fmt == "nl":
        for r in rows:
            echo_nl(r)
    elif rows:
        echo_table(headers, [[r[k] for k in keys] for r in rows])


def echo_table(headers: list[str], rows: list[list]) -> None:
    click.echo(render_table(headers, rows))


def note(message: str) -> None:
    """A remark for the human at the terminal: stderr, so stdout stays parseable."""
    click.echo(message, err=True)


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024.0
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    return f"{n} B"  # unreachable


def bytes_json(data, field: str) -> dict:
    """{field: text} for UTF-8 data, {field: null, field_base64: ...} otherwise."""
    if data is None:
        return {field: None}
    data = bytes(data)
    try:
        return {field: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {field: None, f"{field}_base64": base64.b64encode(data).decode("ascii")}


def text(data) -> str:
    """Bytes shown to a human: UTF-8, undecodable bytes as \\xNN escapes."""
    if data is None:
        return "null"
    return bytes(data).decode("utf-8", errors="backslashreplace")


def escaped(data) -> str:
    """Bytes (or text) for one table cell: UTF-8, with every byte that is not valid UTF-8 as
    \\xNN and every non-printable character escaped (\\n, \\t, \\r, \\xNN, \\uNNNN), so a
    record can never move the cursor, ring the bell or break the row."""
    if data is None:
        return "null"
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8", errors="backslashreplace")
    if data.isprintable():
        return data
    out = []
    for ch in data:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
    return "".join(out)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and full-width characters two,
    combining marks none (as wcwidth counts them for printable text)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def fit(text: str, width: int) -> str:
    """`text` padded to `width` columns, or cut to width - 1 columns and an ellipsis."""
    if text.isascii():                    # one column a character: no walk needed
        return text.ljust(width) if len(text) <= width else text[:width - 1] + "\u2026"
    w = display_width(text)
    if w <= width:
        return text + " " * (width - w)
    out, used = [], 0
    for ch in text:
        cw = display_width(ch)
        if used + cw > width - 1:
            break
        out.append(ch)
        used += cw
    return "".join(out) + "\u2026" + " " * (width - 1 - used)


def parse_key_value(pairs, what: str) -> list[tuple[str, str]]:
    out = []
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out.append((key.strip(), value))
    return out


# ------------------------------------------------------------------ progress

class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _is_pipe(stream) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(length: int, label: str, *, also_when_stdout_is_tty: bool = True):
    """A progress bar on stderr, only when stderr is a terminal and the output is not
    piped (a bar would garble `| less`); nothing at all otherwise. dump passes
    also_when_stdout_is_tty=False: records streaming to the terminal show progress
    themselves."""
    if length <= 0 or not is_tty(sys.stderr) or _is_pipe(sys.stdout):
        return _NoProgress()
    if not also_when_stdout_is_tty and is_tty(sys.stdout):
        return _NoProgress()
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=False,
                             show_percent=True, show_eta=True)


class _NoLine:
    def due(self) -> bool:
        return False

    def show(self, text: str) -> None:
        pass

    def clear(self) -> None:
        pass


class _Line:
    """One status line on stderr, rewritten in place (carriage return, no newline) at most
    every `interval` seconds, cut to the terminal width so it never wraps (a wrapped line
    cannot be overwritten), and blanked by clear()."""

    def __init__(self, stream, interval: float):
        self.stream = stream
        self.interval = interval
        self.started = time.monotonic()
        self._next = self.started + interval
        self._shown = 0

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def show(self, text: str) -> None:
        import shutil
        self._next = time.monotonic() + self.interval
        text = text[:max(1, shutil.get_terminal_size().columns - 1)]
        self.stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0


def progress_line(interval: float = 0.5, *, enabled: bool = True):
    """A status line for work of unknown length (produce from a file), shown only when
    `enabled` and stderr is a terminal; an object whose methods do nothing otherwise."""
    if not enabled or not is_tty(sys.stderr):
        return _NoLine()
    return _Line(sys.stderr, interval)
