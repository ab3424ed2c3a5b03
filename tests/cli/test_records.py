"""embedlog produce and embedlog consume."""
import json
import os
import signal
import subprocess
import sys
import time

import embedlog
from clirun import assert_error, call, run


def records(logdir, topic):
    """{partition: [(key, value, headers)]} read with the library."""
    with embedlog.open(logdir) as log:
        t = log.topic(topic)
        return {p: [(r.key, r.value, r.headers) for r in t.partition(p).read(0)]
                for p in range(t.num_partitions)}


def test_produce_keys_headers_verbose(orders):
    r = run("produce", "orders", "--key-separator", ":", "-H", "source=cli", "-H", "v=2", "--verbose",
            input="dave:d1\nerin:e1\ndave:d2:with:colons\r\n", dir=orders)
    assert r.code == 0 and r.err == "", r
    delivered = [line.split() for line in r.lines()]       # delivered to orders [P] @ OFFSET
    assert len(delivered) == 3 and all(d[:3] == ["delivered", "to", "orders"] for d in delivered)
    got = records(orders, "orders")
    # delivery reports come per partition as batches complete: match them by (partition, offset)
    at = {(int(d[3].strip("[]")), int(d[5])) for d in delivered}
    stored = {(p, o): rec for p, recs in got.items() for o, rec in enumerate(recs)}
    assert {stored[po][:2] for po in at} == {(b"dave", b"d1"), (b"erin", b"e1"), (b"dave", b"d2:with:colons")}
    assert all(stored[po][2] == (("source", b"cli"), ("v", b"2")) for po in at)
    # a key lands where the library's partitioner puts it (murmur2, as Kafka's Java client)
    from embedlog.storage._partitioner import partitions_for_keys
    dave = sorted(po for po in at if stored[po][0] == b"dave")
    assert {p for p, _o in dave} == {partitions_for_keys([b"dave"], 3)[0]}
    assert [stored[po][1] for po in dave] == [b"d1", b"d2:with:colons"]     # produce order within a partition


def test_produce_values_file_partition_and_topic_codec(logdir, tmp_path):
    with embedlog.open(logdir) as log:
        log.create_topic("z", 4, {"compression.type": "zstd"})
    src = tmp_path / "in.txt"
    src.write_bytes(b"one\n\ntwo\nthree")                  # an empty line is an empty record
    r = run("produce", "z", "--file", src, "--partition", "2", dir=logdir)
    assert r.code == 0 and r.out == "", r
    got = records(logdir, "z")
    assert got[2] == [(None, b"one", ()), (None, b"", ()), (None, b"two", ()), (None, b"three", ())]
    assert got[0] == got[1] == got[3] == []
    # the topic's compression.type wins over the producer's codec, as on a Kafka broker
    dumped = call("dump", logdir / "z-2" / "00000000000000000000.log", "--json", dir=logdir).json
    assert [b["compression"] for b in dumped["batches"]] == ["zstd"]
    # an unknown topic: created as the API's Producer creates it (allow.auto.create.topics), or refused
    r = call("produce", "orders2", "--producer-property", "allow.auto.create.topics=false", input="x\n", dir=logdir)
    assert_error(r, 1, "unknown topic 'orders2'")
    r = call("produce", "orders2", "--compression", "gzip", input="x\n", dir=logdir)
    assert r.code == 0 and "Created topic orders2 (1 partition(s)" in r.err, r
    assert records(logdir, "orders2") == {0: [(None, b"x", ())]}
    with embedlog.open(logdir) as log:
        log.create_topic("plain", 1)
    assert call("produce", "plain", "--compression", "gzip", input="x\n", dir=logdir).code == 0
    dumped = call("dump", logdir / "plain-0" / "00000000000000000000.log", "--json", dir=logdir).json
    assert [b["compression"] for b in dumped["batches"]] == ["gzip"]


def test_produce_errors(orders, tmp_path):
    before = records(orders, "orders")
    assert_error(run("produce", "nope", "--producer-property", "allow.auto.create.topics=false", input="x\n",
                     dir=orders), 1, "unknown topic 'nope'")
    assert_error(run("produce", "../evil", input="x\n", dir=orders), 1, "'../evil'")
    with embedlog.open(orders) as log:
        assert log.topics() == ["orders"]              # not created: refused, or a bad name
    assert_error(call("produce", "orders", "-p", "7", input="x\n", dir=orders), 1, "no partition 7")
    assert records(orders, "orders") == before
    assert_error(call("produce", "orders", "-H", "novalue", input="x\n", dir=orders), 2, "KEY=VALUE")
    assert_error(call("produce", "orders", "--file", tmp_path / "missing.txt", dir=orders), 2, "missing.txt")
    r = call("produce", "orders", "--key-separator", "=", "-p", "0", input="k=1\nk=2\nno separator\nk=4\n", dir=orders)
    assert_error(r, 1, "line 3", "'='", "2 line(s) before it were produced")
    assert [v for _k, v, _h in records(orders, "orders")[0][-2:]] == [b"1", b"2"]


