"""Helpers for the CLI tests. Every command runs as a real subprocess (`python -m
embedlog ...`): exit codes, stdout and stderr are what a shell sees. Logs are set up
in-process with the library, which is faster and independent of the commands under test."""
import contextlib
import io
import json
import os
import subprocess
import sys


class Result:
    def __init__(self, code, out, err):
        self.code = code
        self.out = out
        self.err = err

    @property
    def json(self):
        return json.loads(self.out)

    @property
    def nl(self):
        return [json.loads(line) for line in self.out.splitlines()]

    def lines(self):
        return self.out.splitlines()

    def table(self):
        return parse_table(self.out)

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def parse_table(text):
    """Rows of an aligned table as lists of cells, header first; checks alignment:
    every column starts at the same character position in every row."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i in range(len(header)) if header[i] != " " and (i == 0 or header[i - 1] == " ")]
    rows = []
    for line in lines:
        cells = []
        for k, s in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(line)
            assert s == 0 or line[s - 1] == " ", f"column {k} not aligned in {line!r}"
            cells.append(line[s:end].strip())
        rows.append(cells)
    return rows


def run(*args, input=None, env=None, dir=None, timeout=60):
    """Run `python -m embedlog ARGS` with EMBEDLOG_DIR=dir (when given)."""
    e = {k: v for k, v in os.environ.items() if k not in ("EMBEDLOG_DIR", "EMBEDLOG_DEBUG")}
    if dir is not None:
        e["EMBEDLOG_DIR"] = str(dir)
    e.update(env or {})
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run([sys.executable, "-m", "embedlog", *map(str, args)], input=input,
                          capture_output=True, env=e, timeout=timeout)
    return Result(proc.returncode, proc.stdout.decode("utf-8", errors="replace"),
                  proc.stderr.decode("utf-8", errors="replace"))


@contextlib.contextmanager
def _environ(dir):
    saved = {k: os.environ.pop(k) for k in ("EMBEDLOG_DIR", "EMBEDLOG_DEBUG") if k in os.environ}
    if dir is not None:
        os.environ["EMBEDLOG_DIR"] = str(dir)
    try:
        yield
    finally:
        os.environ.pop("EMBEDLOG_DIR", None)
        os.environ.update(saved)


def call(*args, input=None, dir=None):
    """`embedlog.cli.main(ARGS)` in this process: the same code from argv to exit code
    as `run`, without the interpreter start. Used for the many variants of a command
    that `run` has already covered once as a real subprocess."""
    from embedlog.cli import main
    if isinstance(input, str):
        input = input.encode()
    streams = [io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")] + \
        [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2)]
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        with _environ(dir):
            code = main([str(a) for a in args])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    out, err = (s.buffer.getvalue().decode("utf-8", errors="replace") for s in streams[1:])
    return Result(code, out, err)


def assert_error(result, code, *fragments):
    """One `Error: ...` line on stderr, the exit code, no traceback."""
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result
    assert "Traceback" not in result.err
    for f in fragments:
        assert f in lines[0], (f, result)
