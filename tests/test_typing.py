"""The public API's annotations are real (#20): mypy accepts a program that uses embedlog
correctly and reports each misuse in one that does not; py.typed ships; API.md is current."""
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import embedlog
from embedlog import _apiref

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG_PARENT = pathlib.Path(embedlog.__file__).resolve().parents[1]

GOOD = '''
import asyncio

import embedlog
from embedlog.admin import AdminClient, NewTopic
from embedlog.aio import AIOConsumer, AIOProducer


def on_delivery(err: embedlog.KafkaError | None, msg: embedlog.Message) -> None:
    if err is not None and err.code() == embedlog.KafkaError._MSG_TIMED_OUT:
        print(err.name(), err.str(), msg.topic())


def main(path: str) -> int:
    conf = {"bootstrap.servers": f"file://{path}"}
    with embedlog.open(path, lock_timeout=5.0) as log:
        topic: embedlog.Topic = log.create_topic("orders", partitions=2)
        results = topic.append([b"v1", None], keys=[b"k1", b"k2"])
        first: int = results[0][1].base_offset
        part: embedlog.Partition = log.partition("orders", 0)
        low, high = part.watermarks()
        table = embedlog.to_arrow(log, "orders", start={0: low}, end=high)
        print(first, table.num_rows, log.topics())
        schema = embedlog.registry(log).register("orders-value", '"string"')
        print(schema.id + 1)
    producer = embedlog.Producer(conf)
    producer.produce("orders", b"v", key="k", headers=[("h", b"x")], on_delivery=on_delivery)
    report = producer.produce_batch("orders", [b"a", b"b"])
    left: int = producer.flush(10.0)
    consumer = embedlog.Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"})
    consumer.subscribe(["orders"], on_assign=lambda c, parts: print(len(parts)))
    msg = consumer.poll(1.0)
    if msg is not None and msg.error() is None:
        value: bytes | None = msg.value()
        print(msg.offset() + 1, msg.partition(), msg.timestamp()[1], value)
        consumer.commit(msg, asynchronous=False)
    for batch in consumer.consume_batch(100, timeout=1.0):
        print(batch.next_offset - batch.offsets[0], batch.commit())
    consumer.seek(embedlog.TopicPartition("orders", 0, embedlog.OFFSET_BEGINNING))
    consumer.close()
    with AdminClient(conf) as admin:
        for name, future in admin.create_topics([NewTopic("more", num_partitions=3)]).items():
            print(name, future.result())

    async def aio() -> None:
        aprod = AIOProducer(conf)
        delivered = await (await aprod.produce("orders", b"v"))
        print(delivered.offset())
        await aprod.close()
        async with AIOConsumer({**conf, "group.id": "g2"}) as acons:
            got = await acons.poll(1.0)
            print(got.value() if got is not None else None)
    asyncio.run(aio())
    return left + report
'''

# Each misuse line ends with the mypy error code it must get.
BAD = '''
import embedlog

producer = embedlog.Producer({"bootstrap.servers": "file:///tmp/x"})
consumer = embedlog.Consumer({"bootstrap.servers": "file:///tmp/x", "group.id": "g"})
producer.produce(1234)  # E: arg-type
producer.produce("t", value=5)  # E: arg-type
left: str = producer.flush()  # E: assignment
msg = consumer.poll(timeout="1")  # E: arg-type
print(msg.value())  # E: union-attr
if msg is not None:
    print(msg.offset() + "x")  # E: operator
consumer.subscribe("orders", on_assign=1)  # E: arg-type
embedlog.TopicPartition("t", "0")  # E: arg-type
log = embedlog.open("/tmp/x", lock_timeot=3)  # E: call-arg
log.create_topic("t", partitions="3")  # E: arg-type
embedlog.to_arrow(log, 5)  # E: arg-type
embedlog.registry(log).register("s", 5)  # E: arg-type
'''


def _mypy(tmp_path, *files):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    # An editable install is an import hook mypy cannot follow: point it at the package's
    # folder (installed from a wheel, site-packages has it and py.typed says it is typed).
    (tmp_path / "mypy.ini").write_text(f"[mypy]\nmypy_path = {PKG_PARENT}\nfollow_imports = silent\n"
                                       "ignore_missing_imports = True\npython_version = 3.10\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-error-summary",
                           "--show-error-codes", "--cache-dir", str(tmp_path / ".cache"), *files],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_mypy_accepts_correct_use_and_reports_each_misuse(tmp_path):
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    proc = _mypy(tmp_path, "good.py", "bad.py")
    errors = re.findall(r"^(\w+)\.py:(\d+): error: .*\[([\w-]+)\]$", proc.stdout, re.MULTILINE)
    assert not [e for e in errors if e[0] == "good"], proc.stdout
    expected = {(str(n), m.group(1)) for n, line in enumerate(BAD.splitlines(), 1)
                if (m := re.search(r"# E: ([\w-]+)$", line))}
    got = {(line, code) for f, line, code in errors if f == "bad"}
    assert got == expected, proc.stdout
    assert proc.returncode == 1


def test_py_typed_ships_in_the_package():
    assert (ROOT / "embedlog" / "py.typed").is_file()
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["embedlog"]


def test_api_md_is_generated_from_the_docstrings():
    assert (ROOT / "API.md").read_text() == _apiref.markdown(), \
        "API.md is stale: regenerate it with python -m embedlog._apiref"


def test_api_reference_shows_the_annotations():
    text = _apiref.markdown()
    assert "- `poll(timeout: float | None = None) -> Message | None`" in text
    assert "- `produce(topic: str, value: Bytesish = None," in text
    # every public method of the documented classes is listed, with its docstring's first line
    assert "- `consume_batch(max_messages: int = 100000, timeout: float | None = -1) -> list[ConsumedBatch]`" in text
    assert "  Records as columns, one ConsumedBatch per fetched chunk" in text


def test_signature_renders_every_parameter_kind():
    def f(a: int, /, b, *args: str, c: bool = True, **kw: object) -> None:
        pass

    def g(x, *, y: str = "s"):
        pass
    assert _apiref.signature(f) == "(a: int, /, b, *args: str, c: bool = True, **kw: object) -> None"
    assert _apiref.signature(g) == "(x, *, y: str = 's')"
