"""The CLI's reading commands on a log directory this process may not write (issue #20):
`consume` without a group and `groups list/describe/lag` read it and write nothing (the
tree, mtimes included, is the same before and after); a Consumer without group.id reads it
read-only; anything that would join a group or commit is refused with one clear error
naming the directory. Two ways of "may not write": a read-only bind mount (root), and
permission bits (chmod a-w) for a process without root's override of them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from clirun import Result, assert_error
from treesnap import read_only_bind, snapshot

import embedlog

VALUES = {0: [b"a%d" % i for i in range(6)], 1: [b"b%d" % i for i in range(4)]}
COMMITTED = {0: 4, 1: 1}                       # so both partitions lag: 2 and 3


def _make(path):
    """Topic t (2 partitions) and group g that read everything and committed COMMITTED."""
    with embedlog.open(path) as log:
        t = log.create_topic("t", 2)
        for p, values in VALUES.items():
            t.append(values, partition=p)
    c = embedlog.Consumer({"bootstrap.servers": f"file://{path}", "group.id": "g", "enable.auto.commit": False,
                           "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["t"])
        n = 0
        for _ in range(100):
            n += sum(1 for m in c.consume(20, timeout=0.5) if m.error() is None)
            if n == 10:
                break
        assert n == 10
        c.commit(offsets=[embedlog.TopicPartition("t", p, o) for p, o in COMMITTED.items()], asynchronous=False)
    finally:
        c.close()
    # A member killed -9 stays in group.json (nobody rebalanced since): the reading
    # commands must not count it as active, and on a read-only directory nobody can clean up.
    member = subprocess.Popen([sys.executable, "-c", f"""
import sys, embedlog
c = embedlog.Consumer({{"bootstrap.servers": "file://{path}", "group.id": "g"}})
c.subscribe(["t"])
print(c.memberid(), flush=True)
sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        dead = member.stdout.readline().strip()
    finally:
        member.kill()
        member.wait(timeout=60)
    assert dead and dead in (path / "groups" / "g" / "group.json").read_text()


def _cli(path, *args, prefix=()):
    e = {k: v for k, v in os.environ.items() if k not in ("EMBEDLOG_DIR", "EMBEDLOG_DEBUG")}
    proc = subprocess.run([*prefix, sys.executable, "-m", "embedlog", "--dir", str(path), *args],
                          check=False, capture_output=True, env=e, timeout=120)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def _expected_lag():
    return [{"topic": "t", "partition": p, "current_offset": COMMITTED[p], "log_end_offset": len(VALUES[p]),
             "lag": len(VALUES[p]) - COMMITTED[p]} for p in (0, 1)]


def _check_reads(path, prefix=(), *, every=True):
    """The reading commands work on `path` and print what the log holds (every=False:
    all but groups describe, to keep the test short)."""
    r = _cli(path, "consume", "t", "--print-partition", "--print-offset", prefix=prefix)
    assert r.code == 0, r
    got = sorted(r.out.splitlines())
    assert got == sorted(f"Partition:{p}\tOffset:{o}\t{v.decode()}" for p, vs in VALUES.items()
                         for o, v in enumerate(vs)), r
    assert "Processed a total of 10 messages" in r.err

    r = _cli(path, "groups", "lag", "g", "--json", prefix=prefix)
    assert r.code == 0, r
    assert r.json["partitions"] == _expected_lag() and r.json["total_lag"] == 5

    if every:
        r = _cli(path, "groups", "describe", "g", "--json", prefix=prefix)
        assert r.code == 0, r
        assert [{k: row[k] for k in ("topic", "partition", "current_offset", "log_end_offset", "lag")}
                for row in r.json] == _expected_lag()

    r = _cli(path, "groups", "list", "--json", prefix=prefix)
    assert r.code == 0, r
    assert [(g["group"], g["state"], g["members"]) for g in r.json] == [("g", "Empty", 0)]   # the dead one too

    # Joining a group writes membership and commits: refused, one line, naming the directory.
    r = _cli(path, "consume", "t", "--group", "g", prefix=prefix)
    assert_error(r, 1, "cannot consume as group 'g'", str(path), "without --group")
    assert r.out == ""


def test_reading_commands_on_a_read_only_mount_write_nothing(tmp_path):
    d = tmp_path / "log"
    _make(d)
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only_bind(d, ro):
        before = snapshot(d, mtimes=True)
        _check_reads(ro)

        # The API: without group.id the Consumer opens the mount read-only and reads it all...
        c = embedlog.Consumer({"bootstrap.servers": f"file://{ro}"})
        try:
            c.assign([embedlog.TopicPartition("t", p, embedlog.OFFSET_BEGINNING) for p in VALUES])
            got = {0: [], 1: []}
            for _ in range(100):
                for m in c.consume(20, timeout=0.2):
                    if m.error() is None:
                        got[m.partition()].append(m.value())
                if sum(map(len, got.values())) == 10:
                    break
            assert got == VALUES
            assert c.get_watermark_offsets(embedlog.TopicPartition("t", 0)) == (0, 6)
        finally:
            c.close()
        # ...with one it says why not, naming the directory, before touching anything.
        with pytest.raises(embedlog.ReadOnlyLogError, match=f"{ro}.*group.id 'g' writes its membership"):
            embedlog.Consumer({"bootstrap.servers": f"file://{ro}", "group.id": "g"})
        assert snapshot(d, mtimes=True) == before


def _without_write_permission():
    """A command prefix under which the permission bits bind this process: none for a
    user that is not root; for root, dropping the capabilities that override them."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to bind")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner")


def test_reading_commands_on_a_directory_without_write_permission_write_nothing(tmp_path):
    prefix = _without_write_permission()
    d = tmp_path / "log"
    _make(d)
    modes = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            modes[name] = os.stat(name).st_mode
    for name, mode in modes.items():
        os.chmod(name, mode & ~0o222)
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(d / 'probe')!r}, 'w')"],
                               check=False, capture_output=True)
        if probe.returncode == 0:
            pytest.skip("the permission bits do not bind here (capabilities could not be dropped)")
        before = snapshot(d, mtimes=True)
        _check_reads(d, prefix, every=False)
        assert snapshot(d, mtimes=True) == before
    finally:
        for name, mode in modes.items():
            os.chmod(name, mode)
