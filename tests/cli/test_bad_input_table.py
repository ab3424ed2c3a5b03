"""The command line under a bad-input table (issue #18): every command and subcommand
(`embedlog --help` and each group's; schemas, registry and connect are left to their own
tests) with invalid names (path traversal, `.`, `..`, too long, bad characters, empty),
paths (missing, a file for a directory, a directory for a file, damaged log directories:
a truncated segment, a garbage `.index`, a missing `embedlog.json` or topic file),
numbers (negative, huge, not a number) and unknown flags. Each case must give exactly one
`Error: ...` line on stderr and a non-zero exit, never a traceback (nor the main loop's
"unexpected" line, which stands for one), and write nothing: the whole tree (every path,
its size, mode and SHA-256) is the same after as before.

The table runs in-process (`clirun.call`: the same code from argv to exit code); a handful
of cases also run as real subprocesses. The long variant (every name with every
name-taking command, every flag position) is behind @pytest.mark.soak.
"""
from __future__ import annotations

import os
import shutil

import pytest
from clirun import call
from treesnap import snapshot

import embedlog

BAD_NAMES = ["../x", ".", "..", "a" * 250, "", "a/b", "bad name!", "x\n", "ümlaut", "\x00x"]
HUGE = str(2 ** 80)
NUMBERS = ["-5", HUGE, "abc", "1.5", ""]


# ------------------------------------------------------------------ the fixture tree

def _make_log(path):
    with embedlog.open(path) as log:
        t = log.create_topic("t", 2, {"segment.bytes": 2000})
        for i in range(60):
            t.append([b"v%d" % i], keys=[b"k%d" % (i % 5)])
        log.create_topic("c", 1, {"cleanup.policy": "compact"})
    c = embedlog.Consumer({"bootstrap.servers": f"file://{path}", "group.id": "g", "enable.auto.commit": False})
    try:
        c.assign([embedlog.TopicPartition("t", 0, 3), embedlog.TopicPartition("t", 1, 2)])
        c.commit(offsets=[embedlog.TopicPartition("t", 0, 3), embedlog.TopicPartition("t", 1, 2)],
                 asynchronous=False)
    finally:
        c.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("badcli-template")
    _make_log(root / "log")
    return root


