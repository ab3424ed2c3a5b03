import pytest


@pytest.fixture
def conf(tmp_path):
    return {"bootstrap.servers": f"file://{tmp_path}/log"}


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path / "log")
