"""Kafka Connect's REST API as `embedlog connect serve` answers it: a real `connect serve`
subprocess on a loopback port, a file source -> topic -> file sink pair created over REST
(the seed's `curl -X POST ... --data @config.json .../connectors` with a real curl when it
is installed), data flowing through them, every route and its error bodies shaped as Kafka
Connect's ({"error_code": N, "message": ...})."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import pg
from test_connect_runner import STRING, wait_until  # the runner tests' poll loop

import embedlog as el
from embedlog.connect._store import CONFIGS

SOURCE_CLASS = "org.apache.kafka.connect.file.FileStreamSourceConnector"
SINK_CLASS = "org.apache.kafka.connect.file.FileStreamSinkConnector"
README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
server, db = pg.fixtures("inventory")


class Rest:
    def __init__(self, url):
        self.url = url

    def __call__(self, method, path, body=None, *, raw: bytes | None = None):
        """(status, parsed JSON body or None, headers)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, text, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, text, headers = e.code, e.read(), e.headers
        return status, (json.loads(text) if text else None), headers

    def error(self, method, path, body=None, *, raw=None, status):
        """The call answers `status` with Kafka Connect's error body; its message."""
        got, doc, _ = self(method, path, body, raw=raw)
        assert got == status, (method, path, got, doc)
        assert set(doc) == {"error_code", "message"} and doc["error_code"] == status, doc
        assert doc["message"], doc
        return doc["message"]