def test_consume_prints_what_kafka_prints(orders):
    r = run("consume", "orders", "--print-key", "--print-offset", "--print-partition", "--print-timestamp",
            "--print-headers", dir=orders)
    assert r.code == 0 and r.err == "Processed a total of 6 messages\n", r
    got = records(orders, "orders")
    lines = r.lines()
    expected = sorted(f"Partition:{p}\tOffset:{o}\tNO_HEADERS\t{k.decode()}\t{v.decode()}"
                      for p, recs in got.items() for o, (k, v, _h) in enumerate(recs))
    assert sorted(line.split("\t", 1)[1] for line in lines) == expected
    assert all(line.startswith("CreateTime:") and line.split("\t")[0][11:].isdigit() for line in lines)
    # values only, by default; per partition in offset order
    plain = call("consume", "orders", "-p", "0", dir=orders).lines()
    assert plain == [v.decode() for _k, v, _h in got[0]]


def test_consume_positions_and_limits(orders):
    got = records(orders, "orders")
    p = max(got, key=lambda k: len(got[k]))
    values = [v.decode() for _k, v, _h in got[p]]
    assert call("consume", "orders", "-p", p, "--offset", "1", dir=orders).lines() == values[1:]
    assert call("consume", "orders", "-p", p, "--from-beginning", "-n", "1", dir=orders).lines() == values[:1]
    assert len(call("consume", "orders", "--max-messages", "4", dir=orders).lines()) == 4
    r = call("consume", "orders", "--offset", "latest", dir=orders)
    assert r.code == 0 and r.out == "" and "a total of 0 messages" in r.err


def test_consume_bad_input(orders):
    assert_error(run("consume", "nope", dir=orders), 1, "unknown topic 'nope'")
    assert_error(run("consume", "orders", "--offset", "3", dir=orders), 2, "needs --partition")
    assert_error(call("consume", "orders", "--offset", "soon", dir=orders), 2, "earliest, latest")
    assert_error(call("consume", "orders", "-p", "0", "--offset", "99", dir=orders), 1, "out of range")
    assert_error(call("consume", "orders", "-p", "9", dir=orders), 1, "no partition 9")
    assert_error(call("consume", "orders", "-g", "g", "-p", "0", dir=orders), 2, "--group")
    assert_error(call("consume", "orders", "--format", "xml", dir=orders), 2, "xml")


def test_consume_json_and_hex(logdir):
    with embedlog.open(logdir) as log:
        log.create_topic("bin", 1).append([b"\xff\x00text", b"{\"a\": 1}", None], keys=[b"k", None, b"\x80"],
                                          headers=[[("h", b"1")], None, None])
    docs = run("consume", "bin", "--json", dir=logdir).nl
    assert [d["offset"] for d in docs] == [0, 1, 2]
    assert docs[0]["value"] is None and docs[0]["value_base64"] == "/wB0ZXh0"      # not UTF-8: base64
    assert docs[0]["key"] == "k" and docs[0]["headers"] == [{"key": "h", "value": "1"}]
    assert docs[1]["value"] == '{"a": 1}' and docs[1]["key"] is None and "value_base64" not in docs[1]
    assert docs[2]["value"] is None and "value_base64" not in docs[2] and docs[2]["key_base64"] == "gA=="
    assert docs[0]["timestamp_type"] == "CreateTime" and isinstance(docs[0]["timestamp"], int)
    assert call("consume", "bin", "--format", "json", dir=logdir).nl == docs
    r = call("consume", "bin", "--format", "hex", "--print-key", "--separator", "|", dir=logdir)
    assert r.lines() == ["6b|ff0074657874", "null|" + b'{"a": 1}'.hex(), "80|null"]


