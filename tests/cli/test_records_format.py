"""`consume --format table` (aligned, escaped, cut to the terminal width) and the progress
line of `produce` on a terminal (issue #20)."""
from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest
from clirun import call, run
from hypothesis import given, settings
from hypothesis import strategies as st

import embedlog

T = 1714564800000                               # 2024-05-01T12:00:00.000Z


@pytest.fixture
def known(tmp_path):
    """Two partitions of records whose table is known to the byte: keys and values with
    control characters, bytes that are not UTF-8, wide characters, a long value, null
    keys, values and header values."""
    d = tmp_path / "log"
    with embedlog.open(d) as log:
        t = log.create_topic("t", 2)
        t.append([b"hello", b"tab\there\nnewline\x1b[31m", "日本語".encode(), b"x" * 200],
                 [b"alice", None, b"\xff\x00k", b"bob"], partition=0,
                 timestamps=[T, T + 1, T + 1500, T + 86_400_000],
                 headers=[[("src", b"cli")], None, [("a", b"1"), ("b", None)], None])
        t.append([b"", None], [b"k", b"k"], partition=1, timestamps=[T + 7, T + 8],
                 headers=[None, [("h", b"\x07")]])
    return d


TABLE_80 = """\
PARTITION  OFFSET  TIMESTAMP                 KEY      VALUE              HEADERS
0          0       2024-05-01T12:00:00.000Z  alice    hello              src:cli
0          1       2024-05-01T12:00:00.001Z  null     tab\\there\\nnewli…  -
0          2       2024-05-01T12:00:01.500Z  \\xff\\x…  日本語             a:1,b:…
0          3       2024-05-02T12:00:00.000Z  bob      xxxxxxxxxxxxxxxx…  -
1          0       2024-05-01T12:00:00.007Z  k                           -
1          1       2024-05-01T12:00:00.008Z  k        null               h:\\x07
"""

TABLE_120 = """\
PARTITION  OFFSET  TIMESTAMP                 KEY        VALUE                                                 HEADERS
0          0       2024-05-01T12:00:00.000Z  alice      hello                                                 src:cli
0          1       2024-05-01T12:00:00.001Z  null       tab\\there\\nnewline\\x1b[31m                            -
0          2       2024-05-01T12:00:01.500Z  \\xff\\x00k  日本語                                                a:1,b:null
0          3       2024-05-02T12:00:00.000Z  bob        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…  -
1          0       2024-05-01T12:00:00.007Z  k                                                                -
1          1       2024-05-01T12:00:00.008Z  k          null                                                  h:\\x07
"""


def _width(line):
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def test_table_is_aligned_escaped_and_cut_to_the_terminal(known):
    r = run("consume", "t", "--format", "table", dir=known, env={"COLUMNS": "80"})
    assert r.code == 0, r
    assert r.out == TABLE_80
    assert max(map(_width, r.out.splitlines())) == 80          # the long value filled the line
    assert "\x1b" not in r.out and "\x07" not in r.out         # nothing reaches the terminal raw
    assert r.err == "Processed a total of 6 messages\n"


def test_a_wider_terminal_shows_more_and_other_formats_are_unchanged(known, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    r = call("consume", "t", "--format", "table", dir=known)
    assert r.code == 0 and r.out == TABLE_120, r
    r = call("consume", "t", "--partition", "1", "--format", "hex", "--print-key", dir=known)
    assert r.code == 0 and r.out == "6b\t\n6b\tnull\n", r
    r = call("consume", "t", "--partition", "1", "--format", "json", dir=known)
    assert [(d["offset"], d["key"], d["value"], d["headers"]) for d in r.nl] == \
        [(0, "k", "", []), (1, "k", None, [{"key": "h", "value": "\x07"}])]


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=40) | st.text(max_size=20).map(str.encode), width=st.integers(1, 30))
def test_cells_are_printable_and_exactly_as_wide_as_their_column(data, width):
    from embedlog.cli._common import display_width, escaped, fit
    cell = escaped(data)
    assert cell.isprintable()                                   # no control character survives
    text = data.decode("utf-8", "backslashreplace")
    if text.isprintable():
        assert cell == text                                     # printable text is shown as it is
    out = fit(cell, width)
    if display_width(cell) <= width:
        assert out.rstrip(" ") == cell.rstrip(" ") and display_width(out) == width
    else:
        assert out.rstrip(" ").endswith("\u2026")
        assert display_width(out) == width                     # a wide character never overflows
        assert cell.startswith(out.rstrip(" ")[:-1])


