"""The connector runner on real files and a real log directory: FileStreamSource -> topic
-> FileStreamSink, checked with the normal Consumer; pause/resume/delete on a running worker;
a `embedlog connect run` subprocess killed -9 mid-stream and restarted; bad configs refused
with nothing written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import embedlog as el
from embedlog.connect import ConnectError, Worker, run
from embedlog.connect._store import CONFIGS, OFFSETS, STATUS, Store

STRING = "org.apache.kafka.connect.storage.StringConverter"
JSON = "org.apache.kafka.connect.json.JsonConverter"


def wait_until(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def topic_values(path, topic, n_expected=None, timeout=60.0):
    """Every value of the topic, in order, read with the normal Consumer (one partition)."""
    c = el.Consumer({"bootstrap.servers": f"file://{path}", "group.id": f"check-{time.monotonic_ns()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(1000, 0.3)
            out += [m.value() for m in msgs if not m.error()]
            if not msgs and (n_expected is None or len(out) >= n_expected):
                break
    finally:
        c.close()
    return out


def end_offset(path, topic):
    with el.open(path) as log:
        return log.partition(topic, 0).log_end_offset if topic in log.topics() else 0


def source(name, file, topic, **extra):
    return {"name": name, "connector.class": "FileStreamSource", "file": str(file), "topic": topic,
            "value.converter": STRING, **extra}


def sink(name, file, topics, **extra):
    return {"name": name, "connector.class": "FileStreamSink", "file": str(file), "topics": topics,
            "value.converter": STRING, **extra}


def test_file_source_to_topic_to_file_sink(tmp_path):
    src, dst, d = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "log"
    lines = [f"line {i} é" for i in range(500)]
    src.write_text("\n".join(lines[:300]) + "\n" + "partial")      # a last line without its newline
    w = run(d, source("src", src, "lines", **{"batch.max.rows": "37"}))
    try:
        w.submit(sink("snk", dst, "lines"))
        w.wait_for("src", "RUNNING")
        wait_until(lambda: end_offset(d, "lines") >= 300, what="300 records")
        time.sleep(0.3)
        assert end_offset(d, "lines") == 300                        # "partial" is held back
        with open(src, "a") as f:
            f.write(" now whole\r\n" + "\n".join(lines[301:]) + "\n")
        want = lines[:300] + ["partial now whole"] + lines[301:]
        got = topic_values(d, "lines", len(want))
        assert [v.decode() for v in got] == want
        wait_until(lambda: dst.exists() and dst.read_text().count("\n") >= len(want), 20,
                   what=f"sink file {dst.exists() and dst.read_text()[:300]!r} {w.store.connector_status('snk')}")
        assert dst.read_text().split("\n")[:-1] == want
        st = w.wait_for("snk", "RUNNING")
        assert st["type"] == "sink" and st["connector"]["state"] == "RUNNING"
        stored = w.store.source_offsets("src")
        (partition, offset), = stored.values()
        assert partition == {"filename": str(src)}
        assert offset == {"position": src.stat().st_size}
    finally:
        w.stop()
    # The sink's group committed what it wrote; the stored records have Kafka Connect's keys.
    with el.open(d) as log:
        store = Store(log)
        store.refresh()
        assert store.status["status-task-snk-0"]["state"] == "UNASSIGNED"
        keys = [k.decode() for k in log.partition(CONFIGS, 0).fetch(0)[0].keys]
        assert "connector-src" in keys and "connector-snk" in keys
        okeys = {k.decode() for k in log.partition(OFFSETS, 0).fetch(0)[0].keys}
        assert okeys == {json.dumps(["src", {"filename": str(src)}], separators=(",", ":"))}
        assert log.topic(CONFIGS).config["cleanup.policy"] == "compact"
        c = el.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "connect-snk"})
        committed = c.committed([el.TopicPartition("lines", 0)])
        c.close()
        assert committed[0].offset == len(want)


def test_json_converter_and_transforms_through_the_runner(tmp_path):
    src, d = tmp_path / "in.txt", tmp_path / "log"
    src.write_text("a\nb\n")
    cfg = source("j", src, "raw", **{
        "value.converter": JSON, "transforms": "hoist,ins,route",
        "transforms.hoist.type": "org.apache.kafka.connect.transforms.HoistField$Value",
        "transforms.hoist.field": "line",
        "transforms.ins.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.ins.static.field": "origin", "transforms.ins.static.value": "file",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "(.*)", "transforms.route.replacement": "$1-routed"})
    with run(d, cfg):
        got = topic_values(d, "raw-routed", 2)
    doc = json.loads(got[0])
    assert doc["payload"] == {"line": "a", "origin": "file"}
    assert doc["schema"] == {"type": "struct", "optional": False, "fields": [
        {"type": "string", "optional": False, "field": "line"},
        {"type": "string", "optional": True, "field": "origin"}]}
    assert json.loads(got[1])["payload"]["line"] == "b"


def test_pause_resume_delete_on_a_running_worker(tmp_path):
    src, d = tmp_path / "in.txt", tmp_path / "log"
    src.write_text("1\n2\n")
    w = Worker(d).start()                          # runs every connector, those added later too
    try:
        w.submit(source("s", src, "t"))
        w.wait_for("s", "RUNNING")
        wait_until(lambda: end_offset(d, "t") == 2, what="2 records")
        # Pause from another process: the CLI writes the target state, this worker obeys.
        env = {**os.environ, "EMBEDLOG_DIR": str(d)}
        r = subprocess.run([sys.executable, "-m", "embedlog", "connect", "pause", "s"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        w.wait_for("s", "PAUSED")
        with open(src, "a") as f:
            f.write("3\n")
        time.sleep(1.0)
        assert end_offset(d, "t") == 2                               # paused: nothing read
        r = subprocess.run([sys.executable, "-m", "embedlog", "connect", "status", "s", "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert json.loads(r.stdout)["tasks"][0]["state"] == "PAUSED"
        from embedlog.connect._manage import Manager
        m = Manager(w.store)
        m.resume("s")
        w.wait_for("s", "RUNNING")
        wait_until(lambda: end_offset(d, "t") == 3, what="the record written while paused")
        # A changed config restarts the connector with it (here: into another topic).
        w.submit(source("s", src, "t2"))
        wait_until(lambda: w.tasks["s"].raw["topic"] == "t2" and w.tasks["s"].state == "RUNNING",
                   what="the restart with the new config")
        with open(src, "a") as f:
            f.write("4\n")
        assert topic_values(d, "t2", 1) == [b"4"]
        m.delete("s")
        wait_until(lambda: "s" not in w.tasks, what="the deleted connector to stop")
        with open(src, "a") as f:
            f.write("5\n")
        time.sleep(0.8)
        assert end_offset(d, "t2") == 1
        with pytest.raises(ConnectError, match="Connector s not found"):
            m.status("s")
        w.store.refresh()
        assert "status-task-s-0" not in w.store.status
        assert w.store.source_offsets("s")                            # offsets stay, as Kafka's
    finally:
        w.stop()


def test_a_failing_task_is_failed_with_its_trace(tmp_path):
    d = tmp_path / "log"
    (tmp_path / "in.txt").write_text("x\n")
    cfg = source("f", tmp_path / "in.txt", "t", **{
        "transforms": "x", "transforms.x.type": "org.apache.kafka.connect.transforms.ExtractField$Value",
        "transforms.x.field": "id"})          # a line is a string, not a struct: fails at the first record
    with run(d, cfg) as w:
        st = w.wait_for("f", "FAILED")
    assert st["connector"]["state"] == "RUNNING"                       # as Kafka Connect: the task failed
    assert "only Struct objects supported for [field extraction], found: string" in st["tasks"][0]["trace"]
    assert end_offset(d, "t") == 0


BAD = [
    ({"connector.class": "FileStreamSourze"}, ("unknown connector.class 'FileStreamSourze' (did you mean "
                                              "FileStreamSource?)")),
    ({"connector.class": "com.example.Nope"}, "unknown connector.class 'com.example.Nope'"),
    ({"fiel": "x"}, ("unknown config key 'fiel' for org.apache.kafka.connect.file.FileStreamSourceConnector "
                    "(did you mean file?)")),
    ({"batch.max.rows": "many"}, "batch.max.rows must be an integer, not 'many'"),
    ({"batch.max.rows": "0"}, "batch.max.rows must be at least 1"),
    ({"file": "/no/such/dir/in.txt"}, "file: the directory of '/no/such/dir/in.txt' does not exist"),
    ({"topic": None}, "config key 'topic': config values may not be null"),
    ({"value.converter": "AvroConverterz"}, "value.converter: unknown converter class 'AvroConverterz'"),
    ({"value.converter.schemas.enable": "maybe"}, "value.converter.schemas.enable must be true or false"),
    ({"transforms": "a"}, "transforms.a.type is missing"),
    ({"transforms": "a", "transforms.a.type": "InsertFeld$Value"}, "unknown transform 'InsertFeld$Value'"),
    ({"transforms.b.type": "ValueToKey"}, "transform alias 'b' is not listed in transforms"),
    ({"name": "bad name"}, "connector name 'bad name'"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_config_is_refused_and_nothing_written(tmp_path, change, message):
    d = tmp_path / "log"
    cfg = source("b", tmp_path / "in.txt", "t")
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if not (k == "topic" and v is None)} if change.get("topic", 1) else cfg
    with pytest.raises(ConnectError) as e:
        run(d, cfg)
    assert message in str(e.value)
    assert not d.exists()                                             # nothing written, not even the dir


def test_bad_config_through_the_cli_is_one_error_line(tmp_path):
    d = tmp_path / "log"
    el.open(d).close()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"name": "s", "config": sink("s", tmp_path / "o.txt", "t", topic="t")}))
    r = subprocess.run([sys.executable, "-m", "embedlog", "--dir", str(d), "connect", "run", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        ("Error: connector s: unknown config key 'topic' for org.apache.kafka.connect.file.FileStreamSinkConnector "
        "(did you mean topics?)")]
    with el.open(d) as log:
        assert not [t for t in log.topics() if t.startswith("_connect")]
    r = subprocess.run([sys.executable, "-m", "embedlog", "--dir", str(d), "connect", "status", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == "Error: Connector nope not found"


def _stored_position(d, name, filename):
    with el.open(d) as log:
        s = Store(log)
        s.refresh()
        got = s.source_offsets(name)
    return got[json.dumps({"filename": filename}, sort_keys=True, separators=(",", ":"))][1]["position"] \
        if got else 0


def test_kill_9_mid_stream_then_restart_loses_nothing(tmp_path):
    """A `connect run` subprocess is killed -9 while it copies a file; the restart resumes at
    the stored byte position: the topic is exactly the lines read before the kill, then the
    file again from the line at the stored position (duplicates only past it), to the end."""
    src, d = tmp_path / "in.txt", tmp_path / "log"
    lines = [f"{i:06d} " + "x" * (i % 40) for i in range(30000)]
    src.write_text("\n".join(lines[:20000]) + "\n")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"name": "tail", "config": source("tail", src, "lines",
                                                                 **{"batch.max.rows": "100"})}))
    cmd = [sys.executable, "-m", "embedlog", "--dir", str(d), "connect", "run", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: end_offset(d, "lines") >= 3000 or proc.poll() is not None, 120, "3000 records")
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = end_offset(d, "lines")
    stored = _stored_position(d, "tail", str(src))
    assert before < 20000, "the kill came after the end: not mid-stream"
    r = subprocess.run([sys.executable, "-m", "embedlog", "--dir", str(d), "connect", "status", "tail", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert json.loads(r.stdout)["tasks"][0]["state"] == "UNASSIGNED"   # its worker is gone
    with open(src, "a") as f:                                         # the file grows while it is down
        f.write("\n".join(lines[20000:]) + "\n")
    proc = subprocess.Popen(cmd[:-1] + ["--name", "tail"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        offsets = [0]
        for x in lines:
            offsets.append(offsets[-1] + len(x.encode()) + 1)
        k = offsets.index(stored)                                     # the line at the stored position
        assert k <= before
        want = lines[:before] + lines[k:]
        got = topic_values(d, "lines", len(want), timeout=180)
        assert [v.decode() for v in got] == want
        duplicates = before - k
        print(f"kill -9 after {before} records, stored position at line {k}: {duplicates} duplicates")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read().decode()
    with el.open(d) as log:
        s = Store(log)
        s.refresh()
        assert s.status["status-task-tail-0"]["state"] == "UNASSIGNED"   # stopped cleanly by SIGTERM
        assert STATUS in log.topics()
