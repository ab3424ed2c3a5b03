"""`embedlog demo`: a fresh directory for every run without DIR (the same output every
run, never the last run's lag), its path printed; DIR when given. Real subprocesses."""
import os
import re

import embedlog
from clirun import run

CREATED = re.compile(r"created topic 'orders' with 3 partitions in (\S+)")


def _lag_lines(r):
    lines = r.lines()
    start = lines.index(next(line for line in lines if line.startswith("GROUP")))
    end = lines.index(next(line for line in lines if line.startswith("total lag:")))
    return lines[start:end + 1]


def test_each_run_gets_a_fresh_directory_and_reports_the_same_lag(tmp_path):
    env = {"TMPDIR": str(tmp_path)}                    # tempfile puts the demo's directories here
    first, second = run("demo", env=env), run("demo", env=env)
    assert first.code == 0 and first.err == "", first
    assert second.code == 0 and second.err == "", second
    dirs = [CREATED.fullmatch(r.lines()[0])[1] for r in (first, second)]
    assert dirs[0] != dirs[1]
    for d, r in zip(dirs, (first, second)):
        assert os.path.isabs(d) and os.path.isdir(d) and os.path.dirname(d) == str(tmp_path)
        assert r.lines()[-1].startswith(f"the log is in {d};")
        with embedlog.open(d) as log:                  # a real log, holding only this run's records
            assert log.topic("orders").num_partitions == 3
            assert sum(log.partition("orders", p).log_end_offset for p in range(3)) == 1000
    assert _lag_lines(first) == _lag_lines(second)     # same per-partition offsets and lag
    assert _lag_lines(first)[-1] == "total lag: 400"
    assert first.out.replace(dirs[0], "D") == second.out.replace(dirs[1], "D")


def test_an_explicit_directory_is_used(tmp_path):
    d = tmp_path / "mine"
    r = run("demo", d, env={"TMPDIR": str(tmp_path / "elsewhere")})
    assert r.code == 0 and r.err == "", r
    assert r.lines()[0] == f"created topic 'orders' with 3 partitions in {d}"
    assert r.lines()[-1].startswith(f"the log is in {d};")
    assert not (tmp_path / "elsewhere").exists() or not os.listdir(tmp_path / "elsewhere")
    with embedlog.open(d) as log:
        assert sum(r["lag"] for r in log.consumer_lag("billing")) == 400