# ------------------------------------------------------------------ produce's progress line

LINE = re.compile(r"\r([\d,]+) records written, ([\d,]+) records/s, \d[\d.]* (B|KiB|MiB)")


def _produce(logdir, *, stderr_tty, stdin_tty=False, batches=(500, 500)):
    """`embedlog produce t` fed `batches` of lines with a pause longer than the progress
    interval between them; returns (exit code, what stderr received)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EMBEDLOG_DIR", "EMBEDLOG_DEBUG")}
    env["COLUMNS"] = "100"
    fds = []
    if stderr_tty:
        err_master, err_slave = pty.openpty()
        fds += [err_master, err_slave]
    if stdin_tty:
        in_master, in_slave = pty.openpty()
        fds += [in_master, in_slave]
    proc = subprocess.Popen([sys.executable, "-m", "embedlog", "--dir", str(logdir), "produce", "t", "--acks", "1"],
                            stdin=in_slave if stdin_tty else subprocess.PIPE,
                            stderr=err_slave if stderr_tty else subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    got = bytearray()
    reader = None
    if stderr_tty:
        os.close(err_slave)

        def drain():
            while True:
                try:
                    chunk = os.read(err_master, 65536)
                except OSError:               # EIO: the child closed its end
                    return
                if not chunk:
                    return
                got.extend(chunk)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
    try:
        n = 0
        for i, count in enumerate(batches):
            data = b"".join(b"record-%06d\n" % (n + j) for j in range(count))
            n += count
            if stdin_tty:
                for k in range(0, len(data), 512):
                    os.write(in_master, data[k:k + 512])
            else:
                proc.stdin.write(data)
                proc.stdin.flush()
            if i + 1 < len(batches):
                _wait_written(logdir, n, proc)   # the producer is running and has read these...
                time.sleep(0.8)                  # ...and then more than the 0.5 s interval passes
        if stdin_tty:
            os.write(in_master, b"\x04")     # end of input at the start of a line (Ctrl-D)
        else:
            proc.stdin.close()
        code = proc.wait(timeout=120)
        if reader is not None:
            reader.join(timeout=30)
        if not stderr_tty:
            got.extend(proc.stderr.read())
            proc.stderr.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        if reader is not None:
            reader.join(timeout=30)
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    return code, got.decode("utf-8", "replace")     # after the reader has drained the pty


def _wait_written(logdir, n, proc):
    deadline = time.monotonic() + 60
    while _count(logdir) < n:
        assert proc.poll() is None and time.monotonic() < deadline, f"produce never wrote {n} records"
        time.sleep(0.05)


@pytest.fixture
def topic_t(tmp_path):
    d = tmp_path / "log"
    with embedlog.open(d) as log:
        log.create_topic("t", 1)
    return d


def _count(d):
    with embedlog.open(d, read_only=True) as log:
        return log.partition("t", 0).log_end_offset


def test_progress_line_on_a_terminal_is_overwritten_and_cleared(topic_t):
    code, err = _produce(topic_t, stderr_tty=True)
    assert code == 0, err
    assert _count(topic_t) == 1000
    parts = err.split("\r")                         # "", line, line, ..., blanks, ""
    assert parts[0] == "" and parts[-1] == "" and len(parts) >= 4, repr(err)
    shown, blanks = parts[1:-2], parts[-2]
    assert all(LINE.fullmatch("\r" + p.rstrip()) for p in shown), shown
    assert blanks.strip() == "" and len(blanks) >= len(shown[-1].rstrip()), repr(err[-200:])
    counts = [int(LINE.fullmatch("\r" + p.rstrip()).group(1).replace(",", "")) for p in shown]
    assert counts == sorted(counts) and counts[-1] <= 1000      # records written so far, growing
    assert "\n" not in err                                      # rewritten in place, never a new line


def test_no_progress_line_when_stderr_or_stdin_is_not_for_it(topic_t):
    code, err = _produce(topic_t, stderr_tty=False)
    assert code == 0 and err == "", repr(err)     # stderr a pipe: nothing at all
    code, err = _produce(topic_t, stderr_tty=True, stdin_tty=True, batches=(50, 50))
    assert code == 0 and "records written" not in err, repr(err)   # someone typing: no line over it
    assert _count(topic_t) == 1100