@pytest.fixture
def served(tmp_path):
    """`embedlog connect serve --listen 127.0.0.1:0 --json` on a fresh directory: (Rest, dir)."""
    d = tmp_path / "log"
    el.open(d).close()
    proc = subprocess.Popen([sys.executable, "-m", "embedlog", "--dir", str(d), "connect", "serve",
                             "--listen", "127.0.0.1:0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"connect serve printed nothing: {proc.stderr.read()[-2000:]}")
        addr = json.loads(line)
        assert addr["dir"] == str(d)
        yield Rest(addr["url"]), d
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]


def configs_end(d) -> int:
    with el.open(d, read_only=True) as log:
        return log.partition(CONFIGS, 0).log_end_offset


def test_rest_lifecycle_with_data_flowing(served, tmp_path):
    rest, d = served
    src_file, dst_file = tmp_path / "in.txt", tmp_path / "out.txt"
    src_file.write_text("".join(f"first {i}\n" for i in range(50)))

    status, root, _ = rest("GET", "/")
    assert status == 200 and set(root) == {"version", "commit", "kafka_cluster_id"}
    assert rest("GET", "/connectors")[:2] == (200, [])
    status, plugins, _ = rest("GET", "/connector-plugins")
    assert status == 200
    kinds = {p["class"]: p["type"] for p in plugins}
    assert kinds[SOURCE_CLASS] == "source" and kinds[SINK_CLASS] == "sink"
    assert kinds["io.debezium.connector.postgresql.PostgresConnector"] == "source"

    # The seed's curl line, with a config file in Kafka Connect's {"name", "config"} shape.
    source = {"name": "src", "config": {"connector.class": "FileStreamSource", "tasks.max": "1",
                                        "file": str(src_file), "topic": "lines", "value.converter": STRING}}
    (tmp_path / "config.json").write_text(json.dumps(source))
    if shutil.which("curl"):
        r = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
                            "--data", "@config.json", "-w", "\n%{http_code}", f"{rest.url}/connectors"],
                           check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        body, code = r.stdout.rsplit("\n", 1)
        assert code == "201", r.stdout
        created = json.loads(body)
    else:                               # pragma: no cover - curl is in .ci/run's packages
        status, created, _ = rest("POST", "/connectors", source)
        assert status == 201
    assert created == {"name": "src", "type": "source", "tasks": [{"connector": "src", "task": 0}],
                       "config": {**source["config"], "name": "src"}}

    sink_config = {"connector.class": "FileStreamSink", "file": str(dst_file), "topics": "lines",
                   "value.converter": STRING}
    status, created, headers = rest("POST", "/connectors", {"name": "snk", "config": sink_config})
    assert status == 201 and created["type"] == "sink" and headers["Location"] == "/connectors/snk"

    want = [f"first {i}" for i in range(50)]
    wait_until(lambda: dst_file.exists() and dst_file.read_text().split("\n")[:-1] == want, 60,
               what="the sink file to hold the source's lines")
    for name in ("src", "snk"):
        st = wait_until(lambda n=name: (s := rest("GET", f"/connectors/{n}/status")[1])["tasks"][0]["state"]
                        == "RUNNING" and s, 30, what=f"{name} RUNNING")
        assert st["name"] == name and st["connector"]["state"] == "RUNNING"
        assert st["tasks"][0]["id"] == 0 and st["tasks"][0]["worker_id"]

    assert rest("GET", "/connectors")[:2] == (200, ["snk", "src"])
    _, expanded, _ = rest("GET", "/connectors?expand=status&expand=info")
    assert set(expanded) == {"snk", "src"}
    assert expanded["src"]["status"]["connector"]["state"] == "RUNNING"
    assert expanded["snk"]["info"]["config"]["topics"] == "lines"
    status, info, _ = rest("GET", "/connectors/snk")
    assert status == 200 and info == {"name": "snk", "config": {**sink_config, "name": "snk"},
                                      "tasks": [{"connector": "snk", "task": 0}], "type": "sink"}
    assert rest("GET", "/connectors/src/config")[:2] == (200, {**source["config"], "name": "src"})
    status, tasks, _ = rest("GET", "/connectors/src/tasks")
    assert status == 200 and tasks[0]["id"] == {"connector": "src", "task": 0}
    status, offsets, _ = rest("GET", "/connectors/src/offsets")
    assert status == 200
    assert offsets == {"offsets": [{"partition": {"filename": str(src_file)},
                                    "offset": {"position": src_file.stat().st_size}}]}

    # Pause: PAUSED, lines appended meanwhile stay in the file; resume: they flow.
    assert rest("PUT", "/connectors/src/pause")[0] == 202
    wait_until(lambda: rest("GET", "/connectors/src/status")[1]["connector"]["state"] == "PAUSED", 30,
               what="src PAUSED")
    with el.open(d, read_only=True) as log:
        before = log.partition("lines", 0).log_end_offset
    with open(src_file, "a") as f:
        f.write("".join(f"second {i}\n" for i in range(20)))
    time.sleep(1.0)
    with el.open(d, read_only=True) as log:
        assert log.partition("lines", 0).log_end_offset == before == 50
    assert rest("PUT", "/connectors/src/resume")[0] == 202
    want += [f"second {i}" for i in range(20)]
    wait_until(lambda: dst_file.read_text().split("\n")[:-1] == want, 60, what="the lines after resume")
    assert rest("GET", "/connectors/src/status")[1]["connector"]["state"] == "RUNNING"

    # PUT /config: 200 for an existing connector (the new config stored), 201 for a new name.
    status, info, _ = rest("PUT", "/connectors/src/config", {**source["config"], "batch.max.rows": "7"})
    assert status == 200 and info["config"]["batch.max.rows"] == "7"
    assert rest("GET", "/connectors/src/config")[1]["batch.max.rows"] == "7"
    status, info, _ = rest("PUT", "/connectors/snk2/config", {**sink_config, "file": str(tmp_path / "out2.txt")})
    assert status == 201 and info["name"] == "snk2"
    wait_until(lambda: (tmp_path / "out2.txt").exists()
               and (tmp_path / "out2.txt").read_text().split("\n")[:-1] == want, 60, what="snk2's copy")
    assert rest("POST", "/connectors/snk2/restart")[0] == 204

    # DELETE: 204, then 404 everywhere for that name; the others stay.
    assert rest("DELETE", "/connectors/snk2")[:2] == (204, None)
    assert rest("GET", "/connectors")[1] == ["snk", "src"]
    assert rest.error("GET", "/connectors/snk2", status=404) == "Connector snk2 not found"

    # Errors: Kafka Connect's bodies, and nothing written for a refused request.
    n = configs_end(d)
    message = rest.error("POST", "/connectors", source, status=409)
    assert message == "Connector src already exists"
    message = rest.error("POST", "/connectors", {"name": "bad", "config": {**sink_config, "topcs": "x"}}, status=400)
    assert "topcs" in message and "did you mean topics" in message
    message = rest.error("POST", "/connectors", {"name": "bad", "config": {"connector.class": "NoSuch"}},
                         status=400)
    assert "NoSuch" in message
    assert "not JSON" in rest.error("POST", "/connectors", raw=b"{not json", status=400)
    assert "config" in rest.error("POST", "/connectors", {"name": "bad"}, status=400)
    message = rest.error("PUT", "/connectors/src/config", {**source["config"], "name": "other"}, status=400)
    assert "other" in message
    for method, path in (("GET", ""), ("GET", "/status"), ("GET", "/config"), ("GET", "/tasks"),
                         ("GET", "/offsets"), ("PUT", "/pause"), ("PUT", "/resume"), ("POST", "/restart"),
                         ("DELETE", "")):
        assert rest.error(method, f"/connectors/nope{path}", status=404) == "Connector nope not found"
    assert rest.error("GET", "/connectors/src/tasks/3/status", status=404) == "Task src-3 not found"
    assert rest.error("DELETE", "/connectors", status=405)
    assert rest.error("GET", "/no/such/route", status=404)
    assert configs_end(d) == n
    assert rest("GET", "/connectors")[1] == ["snk", "src"]

    # Validation: every key with its errors.
    status, v, _ = rest("PUT", "/connector-plugins/FileStreamSink/config/validate", {"topcs": "x"})
    assert status == 200 and v["name"] == SINK_CLASS and v["error_count"] >= 2
    errors = {c["value"]["name"]: c["value"]["errors"] for c in v["configs"]}
    assert errors["topcs"] and errors["file"] and errors["name"]
    assert rest.error("PUT", "/connector-plugins/NoSuch/config/validate", {}, status=404)
    assert os.path.exists(dst_file)