@pytest.fixture
def tree(template, tmp_path):
    """A fresh copy of the template per test: log/ (topics t, c; group g), damaged copies
    of it, a plain file and an empty directory."""
    root = tmp_path / "tree"
    shutil.copytree(template, root)
    log = root / "log"
    seg0 = sorted((log / "t-0").glob("*.log"))
    # damaged copies
    for name in ("trunc", "badindex", "nomarker", "notopicfile"):
        shutil.copytree(log, root / name)
    first = root / "trunc" / "t-0" / seg0[0].name
    with open(first, "r+b") as f:
        f.truncate(os.path.getsize(first) // 2)
    with open(root / "badindex" / "t-0" / seg0[0].with_suffix(".index").name, "wb") as f:
        f.write(b"\xff" * 37)
    os.unlink(root / "nomarker" / "embedlog.json")
    os.unlink(root / "notopicfile" / "topics" / "t.json")
    (root / "file.txt").write_text("not a directory\n")
    (root / "empty").mkdir()
    (root / "garbage.log").write_bytes(os.urandom(300))
    return root


def check(result, case):
    """One Error line, a non-zero exit, no traceback, no unexpected exception."""
    lines = result.err.strip("\n").splitlines()
    assert result.code not in (0, None), (case, result)
    assert len(lines) == 1 and lines[0].startswith("Error: "), (case, result)
    assert "Traceback" not in result.err + result.out, (case, result)
    assert "Error: unexpected" not in lines[0], (case, result)


# ------------------------------------------------------------------ the table

def _name_cases(names):
    """Commands that take a topic or group name, with each invalid name."""
    out = []
    for n in names:
        out += [
            ("topics", "create", "-t", n),
            ("topics", "describe", "-t", n),
            ("topics", "delete", "-t", n),
            ("topics", "alter", "-t", n, "-c", "retention.ms=1000"),
            ("topics", "add-partitions", "-t", n, "-p", "5"),
            ("topics", "delete-records", "-t", n, "--before", "1"),
            ("consume", n, "-n", "1", "--timeout-ms", "100"),
            ("produce", n),
            ("replicas", "status", n),
            ("plan", "-t", n, "--rate", "1MB/s", "--retention", "1d"),
            ("groups", "reset-offsets", "-g", "g", "-t", n, "--to-earliest", "--execute"),
            ("topics", "create", "-t", "ok", "-c", n or "=", ),
        ]
        if n != "":                  # any other string is a valid Kafka group id
            continue
        out += [("groups", "describe", n), ("groups", "lag", n), ("groups", "delete", n),
                ("groups", "reset-offsets", "-g", n, "--all-topics", "--to-earliest", "--execute"),
                ("consume", "t", "-g", n, "-n", "1", "--timeout-ms", "100")]
    return out


def _number_cases(numbers):
    out = []
    for x in numbers:
        integral = [] if x == "1.5" else [      # plan's amounts are exact decimals: 1.5 is fine there
            ("plan", "--rate", f"{x}MB/s", "--retention", "1d"),
            ("plan", "--rate", "1MB/s", "--retention", f"{x}d"),
            ("du", "--sample-bytes", x),
        ]
        bounded = [] if x in (HUGE, "1.5") else [    # a huge or fractional ratio, headroom, rate: arithmetic
            ("plan", "--rate", "1MB/s", "--retention", "1d", "--compression-ratio", x),
            ("plan", "--rate", "1MB/s", "--retention", "1d", "--headroom", x),
            ("plan", "--messages-per-second", x, "--message-size", "100", "--retention", "1d"),
        ]
        shift = [] if x == "-5" else [          # a negative shift moves back: valid
            ("groups", "reset-offsets", "-g", "g", "-t", "t", "--shift-by", x, "--execute")]
        out += integral + bounded + shift + [
            ("topics", "create", "-t", "n1", "-p", x),
            ("topics", "create", "-t", "n1", "-r", x),
            ("topics", "add-partitions", "-t", "t", "-p", x),
            ("topics", "delete-records", "-t", "t", "--before", x),
            ("topics", "delete-records", "-t", "t", "-p", x, "--before", "1"),
            ("topics", "alter", "-t", "t", "-c", f"retention.ms={x}"),
            ("topics", "alter", "-t", "t", "-c", f"segment.bytes={x}"),
            ("consume", "t", "-o", x, "-n", "1", "--timeout-ms", "100"),
            ("consume", "t", "-p", x, "-n", "1", "--timeout-ms", "100"),
            ("consume", "t", "-n", x, "--timeout-ms", "100"),
            ("consume", "t", "--timeout-ms", x),
            ("consume", "t", "--from-time", x, "-n", "1", "--timeout-ms", "100"),
            ("produce", "t", "-p", x),
            ("groups", "lag", "g", "--max-lag", x),
            ("groups", "reset-offsets", "-g", "g", "-t", "t", "--to-offset", x, "--execute"),
            ("groups", "reset-offsets", "-g", "g", "-t", f"t:{x}", "--to-earliest", "--execute"),
            ("plan", "--rate", "1MB/s", "--retention-ms", x),
            ("plan", "--rate", "1MB/s", "--retention", "1d", "-p", x),
            ("serve", "--listen", f"127.0.0.1:{x}"),
            ("serve", "--partitions", x, "--listen", "127.0.0.1:99999"),
            ("serve", "--idle-timeout-ms", x, "--listen", "127.0.0.1:99999"),
        ]
    out += [("plan", "--rate", "1MB/s", "--retention", "1d", "--compression-ratio", v) for v in ("nan", "inf", "0")]
    out += [("topics", "create", "-t", "n1", "-c", "no.such.config=1"),
            ("topics", "create", "-t", "n1", "-c", "retention.ms"),
            ("topics", "alter", "-t", "t", "--delete-config", "no.such.config"),
            ("groups", "reset-offsets", "-g", "g", "-t", "t", "--to-datetime", "yesterday", "--execute"),
            ("groups", "reset-offsets", "-g", "g", "-t", "t", "--by-duration", "P-1D", "--execute"),
            ("groups", "reset-offsets", "-g", "g", "-t", "t", "--to-earliest", "--to-latest", "--execute"),
            ("produce", "t", "--acks", "2"),
            ("produce", "t", "--compression", "brotli"),
            ("produce", "t", "-H", "novalue"),
            ("produce", "t", "--producer-property", "acks=7"),
            ("consume", "t", "--consumer-property", "no.such.property=1", "-n", "1", "--timeout-ms", "100"),
            ("consume", "t", "--from-time", "not-a-time", "-n", "1", "--timeout-ms", "100"),
            ("serve", "--listen", "nohost"),
            ("serve", "--listen", "256.1.1.1:9092"),
            ("bridge", "--from", "{log}", "--to", "{tree}/copy", "--topics", "["),
            ("bridge", "--from", "{tree}/missing", "--to", "{tree}/copy"),
            ("bridge", "--from", "{log}", "--to", "{tree}/file.txt"),
            ("bridge", "--from", "{log}", "--to", "{log}"),
            ("bridge", "--from", "{log}", "--to", "{tree}/copy", "--timeout", "-1")]
    return out


def _path_cases():
    """Every command that takes --dir, given a missing, a file, an empty (where it
    must exist) or a damaged directory; and the commands that take a file or directory
    argument."""
    dir_commands = [
        ("topics", "list"), ("topics", "describe"), ("topics", "delete", "-t", "t"),
        ("topics", "alter", "-t", "t", "-c", "retention.ms=1000"), ("topics", "add-partitions", "-t", "t", "-p", "5"),
        ("topics", "delete-records", "-t", "t", "--before", "1"),
        ("consume", "t", "-n", "1", "--timeout-ms", "100"), ("produce", "t"),
        ("groups", "list"), ("groups", "describe", "g"), ("groups", "lag", "g"), ("groups", "delete", "g"),
        ("groups", "reset-offsets", "-g", "g", "--all-topics", "--to-earliest", "--execute"),
        ("maintain",), ("du",), ("replicas", "status"), ("replicas", "remove", "{tree}/m"), ("replicas", "repair"),
        ("plan", "-t", "t", "--rate", "1MB/s", "--retention", "1d"), ("verify",),
    ]
    out = []
    for d in ("{tree}/missing", "{tree}/file.txt", "{tree}/empty", "{tree}/nomarker"):
        for c in dir_commands:
            out.append(("--dir", d, *c))
    # `serve`, `topics create` and `replicas add` make a missing or empty directory a log
    # (as a broker starting on an empty log.dirs does); a file or a foreign directory they refuse.
    out += [("--dir", d, "serve", "--listen", "127.0.0.1:0") for d in ("{tree}/file.txt", "{tree}/nomarker")]
    out += [("--dir", "{tree}/file.txt", "topics", "create", "-t", "n1"),
            ("--dir", "{tree}/file.txt", "replicas", "add", "{tree}/m"),
            ("--dir", "{tree}/nomarker", "replicas", "add", "{tree}/m"),
            ("replicas", "add", "{tree}/file.txt"),
            ("replicas", "add", "{log}"),
            ("replicas", "add", "{log}/t-0"),
            ("replicas", "add", "{tree}/nomarker"),
            ("replicas", "promote", "{tree}/missing"),
            ("replicas", "promote", "{tree}/file.txt"),
            ("replicas", "promote", "{tree}/empty"),
            ("replicas", "promote", "{log}"),
            ("produce", "t", "--file", "{tree}/missing"),
            ("produce", "t", "--file", "{tree}/empty"),
            ("topics", "delete-records", "-t", "t", "--offset-json-file", "{tree}/missing"),
            ("topics", "delete-records", "--offset-json-file", "{tree}/file.txt"),
            ("groups", "reset-offsets", "-g", "g", "--from-file", "{tree}/missing", "--execute"),
            ("groups", "reset-offsets", "-g", "g", "--from-file", "{tree}/file.txt", "--execute"),
            ("dump", "{tree}/missing"), ("dump", "{tree}/empty"), ("dump", "--files", "{tree}/missing"),
            ("verify", "{tree}/missing"), ("verify", "{tree}/file.txt"),
            ("demo", "{tree}/file.txt"), ("demo", "{log}/t-0")]
    # Damaged log directories: reading commands report the damage as one error. (A damaged
    # index is not among them: it is derived data, rebuilt or read around, never an error.)
    for d in ("{tree}/trunc", "{tree}/notopicfile"):
        out += [("--dir", d, "consume", "t", "-p", "0", "-n", "100", "--timeout-ms", "100")]
    return out


def _flag_cases():
    """Every command and group with an unknown flag, and a group with an unknown command."""
    commands = [(), ("topics",), ("topics", "create"), ("topics", "list"), ("topics", "describe"), ("topics", "delete"),
                ("topics", "alter"), ("topics", "add-partitions"), ("topics", "delete-records"), ("consume",),
                ("produce",), ("demo",), ("dump",), ("verify",), ("groups",), ("groups", "list"),
                ("groups", "describe"), ("groups", "lag"), ("groups", "delete"), ("groups", "reset-offsets"),
                ("maintain",), ("du",), ("plan",), ("serve",), ("bridge",), ("replicas",), ("replicas", "add"),
                ("replicas", "remove"), ("replicas", "status"), ("replicas", "promote"), ("replicas", "repair")]
    out = [(*c, "--no-such-flag") for c in commands]
    out += [(g, "no-such-command") for g in ("topics", "groups", "replicas")] + [("no-such-command",)]
    return out


def _expand(case, tree):
    return [a.replace("{tree}", str(tree)).replace("{log}", str(tree / "log")) for a in case]


def _run_table(cases, tree, runner=call):
    failures = []
    for case in cases:
        args = _expand(case, tree)
        before = snapshot(tree)
        r = runner(*args, input="a\nb\n", dir=tree / "log")
        try:
            check(r, args)
            after = snapshot(tree)
            assert after == before, (args, sorted(set(after.items()) ^ set(before.items()))[:6])
        except AssertionError as e:
            failures.append(str(e)[:600])
            # restore the tree so one failure does not spoil the next cases
            shutil.rmtree(tree)
            shutil.copytree(tree.parent / "pristine", tree)
    return failures


@pytest.fixture
def pristine(tree):
    shutil.copytree(tree, tree.parent / "pristine")
    return tree


def _sample(cases, k):
    return cases if k is None else cases[::max(1, len(cases) // k)]


@pytest.mark.parametrize("kind", ["names", "numbers", "paths", "flags"])
def test_bad_input_table(pristine, kind):
    names = BAD_NAMES
    cases = {"names": _name_cases(names), "numbers": _number_cases(NUMBERS), "paths": _path_cases(),
             "flags": _flag_cases()}[kind]
    failures = _run_table(cases, pristine)
    print(f"{kind}: {len(cases)} cases, {len(failures)} failures")
    assert not failures, "\n\n".join(failures)
