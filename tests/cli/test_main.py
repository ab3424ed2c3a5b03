"""The command tree as a whole: help for every command, usage errors, the demo."""
import re

import click

import embedlog
from clirun import assert_error, call, run
from embedlog.cli import cli


def _commands(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))


def test_every_command_has_help():
    paths = {" ".join(p) for p, _ in _commands(cli)}
    # schemas/registry/connect subcommands are listed by their own tests (tests/registry,
    # tests/connect); everything else is here.
    core = {p for p in paths if p.split()[0] not in ("schemas", "registry", "connect")}
    assert {"schemas", "registry", "connect"} <= paths
    assert core == {"bridge", "consume", "demo", "du", "dump", "groups", "groups delete", "groups describe", "groups lag", "groups list",
                     "groups reset-offsets", "maintain", "plan", "produce", "replicas", "replicas add",
                     "replicas promote", "replicas remove", "replicas repair", "replicas status", "serve", "topics",
                     "topics add-partitions", "topics alter",
                     "topics create", "topics delete", "topics delete-records", "topics describe", "topics list", "verify"}
    for path, cmd in _commands(cli):
        assert cmd.help and cmd.get_short_help_str(80).strip(), path
        assert not cmd.get_short_help_str(80).endswith("..."), path        # a one-line summary that fits
        r = call(*path, "--help")
        assert r.code == 0 and r.out.startswith(f"Usage: embedlog {' '.join(path)}"), (path, r)
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (path, param.name)


def test_help_version_and_usage_errors_in_a_real_process():
    r = run("--help")
    assert r.code == 0 and "topics" in r.out and "verify" in r.out
    r = run("--version")
    assert r.code == 0 and r.out.strip() == f"embedlog, version {embedlog.__version__}"
    assert_error(run("nosuchcommand"), 2, "nosuchcommand")
    assert_error(call("topics", "create", "--topic", "t", "--partitions", "many"), 2, "many")
    assert_error(call("consume"), 2, "TOPIC")
    r = call("topics")                                 # a group alone: its help, as a usage error
    assert r.code == 2 and "Usage: embedlog topics" in r.err and "create" in r.err


def test_unexpected_errors_are_one_line_too(logdir, monkeypatch):
    import sys
    monkeypatch.setattr(sys.modules["embedlog.cli.topics"], "describe_topic", lambda log, name: 1 / 0)
    with embedlog.open(logdir) as log:
        log.create_topic("t", 1)
    r = call("topics", "describe", dir=logdir)
    assert_error(r, 1, "unexpected ZeroDivisionError", "EMBEDLOG_DEBUG=1")


def test_demo_the_readmes_first_command(tmp_path):
    d = tmp_path / "demo"
    r = run("demo", d)
    assert r.code == 0 and r.err == "", r
    lines = r.lines()
    assert lines[0] == f"created topic 'orders' with 3 partitions in {d}"
    assert lines[1] == "produced 1000 keyed orders (acks=all, idempotent, lz4): 1000 delivered"
    consumed = int(re.fullmatch(r"group 'billing' consumed (\d+) records and committed its offsets", lines[2])[1])
    assert 600 <= consumed < 1000 and lines[3] == ""
    assert lines[4].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    rows = [line.split() for line in lines[5:8]]
    assert [row[2] for row in rows] == ["0", "1", "2"] and sum(int(row[4]) for row in rows) == 1000
    assert lines[8] == f"total lag: {1000 - consumed}" == f"total lag: {sum(int(row[5]) for row in rows)}"
    with embedlog.open(d) as log:                     # the demo wrote a real log
        assert log.topic("orders").num_partitions == 3
        assert sum(r["lag"] for r in log.consumer_lag("billing")) == 1000 - consumed
    again = run("demo", d)
    assert again.lines()[0] == f"topic 'orders' already exists in {d}"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.csv").write_text("a,b\n")
    assert_error(run("demo", tmp_path / "foreign"), 1, "not empty")     # never adopts a foreign directory