def test_config_md_lists_every_key_validate_reports():
    """CONFIG.md's "Connector configs" section (written by hand below the generated part)
    names every key of every connector with the default that
    PUT /connector-plugins/CLASS/config/validate reports, and the ignored keys."""
    import pathlib

    from embedlog.connect import _configs
    from embedlog.connect._manage import Manager
    parts = (pathlib.Path(__file__).resolve().parents[2] / "CONFIG.md").read_text().split("\n## Connector configs", 1)
    assert len(parts) == 2, "CONFIG.md has no '## Connector configs' section"
    section, missing = parts[1], []
    for plugin in Manager.plugins():
        for c in Manager.validate(plugin["class"], {})["configs"]:
            d = c["definition"]
            default = ("*required*" if d["required"] else "—" if d["default_value"] is None
                       else f"`{d['default_value']}`" if d["default_value"] else "(empty)")
            if f"| `{d['name']}` | {default} |" not in section:
                missing.append(f"{plugin['class']}: {d['name']} (default {default})")
        assert f"`{plugin['class']}`" in section, plugin
    missing += [k for k in _configs.NOOP_KEYS if f"`{k}`" not in section]
    assert not missing, missing


@pytest.mark.skipif(pg.skip_reason() is not None, reason=pg.skip_reason() or "")
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (.ci/run installs it)")
def test_readme_debezium_example_with_curl(served, server, db, tmp_path):
    """README's config.json (Debezium's example: table.include.list, the unwrap transform
    keeping tombstones) POSTed by the README's curl line, pointed at the test's PostgreSQL:
    the unwrapped rows of public.orders arrive, the other table's do not."""
    import pathlib
    import re
    import shlex
    rest, d = served
    text = pathlib.Path(README).read_text()
    doc = json.loads(re.search(r"cat > config.json <<'JSON'\n(.*?)\nJSON\n", text, re.DOTALL).group(1))
    line = re.search(r"^curl -X POST .*http://127.0.0.1:8083/connectors$", text, re.MULTILINE).group(0)
    curl = shlex.split(line.replace("http://127.0.0.1:8083", rest.url)) + ["-sS", "-w", "\n%{http_code}"]
    ours = pg.PgServer.config(server, db)
    doc["config"].update({k: ours[k] for k in ("database.hostname", "database.port", "database.password",
                                               "database.dbname", "slot.name")})
    (tmp_path / "config.json").write_text(json.dumps(doc))
    server.execute("CREATE TABLE public.orders (id int PRIMARY KEY, item text, qty int);"
                   "CREATE TABLE public.audit (id int PRIMARY KEY); INSERT INTO public.orders VALUES (1, 'pen', 2)", db)
    r = subprocess.run(curl, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.endswith("\n201"), (r.stdout, r.stderr)
    name = doc["name"]
    wait_until(lambda: rest("GET", f"/connectors/{name}/status")[1]["tasks"][0]["state"] == "RUNNING", 60,
               what=f"{name} RUNNING: {rest('GET', f'/connectors/{name}/status')[1]}")
    server.execute("INSERT INTO public.audit VALUES (7); UPDATE public.orders SET qty = 3 WHERE id = 1;"
                   "INSERT INTO public.orders VALUES (2, 'ink', 1); DELETE FROM public.orders WHERE id = 1", db)

    def rows():
        with el.open(d, read_only=True) as log:
            if "dbserver1.public.orders" not in log.topics():
                return None
            cols, _ = log.partition("dbserver1.public.orders", 0).fetch(0)
            return [(json.loads(k)["payload"]["id"], v and json.loads(v)["payload"])
                    for k, v in zip(cols.keys, cols.values)]
    want = [(1, {"id": 1, "item": "pen", "qty": 2}), (1, {"id": 1, "item": "pen", "qty": 3}),
            (2, {"id": 2, "item": "ink", "qty": 1}), (1, None)]     # the delete event dropped, its tombstone kept
    wait_until(lambda: (rows() or []) == want, 60, what=f"the unwrapped rows, got {rows()}")
    with el.open(d, read_only=True) as log:
        assert not [t for t in log.topics() if "audit" in t]
