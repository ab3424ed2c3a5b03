"""`embedlog schemas ...` and `embedlog registry serve` as a shell runs them."""
import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

import embedlog
from embedlog.registry import registry_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "cli"))   # as tests/cli has it
from clirun import call, run

V1 = json.dumps({"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"}]})
V2 = json.dumps({"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"},
                                                              {"name": "age", "type": "int", "default": 0}]})
BAD = json.dumps({"type": "record", "name": "User", "fields": [{"name": "zip", "type": "int"}]})


def test_register_list_get_check_delete(tmp_path):
    d = tmp_path / "log"
    embedlog.open(d).close()
    r = run("schemas", "list", "--json", dir=d)
    assert (r.code, r.json) == (0, [])
    assert "_schemas" not in embedlog.open(d).topics()          # a read creates nothing
    r = run("schemas", "register", "users-value", "--schema", V1, dir=d)
    assert (r.code, r.out.strip()) == (0, "subject users-value version 1 id 1"), r
    (tmp_path / "v2.avsc").write_text(V2)
    r = call("schemas", "register", "users-value", "--file", tmp_path / "v2.avsc", "--json", dir=d)
    assert r.json == {"subject": "users-value", "version": 2, "id": 2}
    r = call("schemas", "list", dir=d)
    assert r.table() == [["SUBJECT", "VERSIONS", "LATEST-ID", "TYPE"], ["users-value", "1,2", "2", "AVRO"]]
    assert call("schemas", "get", "users-value", "--version", "1", dir=d).out.strip() == V1
    assert call("schemas", "get", "--id", "2", "--json", dir=d).json["schema"] == V2
    r = call("schemas", "check", "users-value", "--schema", BAD, dir=d)
    assert r.code == 1 and r.out.startswith("incompatible (BACKWARD)") and "zip" in r.out
    assert call("schemas", "check", "users-value", "--schema", V2, "--json", dir=d).json == {
        "is_compatible": True, "messages": []}
    r = call("schemas", "register", "users-value", "--schema", BAD, dir=d)
    assert r.code == 1 and r.err.startswith("Error: ") and len(r.err.strip().splitlines()) == 1
    assert "error_code 409" in r.err
    assert call("schemas", "config", "users-value", "--set", "none", dir=d).out.strip() == "NONE"
    assert call("schemas", "config", "--json", dir=d).json == {"subject": None, "compatibilityLevel": "BACKWARD"}
    assert call("schemas", "register", "users-value", "--schema", BAD, dir=d).code == 0
    r = call("schemas", "delete", "users-value", "--permanent", dir=d)
    assert r.code == 1 and "40405" in r.err
    assert call("schemas", "delete", "users-value", "--json", dir=d).json == [1, 2, 3]
    assert call("schemas", "delete", "users-value", "--permanent", dir=d).code == 0
    with embedlog.open(d) as log:
        assert registry_for(log).subjects(deleted=True) == []


def test_errors_are_one_line(tmp_path):
    d = tmp_path / "log"
    embedlog.open(d).close()
    r = run("schemas", "register", "s", "--schema", '{"type": "nope"}', dir=d)
    assert r.code == 1 and r.err.startswith("Error: Invalid schema") and "42201" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = call("schemas", "get", "missing", dir=d)
    assert r.code == 1 and "40401" in r.err
    call("schemas", "register", "s", "--schema", V1, dir=d)
    r = call("schemas", "get", "s", "--version", "zero", dir=d)
    assert r.code == 1 and "42202" in r.err
    r = call("schemas", "register", "s", dir=d)
    assert r.code == 2                                            # usage: no schema given
    r = call("schemas", "register", "s", "--schema", V1, "--reference", "broken", dir=d)
    assert r.code == 2 and "NAME=SUBJECT:VERSION" in r.err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_registry_serve(tmp_path, sig):
    d = tmp_path / "log"
    with embedlog.open(d) as log:
        registry_for(log).register("s", V1)
    env = {k: v for k, v in os.environ.items() if k != "EMBEDLOG_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "embedlog", "registry", "serve", "--dir", str(d),
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "schema registry for" in line, line
        url = line.strip().rsplit(" on ", 1)[1]
        with urllib.request.urlopen(url + "/subjects/s/versions/1", timeout=30) as resp:
            assert json.loads(resp.read())["schema"] == V1
    finally:
        proc.send_signal(sig)
        try:
            assert proc.wait(timeout=30) == 0, f"registry serve exited {proc.returncode} on {sig!r}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_every_schemas_and_registry_command_has_help():
    import click

    from embedlog.cli import cli
    found = []
    for group in ("schemas", "registry"):
        for name, cmd in sorted(cli.commands[group].commands.items()):
            found.append(f"{group} {name}")
            assert cmd.help and not cmd.get_short_help_str(80).endswith("..."), name
            for param in cmd.params:
                if isinstance(param, click.Option) and not param.hidden:
                    assert param.help, (name, param.name)
            r = call(group, name, "--help")
            assert r.code == 0 and r.out.startswith(f"Usage: embedlog {group} {name}"), r
    assert found == ["schemas check", "schemas config", "schemas delete", "schemas get", "schemas list",
                     "schemas register", "registry serve"]