def test_consume_in_a_group_commits_what_it_printed(orders):
    first = run("consume", "orders", "--group", "g", "-n", "4", dir=orders)
    assert first.code == 0 and len(first.lines()) == 4, first
    rest = call("consume", "orders", "--group", "g", dir=orders)
    assert len(rest.lines()) == 2, rest                      # the other two, from the committed offsets
    assert sorted(first.lines() + rest.lines()) == sorted(["a1", "a2", "a3", "c1", "d1", "d2"])
    assert call("consume", "orders", "--group", "g", dir=orders).out == ""
    lag = call("groups", "lag", "g", "--json", dir=orders).json
    assert lag["total_lag"] == 0 and sum(p["current_offset"] for p in lag["partitions"]) == 6


def _popen(logdir, *args):
    env = {k: v for k, v in os.environ.items() if k != "EMBEDLOG_DIR"}
    env["EMBEDLOG_DIR"] = str(logdir)
    env["PYTHONFAULTHANDLER"] = "1"        # a hang in _stop dumps every thread's stack (SIGABRT)
    return subprocess.Popen([sys.executable, "-m", "embedlog", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _read_lines(p, n, timeout=20.0):
    """The first n lines the process prints, or fail after `timeout` (never hang)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < n:
        left = deadline - time.monotonic()
        assert left > 0 and sel.select(left), f"only {data!r} after {timeout}s"
        chunk = os.read(p.stdout.fileno(), 65536)
        assert chunk, f"the process ended after printing {data!r}"
        data += chunk
    return data.decode().splitlines()[:n]


def _stop(p, sig):
    try:
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)       # faulthandler prints where each thread is
            out, err = p.communicate(timeout=10)
            raise AssertionError(f"still running 20 s after {sig!r}; its threads:\n{err.decode(errors='replace')}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, err


def test_follow_tails_until_ctrl_c_and_exits_cleanly(orders):
    with embedlog.open(orders) as log:
        log.create_topic("live", 2)
    p = _popen(orders, "consume", "live", "--follow", "--group", "tail")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:          # joined: the group has a member
            doc = call("groups", "describe", "tail", "--members", "--json", dir=orders)
            if doc.code == 0 and doc.json["members"]:
                break
            time.sleep(0.1)
        assert run("produce", "live", "-p", "1", input="new1\nnew2\n", dir=orders).code == 0
        assert _read_lines(p, 2) == ["new1", "new2"]
    finally:
        code, out, err = _stop(p, signal.SIGINT)
    assert code == 0 and out == b"", (out, err)
    assert err == b"Processed a total of 2 messages\n"
    rows = call("groups", "lag", "tail", "--json", dir=orders).json["partitions"]
    assert [(r["partition"], r["current_offset"], r["lag"]) for r in rows] == [(0, 0, 0), (1, 2, 0)]
    members = call("groups", "describe", "tail", "--members", "--json", dir=orders).json["members"]
    assert members == []                                    # it left the group on the way out


def test_follow_timeout_and_sigterm(orders):
    t = time.monotonic()
    r = run("consume", "orders", "-p", "0", "--follow", "--timeout-ms", "300", dir=orders)
    assert r.code == 0 and r.lines() == ["a1", "a2", "a3"] and time.monotonic() - t < 15
    p = _popen(orders, "consume", "orders", "--follow")
    try:
        assert sorted(_read_lines(p, 6)) == ["a1", "a2", "a3", "c1", "d1", "d2"]
    finally:
        code, out, err = _stop(p, signal.SIGTERM)
    assert code == 0 and err == b"Processed a total of 6 messages\n", err


def test_a_closed_pipe_stops_consume_quietly(logdir):
    with embedlog.open(logdir) as log:
        t = log.create_topic("big", 1)
        for _ in range(4):
            t.append([b"x" * 100] * 5000)
    p = _popen(logdir, "consume", "big")
    assert _read_lines(p, 1) == ["x" * 100]
    p.stdout.close()                                        # like `| head -1`
    err = p.stderr.read()
    assert p.wait(timeout=20) == 0 and b"Traceback" not in err and b"Error" not in err, err


def test_python_dash_m_and_the_console_script_agree(orders):
    script = os.path.join(os.path.dirname(sys.executable), "embedlog")
    assert os.access(script, os.X_OK), "the [project.scripts] entry point is not installed"
    env = dict(os.environ, EMBEDLOG_DIR=str(orders))
    via_script = subprocess.run([script, "topics", "list", "--json"], capture_output=True, env=env)
    assert via_script.returncode == 0
    assert json.loads(via_script.stdout) == call("topics", "list", "--json", dir=orders).json
    bad = subprocess.run([script, "consume", "nope"], capture_output=True, env=env)
    assert bad.returncode == 1 and bad.stderr == b"Error: unknown topic 'nope' in " + str(orders).encode() + b"\n"
