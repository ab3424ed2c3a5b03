"""embedlog.to_arrow(): the same records as poll() (compaction gaps, codecs, several partitions,
control batches, headers), offset ranges, bad input, and the README's DuckDB example (issue #17)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch_consume import batches, build_log, by_poll

import embedlog

README = Path(__file__).resolve().parents[2] / "README.md"


def rows_of(table):
    out = {}
    for r in table.to_pylist():
        hs = tuple((h["key"], h["value"]) for h in r["headers"])
        ts = int(r["timestamp"].timestamp() * 1000 + 0.5)
        out.setdefault(r["partition"], []).append((r["offset"], r["key"], r["value"], ts, hs))
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=batches, partitions=st.integers(1, 3), codec=st.sampled_from([0, 1, 2, 3, 4]), control=st.booleans())
def test_to_arrow_equals_poll(tmp_path_factory, rounds, partitions, codec, control):
    logdir = str(tmp_path_factory.mktemp("ar") / "log")
    build_log(logdir, partitions, rounds, codec, control)
    expected = by_poll({"bootstrap.servers": f"file://{logdir}"}, partitions)
    with embedlog.open(logdir) as log:
        table = embedlog.to_arrow(log, "t")
        assert table.schema.names == ["partition", "offset", "timestamp", "key", "value", "headers"]
        got = rows_of(table)
        assert {p: got.get(p, []) for p in range(partitions)} == expected
        # a range: offsets start <= o < end, per partition by dict
        mid = {p: rows[len(rows) // 2][0] for p, rows in expected.items() if rows}
        part = rows_of(embedlog.to_arrow(log, "t", partitions=list(mid), start=mid, end=None))
        assert {p: part.get(p, []) for p in mid} == {p: [r for r in expected[p] if r[0] >= mid[p]] for p in mid}
    assert rows_of(embedlog.to_arrow(logdir, "t", end=0)) == {}            # a path works too


def test_values_are_one_buffer_per_chunk_and_nulls_are_nulls(tmp_path):
    with embedlog.open(tmp_path / "log") as log:
        t = log.create_topic("t", partitions=1)
        values = [None if i % 10 == 0 else b"v%05d" % i for i in range(5000)]
        t.append(values, keys=[None if i % 3 else b"%d" % i for i in range(5000)], partition=0)
        table = embedlog.to_arrow(log, "t")
        col = table.column("value").chunk(0)
        assert col.null_count == 500 and col.to_pylist() == values
        data = col.buffers()[2]
        assert data.size == sum(len(v) for v in values if v is not None)   # exactly the values, once
        assert table.column("key").null_count == 5000 - len(range(0, 5000, 3))


def test_bad_input(tmp_path):
    with embedlog.open(tmp_path / "log") as log:
        log.create_topic("t", partitions=2)
        with pytest.raises(embedlog.UnknownTopicOrPartitionError):
            embedlog.to_arrow(log, "t", partitions=[5])
        with pytest.raises(TypeError, match="partitions must be a list"):
            embedlog.to_arrow(log, "t", partitions=1)
        with pytest.raises(TypeError, match="start must be an offset"):
            embedlog.to_arrow(log, "t", start="0")
        with pytest.raises(embedlog.UnknownTopicOrPartitionError):
            embedlog.to_arrow(log, "nope")


def test_readme_duckdb_example_runs_as_written(tmp_path):
    """The README's block, byte for byte, run by a fresh interpreter in an empty directory."""
    text = README.read_text()
    section = text[text.index("## Batches, columns and SQL"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    (tmp_path / "example.py").write_text(code)
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    rows = ast.literal_eval(run.stdout.strip())
    assert [r[0] for r in rows] == [f"c{i}" for i in range(7)]
    assert sum(r[1] for r in rows) == 10_000
    assert sum(r[2] for r in rows) == sum(i % 50 for i in range(10_000))
