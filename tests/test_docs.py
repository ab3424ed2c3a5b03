"""The documents that describe the code are current."""
import pathlib

import embedlog
from embedlog.storage import _config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_config_md_is_generated_from_the_tables():
    # the hand-written "Connector configs" section below it: tests/connect/test_rest.py
    generated = (ROOT / "CONFIG.md").read_text().split("\n## Connector configs", 1)[0]
    assert generated == _config.config_markdown(), \
        "CONFIG.md is stale: regenerate the part above '## Connector configs' with python -m embedlog.storage._config"


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


def test_documents_point_at_files_that_exist():
    """Every source path a document names (`embedlog/...py`, `storage/_x.py`, `csrc/...`)
    exists, so a move that forgets the documents fails here."""
    import re
    missing = []
    for doc in ("ARCHITECTURE.md", "FORMAT.md", "README.md", "RELIABILITY.md", "bench/README.md"):
        text = (ROOT / doc).read_text()
        for m in re.finditer(r"`((?:embedlog/|storage/|client/|cli/|csrc/|tests/|bench/)[\w/.-]+\.(?:py|c|h|sh))", text):
            path = m.group(1)
            if not path.startswith(("embedlog/", "csrc/", "tests/", "bench/")):
                path = "embedlog/" + path
            if not (ROOT / path).exists():
                missing.append(f"{doc}: {m.group(1)}")
    assert not missing, missing


def test_architecture_md_maps_every_format_section():
    import re
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "FORMAT.md").read_text(), re.M))
    arch = (ROOT / "ARCHITECTURE.md").read_text()
    mapped = set(re.findall(r"^\| §(\d+) ", arch, re.M))
    # §10 (a worked example) and §11 (design choices) describe no code
    assert sections - {"10", "11"} <= mapped, sorted(sections - mapped)
