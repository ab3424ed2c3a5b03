"""The documents that describe the code are current."""
import pathlib

import embedlog
from embedlog.storage import _config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_config_md_is_generated_from_the_tables():
    assert (ROOT / "CONFIG.md").read_text() == _config.config_markdown(), \
        "CONFIG.md is stale: python -m embedlog.storage._config > CONFIG.md"


def test_public_api_is_pinned():
    assert embedlog.__all__ == sorted(embedlog.__all__)
    for name in embedlog.__all__:
        assert hasattr(embedlog, name), name
    for name in ("Producer", "Consumer", "AdminClient", "Log", "Partition", "TopicPartition", "Message",
                 "KafkaError", "KafkaException", "open"):
        assert name in embedlog.__all__
    assert embedlog.Producer.__module__ == "embedlog"


def test_format_md_names_every_file_embedlog_writes():
    text = (ROOT / "FORMAT.md").read_text()
    for name in ("embedlog.json", "topics/", ".lock", ".log", ".index", ".timeindex", "partition.state",
                 "partition.checkpoint", "__consumer_offsets", "group.json", "generation", "members/"):
        assert name in text, name
